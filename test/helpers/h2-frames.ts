/**
 * A raw HTTP/2 client for hardening tests: it writes frames exactly as a test builds them on a plain TCP
 * socket (so it can send what no real client library would: malformed header blocks, floods, rapid
 * resets) and parses every frame the server sends back.
 *
 * - Frame builders (`frame`, `headersFrame`, `dataFrame`, `rstStreamFrame`, ...) return Buffers.
 * - `hpack` encodes header fields by hand (RFC 7541): literal without indexing (the default, so a test
 *   controls every byte of a name and value), literal with incremental indexing, indexed fields and
 *   dynamic table size updates (for the HPACK bomb).
 * - `RawH2Client.connect(port)` sends the preface and a SETTINGS frame with SETTINGS_HEADER_TABLE_SIZE 0,
 *   so the server's header blocks use no dynamic table and the reader can decode `:status` without one;
 *   the server's SETTINGS are acknowledged automatically.
 */
import net from 'node:net';

export const FRAME = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const SETTING = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Error codes (RFC 9113 §7). */
export const ERROR = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const out = Buffer.alloc(9 + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId & 0x7fffffff, 5);
  payload.copy(out, 9);
  return out;
}

export function settingsFrame(settings: [id: number, value: number][] = []): Buffer {
  const payload = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

export const settingsAck = (): Buffer => frame(FRAME.SETTINGS, FLAG.ACK, 0);

export function headersFrame(
  streamId: number,
  block: Buffer,
  options: { endStream?: boolean; endHeaders?: boolean } = {},
): Buffer {
  let flags = 0;
  if (options.endStream ?? true) flags |= FLAG.END_STREAM;
  if (options.endHeaders ?? true) flags |= FLAG.END_HEADERS;
  return frame(FRAME.HEADERS, flags, streamId, block);
}

export function continuationFrame(streamId: number, block: Buffer, endHeaders = false): Buffer {
  return frame(FRAME.CONTINUATION, endHeaders ? FLAG.END_HEADERS : 0, streamId, block);
}

export function dataFrame(streamId: number, data: Buffer | string, endStream = false): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, streamId, Buffer.from(data));
}

function u32(value: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0, 0);
  return b;
}

export const rstStreamFrame = (streamId: number, code: number): Buffer =>
  frame(FRAME.RST_STREAM, 0, streamId, u32(code));

export function pingFrame(payload: Buffer = Buffer.alloc(8), ack = false): Buffer {
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, payload);
}

export const windowUpdateFrame = (streamId: number, increment: number): Buffer =>
  frame(FRAME.WINDOW_UPDATE, 0, streamId, u32(increment));

