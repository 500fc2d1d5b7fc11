/**
 * A small incremental HTTP/1.1 response parser for the load generator: it finds where each response ends
 * (Content-Length, chunked, or the end of the connection; no body after HEAD, 204 and 304; 1xx interim
 * responses skipped) and reads only what it needs from the head: the status, the framing and whether the
 * connection closes. Bodies are skipped, not kept. Bytes may arrive split anywhere.
 */

/** What the parser tells its connection. */
export interface ResponseSink {
  /**
   * A response is complete. `close`: the connection cannot carry another response (Connection: close,
   * HTTP/1.0 without keep-alive, or a body delimited by the end of the connection). Return false to stop
   * parsing the rest of the bytes (the connection is being torn down).
   */
  onResponse(status: number, close: boolean): boolean;
  /** The bytes broke the protocol; parsing stops until `reset()`. */
  onProtocolError(reason: string): void;
}

/** The parser's states (plain numbers: the switch compiles to a jump table). */
const State = {
  Head: 0,
  Body: 1,
  ChunkSize: 2,
  ChunkExtension: 3,
  ChunkData: 4,
  ChunkDataEnd: 5,
  Trailers: 6,
  UntilClose: 7,
  Failed: 8,
} as const;
type State = (typeof State)[keyof typeof State];

const CR = 13;
const LF = 10;
const MAX_HEAD_BYTES = 64 * 1024;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** Lower-case ASCII of a byte. */
function lower(byte: number): number {
  return byte >= 65 && byte <= 90 ? byte | 0x20 : byte;
}

/** Whether buf[from, from + name.length) equals `name` (given in lower case), ignoring ASCII case. */
function equalsName(buf: Uint8Array, from: number, to: number, name: string): boolean {
  if (to - from !== name.length) return false;
  for (let i = 0; i < name.length; i++) {
    if (lower(buf[from + i]!) !== name.charCodeAt(i)) return false;
  }
  return true;
}

/** Whether the comma-separated list in buf[from, to) has the token `token` (lower case), ignoring case. */
function listHas(buf: Uint8Array, from: number, to: number, token: string): boolean {
  let i = from;
  while (i < to) {
    while (i < to && (buf[i] === 32 || buf[i] === 9 || buf[i] === 44)) i++;
    const start = i;
    while (i < to && buf[i] !== 44) i++;
    let end = i;
    while (end > start && (buf[end - 1] === 32 || buf[end - 1] === 9)) end--;
    if (equalsName(buf, start, end, token)) return true;
  }
  return false;
}

export class ResponseParser {
  private state: State = State.Head;
  /** Head bytes kept from an earlier chunk, while the head is incomplete. */
  private partial: Buffer | null = null;
  /** Body or chunk bytes still to skip. */
  private remaining = 0;
  private chunkDigits = 0;
  private trailerLineBytes = 0;
  private status = 0;
  private close = false;
  private readonly sink: ResponseSink;
  /** The requests are HEAD: no response has a body. */
  private readonly headRequests: boolean;

  constructor(sink: ResponseSink, headRequests: boolean) {
    this.sink = sink;
    this.headRequests = headRequests;
  }

  /** Ready for a new connection. */
  reset(): void {
    this.state = State.Head;
    this.partial = null;
    this.remaining = 0;
    this.status = 0;
    this.close = false;
  }

  /** True when a close-delimited body is being read (the end of the connection completes it). */
  get readingUntilClose(): boolean {
    return this.state === State.UntilClose;
  }

  /** True between responses (nothing of a response received yet). */
  get idle(): boolean {
    return this.state === State.Head && this.partial === null;
  }

  /** The connection ended: completes a close-delimited body. Returns whether a response completed. */
  end(): boolean {
    if (this.state !== State.UntilClose) return false;
    this.state = State.Head;
    this.sink.onResponse(this.status, true);
    return true;
  }

