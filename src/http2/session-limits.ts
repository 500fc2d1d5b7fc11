/**
 * Limits of downstream HTTP/2 connections: the frame layer's options derived from `config.http2` (what
 * the SETTINGS frame announces, and the per-connection budgets: stream resets for Rapid Reset, PING and
 * SETTINGS frames for floods), and the token bucket that counts them. docs/protocols.md ("HTTP/2
 * limits") explains every value.
 */
import type { Config } from '../config/schema.ts';
import type { H2ServerOptions } from './server-connection.ts';

/**
 * PING and SETTINGS frames a client may send per second on one connection (burst of the same size). A
 * client sends SETTINGS a handful of times and PINGs for keepalive or bandwidth probes; thousands per
 * second is a flood that costs the proxy an answer each.
 */
export const CONTROL_FRAMES_PER_SECOND = 100;

/** The frame layer's options for the `http2` and `limits` blocks of a config. */
export function h2ServerOptions(config: Config): H2ServerOptions {
  const h2 = config.http2;
  return {
    maxConcurrentStreams: h2.max_concurrent_streams,
    maxHeaderListSize: h2.max_header_list_bytes,
    maxHeaderFields: config.limits.max_header_count,
    streamWindow: h2.stream_window_bytes,
    connectionWindow: h2.connection_window_bytes,
    // RFC 8441: clients may open WebSockets with an extended CONNECT on this connection.
    enableConnectProtocol: config.protocols.includes('websocket'),
    maxResetsPerSecond: h2.max_resets_per_second,
    maxControlFramesPerSecond: CONTROL_FRAMES_PER_SECOND,
    idleTimeoutMs: config.connection_timeout_ms,
  };
}

/**
 * A token bucket: `ratePerSecond` tokens are added per second up to a burst of the same size, and each
 * event takes one. `take()` is false once the bucket is empty, i.e. when more than `ratePerSecond` events
 * came within the last second on average (a burst of up to `ratePerSecond` at once is allowed).
 */
export class RateBudget {
  private readonly rate: number;
  private tokens: number;
  private last: number;
  /** Events counted so far (for the log line). */
  count = 0;

  constructor(ratePerSecond: number) {
    this.rate = ratePerSecond;
    this.tokens = ratePerSecond;
    this.last = performance.now();
  }

  take(): boolean {
    this.count++;
    const now = performance.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
