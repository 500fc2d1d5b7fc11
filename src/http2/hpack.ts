/**
 * HPACK (RFC 7541): the header compression of HTTP/2, for zproxy's own HTTP/2 frame layer.
 *
 * - `HpackDecoder` decodes the header blocks a peer sends: static and dynamic table, integers, raw and
 *   Huffman-coded strings, dynamic table size updates. Every violation of RFC 7541 throws `HpackError`,
 *   which the connection turns into a COMPRESSION_ERROR. A decoded list larger than the configured limit
 *   is still decoded to the end (the dynamic table must stay in step with the peer's) but its fields
 *   are no longer kept, so an "HPACK bomb" costs no memory.
 * - `HpackEncoder` encodes the header lists zproxy sends. It never inserts into its dynamic table, so it
 *   never needs a table size update: fields whose name and value are both in the static table are one
 *   byte, others are literals without indexing that refer to the static table for their name.
 *
 * Header names and values are latin1 strings (one character per octet), as everywhere in zproxy.
 */

/**
 * Fields read by index, as the encoder's fieldOf() takes them: the shape of zproxy's FieldSource
 * (src/http/fields.ts), written out here because this file imports nothing of zproxy's (the load
 * generator uses it too).
 */
export interface IndexedFields {
  fieldValueLength(i: number): number;
  writeFieldValue(i: number, out: Buffer, offset: number): number;
}

/** A violation of RFC 7541 in a header block: the connection must end with COMPRESSION_ERROR. */
export class HpackError extends Error {}

/** The static table (RFC 7541 Appendix A); entry i is at index i + 1. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length;

/** Bytes an entry counts for in a dynamic table or a header list (RFC 7541 §4.1, RFC 9113 §6.5.2). */
export const ENTRY_OVERHEAD = 32;

// ---------------------------------------------------------------------------------------------------
// Huffman code (RFC 7541 Appendix B)

/**
 * Code length in bits of each symbol 0..256 (256 is EOS). The code is canonical: codes of one length
 * are consecutive in symbol order, and each length's first code follows the previous length's last, so
 * the lengths alone define it (`huffmanCodes` rebuilds the table's codes from them).
 */
const CODE_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28,
  28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7,
  8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19,
  13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13,
  28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21,
  22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23,
  22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25,
  25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const EOS = 256;

/** The code length in bits of each symbol 0..256 (for tests that Huffman-code strings). */
export const HUFFMAN_CODE_LENGTHS: readonly number[] = CODE_LENGTHS;

/** The code of each symbol, right-aligned (its low `CODE_LENGTHS[s]` bits), rebuilt from the lengths. */
export function huffmanCodes(): number[] {
  const order = CODE_LENGTHS.map((len, sym) => ({ len, sym })).sort((a, b) => a.len - b.len || a.sym - b.sym);
  const codes = new Array<number>(CODE_LENGTHS.length);
  let code = 0;
  let len = order[0]!.len;
  for (const entry of order) {
    code *= 2 ** (entry.len - len);
    len = entry.len;
    codes[entry.sym] = code;
    code++;
  }
  return codes;
}

/**
 * The decoder is a state machine that reads four bits at a time. A state is an inner node of the code
 * tree (0 is the root); for each state and nibble, `NEXT` holds the state reached and `EMIT` the symbol
 * completed on the way (at most one: no code is shorter than 5 bits), or -1, or -2 when the nibble
 * completes EOS, which must never appear in a string. A string may end in the root, or in a state
 * reached by at most 7 one-bits from the root (padding is the most significant bits of EOS, §5.2):
 * `ACCEPTING` marks those.
 */
const { NEXT, EMIT, ACCEPTING } = buildHuffmanDecoder();