export function goawayFrame(lastStreamId: number, code: number): Buffer {
  return frame(FRAME.GOAWAY, 0, 0, Buffer.concat([u32(lastStreamId), u32(code)]));
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits above the prefix. */
function hpackInteger(value: number, prefixBits: number, first: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

/** A string literal without Huffman coding (RFC 7541 §5.2). */
function hpackString(s: string | Buffer): Buffer {
  const bytes = typeof s === 'string' ? Buffer.from(s, 'latin1') : s;
  return Buffer.concat([Buffer.from(hpackInteger(bytes.length, 7, 0x00)), bytes]);
}

export const hpack = {
  /** Literal header field without indexing, new name (RFC 7541 §6.2.2): the bytes go out exactly as given. */
  literal(name: string, value: string | Buffer): Buffer {
    return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
  },
  /** Literal header field with incremental indexing, new name (§6.2.1): the field enters the dynamic table. */
  incremental(name: string, value: string | Buffer): Buffer {
    return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
  },
  /** Indexed header field (§6.1): 1..61 static table, 62.. dynamic table (62 = newest entry). */
  indexed(index: number): Buffer {
    return Buffer.from(hpackInteger(index, 7, 0x80));
  },
  /** Dynamic table size update (§6.3). */
  sizeUpdate(size: number): Buffer {
    return Buffer.from(hpackInteger(size, 5, 0x20));
  },
  /** A header block of literal fields without indexing, in the order given. */
  block(fields: [string, string | Buffer][]): Buffer {
    return Buffer.concat(fields.map(([n, v]) => hpack.literal(n, v)));
  },
};

/** The pseudo-headers of a plain GET (the usual start of a test request). */
export function getFields(path = '/', authority = 'localhost'): [string, string][] {
  return [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', authority],
  ];
}

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** Huffman codes of the digits 0-9 (RFC 7541 Appendix B): enough to read a `:status`. */
const HUFFMAN_DIGITS: [code: number, bits: number][] = [
  [0x0, 5],
  [0x1, 5],
  [0x2, 5],
  [0x19, 6],
  [0x1a, 6],
  [0x1b, 6],
  [0x1c, 6],
  [0x1d, 6],
  [0x1e, 6],
  [0x1f, 6],
];

function huffmanDigits(bytes: Buffer): string {
  let acc = 0;
  let bits = 0;
  let out = '';
  for (const byte of bytes) {
    acc = (acc << 8) | byte;
    bits += 8;
    let matched = true;
    while (matched && bits >= 5) {
      matched = false;
      for (let d = 0; d < 10; d++) {
        const [code, len] = HUFFMAN_DIGITS[d]!;
        if (bits >= len && acc >> (bits - len) === code) {
          out += String(d);
          bits -= len;
          acc &= (1 << bits) - 1;
          matched = true;
          break;
        }
      }
    }
  }
  // What is left must be EOS padding (all ones, under 8 bits).
  if (bits >= 8 || acc !== (1 << bits) - 1) throw new Error('not a Huffman-coded status');
  return out;
}

function readInteger(buf: Buffer, pos: number, prefixBits: number): [value: number, next: number] {
  const max = (1 << prefixBits) - 1;
  let value = buf[pos]! & max;
  pos++;
  if (value < max) return [value, pos];
  let shift = 0;
  let byte: number;
  do {
    byte = buf[pos++]!;
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, pos];
}

const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/**
 * The `:status` of a response header block sent without a dynamic table (see RawH2Client), or 0 when the
 * block holds none.
 */
export function decodeStatus(block: Buffer): number {
  let pos = 0;
  while (pos < block.length) {
    const b = block[pos]!;
    if (b & 0x80) {
      const [index, next] = readInteger(block, pos, 7);
      if (STATIC_STATUS[index] !== undefined) return STATIC_STATUS[index]!;
      if (index > 61) throw new Error('dynamic table reference in a response (table size is 0)');
      pos = next;
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      pos = readInteger(block, pos, 5)[1];
      continue;
    }
    const prefix = (b & 0xc0) === 0x40 ? 6 : 4;
    const [nameIndex, afterName] = readInteger(block, pos, prefix);
    pos = afterName;
    if (nameIndex === 0) {
      const [len, p] = readInteger(block, pos, 7);
      pos = p + len;
    }
    const huffman = (block[pos]! & 0x80) !== 0;
    const [len, p] = readInteger(block, pos, 7);
    const value = block.subarray(p, p + len);
    pos = p + len;
    if (nameIndex >= 8 && nameIndex <= 14)
      return Number(huffman ? huffmanDigits(value) : value.toString('latin1'));
  }
  return 0;
}

export interface StreamOutcome {
  /** `:status` of the response, 0 until one arrives. */
  status: number;
  /** RST_STREAM code received for the stream, or -1. */
  resetCode: number;
  /** The stream was ended by the server (END_STREAM or RST_STREAM). */
  ended: boolean;
  body: Buffer[];
}

export class RawH2Client {
  readonly socket: net.Socket;
  readonly frames: Frame[] = [];
  /** The server's first SETTINGS frame, as id -> value. */
  serverSettings: Map<number, number> | null = null;
  /** The first GOAWAY received: { lastStreamId, code }. */
  goaway: { lastStreamId: number; code: number } | null = null;
  readonly streams = new Map<number, StreamOutcome>();
  /** Bytes received so far. */
  bytesIn = 0;
  /** Keep every frame in `frames` (turn off for floods that get many answers). */
  keepFrames = true;
  closed = false;
  readonly closedPromise: Promise<void>;
  private input: Buffer = Buffer.alloc(0);
  private waiters: { check: () => boolean; resolve: () => void }[] = [];
  private nextId = 1;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.closed = true;
        resolve();
        this.notify();
      });
    });
  }

  /** Connects, sends the preface and SETTINGS (header table size 0 plus `settings`). */
  static connect(port: number, settings: [number, number][] = []): Promise<RawH2Client> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => {
        socket.off('error', reject);
        const client = new RawH2Client(socket);
        socket.write(
          Buffer.concat([
            PREFACE,
            settingsFrame([[SETTING.HEADER_TABLE_SIZE, 0], [SETTING.ENABLE_PUSH, 0], ...settings]),
          ]),
        );
        resolve(client);
      });
      socket.once('error', reject);
    });
  }

  /** The next client stream id (odd, increasing). */
  newStreamId(): number {
    const id = this.nextId;
    this.nextId += 2;
    return id;
  }

  /** Writes bytes; resolves when they are handed to the kernel (false if the socket is gone). */
  write(bytes: Buffer): Promise<boolean> {
    if (this.socket.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.socket.write(bytes, (err) => resolve(err == null));
    });
  }

  /** Sends a request (literal fields) on a new stream; returns its id. */
  request(fields: [string, string | Buffer][], options: { endStream?: boolean } = {}): number {
    const id = this.newStreamId();
    this.socket.write(headersFrame(id, hpack.block(fields), { endStream: options.endStream ?? true }));
    return id;
  }

  stream(id: number): StreamOutcome {
    let s = this.streams.get(id);
    if (s === undefined) {
      s = { status: 0, resetCode: -1, ended: false, body: [] };
      this.streams.set(id, s);
    }
    return s;
  }

  /** Resolves when `check()` holds, rejects after `timeoutMs` naming `what`. */
  waitUntil(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const waiter = {
        check,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** Waits until the stream has ended (response complete or reset) and returns its outcome. */
  async outcome(id: number, timeoutMs = 5000): Promise<StreamOutcome> {
    await this.waitUntil(() => this.stream(id).ended || this.closed, timeoutMs, `the end of stream ${id}`);
    return this.stream(id);
  }

  /** Waits for the server's GOAWAY (or the connection closing) and returns the GOAWAY, if any. */
  async waitGoawayOrClose(timeoutMs = 5000): Promise<{ lastStreamId: number; code: number } | null> {
    await this.waitUntil(() => this.goaway !== null || this.closed, timeoutMs, 'GOAWAY or close');
    return this.goaway;
  }

  close(): void {
    this.socket.destroy();
  }

  private notify(): void {
    if (this.waiters.length === 0) return;
    const ready = this.waiters.filter((w) => w.check());
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();
  }

  private onData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    let pos = 0;
    while (this.input.length - pos >= 9) {
      const length = this.input.readUIntBE(pos, 3);
      if (this.input.length - pos < 9 + length) break;
      const f: Frame = {
        type: this.input[pos + 3]!,
        flags: this.input[pos + 4]!,
        streamId: this.input.readUInt32BE(pos + 5) & 0x7fffffff,
        payload: this.input.subarray(pos + 9, pos + 9 + length),
      };
      pos += 9 + length;
      this.onFrame(f);
    }
    this.input = this.input.subarray(pos);
    this.notify();
  }

  private onFrame(f: Frame): void {
    if (this.keepFrames) this.frames.push(f);
    switch (f.type) {
      case FRAME.SETTINGS:
        if ((f.flags & FLAG.ACK) === 0) {
          if (this.serverSettings === null) {
            const m = new Map<number, number>();
            for (let i = 0; i + 6 <= f.payload.length; i += 6)
              m.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
            this.serverSettings = m;
          }
          if (!this.socket.destroyed) this.socket.write(settingsAck());
        }
        break;
      case FRAME.GOAWAY:
        if (this.goaway === null)
          this.goaway = {
            lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff,
            code: f.payload.readUInt32BE(4),
          };
        break;
      case FRAME.RST_STREAM: {
        const s = this.stream(f.streamId);
        s.resetCode = f.payload.readUInt32BE(0);
        s.ended = true;
        break;
      }
      case FRAME.HEADERS: {
        const s = this.stream(f.streamId);
        let block = f.payload;
        if (f.flags & FLAG.PADDED) block = block.subarray(1, block.length - block[0]!);
        if (f.flags & FLAG.PRIORITY) block = block.subarray(5);
        if (s.status === 0) s.status = decodeStatus(block);
        if (f.flags & FLAG.END_STREAM) s.ended = true;
        break;
      }
      case FRAME.DATA: {
        const s = this.stream(f.streamId);
        s.body.push(Buffer.from(f.payload));
        if (f.flags & FLAG.END_STREAM) s.ended = true;
        break;
      }
    }
  }
}
