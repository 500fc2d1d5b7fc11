/**
 * The upstream client contract: how one attempt at an upstream target reports to whoever drives it (the
 * request flow, a subrequest), whatever protocol the target speaks. The HTTP/1.1 connection
 * (src/http1/upstream-connection.ts) and the HTTP/2 stream (src/http2/upstream-stream.ts) both report
 * through UpstreamHandler; the handler drives them through UpstreamAttempt. Callbacks are methods of one
 * long-lived object (no closure per request), in the spirit of undici's dispatch handlers.
 *
 * An attempt's life: acquired from its target's pool (now, or later through onUpstreamReady), given the
 * request head (send), the body (write, end), then it reports the response head, body and end, or an
 * error: before the head (onUpstreamError, which says whether the request may have been processed) or
 * after it (onResponseAborted).
 */
import type { Duplex } from 'node:stream';
import type { ZpError } from '../errors.ts';
import type { FieldSource, MessageEdits } from '../http/fields.ts';
import { ForwardedRequest } from '../http/forwarding.ts';
import type { Logger } from '../observe/logger.ts';

/** How a target's pool opens, keeps and times its connections (compiled from `upstream_defaults`). */
export interface PoolSettings {
  readonly connectTimeoutMs: number;
  readonly responseHeaderTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxIdle: number;
}

/** Where pools report what a client response cannot explain alone (TLS and session failures). */
/** Where a pool reports how long opening a connection took (a target's metrics), in milliseconds. */
export interface ConnectTimer {
  connected(ms: number): void;
}

export interface PoolLog {
  logger: Logger | null;
}

/**
 * The pool of one upstream target, whatever its protocol: the HTTP/1.1 pool of keep-alive connections
 * (src/http1/upstream-pool.ts) and the HTTP/2 pool of multiplexed sessions (http2-pool.ts) both are one.
 */
export interface UpstreamClient {
  /** 'host:port', for logs. */
  readonly authority: string;
  readonly settings: PoolSettings;
  /** An HTTP/1.1 target: it takes a chunked body with its framing, and WebSocket handshakes. */
  readonly http1: boolean;
  /**
   * Takes a connection or stream for `handler`: returns it now, or null when the handler will hear
   * (onUpstreamReady or onUpstreamError). `fresh` skips idle connections (a retry after a stale one).
   */
  acquire(handler: UpstreamHandler, fresh: boolean): UpstreamAttempt | null;
  /**
   * A requester now would wait in the queue: no connection or stream is free and no other may be opened
   * (max_connections_per_target reached). Circuit breaking reads it before acquire.
   */
  readonly saturated: boolean;
  /** Withdraws a handler still waiting for a connection or stream. */
  cancel(handler: UpstreamHandler): void;
  /**
   * A connection of its own for one WebSocket handshake (never pooled; HTTP/1.1 targets only): the
   * handler hears onUpstreamReady, then onUpstreamSwitched on a 101.
   */
  upgrade?(handler: UpstreamHandler): UpstreamAttempt;
  /** Closes the connections nobody uses (shutdown). */
  closeIdle(): void;
}

/** Response body framing as the upstream sent it. */
export const BODY_NONE = 0;
/** Content-Length bytes. */
export const BODY_LENGTH = 1;
/** HTTP/1.1 chunked framing: handed over raw (chunk framing included) unless decoding was asked for. */
export const BODY_CHUNKED = 2;
/** Data until the end, of unknown length: a close-delimited HTTP/1.x body, or HTTP/2 DATA frames. */
export const BODY_UNTIL_END = 3;

/** The request has no body. */
export const REQUEST_BODY_NONE = 0;
/** Content-Length bytes, as they arrived. */
export const REQUEST_BODY_LENGTH = 1;
/** An HTTP/1.1 client's chunked body as it arrived, chunk framing included (HTTP/1.1 upstreams only). */
export const REQUEST_BODY_CHUNKED = 2;
/** Data of unknown length (an HTTP/2 client's DATA, or a decoded chunked body): framed by the attempt. */
export const REQUEST_BODY_STREAM = 3;

/**
 * The request as an attempt sends it: filled by whoever drives the attempt (the request flow), rendered
 * by the attempt for its protocol with the forwarding policy's serializers (src/http/forwarding.ts).
 */
