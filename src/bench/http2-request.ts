/**
 * The request of the load generator's HTTP/2 client, encoded once when the run starts: its fields, their
 * header blocks and the frames that carry them, with the stream id left for each stream to write in.
 *
 * Like h2load's (nghttp2's) requests, they use the HPACK dynamic table: the first request of a connection
 * inserts every field that has no static-table entry of its own (literals with incremental indexing), and
 * every later request refers to them by index, a byte a field, so that the server decodes what it
 * decodes for h2load. When the server's table is too small for them, or it asks for a smaller table, the
 * fields go as literals that are not indexed (after the table size update it is owed).
 */
import {
  CONTINUATION,
  DATA,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FRAME_HEADER_BYTES,
  HEADERS,
  MIN_MAX_FRAME_SIZE,
  writeFrameHeader,
} from '../http2/frames.ts';
import { ENTRY_OVERHEAD, HpackEncoder, STATIC_TABLE } from '../http2/hpack.ts';

/** The dynamic table size a server has until its SETTINGS say otherwise (RFC 9113 §6.5.2). */
export const DEFAULT_TABLE_SIZE = 4096;

/** Fields that are connection-specific in HTTP/1.1 and malformed in HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_FIELDS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/** A frame with its payload. */
export function frameBytes(type: number, flags: number, streamId: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  writeFrameHeader(out, 0, payload.length, type, flags, streamId);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

/** The frames of a request; each stream writes its own id at the offsets `idAt`. */
export class RequestFrames {
  readonly bytes: Buffer;
  /** Offsets of the stream id in `bytes`: one per frame. */
  readonly idAt: readonly number[];

  /**
   * HEADERS, CONTINUATION frames when the block is over 16 KiB (the frame size every server accepts), and
   * a DATA frame with END_STREAM when `data` is given (else HEADERS ends the stream when `endStream`).
   */
  constructor(block: Buffer, endStream: boolean, data: Uint8Array | null) {
    const parts: Buffer[] = [];
    const idAt: number[] = [];
    let at = 0;
    let offset = 0;
    do {
      const n = Math.min(block.length - offset, MIN_MAX_FRAME_SIZE);
      const first = offset === 0;
      let flags = offset + n === block.length ? FLAG_END_HEADERS : 0;
      if (first && endStream && data === null) flags |= FLAG_END_STREAM;
      parts.push(frameBytes(first ? HEADERS : CONTINUATION, flags, 0, block.subarray(offset, offset + n)));
      idAt.push(at + 5);
      at += FRAME_HEADER_BYTES + n;
      offset += n;
    } while (offset < block.length);
    if (data !== null) {
      parts.push(frameBytes(DATA, FLAG_END_STREAM, 0, data));
      idAt.push(at + 5);
    }
    this.bytes = Buffer.concat(parts);
    this.idAt = idAt;
  }
}

/** One encoding of the request: its HEADERS, and with the body too when it fits one frame. */
export class RequestShape {
  /** HEADERS (and CONTINUATION); END_STREAM when the request has no body. */
  readonly headers: RequestFrames;
  /** HEADERS and one DATA frame with the whole body, when it fits one frame of the smallest size. */
  readonly whole: RequestFrames | null;

  constructor(block: Buffer, body: Uint8Array | null) {
    this.headers = new RequestFrames(block, body === null, null);
    this.whole =
      body !== null && body.length <= MIN_MAX_FRAME_SIZE ? new RequestFrames(block, true, body) : null;
  }
}

/** HpackEncoder with what a client that repeats one request needs: indexed fields and insertions. */
class IndexingEncoder extends HpackEncoder {
  /** An indexed field (RFC 7541 §6.1): 1..61 the static table, 62 and up the dynamic table. */
  indexed(index: number): void {
    this.reserve(6);
    this.writeInteger(index, 7, 0x80);
  }

  /** A literal with incremental indexing (§6.2.1); the name by its static index when it has one. */
  incremental(name: string, value: string): void {
    const nameIndex = STATIC_TABLE.findIndex(([n]) => n === name) + 1;
    this.reserve(2 * 6 + name.length + value.length);
    this.writeInteger(nameIndex, 6, 0x40);
    if (nameIndex === 0) this.writeString(name);
    this.writeString(value);
  }

  /** A dynamic table size update (§6.3). */
  sizeUpdate(size: number): void {
    this.reserve(6);
    this.writeInteger(size, 5, 0x20);
  }

  /** The block so far, copied. */
  block(): Buffer {
    return Buffer.from(this.end());
  }
}

/** The request's fields: the pseudo-fields, the -H fields (lower-case), content-length. */
export function requestFields(
  url: URL,
  method: string,
  headers: readonly (readonly [string, string])[],
  body: Uint8Array | null,
): [string, string][] {
  let authority = url.host;
  let hasLength = false;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === 'host') authority = value;
    if (lower === 'content-length') hasLength = true;
  }
  const fields: [string, string][] = [
    [':method', method],
    [':scheme', url.protocol === 'https:' ? 'https' : 'http'],
    [':authority', authority],
    [':path', `${url.pathname === '' ? '/' : url.pathname}${url.search}`],
  ];
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower !== 'host' && !CONNECTION_FIELDS.has(lower)) fields.push([lower, value]);
  }
  if (body !== null && !hasLength) fields.push(['content-length', String(body.length)]);
  return fields;
}

