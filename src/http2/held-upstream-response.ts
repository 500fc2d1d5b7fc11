/**
 * A response from an HTTP/2 upstream stream held while a filter's onResponse waits for I/O
 * (filter-exchange.ts): its head and framing, the DATA that keeps arriving (up to HOLD_LIMIT bytes, then
 * the stream is paused, so HTTP/2 flow control stops the upstream) and whether the response ended or
 * failed meanwhile. The engines that hold one (http2/upstream-exchange.ts, http1/http2-upstream-bridge.ts)
 * replay it once the filters are done, or answer locally and drop it.
 */
import type { ZpError } from '../errors.ts';
import type { FieldSource } from '../http/fields.ts';
import type { UpstreamResponseHead } from '../upstream/contract.ts';

/** Body bytes kept while held before the upstream stream is paused. */
export const HOLD_LIMIT = 256 * 1024;

export class HeldUpstreamResponse {
  readonly head: UpstreamResponseHead;
  readonly framing: number;
  readonly chunks: Buffer[] = [];
  bytes = 0;
  /** The response ended while held, with these trailers. */
  ended = false;
  trailers: FieldSource | null = null;
  /** The upstream failed after the head while held. */
  aborted: ZpError | null = null;
  /** The stream was paused because HOLD_LIMIT was reached. */
  paused = false;

  constructor(head: UpstreamResponseHead, framing: number) {
    this.head = head;
    this.framing = framing;
  }

  /** Keeps body bytes (node:http2 hands each chunk over for good); false once the stream should pause. */
  hold(buf: Buffer, start: number, end: number): boolean {
    const chunk = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= HOLD_LIMIT) this.paused = true;
    return !this.paused;
  }
}
