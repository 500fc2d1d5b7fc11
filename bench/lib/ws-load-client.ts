// The WebSocket load generator of the bench's `ws` scenarios, spawned by bench/lib/ws-load.ts pinned to the
// load CPU (which it shares with the echo server):
//
//   node bench/lib/ws-load-client.ts --port P [--host 127.0.0.1] [--path /ws] [--connections 64]
//                                    [--duration 10] [--bytes 32] [--binary]
//
// Opens N WebSocket connections (RFC 6455 handshake, Sec-WebSocket-Accept checked, no extensions), then,
// once all are open, each connection sends one message, waits for its echo, records the round trip and
// sends the next, for the duration. Prints one JSON object (WsLoadReport) on stdout.
//
// It is written for low CPU cost, not generality: each connection's masked frame is built once and written
// as it is for every message (a fixed masking key per connection: servers and proxies do not care, and the
// bench is not a browser); reads land in one shared buffer (`onread`), and an echo is checked by comparing
// its bytes with the unmasked frame the server must send back (one memcmp), so nothing is allocated per
// message but the write request. Round trips go into a histogram with 1 µs steps below 2.048 ms and about
// 0.1 % steps above (the percentiles it reports are the upper edges of their buckets).
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

/** What the client prints on stdout (ws-load.ts parses it). */
export interface WsLoadReport {
  readonly connections: number;
  /** Connections that completed the handshake. */
  readonly opened: number;
  /** Round trips completed inside the measured window. */
  readonly messages: number;
  /** The measured window: from the moment every connection was open (or had failed) to the end. */
  readonly seconds: number;
  readonly messagesPerSecond: number;
  /** Round-trip percentiles in µs (0 when no message completed). */
  readonly latencyUs: { p50: number; p75: number; p90: number; p99: number; max: number };
  readonly errors: WsLoadErrors;
  /** The client's own CPU time inside the measured window ÷ the window (1 = one core). */
  readonly cpuFraction: number;
  /** The first error met, for diagnostics; null when there was none. */
  readonly firstError: string | null;
}

// A type alias (not an interface) so that it fits LoadResult's Record of error counts.
export type WsLoadErrors = {
  /** Connections refused or reset before the handshake completed, or refused by the server (not 101). */
  connect: number;
  /** Open connections that the other side closed or reset during the run. */
  closed: number;
  /** Echoes whose bytes differ from the message sent (or extra bytes nobody asked for). */
  mismatch: number;
  /** Connections whose message had been waiting more than 1 s for its echo when the run ended. */
  timeout: number;
};

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** The header of a frame with FIN set: opcode, payload length, and the mask bit when `masked`. */
function frameHeader(opcode: number, length: number, masked: boolean): Buffer {
  const maskBit = masked ? 0x80 : 0;
  if (length < 126) return Buffer.from([0x80 | opcode, maskBit | length]);
  if (length < 65536) return Buffer.from([0x80 | opcode, maskBit | 126, length >> 8, length & 0xff]);
  const header = Buffer.alloc(10);
  header[0] = 0x80 | opcode;
  header[1] = maskBit | 127;
  header.writeBigUInt64BE(BigInt(length), 2);
  return header;
}

/** A client frame (masked with `mask`, as RFC 6455 requires of clients). */
export function clientFrame(opcode: number, payload: Buffer, mask: Buffer): Buffer {
  const masked = Buffer.allocUnsafe(payload.length);
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i]! ^ mask[i & 3]!;
  return Buffer.concat([frameHeader(opcode, payload.length, true), mask, masked]);
}

/** The frame a server sends for the same message (unmasked). */
export function serverFrame(opcode: number, payload: Buffer): Buffer {
  return Buffer.concat([frameHeader(opcode, payload.length, false), payload]);
}

// ---- histogram --------------------------------------------------------------------------------------

const SUB_BITS = 10;
const SUB_BUCKETS = 1 << SUB_BITS;
/** Values below this are counted exactly (1 µs buckets). */
const LINEAR_LIMIT = 2 * SUB_BUCKETS;
const MAX_VALUE = 0x7fffffff;
const FIRST_EXPONENT = SUB_BITS + 1;

/** Round trips in µs: exact below 2048, then 1024 buckets per power of two (about 0.1 % wide). */
export class Histogram {
  readonly counts = new Float64Array(LINEAR_LIMIT + (31 - FIRST_EXPONENT) * SUB_BUCKETS);
  total = 0;
  max = 0;

  record(us: number): void {
    const v = us <= 0 ? 0 : us >= MAX_VALUE ? MAX_VALUE : us | 0;
    let index: number;
    if (v < LINEAR_LIMIT) index = v;
    else {
      const exponent = 31 - Math.clz32(v);
      index =
        LINEAR_LIMIT +
        (exponent - FIRST_EXPONENT) * SUB_BUCKETS +
        (v >>> (exponent - SUB_BITS)) -
        SUB_BUCKETS;
    }
    this.counts[index]!++;
    this.total++;
    if (v > this.max) this.max = v;
  }

