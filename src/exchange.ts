/**
 * One request/response, whatever protocol carried it. Every field is declared here so each exchange has
 * one object shape. Filters (later) and the log phase read it; the protocol engines fill it.
 */

import type { ErrorCode } from './errors.ts';
import type { FilterExchange } from './pipeline/filter-exchange.ts';
import type { CompiledRoute } from './runtime/compile.ts';

let nextId = 1;

/** What a WebSocket tunnel carried, recorded when it ends (access log `tunnel`). */
export interface TunnelRecord {
  /** Bytes from the client to the upstream after the handshake. */
  readonly bytes_up: number;
  /** Bytes from the upstream to the client after the handshake. */
  readonly bytes_down: number;
  /** How long the tunnel was open (from the switch to the close of both ends). */
  readonly duration_ms: number;
  /** Tunnels still open in this process when this one ended. */
  readonly active: number;
}

export class Exchange {
  readonly id: number;
  /** performance.now() when the request head was complete. */
  readonly startTime: number;
  readonly method: string;
  /** The request-target as received. */
  readonly target: string;
  /** The normalised path used for routing (dot segments resolved, no query). */
  path = '';
  /** '' or the query string including its leading '?', forwarded untouched. */
  query = '';
  /** The Host the client addressed ('' when absent). */
  host: string;
  /** '1.0', '1.1' or '2'. */
  readonly httpVersion: string;
  readonly clientAddress: string;
  route: CompiledRoute | null = null;
  params: Readonly<Record<string, string>> | null = null;
  /** Status sent downstream (0 until a response starts). */
  status = 0;
  /** Bytes received from and sent to the client for this exchange (heads included). */
  bytesIn = 0;
  bytesOut = 0;
  /** 'host:port' of the upstream target used (the last one tried), '' when none. */
  upstream = '';
  /** Attempts at an upstream (0 when none was made: a local answer). */
  attempts = 0;
  /** Every target tried, in order, when there was more than one attempt; else null. */
  tried: string[] | null = null;
  errorCode: ErrorCode | null = null;
  /** Set when the exchange became a WebSocket tunnel, once the tunnel has ended. */
  tunnel: TunnelRecord | null = null;
  /**
   * Who the auth filter authenticated (docs/filters.md, "auth"): `key:<first 16 hex digits of the key's
   * SHA-256>`, the Basic user name, or the JWT's `sub` ('' when it has none); null when no auth filter ran.
   */
  principal: string | null = null;
  /** The verified JWT claims (the auth filter, kind jwt), null otherwise; rate_limit's `jwt_claim` key reads it. */
  claims: Readonly<Record<string, unknown>> | null = null;
  /**
   * The request-target as the access log prints it when it differs from `target`: without a credential
   * a filter found in it (an API key query parameter); null to print `target`.
   */
  logTarget: string | null = null;
  /** The request id (the `headers` filter's `request_id`), null when none was given or generated. */
  requestId: string | null = null;
  /** The W3C traceparent zproxy gave the upstream (`tracing.traceparent`), null when none was given. */
  traceparent: string | null = null;
  /** The filter phases of this exchange (its route has filters), else null. */
  filters: FilterExchange | null = null;
  /** performance.now() when the exchange ended (0 while it runs). */
  endTime = 0;

  constructor(
    startTime: number,
    method: string,
    target: string,
    host: string,
    httpVersion: string,
    clientAddress: string,
  ) {
    this.id = nextId++;
    this.startTime = startTime;
    this.method = method;
    this.target = target;
    this.host = host;
    this.httpVersion = httpVersion;
    this.clientAddress = clientAddress;
  }
}
