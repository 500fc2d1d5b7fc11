/**
 * Limits of downstream HTTP/2 sessions: the node:http2 server options derived from `config.http2` (what
 * the SETTINGS frame announces plus node:http2's own flood protections), and the per-session rate
 * budgets zproxy enforces itself (stream resets for Rapid Reset, PING and SETTINGS frames for floods).
 * docs/protocols.md ("HTTP/2 limits") explains every value.
 */
import type { ServerOptions } from 'node:http2';
import type { Config } from '../config/schema.ts';

/**
 * PING and SETTINGS frames a client may send per second on one connection (burst of the same size). A
 * client sends SETTINGS a handful of times and PINGs for keepalive or bandwidth probes; thousands per
 * second is a flood that costs the proxy an answer each.
 */
export const CONTROL_FRAMES_PER_SECOND = 100;

/**
 * node:http2 (nghttp2) has its own reset-rate limit, which answers with GOAWAY INTERNAL_ERROR. nghttp2
 * counts resets while it parses a read (one read can hold well over a thousand HEADERS + RST_STREAM
 * pairs), zproxy counts them when the streams close, just after; so nghttp2's burst is set far above
 * anything one read can carry and its rate this many times above `max_resets_per_second`. zproxy's limit,
 * which answers ENHANCE_YOUR_CALM and logs, is then the one clients meet; nghttp2's stays as a backstop.
 */
const NGHTTP2_RESET_HEADROOM = 4;
const NGHTTP2_RESET_BURST = 10000;

/** Invalid frames (and empty DATA frames without END_STREAM) tolerated per session before it is closed. */
export const MAX_SESSION_INVALID_FRAMES = 100;
/** Streams refused for exceeding SETTINGS_MAX_CONCURRENT_STREAMS before the session is closed. */
export const MAX_SESSION_REJECTED_STREAMS = 100;
/** Memory one session may hold in node:http2 (header tables, queued frames, streams), in MiB. */
export const MAX_SESSION_MEMORY_MIB = 16;
/** Entries accepted in one SETTINGS frame (RFC 9113 defines 7 settings). */
export const MAX_SETTINGS_ENTRIES = 32;
/** PING and SETTINGS frames zproxy may have sent without an ACK (it sends one SETTINGS and no PING). */
export const MAX_OUTSTANDING = 10;

/** The node:http2 server options for the `http2` and `limits` blocks of a config. */
export function http2ServerOptions(config: Config): ServerOptions {
  const h2 = config.http2;
  const nghttp2Rate = h2.max_resets_per_second * NGHTTP2_RESET_HEADROOM;
  return {
    settings: {
      maxConcurrentStreams: h2.max_concurrent_streams,
      maxHeaderListSize: h2.max_header_list_bytes,
      initialWindowSize: h2.stream_window_bytes,
      // RFC 8441: clients may open WebSockets with an extended CONNECT on this connection.
      enableConnectProtocol: config.protocols.includes('websocket'),
    },
    // Pseudo-header fields (:method, :scheme, :authority, :path) come on top of the regular ones.
    maxHeaderListPairs: config.limits.max_header_count + 4,
    maxSessionMemory: MAX_SESSION_MEMORY_MIB,
    maxSettings: MAX_SETTINGS_ENTRIES,
    maxOutstandingPings: MAX_OUTSTANDING,
    maxOutstandingSettings: MAX_OUTSTANDING,
    maxSessionInvalidFrames: MAX_SESSION_INVALID_FRAMES,
    maxSessionRejectedStreams: MAX_SESSION_REJECTED_STREAMS,
    streamResetBurst: Math.max(NGHTTP2_RESET_BURST, nghttp2Rate),
    streamResetRate: nghttp2Rate,
  } as ServerOptions;
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