  /** Feeds bytes received. */
  execute(data: Buffer): void {
    let buf = data;
    let i = 0;
    while (i < buf.length) {
      switch (this.state) {
        case State.Head: {
          let from = i;
          if (this.partial !== null) {
            // Search again from a little before the join: the end of the head may straddle it.
            const keep = this.partial.length;
            buf = Buffer.concat([this.partial, buf.subarray(i)]);
            this.partial = null;
            from = Math.max(0, keep - 3);
            i = 0;
          }
          const end = buf.indexOf(HEAD_END, from);
          if (end === -1) {
            if (buf.length - i > MAX_HEAD_BYTES) {
              this.fail('response head larger than 64 KiB');
              return;
            }
            this.partial = Buffer.from(buf.subarray(i));
            return;
          }
          if (end + 4 - i > MAX_HEAD_BYTES) {
            this.fail('response head larger than 64 KiB');
            return;
          }
          if (!this.parseHead(buf, i, end)) return;
          i = end + 4;
          if (!this.afterHead()) return;
          break;
        }
        case State.Body: {
          const take = Math.min(this.remaining, buf.length - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0 && !this.complete()) return;
          break;
        }
        case State.ChunkSize: {
          const byte = buf[i++]!;
          const digit =
            byte >= 48 && byte <= 57
              ? byte - 48
              : byte >= 97 && byte <= 102
                ? byte - 87
                : byte >= 65 && byte <= 70
                  ? byte - 55
                  : -1;
          if (digit >= 0) {
            if (this.chunkDigits++ >= 12) {
              this.fail('chunk size too large');
              return;
            }
            this.remaining = this.remaining * 16 + digit;
          } else if (byte === LF) {
            if (!this.endOfChunkSize()) return;
          } else if (byte === CR) {
            // the LF follows
          } else if (byte === 59 || byte === 32 || byte === 9) {
            this.state = State.ChunkExtension;
          } else {
            this.fail('invalid chunk size');
            return;
          }
          break;
        }
        case State.ChunkExtension: {
          const lf = buf.indexOf(LF, i);
          if (lf === -1) {
            i = buf.length;
          } else {
            i = lf + 1;
            if (!this.endOfChunkSize()) return;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.remaining, buf.length - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = State.ChunkDataEnd;
            this.remaining = 2;
          }
          break;
        }
        case State.ChunkDataEnd: {
          const byte = buf[i++]!;
          if (this.remaining === 2 ? byte !== CR : byte !== LF) {
            this.fail('chunk data not followed by CRLF');
            return;
          }
          if (--this.remaining === 0) this.startChunkSize();
          break;
        }
        case State.Trailers: {
          const byte = buf[i++]!;
          if (byte === LF) {
            if (this.trailerLineBytes === 0) {
              if (!this.complete()) return;
            } else {
              this.trailerLineBytes = 0;
            }
          } else if (byte !== CR) {
            if (++this.trailerLineBytes > MAX_HEAD_BYTES) {
              this.fail('trailer section too large');
              return;
            }
          }
          break;
        }
        case State.UntilClose:
          i = buf.length;
          break;
        case State.Failed:
          return;
      }
    }
  }

  private startChunkSize(): void {
    this.state = State.ChunkSize;
    this.remaining = 0;
    this.chunkDigits = 0;
  }

  private endOfChunkSize(): boolean {
    if (this.chunkDigits === 0) {
      this.fail('missing chunk size');
      return false;
    }
    if (this.remaining === 0) {
      this.state = State.Trailers;
      this.trailerLineBytes = 0;
    } else {
      this.state = State.ChunkData;
    }
    return true;
  }

  private fail(reason: string): void {
    this.state = State.Failed;
    this.partial = null;
    this.sink.onProtocolError(reason);
  }

  private complete(): boolean {
    this.state = State.Head;
    return this.sink.onResponse(this.status, this.close);
  }