function buildHuffmanDecoder(): { NEXT: Uint16Array; EMIT: Int16Array; ACCEPTING: Uint8Array } {
  const codes = huffmanCodes();
  // The code tree: inner nodes are numbered from 0 (root); child[2 * node + bit] is an inner node, or a
  // symbol as -(sym + 1).
  const child: number[] = [0, 0];
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = CODE_LENGTHS[sym]!;
    const code = codes[sym]!;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = Math.floor(code / 2 ** i) & 1;
      const slot = 2 * node + bit;
      if (i === 0) child[slot] = -(sym + 1);
      else {
        if (child[slot] === 0) {
          child[slot] = nodes++;
          child.push(0, 0);
        }
        node = child[slot]!;
      }
    }
  }
  const next = new Uint16Array(nodes * 16);
  const emit = new Int16Array(nodes * 16).fill(-1);
  for (let state = 0; state < nodes; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      for (let b = 3; b >= 0; b--) {
        const target = child[2 * node + ((nibble >> b) & 1)]!;
        if (target > 0) node = target;
        else {
          const sym = -target - 1;
          emit[state * 16 + nibble] = sym === EOS ? -2 : sym;
          node = 0;
        }
      }
      next[state * 16 + nibble] = node;
    }
  }
  const accepting = new Uint8Array(nodes);
  accepting[0] = 1;
  let node = 0;
  for (let depth = 1; depth <= 7; depth++) {
    node = child[2 * node + 1]!;
    accepting[node] = 1;
  }
  return { NEXT: next, EMIT: emit, ACCEPTING: accepting };
}

/** Decodes `src[start, end)` as a Huffman-coded string into a latin1 string. */
function huffmanDecode(src: Buffer, start: number, end: number, scratch: Scratch): string {
  // Every symbol takes at least 5 bits, so the result has at most 8/5 characters per input byte.
  const out = scratch.ensure(Math.ceil(((end - start) * 8) / 5));
  let n = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i]!;
    let at = state * 16 + (byte >> 4);
    let sym = EMIT[at]!;
    if (sym >= 0) out[n++] = sym;
    else if (sym === -2) throw new HpackError('EOS in a Huffman-coded string');
    state = NEXT[at]!;
    at = state * 16 + (byte & 15);
    sym = EMIT[at]!;
    if (sym >= 0) out[n++] = sym;
    else if (sym === -2) throw new HpackError('EOS in a Huffman-coded string');
    state = NEXT[at]!;
  }
  if (ACCEPTING[state] !== 1) throw new HpackError('invalid padding in a Huffman-coded string');
  return out.latin1Slice(0, n);
}

