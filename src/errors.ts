/**
 * One error type for the whole proxy. Every failure that reaches a client or a log carries a stable
 * `ZP_ERR_*` code (listed in docs/errors.md), the side it came from, whether a retry is allowed and
 * the HTTP status to answer with.
 */

export type ErrorSide = 'downstream' | 'upstream' | 'internal' | 'config';

export interface ErrorCodeInfo {
  readonly status: number;
  readonly side: ErrorSide;
  readonly message: string;
}

/** The code table: status, side and the default message of each code. */
export const ERROR_CODES = {
  ZP_ERR_BAD_REQUEST: { status: 400, side: 'downstream', message: 'Malformed request' },
  ZP_ERR_UNAUTHORIZED: { status: 401, side: 'downstream', message: 'Authentication is required' },
  ZP_ERR_FORBIDDEN: { status: 403, side: 'downstream', message: 'The credentials do not allow this request' },
  ZP_ERR_NOT_FOUND: { status: 404, side: 'downstream', message: 'No route matches this request' },
  ZP_ERR_METHOD_NOT_ALLOWED: {
    status: 405,
    side: 'downstream',
    message: 'The route does not allow this method',
  },
  ZP_ERR_REQUEST_TIMEOUT: {
    status: 408,
    side: 'downstream',
    message: 'The request was not received in time',
  },
  ZP_ERR_BODY_TOO_LARGE: { status: 413, side: 'downstream', message: 'Request body is too large' },
  ZP_ERR_URI_TOO_LONG: { status: 414, side: 'downstream', message: 'Request target is too long' },
  ZP_ERR_EXPECTATION_FAILED: { status: 417, side: 'downstream', message: 'Unsupported expectation' },
  ZP_ERR_HEADERS_TOO_LARGE: {
    status: 431,
    side: 'downstream',
    message: 'Request header fields are too large',
  },
  ZP_ERR_CLIENT_ABORTED: { status: 499, side: 'downstream', message: 'The client closed the connection' },
  ZP_ERR_NOT_IMPLEMENTED: { status: 501, side: 'downstream', message: 'Unsupported transfer coding' },
  ZP_ERR_VERSION_NOT_SUPPORTED: {
    status: 505,
    side: 'downstream',
    message: 'HTTP version not supported',
  },
  ZP_ERR_PLAIN_HTTP_ON_TLS: {
    status: 400,
    side: 'downstream',
    message: 'Plain HTTP was sent to a port that speaks HTTPS only; use https://',
  },
  ZP_ERR_WEBSOCKET_DISABLED: {
    status: 400,
    side: 'downstream',
    message: 'WebSocket is not enabled on this proxy',
  },
  ZP_ERR_WEBSOCKET_HANDSHAKE: {
    status: 400,
    side: 'downstream',
    message: 'Invalid WebSocket handshake request',
  },
  ZP_ERR_WEBSOCKET_VERSION: {
    status: 426,
    side: 'downstream',
    message: 'Unsupported WebSocket version; this proxy supports version 13',
  },
  ZP_ERR_TUNNEL_IDLE_TIMEOUT: {
    status: 408,
    side: 'downstream',
    message: 'The tunnel carried no bytes for its idle timeout',
  },
  ZP_ERR_UPSTREAM_CONNECT: { status: 502, side: 'upstream', message: 'Could not connect to the upstream' },
  ZP_ERR_UPSTREAM_RESET: {
    status: 502,
    side: 'upstream',
    message: 'The upstream closed the connection before answering',
  },
  ZP_ERR_UPSTREAM_BAD_RESPONSE: {
    status: 502,
    side: 'upstream',
    message: 'The upstream sent an invalid response',
  },
  ZP_ERR_UPSTREAM_TLS: {
    status: 502,
    side: 'upstream',
    message: 'The TLS connection to the upstream failed',
  },
  ZP_ERR_UPSTREAM_PROTOCOL: {
    status: 502,
    side: 'upstream',
    message: 'The upstream does not speak the protocol its URL names',
  },
  ZP_ERR_WEBSOCKET_UPSTREAM_UNSUPPORTED: {
    status: 502,
    side: 'upstream',
    message: 'WebSocket to an HTTP/2 upstream (h2c://, h2://) is not supported yet',
  },
  ZP_ERR_UPSTREAM_UNAVAILABLE: {
    status: 503,
    side: 'upstream',
    message: 'No upstream connection is available',
  },
  ZP_ERR_UPSTREAM_OVERLOADED: {
    status: 503,
    side: 'upstream',
    message: "The route's upstreams are at a circuit-breaking limit",
  },
  ZP_ERR_UPSTREAM_TIMEOUT: {
    status: 504,
    side: 'upstream',
    message: 'The upstream did not answer in time',
  },
  ZP_ERR_TUNNEL_LIMIT: {
    status: 503,
    side: 'internal',
    message: 'Too many WebSocket tunnels are open',
  },
  ZP_ERR_AUTH_UNAVAILABLE: {
    status: 503,
    side: 'internal',
    message: 'The keys needed to check the credentials could not be fetched',
  },
  ZP_ERR_SHUTTING_DOWN: { status: 503, side: 'internal', message: 'The proxy is shutting down' },
  ZP_ERR_INTERNAL: { status: 500, side: 'internal', message: 'Internal proxy error' },
  ZP_ERR_FILTER_TIMEOUT: {
    status: 504,
    side: 'internal',
    message: 'A filter did not finish in time',
  },
  ZP_ERR_FILTER_FAILED: {
    status: 500,
    side: 'internal',
    message: 'A filter failed while handling this request',
  },
  ZP_ERR_CONFIG: { status: 500, side: 'config', message: 'Invalid configuration' },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class ZpError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly side: ErrorSide;
  /** True when the failed operation may be attempted again (e.g. on a fresh upstream connection). */
  readonly retryable: boolean;

  constructor(code: ErrorCode, message?: string, options?: { retryable?: boolean; cause?: unknown }) {
    const info = ERROR_CODES[code];
    super(message ?? info.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ZpError';
    this.code = code;
    this.status = info.status;
    this.side = info.side;
    this.retryable = options?.retryable ?? false;
  }
}

/**
 * Failures of an upstream itself — not a limit of zproxy's, not the client's doing — in one order: the
 * `kind` label of zproxy_upstream_errors_total (connect, tls, timeout, reset, protocol, bad_response) and
 * what outlier detection counts against a target. -1 for any other code.
 */
export function upstreamFailure(code: ErrorCode): number {
  switch (code) {
    case 'ZP_ERR_UPSTREAM_CONNECT':
      return 0;
    case 'ZP_ERR_UPSTREAM_TLS':
      return 1;
    case 'ZP_ERR_UPSTREAM_TIMEOUT':
      return 2;
    case 'ZP_ERR_UPSTREAM_RESET':
      return 3;
    case 'ZP_ERR_UPSTREAM_PROTOCOL':
      return 4;
    case 'ZP_ERR_UPSTREAM_BAD_RESPONSE':
      return 5;
    default:
      return -1;
  }
}

/** The JSON body zproxy answers with when it produces an error response itself. */
export function errorBody(code: ErrorCode, message?: string): string {
  const info = ERROR_CODES[code];
  return JSON.stringify({ error: { code, status: info.status, message: message ?? info.message } });
}
