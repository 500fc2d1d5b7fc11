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
import type { ZpError } from '../errors.ts';
import type { FieldSource } from '../http/fields.ts';

/** Response body framing as the upstream sent it. */
export const BODY_NONE = 0;
/** Content-Length bytes. */
export const BODY_LENGTH = 1;
/** HTTP/1.1 chunked framing: handed over raw (chunk framing included) unless decoding was asked for. */
export const BODY_CHUNKED = 2;
/** Data until the end, of unknown length: a close-delimited HTTP/1.x body, or HTTP/2 DATA frames. */
export const BODY_UNTIL_END = 3;

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
   * True while bytes handed over by onResponseBody may still be referenced (queued in a socket's write
   * buffer): an HTTP/1.1 connection then reads into a fresh buffer instead of reusing its own.
   */
  holdsResponseBytes(): boolean;
}

/** One request on one connection or stream of an upstream target. */
export interface UpstreamAttempt {
  /** 'host:port' of the target, for logs. */
  readonly authority: string;
  /** Writes request body bytes; false when the handler should wait for onUpstreamDrain. */
  write(buf: Buffer): boolean;
  /** Stops reading the response until resume(). */
  pause(): void;
  resume(): void;
  /** Abandons the attempt (the client went away, the request failed): never reused. */
  cancel(): void;
}