/** A growable byte buffer for decoded Huffman strings, reused across strings. */
class Scratch {
  private bytes = Buffer.allocUnsafe(256);
  ensure(n: number): Buffer {
    if (this.bytes.length < n) this.bytes = Buffer.allocUnsafe(Math.max(n, this.bytes.length * 2));
    return this.bytes;
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoder

/** What `HpackDecoder.decode` found besides the fields. */
export const DECODED_OK = 0;
/** The list exceeded the size limit: fields after the limit were dropped (a stream error, not HPACK's). */
export const DECODED_TOO_LARGE = 1;

/** Integers above this are refused (no header block legitimately needs them). */
const MAX_INTEGER = 0x7fffffff;

export class HpackDecoder {
  /** The largest table size the peer may choose (our SETTINGS_HEADER_TABLE_SIZE). */
  private readonly limit: number;
  /** The table size the peer chose last (a size update), at most `limit`. */
  private maxSize: number;
  private size = 0;
  /** The dynamic table as a ring: the newest entry is at (head - 1) & mask. */
  private names: string[] = new Array(32);
  private values: string[] = new Array(32);
  private mask = 31;
  private head = 0;
  private count = 0;
  private readonly scratch = new Scratch();
  private pos = 0;

  constructor(tableSizeLimit = 4096) {
    this.limit = tableSizeLimit;
    this.maxSize = tableSizeLimit;
  }

  /** Bytes the dynamic table holds now (entries plus their overhead). */
  get tableSize(): number {
    return this.size;
  }

  /**
   * Decodes the header block `src[start, end)`, pushing names and values alternately onto `out`. Fields
   * past `maxListSize` bytes (names and values plus 32 each) are decoded but not pushed; the result says
   * whether that happened. Throws HpackError on any compression error.
   */
  decode(src: Buffer, start: number, end: number, out: string[], maxListSize: number): number {
    this.pos = start;
    let listSize = 0;
    let result = DECODED_OK;
    let fieldSeen = false;
    while (this.pos < end) {
      const b = src[this.pos]!;
      let name: string;
      let value: string;
      if (b & 0x80) {
        const index = this.integer(src, end, 7);
        if (index === 0) throw new HpackError('indexed field with index 0');
        if (index <= STATIC_COUNT) {
          const entry = STATIC_TABLE[index - 1]!;
          name = entry[0];
          value = entry[1];
        } else {
          const slot = this.slot(index);
          name = this.names[slot]!;
          value = this.values[slot]!;
        }
      } else if ((b & 0xe0) === 0x20) {
        if (fieldSeen) throw new HpackError('dynamic table size update after a field');
        const size = this.integer(src, end, 5);
        if (size > this.limit)
          throw new HpackError(`dynamic table size ${size} over the limit ${this.limit}`);
        this.maxSize = size;
        this.evict(0);
        continue;
      } else {
        const indexing = (b & 0xc0) === 0x40;
        const index = this.integer(src, end, indexing ? 6 : 4);
        if (index === 0) name = this.string(src, end);
        else if (index <= STATIC_COUNT) name = STATIC_TABLE[index - 1]![0];
        else name = this.names[this.slot(index)]!;
        value = this.string(src, end);
        if (indexing) this.insert(name, value);
      }
      fieldSeen = true;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > maxListSize) result = DECODED_TOO_LARGE;
      else out.push(name, value);
    }
    return result;
  }

  private slot(index: number): number {
    const i = index - STATIC_COUNT - 1;
    if (i >= this.count) throw new HpackError(`index ${index} is not in the table`);
    return (this.head - 1 - i) & this.mask;
  }

  private integer(src: Buffer, end: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = src[this.pos++]! & max;
    if (value < max) return value;
    let shift = 1;
    for (;;) {
      if (this.pos >= end) throw new HpackError('truncated integer');
      const b = src[this.pos++]!;
      value += (b & 0x7f) * shift;
      if (value > MAX_INTEGER) throw new HpackError('integer too large');
      if ((b & 0x80) === 0) return value;
      shift *= 128;
    }
  }

  private string(src: Buffer, end: number): string {
    if (this.pos >= end) throw new HpackError('truncated string');
    const huffman = (src[this.pos]! & 0x80) !== 0;
    const length = this.integer(src, end, 7);
    const start = this.pos;
    if (length > end - start) throw new HpackError('string longer than the header block');
    this.pos = start + length;
    if (huffman) return huffmanDecode(src, start, this.pos, this.scratch);
    return src.latin1Slice(start, this.pos);
  }

  private insert(name: string, value: string): void {
    const entrySize = name.length + value.length + ENTRY_OVERHEAD;
    if (entrySize > this.maxSize) {
      this.evict(this.maxSize); // an entry larger than the table empties it (§4.4)
      return;
    }
    this.evict(this.maxSize - entrySize);
    if (this.count > this.mask) this.grow();
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = (this.head + 1) & this.mask;
    this.count++;
    this.size += entrySize;
  }

  /** Drops the oldest entries until the table holds at most `target` bytes (and at most maxSize). */
  private evict(target: number): void {
    const bound = Math.min(target, this.maxSize);
    while (this.size > bound) {
      const oldest = (this.head - this.count) & this.mask;
      this.size -= this.names[oldest]!.length + this.values[oldest]!.length + ENTRY_OVERHEAD;
      this.names[oldest] = '';
      this.values[oldest] = '';
      this.count--;
    }
  }

  private grow(): void {
    const capacity = (this.mask + 1) * 2;
    const names = new Array<string>(capacity);
    const values = new Array<string>(capacity);
    for (let i = 0; i < this.count; i++) {
      const from = (this.head - this.count + i) & this.mask;
      names[i] = this.names[from]!;
      values[i] = this.values[from]!;
    }
    this.names = names;
    this.values = values;
    this.mask = capacity - 1;
    this.head = this.count;
  }
}

// ---------------------------------------------------------------------------------------------------
// Encoder

/** Static-table index of each name (first entry with that name). */
const STATIC_NAME_INDEX = new Map<string, number>();
/** Static-table index of each name + value pair that has a value, by name, then by value. */
const STATIC_PAIR_INDEX = new Map<string, Map<string, number>>();
for (let i = STATIC_TABLE.length - 1; i >= 0; i--) {
  const [name, value] = STATIC_TABLE[i]!;
  STATIC_NAME_INDEX.set(name, i + 1);
  if (value === '') continue;
  const byValue = STATIC_PAIR_INDEX.get(name) ?? new Map<string, number>();
  byValue.set(value, i + 1);
  STATIC_PAIR_INDEX.set(name, byValue);
}

/** `:status` values with their own static entry, by code. */
const STATUS_INDEX: Record<number, number> = { 200: 8, 204: 9, 206: 10, 304: 11, 400: 12, 404: 13, 500: 14 };

/**
 * Encodes header lists without a dynamic table (so the peer's SETTINGS_HEADER_TABLE_SIZE never matters).
 * Values are written raw (not Huffman-coded): it costs the peer a few bytes and zproxy no CPU. (The load
 * generator's encoder, in src/bench/http2-request.ts, extends it with the dynamic table.)
 */
export class HpackEncoder {
  private buf = Buffer.allocUnsafe(4096);
  private pos = 0;

