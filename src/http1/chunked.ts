/**
 * Chunked transfer coding (RFC 9112 §7.1), tracked byte by byte so the proxy knows exactly where a chunked
 * body ends while forwarding the bytes as they arrived. Every framing byte is validated strictly: hex
 * sizes without leading whitespace or sign and at most 15 digits, extensions without control characters
 * and bounded in length, CRLF after each size line and each chunk, trailer field lines like header lines
 * (no bare LF, no obs-fold) and bounded in total size.
 *
 * `feed` returns the offset just past the body when it ends inside the given range, CHUNKED_MORE when all
 * of it was consumed and more is needed, or CHUNKED_ERROR with `error` set. In decode mode the data bytes
 * of each chunk are also handed to `sink.chunkData(buf, start, end)` (used to de-chunk for HTTP/1.0 peers).
 */
import { CR, FIELD_VALUE_CHAR, HEX_VALUE, HTAB, LF, SP, TCHAR } from './chars.ts';

export const CHUNKED_MORE = -1;
export const CHUNKED_ERROR = -2;

const S_SIZE_FIRST = 0;
const S_SIZE = 1;
const S_EXT = 2;
const S_SIZE_LF = 3;
const S_DATA = 4;
const S_DATA_CR = 5;
const S_DATA_LF = 6;
const S_TRAILER_START = 7;
const S_TRAILER_NAME = 8;
const S_TRAILER_VALUE = 9;
const S_TRAILER_LF = 10;
const S_END_LF = 11;
const S_DONE = 12;

/** Longest chunk size line extension we accept (bytes). */
const MAX_EXTENSION_BYTES = 4096;
/** Largest chunk size: 15 hex digits stays below 2^60, safe in a double for byte counting. */
const MAX_SIZE_DIGITS = 15;

export interface ChunkSink {
  chunkData(buf: Buffer, start: number, end: number): void;
}

export class ChunkedDecoder {
  private state = S_SIZE_FIRST;
  private remaining = 0;
  private digits = 0;
  private extensionBytes = 0;
  private trailerBytes = 0;
  private maxTrailerBytes: number;
  /** Sum of the chunk data sizes seen so far. */
  dataBytes = 0;
  /** Why the body was rejected (a constant string). */
  error = '';
  sink: ChunkSink | null = null;

  constructor(maxTrailerBytes = 16384) {
    this.maxTrailerBytes = maxTrailerBytes;
  }

  reset(sink: ChunkSink | null = null): void {
    this.state = S_SIZE_FIRST;
    this.remaining = 0;
    this.digits = 0;
    this.extensionBytes = 0;
    this.trailerBytes = 0;
    this.dataBytes = 0;
    this.error = '';
    this.sink = sink;
  }

  get done(): boolean {
    return this.state === S_DONE;
  }

  private fail(message: string): number {
    this.error = message;
    return CHUNKED_ERROR;
  }

  feed(buf: Buffer, start: number, end: number): number {
    let p = start;
    while (p < end) {
      switch (this.state) {
        case S_DATA: {
          const n = Math.min(this.remaining, end - p);
          if (this.sink !== null) this.sink.chunkData(buf, p, p + n);
          p += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_DATA_CR;
          break;
        }
        case S_SIZE_FIRST:
        case S_SIZE: {
          const c = buf[p]!;
          const v = HEX_VALUE[c]!;
          if (v >= 0) {
            if (++this.digits > MAX_SIZE_DIGITS) return this.fail('chunk size too large');
            this.remaining = this.remaining * 16 + v;
            this.state = S_SIZE;
            p++;
            break;
          }
          if (this.state === S_SIZE_FIRST) return this.fail('invalid chunk size');
          if (c === CR) this.state = S_SIZE_LF;
          else if (c === 0x3b || c === SP || c === HTAB) {
            // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
            this.state = S_EXT;
            this.extensionBytes = 0;
          } else return this.fail(c === LF ? 'bare LF after chunk size' : 'invalid chunk size');
          p++;
          break;
        }
        case S_EXT: {
          const c = buf[p]!;
          if (c === CR) this.state = S_SIZE_LF;
          else if (FIELD_VALUE_CHAR[c] !== 1) return this.fail('invalid character in chunk extension');
          else if (++this.extensionBytes > MAX_EXTENSION_BYTES) return this.fail('chunk extension too long');
          p++;
          break;
        }
        case S_SIZE_LF: {
          if (buf[p] !== LF) return this.fail('CR not followed by LF in chunk size line');
          p++;
          this.digits = 0;
          if (this.remaining === 0) {
            this.state = S_TRAILER_START;
            this.trailerBytes = 0;
          } else {
            this.dataBytes += this.remaining;
            this.state = S_DATA;
          }
          break;
        }
        case S_DATA_CR: {
          if (buf[p] !== CR) return this.fail('chunk data not followed by CRLF');
          this.state = S_DATA_LF;
          p++;
          break;
        }
        case S_DATA_LF: {
          if (buf[p] !== LF) return this.fail('chunk data not followed by CRLF');
          this.state = S_SIZE_FIRST;
          p++;
          break;
        }
        case S_TRAILER_START: {
          const c = buf[p]!;
          if (c === CR) this.state = S_END_LF;
          else if (TCHAR[c] === 1) this.state = S_TRAILER_NAME;
          else return this.fail('invalid trailer field');
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large');
          p++;
          break;
        }
        case S_TRAILER_NAME: {
          const c = buf[p]!;
          if (c === 0x3a) this.state = S_TRAILER_VALUE;
          else if (TCHAR[c] !== 1) return this.fail('invalid trailer field name');
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large');
          p++;
          break;
        }
        case S_TRAILER_VALUE: {
          const c = buf[p]!;
          if (c === CR) this.state = S_TRAILER_LF;
          else if (FIELD_VALUE_CHAR[c] !== 1) return this.fail('invalid character in a trailer field');
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large');
          p++;
          break;
        }
        case S_TRAILER_LF: {
          if (buf[p] !== LF) return this.fail('CR not followed by LF in trailer section');
          this.state = S_TRAILER_START;
          p++;
          break;
        }
        case S_END_LF: {
          if (buf[p] !== LF) return this.fail('CR not followed by LF after the last chunk');
          this.state = S_DONE;
          return p + 1;
        }
        default:
          return p;
      }
    }
    return CHUNKED_MORE;
  }
}