/** The request's encodings. */
export class Http2Request {
  /** The first request of a connection: inserts its fields into the dynamic table. */
  readonly first: RequestShape;
  /** Every later one: refers to them. */
  readonly repeat: RequestShape;
  /** Without the dynamic table. */
  readonly plain: RequestShape;
  /** Bytes the inserted fields take in the dynamic table (RFC 7541 §4.1). */
  readonly tableBytes: number;
  private readonly fields: readonly (readonly [string, string])[];
  private readonly body: Uint8Array | null;
  /** Plain encodings after a table size update, by size (made when a server first asks). */
  private readonly resized = new Map<number, RequestShape>();

  constructor(fields: readonly (readonly [string, string])[], body: Uint8Array | null) {
    this.fields = fields;
    this.body = body;
    const inserted = fields.filter(([name, value]) => staticPair(name, value) === 0);
    this.tableBytes = inserted.reduce((sum, [n, v]) => sum + n.length + v.length + ENTRY_OVERHEAD, 0);
    const first = new IndexingEncoder();
    const repeat = new IndexingEncoder();
    const plain = new IndexingEncoder();
    first.begin();
    repeat.begin();
    plain.begin();
    let k = 0;
    for (const [name, value] of fields) {
      plain.field(name, value);
      const pair = staticPair(name, value);
      if (pair !== 0) {
        first.indexed(pair);
        repeat.indexed(pair);
      } else {
        first.incremental(name, value);
        // After all insertions, the newest entry is 62 and the first one inserted the oldest.
        repeat.indexed(62 + inserted.length - 1 - k++);
      }
    }
    this.first = new RequestShape(first.block(), body);
    this.repeat = new RequestShape(repeat.block(), body);
    this.plain = new RequestShape(plain.block(), body);
  }

  /** The plain encoding, its block led by a dynamic table size update to `size`. */
  resizedTo(size: number): RequestShape {
    let shape = this.resized.get(size);
    if (shape === undefined) {
      const encoder = new IndexingEncoder();
      encoder.begin();
      encoder.sizeUpdate(size);
      for (const [name, value] of this.fields) encoder.field(name, value);
      shape = new RequestShape(encoder.block(), this.body);
      this.resized.set(size, shape);
    }
    return shape;
  }
}

/** The static-table index of the field `name: value`, or 0. */
function staticPair(name: string, value: string): number {
  return STATIC_TABLE.findIndex(([n, v]) => n === name && v === value) + 1;
}
