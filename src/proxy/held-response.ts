/**
 * An upstream's response held while a response filter waits for I/O (the phase runner returned a
 * promise): its head (kept past the attempt's callback), the body bytes that came with it and those that
 * keep arriving (copied; up to HOLD_LIMIT, then the attempt is paused, so the upstream stops: TCP
 * backpressure or HTTP/2 flow control), and whether the response ended or failed meanwhile. Once the
 * filters are done the flow sends it and replays the rest, or answers locally and drops it.
 */
import type { ZpError } from '../errors.ts';
import type { FieldSource } from '../http/fields.ts';
import type { UpstreamAttempt, UpstreamResponseHead } from '../upstream/contract.ts';

/** Body bytes kept while held before the attempt is paused. */
export const HOLD_LIMIT = 256 * 1024;

const EMPTY = Buffer.alloc(0);

export class HeldResponse {
  readonly head: UpstreamResponseHead;
  readonly framing: number;
  /** The body bytes that came with the head (a copy), or an empty buffer. */
  readonly inline: Buffer;
  readonly chunks: Buffer[] = [];
  private bytes = 0;
  /** The response ended while held, with these trailers. */
  ended = false;
  trailers: FieldSource | null = null;
  /** The upstream failed after the head while held. */
  aborted: ZpError | null = null;
  /** The attempt was paused because HOLD_LIMIT was reached. */
  paused = false;

  constructor(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    buf: Buffer,
    start: number,
    end: number,
  ) {
    attempt.keepHead();
    this.head = head;
    this.framing = framing;
    this.inline = end > start ? Buffer.from(buf.subarray(start, end)) : EMPTY;
  }

  /** Keeps a copy of body bytes; false once the attempt should pause. */
  hold(buf: Buffer, start: number, end: number): boolean {
    if (end > start) {
      this.chunks.push(Buffer.from(buf.subarray(start, end)));
      this.bytes += end - start;
    }
    if (this.bytes >= HOLD_LIMIT) this.paused = true;
    return !this.paused;
  }
}