export class ProxyRequest {
  method = '';
  /** The path and query sent upstream. */
  path = '';
  /** The client's request line may be copied as it came (an HTTP/1.1 head whose target is sent unchanged). */
  rawLine = false;
  /** The client's fields (a parsed HTTP/1.1 head, copied in runs by an HTTP/1.1 attempt, or a FieldList). */
  fields: FieldSource | null = null;
  /** The forwarding decisions (what the fields lose and gain). */
  readonly forwarded = new ForwardedRequest();
  /** The filters' edits to the forwarded fields, or null. */
  edits: MessageEdits | null = null;
  /** How the body is written: REQUEST_BODY_*. */
  body = REQUEST_BODY_NONE;
  /** The body may end with trailer fields (chunked to an HTTP/1.1 upstream, a trailing HEADERS in HTTP/2). */
  trailers = false;
  /** A HEAD request: the response has no body. */
  headRequest = false;
  /** Chunked response bodies are decoded for the handler (else handed over with their framing). */
  decodeResponse = false;
  /**
   * A WebSocket handshake: '' when not; 'forward' when the client's own Upgrade fields are forwarded
   * (HTTP/1.1), else the Sec-WebSocket-Key zproxy sends on the client's behalf (RFC 8441: HTTP/2 clients
   * have none).
   */
  websocket = '';

  /** Ready for another exchange (an HTTP/1.1 connection reuses one request for all of its exchanges). */
  reset(): void {
    this.method = '';
    this.path = '';
    this.rawLine = false;
    this.fields = null;
    this.edits = null;
    this.body = REQUEST_BODY_NONE;
    this.trailers = false;
    this.headRequest = false;
    this.decodeResponse = false;
    this.websocket = '';
  }
}

/** A final response head as an attempt hands it over. */
export interface UpstreamResponseHead extends FieldSource {
  readonly status: number;
  /** The version the upstream answered with: '1.0', '1.1' or '2'. */
  readonly httpVersion: string;
}

/** What an attempt reports to the one driving it. */
export interface UpstreamHandler {
  /** The attempt can take the request now. */
  onUpstreamReady(attempt: UpstreamAttempt): void;
  /**
   * Failed before any response head was delivered (connect, reset, refused, timeout, malformed head).
   * `attempt` is null when no connection was ever made. `error.retryable` is true when the upstream
   * certainly did not process the request (a refused stream, a reused connection closed before a byte).
   */
  onUpstreamError(error: ZpError, attempt: UpstreamAttempt | null): void;
  /**
   * The final response head; `framing` is one of BODY_*. When the whole body arrived with the head and is
   * small, it is handed over too (buf[bodyStart, bodyEnd)) and the response is complete (onResponseEnd
   * follows at once); otherwise bodyEnd === bodyStart.
   */
  onResponseHead(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    buf: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void;
  /** Body bytes (raw chunked framing included unless decoding was asked for); false asks for a pause. */
  onResponseBody(buf: Buffer, start: number, end: number): boolean;
  /** The whole response was received; `trailers` when it had a trailer section that was decoded. */
  onResponseEnd(attempt: UpstreamAttempt, trailers: FieldSource | null): void;
  /** The upstream failed after the head was delivered: the downstream response must be aborted. */
  onResponseAborted(error: ZpError): void;
  /** The attempt can take request body again after a write returned false. */
  onUpstreamDrain(): void;
  /**
   * A WebSocket handshake was answered `101 Switching Protocols` to websocket (checked, with the accept
   * value when zproxy sent the key): `socket` is the upstream's end of the tunnel from now on, `rest` the
   * bytes it sent past its head. Only attempts opened for a handshake report it.
   */
  onUpstreamSwitched?(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    socket: Duplex,
    rest: Buffer | null,
  ): void;
  /**
   * True while bytes handed over by onResponseBody may still be referenced (queued in a socket's write
   * buffer): an HTTP/1.1 connection then reads into a fresh buffer instead of reusing its own.
   */
  holdsResponseBytes(): boolean;
}

/** One request on one connection or stream of an upstream target. */
export interface UpstreamAttempt {
  /** 'host:port' of the target, for logs. */
  readonly authority: string;
  /** True for an HTTP/1.1 attempt: it takes a chunked body with its framing (REQUEST_BODY_CHUNKED). */
  readonly http1: boolean;
  /**
   * Sends the request head. Body bytes written before flush() go out with it in one write; a request
   * without a body is complete (the response-header timeout starts).
   */
  send(request: ProxyRequest): void;
  /** Sends what send() and the writes since held back. */
  flush(): void;
  /** Writes request body bytes; false when the handler should wait for onUpstreamDrain. */
  write(buf: Buffer): boolean;
  /** The request body is complete, with trailer fields when it has them. */
  end(trailers: FieldSource | null): void;
  /**
   * The handler keeps the response head (and the body bytes handed over with it) past the callback: a
   * response filter waits. The attempt stops reusing the memory they live in.
   */
  keepHead(): void;
  /** Stops reading the response until resume(). */
  pause(): void;
  resume(): void;
  /** Abandons the attempt (the client went away, the request failed): never reused. */
  cancel(): void;
  /** The response is complete: the attempt goes back to its pool (a connection still sending is closed). */
  release(): void;
  /** The RST_STREAM code of an HTTP/2 upstream's reset after the head, else 0. */
  readonly resetCode: number;
}
