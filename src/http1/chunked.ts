/**
 * Chunked transfer coding (RFC 9112 §7.1), tracked byte by byte so the proxy knows exactly where a chunked
 * body ends while forwarding the bytes as they arrived. Every framing byte is validated strictly: hex
 * sizes without leading whitespace or sign, at most 15 digits and below 2^53, extensions that follow the
 * chunk-ext grammar (names and values are tokens or quoted strings, with optional BWS) and are bounded in
 * length, CRLF after each size line and each chunk, trailer field lines like header lines (no bare LF, no
 * obs-fold), without framing fields (Content-Length, Transfer-Encoding) and bounded in total size.
 *
 * `feed` returns the offset just past the body when it ends inside the given range, CHUNKED_MORE when all
 * of it was consumed and more is needed, or CHUNKED_ERROR with `error` set. In decode mode the data bytes
 * of each chunk are also handed to `sink.chunkData(buf, start, end)` (used to de-chunk for HTTP/1.0 peers)
 * and, when the sink has `chunkTrailers`, the trailer section (validated as above) is handed to it as text
 * just before the body ends (used to turn HTTP/1.1 trailers into HTTP/2 trailers).
 */
import { TCHAR } from '../http/syntax.ts';
import { CR, FIELD_VALUE_CHAR, HEX_VALUE, HTAB, LF, SP } from './chars.ts';

export const CHUNKED_MORE = -1;
export const CHUNKED_ERROR = -2;

const S_SIZE_FIRST = 0;
const S_SIZE = 1;
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
/** Chunk extension states. BWS that must be followed by ';': */
const S_EXT_BWS = 13;
/** After ';': BWS, then the first tchar of a name. */
const S_EXT_NAME_START = 14;
const S_EXT_NAME = 15;
/** BWS after a name: then '=' or ';'. */
const S_EXT_AFTER_NAME = 16;
/** After '=': BWS, then a token or a quoted string. */
const S_EXT_VALUE_START = 17;
const S_EXT_TOKEN = 18;
const S_EXT_QUOTED = 19;
const S_EXT_QUOTED_PAIR = 20;
const S_EXT_AFTER_QUOTED = 21;

const SEMICOLON = 0x3b;
const EQUALS = 0x3d;
const DQUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The state after one byte of a chunk extension, or -1 when the byte cannot be there (RFC 9112 §7.1.1):
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-name = token, chunk-ext-val = token / quoted-string
 * A CR ends the size line after a complete name or value (never after whitespace or a lone ';' / '=').
 */
function extensionStep(state: number, c: number): number {
  const ws = c === SP || c === HTAB;
  switch (state) {
    case S_EXT_BWS:
      return ws ? S_EXT_BWS : c === SEMICOLON ? S_EXT_NAME_START : -1;
    case S_EXT_NAME_START:
      return ws ? S_EXT_NAME_START : TCHAR[c] === 1 ? S_EXT_NAME : -1;
    case S_EXT_NAME:
      if (TCHAR[c] === 1) return S_EXT_NAME;
      if (c === CR) return S_SIZE_LF;
      if (c === SEMICOLON) return S_EXT_NAME_START;
      if (c === EQUALS) return S_EXT_VALUE_START;
      return ws ? S_EXT_AFTER_NAME : -1;
    case S_EXT_AFTER_NAME:
      if (c === EQUALS) return S_EXT_VALUE_START;
      if (c === SEMICOLON) return S_EXT_NAME_START;
      return ws ? S_EXT_AFTER_NAME : -1;
    case S_EXT_VALUE_START:
      if (c === DQUOTE) return S_EXT_QUOTED;
      return ws ? S_EXT_VALUE_START : TCHAR[c] === 1 ? S_EXT_TOKEN : -1;
    case S_EXT_TOKEN:
      if (TCHAR[c] === 1) return S_EXT_TOKEN;
      if (c === CR) return S_SIZE_LF;
      if (c === SEMICOLON) return S_EXT_NAME_START;
      return ws ? S_EXT_BWS : -1;
    case S_EXT_QUOTED:
      // qdtext = HTAB / SP / VCHAR except '"' and '\' / obs-text
      if (c === DQUOTE) return S_EXT_AFTER_QUOTED;
      if (c === BACKSLASH) return S_EXT_QUOTED_PAIR;
      return FIELD_VALUE_CHAR[c] === 1 ? S_EXT_QUOTED : -1;
    case S_EXT_QUOTED_PAIR:
      // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
      return FIELD_VALUE_CHAR[c] === 1 ? S_EXT_QUOTED : -1;
    default: // S_EXT_AFTER_QUOTED
      if (c === CR) return S_SIZE_LF;
      if (c === SEMICOLON) return S_EXT_NAME_START;
      return ws ? S_EXT_BWS : -1;
  }
}

/** Longest chunk size line extension we accept (bytes). */
const MAX_EXTENSION_BYTES = 4096;
/** Longest chunk size (hex digits, leading zeros included). */
const MAX_SIZE_DIGITS = 15;
/**
 * Largest chunk size: byte counting in a double is exact only up to 2^53 - 1 (15 hex digits reach 2^60,
 * where `remaining -= n` would round and the body's end would be misplaced).
 */