  /** The highest value that falls into bucket `index`. */
  private upperEdge(index: number): number {
    if (index < LINEAR_LIMIT) return index;
    const k = index - LINEAR_LIMIT;
    const shift = FIRST_EXPONENT + Math.floor(k / SUB_BUCKETS) - SUB_BITS;
    return (SUB_BUCKETS + (k % SUB_BUCKETS) + 1) * 2 ** shift - 1;
  }

  /** Nearest-rank percentile (capped at the largest value seen); 0 when empty. */
  percentile(p: number): number {
    if (this.total === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.upperEdge(i), this.max);
    }
    return this.max;
  }
}

// ---- the run ----------------------------------------------------------------------------------------

const HANDSHAKE = 0;
const OPEN = 1;
const CLOSING = 2;
const DONE = 3;

interface Shared {
  /** Messages are sent while true. */
  running: boolean;
  /** Completed round trips are counted while true. */
  recording: boolean;
  messages: number;
  readonly histogram: Histogram;
  readonly errors: WsLoadErrors;
  firstError: string | null;
}

function noteError(shared: Shared, kind: keyof WsLoadErrors, message: string): void {
  shared.errors[kind]++;
  shared.firstError ??= `${kind}: ${message}`;
}

/** One reusable read buffer for every connection: each read is handled before the next one lands. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

class Connection {
  readonly socket: Socket;
  readonly shared: Shared;
  readonly key: string;
  readonly frame: Buffer;
  readonly echo: Buffer;
  state = HANDSHAKE;
  head = '';
  /** Bytes of the current echo received so far. */
  received = 0;
  /** performance.now() when the current message was written; 0 when none is outstanding. */
  sentAt = 0;
  readonly opened: Promise<boolean>;
  private settleOpened: (open: boolean) => void = () => {};

  constructor(host: string, port: number, path: string, frame: Buffer, echo: Buffer, shared: Shared) {
    this.shared = shared;
    this.frame = frame;
    this.echo = echo;
    this.key = randomBytes(16).toString('base64');
    this.opened = new Promise((resolve) => {
      this.settleOpened = resolve;
    });
    this.socket = connect({
      host,
      port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buffer: Uint8Array) => this.onRead(n, buffer) },
    });
    this.socket.once('connect', () => {
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
    this.socket.on('error', (error: Error) => this.onEnd(error.message));
    this.socket.once('close', () => this.onEnd('connection closed'));
  }

  onRead(n: number, buffer: Uint8Array): boolean {
    if (this.state === OPEN) {
      const echo = this.echo;
      const end = this.received + n;
      if (end > echo.length || echo.compare(buffer, 0, n, this.received, end) !== 0) {
        this.fail(
          'mismatch',
          `the echo differs from the message sent (${end} bytes, expected ${echo.length})`,
        );
        return false;
      }
      if (end < echo.length) {
        this.received = end;
        return true;
      }
      this.received = 0;
      const now = performance.now();
      const shared = this.shared;
      if (shared.recording) {
        shared.messages++;
        shared.histogram.record(Math.round((now - this.sentAt) * 1000));
      }
      if (shared.running) this.send(now);
      else this.sentAt = 0;
      return true;
    }
    if (this.state === HANDSHAKE) return this.onHandshakeBytes(Buffer.from(buffer.subarray(0, n)));
    // CLOSING / DONE: whatever still arrives (a last echo, the close frame) is ignored.
    return true;
  }

  private onHandshakeBytes(bytes: Buffer): boolean {
    this.head += bytes.toString('latin1');
    const end = this.head.indexOf('\r\n\r\n');
    if (end === -1) {
      if (this.head.length > 16 * 1024) this.fail('connect', 'response head over 16 KiB');
      return true;
    }
    const lines = this.head.slice(0, end).split('\r\n');
    const status = lines[0]!;
    if (!/^HTTP\/1\.1 101 /.test(`${status} `)) {
      this.fail('connect', `the server answered ${JSON.stringify(status)} instead of 101`);
      return false;
    }
    const expected = createHash('sha1')
      .update(this.key + GUID)
      .digest('base64');
    const accept = lines
      .slice(1)
      .find((line) => /^sec-websocket-accept:/i.test(line))
      ?.slice('sec-websocket-accept:'.length)
      .trim();
    if (accept !== expected) {
      this.fail('connect', `Sec-WebSocket-Accept ${JSON.stringify(accept ?? null)}, expected ${expected}`);
      return false;
    }
    if (lines.some((line) => /^sec-websocket-extensions:/i.test(line))) {
      this.fail('connect', 'the server accepted an extension the client did not offer');
      return false;
    }
    if (end + 4 !== this.head.length) {
      this.fail('mismatch', 'bytes after the 101 response before any message was sent');
      return false;
    }
    this.head = '';
    this.state = OPEN;
    this.settleOpened(true);
    return true;
  }

  send(now: number): void {
    this.sentAt = now;
    this.socket.write(this.frame);
  }

  /** The run is over: send a close frame (code 1000) and end the connection. */
  close(): void {
    if (this.state !== OPEN) return;
    this.state = CLOSING;
    const mask = randomBytes(4);
    const code = Buffer.from([0x03, 0xe8]);
    this.socket.end(clientFrame(0x8, code, mask));
  }

  private fail(kind: keyof WsLoadErrors, message: string): void {
    if (this.state === DONE) return;
    noteError(this.shared, kind, message);
    this.state = DONE;
    this.settleOpened(false);
    this.socket.destroy();
  }

  private onEnd(message: string): void {
    if (this.state === HANDSHAKE) this.fail('connect', message);
    else if (this.state === OPEN) this.fail('closed', message);
    else {
      this.state = DONE;
      this.settleOpened(false);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The message each connection sends: printable ASCII for text, bytes 0-255 for binary. */
function payload(bytes: number, binary: boolean): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) out[i] = binary ? (i * 31 + 7) & 0xff : 97 + (i % 26);
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      path: { type: 'string', default: '/ws' },
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '10' },
      bytes: { type: 'string', default: '32' },
      binary: { type: 'boolean', default: false },
    },
  });
  const port = Number(values.port);
  const connections = Number(values.connections);
  const durationS = Number(values.duration);
  const bytes = Number(values.bytes);
  if (!Number.isInteger(port) || !Number.isInteger(connections) || connections < 1 || !(durationS > 0)) {
    throw new Error(
      'usage: ws-load-client.ts --port P [--connections N] [--duration S] [--bytes B] [--binary]',
    );
  }
  const opcode = values.binary ? 0x2 : 0x1;
  const message = payload(bytes, values.binary);
  const echo = serverFrame(opcode, message);
  const shared: Shared = {
    running: false,
    recording: false,
    messages: 0,
    histogram: new Histogram(),
    errors: { connect: 0, closed: 0, mismatch: 0, timeout: 0 },
    firstError: null,
  };
  const all: Connection[] = [];
  for (let i = 0; i < connections; i++) {
    const frame = clientFrame(opcode, message, randomBytes(4));
    all.push(new Connection(values.host, port, values.path, frame, echo, shared));
  }
  // Every connection opens (or fails) before the clock starts; a handshake that hangs fails after 10 s.
  const handshakeDeadline = sleep(10_000).then(() => 'late' as const);
  const results = await Promise.race([Promise.all(all.map((c) => c.opened)), handshakeDeadline]);
  if (results === 'late') {
    for (const c of all) {
      if (c.state === HANDSHAKE) {
        noteError(shared, 'connect', 'no handshake answer within 10 s');
        c.state = DONE;
        c.socket.destroy();
      }
    }
  }
  const open = all.filter((c) => c.state === OPEN);
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  shared.running = true;
  shared.recording = true;
  for (const c of open) c.send(performance.now());
  await sleep(durationS * 1000);
  shared.running = false;
  shared.recording = false;
  const end = performance.now();
  const cpu = process.cpuUsage(cpuStart);
  for (const c of open) {
    if (c.state === OPEN && c.sentAt !== 0 && end - c.sentAt > 1000) {
      noteError(shared, 'timeout', `no echo within ${Math.round(end - c.sentAt)} ms`);
    }
  }
  // Let the last echoes arrive, then close every connection properly (close code 1000).
  await sleep(50);
  for (const c of open) c.close();
  const closed = Promise.all(
    open.map(
      (c) => new Promise<void>((resolve) => (c.socket.closed ? resolve() : c.socket.once('close', resolve))),
    ),
  );
  await Promise.race([closed, sleep(2000)]);
  for (const c of all) c.socket.destroy();

  const seconds = (end - start) / 1000;
  const h = shared.histogram;
  const report: WsLoadReport = {
    connections,
    opened: open.length,
    messages: shared.messages,
    seconds,
    messagesPerSecond: shared.messages / seconds,
    latencyUs: {
      p50: h.percentile(50),
      p75: h.percentile(75),
      p90: h.percentile(90),
      p99: h.percentile(99),
      max: h.max,
    },
    errors: shared.errors,
    cpuFraction: (cpu.user + cpu.system) / 1e6 / seconds,
    firstError: shared.firstError,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`ws-load-client: ${(error as Error).message}`);
    process.exit(1);
  },
);
