/**
 * A response from an HTTP/2 upstream stream held while a filter's onResponse waits for I/O
 * (filter-exchange.ts): its head, the DATA that keeps arriving (up to HOLD_LIMIT bytes, then the stream is
 * paused, so HTTP/2 flow control stops the upstream) and whether the stream ended or closed meanwhile.
 * The engines that hold one (http2/upstream-exchange.ts, http1/http2-upstream-bridge.ts) replay it once
 * the filters are done, or answer locally and drop it.
 */
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';

/** Body bytes kept while held before the upstream stream is paused. */
export const HOLD_LIMIT = 256 * 1024;

export class HeldUpstreamResponse {
  readonly headers: IncomingHttpHeaders;
  readonly flags: number;
  readonly chunks: Buffer[] = [];
  bytes = 0;
  /** The stream's readable side ended ('end') while held. */
  ended = false;
  /** The stream closed cleanly ('close' without an error code) while held. */
  closed = false;
  /** The stream was paused because HOLD_LIMIT was reached. */
  paused = false;

  constructor(headers: IncomingHttpHeaders, flags: number) {
    this.headers = headers;
    this.flags = flags;
  }

  hold(chunk: Buffer, stream: ClientHttp2Stream | null): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= HOLD_LIMIT && !this.paused && stream !== null) {
      this.paused = true;
      stream.pause();
    }
  }
}