const MAX_CHUNK_SIZE = Number.MAX_SAFE_INTEGER;

const NAME_CONTENT_LENGTH = 1;
const NAME_TRANSFER_ENCODING = 2;

/**
 * Narrows which framing field names (NAME_* bits) a trailer name may be, given its character c (a tchar)
 * at index i. Framing fields are not allowed as trailers (RFC 9110 §6.5.1): a recipient that merged one
 * into the header section would see a framing the message did not use.
 */
function framingNameStep(bits: number, i: number, c: number): number {
  const lower = c | 0x20; // tchars only: letters fold to lowercase, '-' stays '-'
  if ((bits & NAME_CONTENT_LENGTH) !== 0 && 'content-length'.charCodeAt(i) !== lower) {
    bits &= ~NAME_CONTENT_LENGTH;
  }
  if ((bits & NAME_TRANSFER_ENCODING) !== 0 && 'transfer-encoding'.charCodeAt(i) !== lower) {
    bits &= ~NAME_TRANSFER_ENCODING;
  }
  return bits;
}

export interface ChunkSink {
  chunkData(buf: Buffer, start: number, end: number): void;
  /** The trailer field lines (each ending in CRLF), when there are any. */
  chunkTrailers?(fields: string): void;
}

export class ChunkedDecoder {
  private state = S_SIZE_FIRST;
  private remaining = 0;
  private digits = 0;
  private extensionBytes = 0;
  private trailerBytes = 0;
  /** The trailer name being read: its length and which framing field names it may still be. */
  private trailerNameLength = 0;
  private trailerFraming = 0;
  private maxTrailerBytes: number;
  /** Sum of the chunk data sizes seen so far. */
  dataBytes = 0;
  /** Why the body was rejected (a constant string). */
  error = '';
  sink: ChunkSink | null = null;
  /** The sink wants the trailer section: its text so far and where it starts in the current buffer. */
  private captureTrailers = false;
  private trailerText = '';
  private trailerMark = 0;

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
    this.captureTrailers = sink !== null && sink.chunkTrailers !== undefined;
    this.trailerText = '';
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
    if (this.captureTrailers) this.trailerMark = start;
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
            if (this.remaining > MAX_CHUNK_SIZE) return this.fail('chunk size too large');
            this.state = S_SIZE;
            p++;
            break;
          }
          if (this.state === S_SIZE_FIRST) return this.fail('invalid chunk size');
          if (c === CR) this.state = S_SIZE_LF;
          else if (c === SEMICOLON || c === SP || c === HTAB) {
            this.state = c === SEMICOLON ? S_EXT_NAME_START : S_EXT_BWS;
            this.extensionBytes = 0;
          } else return this.fail(c === LF ? 'bare LF after chunk size' : 'invalid chunk size');
          p++;
          break;
        }
        case S_EXT_BWS:
        case S_EXT_NAME_START:
        case S_EXT_NAME:
        case S_EXT_AFTER_NAME:
        case S_EXT_VALUE_START:
        case S_EXT_TOKEN:
        case S_EXT_QUOTED:
        case S_EXT_QUOTED_PAIR:
        case S_EXT_AFTER_QUOTED: {
          const c = buf[p]!;
          const next = extensionStep(this.state, c);
          if (next < 0) return this.fail(c === LF ? 'bare LF in chunk extension' : 'invalid chunk extension');
          if (++this.extensionBytes > MAX_EXTENSION_BYTES) return this.fail('chunk extension too long');
          this.state = next;
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
            this.trailerMark = p;
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
          else if (TCHAR[c] === 1) {
            this.state = S_TRAILER_NAME;
            this.trailerNameLength = 1;
            this.trailerFraming = framingNameStep(NAME_CONTENT_LENGTH | NAME_TRANSFER_ENCODING, 0, c);
          } else return this.fail('invalid trailer field');
          if (++this.trailerBytes > this.maxTrailerBytes) return this.fail('trailer section too large');
          p++;
          break;
        }
        case S_TRAILER_NAME: {
          const c = buf[p]!;
          if (c === 0x3a) {
            const n = this.trailerNameLength;
            const f = this.trailerFraming;
            if (
              ((f & NAME_CONTENT_LENGTH) !== 0 && n === 14) ||
              ((f & NAME_TRANSFER_ENCODING) !== 0 && n === 17)
            ) {
              return this.fail('framing field in the trailer section');
            }
            this.state = S_TRAILER_VALUE;
          } else if (TCHAR[c] !== 1) return this.fail('invalid trailer field name');
          else if (this.trailerFraming !== 0) {
            this.trailerFraming = framingNameStep(this.trailerFraming, this.trailerNameLength++, c);
          }
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
          if (this.captureTrailers) {
            // The text up to the final CR (which may have come in the previous buffer).
            const text = this.trailerText + buf.toString('latin1', this.trailerMark, p);
            this.trailerText = '';
            if (text.length > 1) this.sink!.chunkTrailers!(text.slice(0, -1));
          }
          return p + 1;
        }
        default:
          return p;
      }
    }
    if (this.captureTrailers && this.state >= S_TRAILER_START && this.state <= S_END_LF) {
      this.trailerText += buf.toString('latin1', this.trailerMark, end);
    }
    return CHUNKED_MORE;
  }
}
