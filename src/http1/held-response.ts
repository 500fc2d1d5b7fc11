/**
 * An upstream HTTP/1.1 response held while a filter's onResponse waits for I/O (filter-exchange.ts): the
 * head, copied out of the connection's reused read buffer, the body bytes that came with it or after it
 * (copied too), and whether the response already ended. The connection reads no more meanwhile. Once the
 * filters are done, the engine that holds it (http1/downstream-connection.ts, http2/stream-exchange.ts)
 * sends the head and replays the rest, or answers locally and drops it.
 */
import type { FieldSource } from '../http/fields.ts';
import type { ResponseHead } from './parse-head.ts';
import type { UpstreamConnection } from './upstream-connection.ts';

export class HeldResponse {
  readonly conn: UpstreamConnection;
  readonly head: ResponseHead;
  readonly framing: number;
  readonly body: Buffer;
  readonly bodyStart: number;
  readonly bodyEnd: number;
  /** Body bytes that arrived while held, in order. */
  readonly chunks: Buffer[] = [];
  /** The upstream's response is complete (its end was reported while held). */
  ended = false;
  /** Its decoded trailer section, when it ended with one. */
  trailers: FieldSource | null = null;

  constructor(
    conn: UpstreamConnection,
    head: ResponseHead,
    framing: number,
    body: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ) {
    this.conn = conn;
    this.head = head;
    this.framing = framing;
    const source = head.buf;
    head.buf = Buffer.from(source);
    if (body === source) {
      this.body = head.buf;
      this.bodyStart = bodyStart;
      this.bodyEnd = bodyEnd;
    } else {
      this.body = Buffer.from(body.subarray(bodyStart, bodyEnd));
      this.bodyStart = 0;
      this.bodyEnd = this.body.length;
    }
    conn.pause();
  }

  /** Keeps a copy of body bytes that arrived while held. */
  hold(buf: Buffer, start: number, end: number): void {
    if (end > start) this.chunks.push(Buffer.from(buf.subarray(start, end)));
  }
}