  /** Reads the status line and the fields of the head in buf[from, end) (end: the blank line's CRLF). */
  private parseHead(buf: Buffer, from: number, end: number): boolean {
    // HTTP/1.x SSS
    if (
      end - from < 12 ||
      buf[from] !== 72 ||
      buf[from + 1] !== 84 ||
      buf[from + 2] !== 84 ||
      buf[from + 3] !== 80 ||
      buf[from + 4] !== 47 ||
      buf[from + 5] !== 49 ||
      buf[from + 6] !== 46 ||
      buf[from + 8] !== 32
    ) {
      this.fail('invalid status line');
      return false;
    }
    const minor = buf[from + 7]! - 48;
    const d1 = buf[from + 9]! - 48;
    const d2 = buf[from + 10]! - 48;
    const d3 = buf[from + 11]! - 48;
    if (minor < 0 || minor > 9 || d1 < 1 || d1 > 9 || d2 < 0 || d2 > 9 || d3 < 0 || d3 > 9) {
      this.fail('invalid status line');
      return false;
    }
    this.status = d1 * 100 + d2 * 10 + d3;
    let contentLength = -1;
    let chunked = false;
    let transferEncoding = false;
    let close = minor === 0;
    let line = buf.indexOf(LF, from) + 1;
    const stop = end + 2;
    while (line < stop) {
      let eol = buf.indexOf(LF, line);
      if (eol === -1 || eol > stop) eol = stop;
      let lineEnd = eol;
      if (lineEnd > line && buf[lineEnd - 1] === CR) lineEnd--;
      const colon = buf.indexOf(58, line);
      if (colon === -1 || colon >= lineEnd) {
        this.fail('invalid field line');
        return false;
      }
      const first = lower(buf[line]!);
      if (first === 99 || first === 116) {
        let v = colon + 1;
        while (v < lineEnd && (buf[v] === 32 || buf[v] === 9)) v++;
        let ve = lineEnd;
        while (ve > v && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
        if (equalsName(buf, line, colon, 'content-length')) {
          let value = 0;
          if (ve === v) {
            this.fail('empty Content-Length');
            return false;
          }
          for (let k = v; k < ve; k++) {
            const d = buf[k]! - 48;
            if (d < 0 || d > 9 || value > 1e15) {
              this.fail('invalid Content-Length');
              return false;
            }
            value = value * 10 + d;
          }
          if (contentLength !== -1 && contentLength !== value) {
            this.fail('conflicting Content-Length fields');
            return false;
          }
          contentLength = value;
        } else if (equalsName(buf, line, colon, 'transfer-encoding')) {
          // The last coding decides: chunked, or a body delimited by the end of the connection.
          transferEncoding = true;
          chunked = listLast(buf, v, ve) === 'chunked';
        } else if (equalsName(buf, line, colon, 'connection')) {
          if (listHas(buf, v, ve, 'close')) close = true;
          else if (minor === 0 && listHas(buf, v, ve, 'keep-alive')) close = false;
        }
      }
      line = eol + 1;
    }
    this.close = close;
    // -1: chunked; -2: until the connection ends (a transfer coding other than chunked, or no framing).
    this.remaining = chunked ? -1 : transferEncoding || contentLength === -1 ? -2 : contentLength;
    return true;
  }

  /** Decides the body's framing once the head is read; false when parsing must stop. */
  private afterHead(): boolean {
    const status = this.status;
    if (status < 200) {
      if (status === 101) {
        this.fail('unexpected 101 Switching Protocols');
        return false;
      }
      // An interim response: the final one follows for the same request.
      this.state = State.Head;
      return true;
    }
    if (this.headRequests || status === 204 || status === 304) return this.complete();
    if (this.remaining === -1) {
      this.startChunkSize();
      return true;
    }
    if (this.remaining === 0) return this.complete();
    if (this.remaining > 0) {
      this.state = State.Body;
      return true;
    }
    // Neither Content-Length nor chunked: the body runs to the end of the connection.
    this.close = true;
    this.state = State.UntilClose;
    return true;
  }
}

/** The last element of a comma-separated list, in lower case. */
function listLast(buf: Buffer, from: number, to: number): string {
  const comma = buf.lastIndexOf(44, to - 1);
  const start = comma >= from ? comma + 1 : from;
  return buf.toString('latin1', start, to).trim().toLowerCase();
}