  /** Starts a header block. */
  begin(): void {
    this.pos = 0;
  }

  /** Adds `:status`. */
  status(code: number): void {
    const index = STATUS_INDEX[code];
    if (index !== undefined) {
      this.reserve(1);
      this.buf[this.pos++] = 0x80 | index;
    } else this.literal(8, String(code));
  }

  /** Adds a field (its name is sent in lowercase, as HTTP/2 requires). */
  field(name: string, value: string): void {
    name = name.toLowerCase();
    // Few names have static values (`:status` has its own method): no key string built per field.
    const pair = STATIC_PAIR_INDEX.get(name)?.get(value);
    if (pair !== undefined) {
      this.reserve(1);
      this.buf[this.pos++] = 0x80 | pair;
      return;
    }
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) this.literal(index, value);
    else {
      this.reserve(2 + 2 * 5 + name.length + value.length);
      this.buf[this.pos++] = 0;
      this.writeString(name);
      this.writeString(value);
    }
  }

  /** The finished block (valid until the next `begin`). */
  end(): Buffer {
    return this.buf.subarray(0, this.pos);
  }

  /**
   * Adds field `i` of `source`, named `name` (lowercase already), the value copied from where the source
   * holds it: a parsed HTTP/1.1 head's value goes from its bytes to the block without a string. The static
   * table's name-value pairs (none a response carries but accept-encoding) are not looked up here.
   */
  fieldOf(name: string, source: IndexedFields, i: number): void {
    const n = source.fieldValueLength(i);
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) {
      this.reserve(1 + 5 + 5 + n);
      this.writeInteger(index, 4, 0x00);
    } else {
      this.reserve(2 + 2 * 5 + name.length + n);
      this.buf[this.pos++] = 0;
      this.writeString(name);
    }
    this.writeInteger(n, 7, 0x00);
    this.pos = source.writeFieldValue(i, this.buf, this.pos);
  }

  private literal(nameIndex: number, value: string): void {
    this.reserve(1 + 5 + 5 + value.length);
    this.writeInteger(nameIndex, 4, 0x00);
    this.writeString(value);
  }

  protected writeString(s: string): void {
    this.writeInteger(s.length, 7, 0x00);
    this.pos += this.buf.latin1Write(s, this.pos);
  }

  protected writeInteger(value: number, prefixBits: number, flags: number): void {
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      this.buf[this.pos++] = flags | value;
      return;
    }
    this.buf[this.pos++] = flags | max;
    value -= max;
    while (value >= 128) {
      this.buf[this.pos++] = (value & 0x7f) | 0x80;
      value = Math.floor(value / 128);
    }
    this.buf[this.pos++] = value;
  }

  protected reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }
}
