/**
 * The HTTP/2 client of the load generator, on raw `node:net` sockets (h2c with prior knowledge, for
 * http:// URLs) or `node:tls` sockets (ALPN h2, for https:// URLs): it writes the connection preface with
 * large receive windows (16 MiB for each stream and for the connection, as h2load has), waits for the
 * server's SETTINGS, then keeps up to `concurrency` streams open (fewer when the server's
 * MAX_CONCURRENT_STREAMS says so). The request's frames are encoded once, when the run starts; a stream
 * costs a copy of them with its id written in. Response frames are read in place as they arrive: each
 * header block goes through an HPACK decoder (every block, so that its dynamic table stays in step with
 * the server's) for `:status`; DATA frames are counted, not copied, and the receive windows replenished.
 * Frames to send in one turn of the socket's data handler are written together.
 *
 * Errors by kind: RST_STREAM from the server is `reset` for its stream; a GOAWAY without an error lets the
 * streams it names finish, and those it did not process go again on the next connection; a GOAWAY with an
 * error counts the streams it leaves unanswered as `closed`; a frame or header block that breaks RFC 9113
 * or RFC 7541 is `protocol` (for its stream, or for every stream of the connection when the connection
 * cannot go on).
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import {
  CANCEL,
  CONTINUATION,
  DATA,
  DEFAULT_WINDOW,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FRAME_HEADER_BYTES,
  GOAWAY,
  HEADERS,
  MAX_MAX_FRAME_SIZE,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  NO_ERROR,
  PING,
  PREFACE,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  WINDOW_UPDATE,
  writeFrameHeader,
} from '../http2/frames.ts';
import { HpackDecoder } from '../http2/hpack.ts';
import { StreamIdTable } from '../util/stream-id-table.ts';
import {
  connectHost,
  connectPort,
  type LoadConnection,
  openSocket,
  RECONNECT_DELAY_MS,
  type RunContext,
  serverName,
} from './client.ts';
import {
  DEFAULT_TABLE_SIZE,
  frameBytes,
  Http2Request,
  type RequestFrames,
  requestFields,
} from './http2-request.ts';
import { connectionSchedule, Pacer } from './schedule.ts';
import { classifyError, type ErrorKind } from './stats.ts';

/** The receive window of each stream and of the connection. */
const RECEIVE_WINDOW = 16 * 1024 * 1024;
/** A window is replenished once this much of it has been used. */
const REPLENISH_AT = RECEIVE_WINDOW / 2;
/** The largest frame the client accepts (it leaves SETTINGS_MAX_FRAME_SIZE at its default). */
const MAX_RECEIVED_FRAME = MIN_MAX_FRAME_SIZE;
/** DATA frames it sends carry at most this much, whatever larger size the server allows. */
const MAX_SENT_FRAME = 64 * 1024;
/** The last stream id a client may use. */
const LAST_STREAM_ID = 0x7fffffff;
/** Decoded header fields past this size are not kept (only `:status`, the first, is read). */
const MAX_KEPT_FIELDS = 64 * 1024;
/** Bytes of the buffer that frames to send are written into. */
const SLAB_BYTES = 64 * 1024;

/** What the connections of one thread share: where to connect, the opening bytes, the request's frames. */
export class Http2Target {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly servername: string | undefined;
  readonly insecure: boolean;
  /** Streams in flight per connection, at most. */
  readonly depth: number;
  /** The request body (null when empty: the HEADERS frame then ends the stream). */
  readonly body: Uint8Array | null;
  /** The preface, SETTINGS (no push, 16 MiB stream windows) and the connection's WINDOW_UPDATE. */
  readonly opening: Buffer;
  /** The request's frames. */
  readonly request: Http2Request;

  constructor(ctx: RunContext) {
    const plan = ctx.plan;
    const url = new URL(plan.url);
    this.host = connectHost(url);
    this.port = connectPort(url);
    this.secure = url.protocol === 'https:';
    this.servername = serverName(url.hostname);
    this.insecure = plan.insecure;
    this.depth = plan.concurrency;
    const body = plan.body !== null && plan.body.length > 0 ? plan.body : null;
    this.body = body;
    this.request = new Http2Request(requestFields(url, plan.method, plan.headers, plan.body), body);
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(SETTINGS_ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(SETTINGS_INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(RECEIVE_WINDOW, 8);
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(RECEIVE_WINDOW - DEFAULT_WINDOW, 0);
    this.opening = Buffer.concat([
      PREFACE,
      frameBytes(SETTINGS, 0, 0, settings),
      frameBytes(WINDOW_UPDATE, 0, 0, increment),
    ]);
  }
}

function ignore(): void {}

/** `:status` as a number, or 0 when it is not three digits. */
function statusCode(value: string | undefined): number {
  if (value === undefined || value.length !== 3) return 0;
  const a = value.charCodeAt(0) - 48;
  const b = value.charCodeAt(1) - 48;
  const c = value.charCodeAt(2) - 48;
  if (a < 1 || a > 9 || b < 0 || b > 9 || c < 0 || c > 9) return 0;
  return a * 100 + b * 10 + c;
}

/**
 * One HTTP/2 connection and its streams. A stream lives in a slot (its id, times, status, windows and
 * how much of its body went), slots are reused, and the open streams are found by id in a table.
 */
export class Http2Connection implements LoadConnection {
  private readonly ctx: RunContext;
  private readonly target: Http2Target;
  private readonly pacer: Pacer;
  private socket: net.Socket | null = null;
  /** The server's SETTINGS arrived: streams may open. */
  private connected = false;
  private connectStart = 0;
  /** No new stream on this connection (GOAWAY, or the stream ids are used up); replaced when idle. */
  private goingAway = false;
  private nextStreamId = 1;
  private decoder = new HpackDecoder();
  private readonly fields: string[] = [];

  // The server's settings and the send windows.
  private maxStreams = 0;
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = MIN_MAX_FRAME_SIZE;
  private sendWindow = DEFAULT_WINDOW;
  /** DATA bytes received on the connection since its window was last replenished. */
  private unacked = 0;
  // The request encoder's dynamic table (http2-request.ts).
  /** Requests refer to their fields in the server's dynamic table; the first one inserts them. */
  private indexing = false;
  private inserted = false;
  /** The table size the encoder uses (at most the server's SETTINGS_HEADER_TABLE_SIZE). */
  private tableSize = DEFAULT_TABLE_SIZE;
  /** A table size update owed at the start of the next header block, or -1. */
  private sizeUpdate = -1;

  // The streams in flight.
  private readonly table = new StreamIdTable<number>();
  private inFlight = 0;
  private readonly free: Int32Array;
  private freeCount: number;
  private readonly ids: Int32Array;
  private readonly intended: Float64Array;
  private readonly sent: Float64Array;
  private readonly status: Uint16Array;
  private readonly streamUnacked: Float64Array;
  private readonly streamWindow: Float64Array;
  /** How much of the request body each stream has sent. */
  private readonly bodySent: Float64Array;
  /** Slots whose body waits for a window. */
  private readonly blocked: number[] = [];

  // The frame reader.
  /** The start of a frame whose end has not arrived (never a DATA frame's payload), or null. */
  private partial: Buffer | null = null;
  /** Bytes of a DATA frame's payload still to come; the stream it ends, or 0. */
  private skip = 0;
  private skipEnds = 0;
  /** A header block awaiting CONTINUATION frames: its stream (0: none), END_STREAM, the fragments. */
  private blockStream = 0;
  private blockEnds = false;
  private blockParts: Buffer[] = [];

  // The frames to send: written into `slab` from `slabStart`, handed to the socket from there by flush().
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private slabStart = 0;
  private slabPos = 0;
  private inData = false;

  private readonly onConnect = (): void => this.socketConnected();
  private readonly onData = (chunk: Buffer): void => this.received(chunk);
  private readonly onClose = (): void => this.closed();
  private readonly onError = (error: Error): void => this.fail(classifyError(error, this.connected));

  constructor(ctx: RunContext, target: Http2Target, index: number) {
    this.ctx = ctx;
    this.target = target;
    const depth = target.depth;
    this.free = new Int32Array(depth);
    for (let i = 0; i < depth; i++) this.free[i] = depth - 1 - i;
    this.freeCount = depth;
    this.ids = new Int32Array(depth);
    this.intended = new Float64Array(depth);
    this.sent = new Float64Array(depth);
    this.status = new Uint16Array(depth);
    this.streamUnacked = new Float64Array(depth);
    this.streamWindow = new Float64Array(depth);
    this.bodySent = new Float64Array(depth);
    this.pacer = new Pacer(connectionSchedule(ctx.plan, ctx.start, index), () => {
      if (this.socket === null) this.open();
      else this.fill();
    });
  }

  start(): void {
    this.open();
  }

  stop(): number {
    const inFlight = this.inFlight;
    this.pacer.stop();
    this.dropSocket();
    return inFlight;
  }

  sweep(now: number): void {
    if (this.socket === null) return;
    const timeout = this.ctx.plan.timeoutMs;
    if (!this.connected) {
      if (now - this.connectStart > timeout) this.fail('connect_timeout');
      return;
    }
    if (this.inFlight === 0) return;
    for (let slot = 0; slot < this.ids.length; slot++) {
      if (this.ids[slot] !== 0 && now - this.sent[slot]! > timeout) {
        this.fail('timeout');
        return;
      }
    }
  }

  private open(): void {
    if (!this.ctx.running) return;
    const t = this.target;
    const socket = openSocket(t, 'h2', this.onConnect, this.onData, this.onClose, this.onError, this.onClose);
    this.socket = socket;
    this.connected = false;
    this.connectStart = performance.now();
    this.goingAway = false;
    this.nextStreamId = 1;
    this.decoder = new HpackDecoder();
    this.maxStreams = t.depth;
    this.peerInitialWindow = DEFAULT_WINDOW;
    this.peerMaxFrame = MIN_MAX_FRAME_SIZE;
    this.sendWindow = DEFAULT_WINDOW;
    this.unacked = 0;
    this.indexing = false;
    this.inserted = false;
    this.tableSize = DEFAULT_TABLE_SIZE;
    this.sizeUpdate = -1;
    this.partial = null;
    this.skip = 0;
    this.skipEnds = 0;
    this.blockStream = 0;
    this.blockParts = [];
    this.slabStart = this.slabPos;
    // Queued until the socket connects (over TLS, until the handshake is done).
    socket.write(t.opening);
    this.ctx.stats.bytesSent += t.opening.length;
  }

  private socketConnected(): void {
    const socket = this.socket;
    if (socket instanceof tls.TLSSocket && socket.alpnProtocol !== 'h2') this.fail('protocol');
  }

  /** Opens as many streams as the depth, the server's limit and the schedule allow. */
  private fill(): void {
    if (!this.ctx.running || !this.connected || this.goingAway) return;
    const limit = Math.min(this.target.depth, this.maxStreams);
    let now = -1;
    while (this.inFlight < limit) {
      if (this.nextStreamId > LAST_STREAM_ID) {
        this.goingAway = true;
        if (this.inFlight === 0) this.replace();
        return;
      }
      if (now < 0) now = performance.now();
      const intended = this.pacer.next(now);
      if (intended < 0) break;
      this.openStream(intended, now);
    }
    if (!this.inData) this.flush();
  }

  private openStream(intended: number, now: number): void {
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const slot = this.free[--this.freeCount]!;
    this.ids[slot] = id;
    this.intended[slot] = intended;
    this.sent[slot] = now;
    this.status[slot] = 0;
    this.streamUnacked[slot] = 0;
    this.table.set(id, slot);
    this.inFlight++;
    const t = this.target;
    const request = t.request;
    let shape = request.plain;
    if (this.sizeUpdate >= 0) {
      shape = request.resizedTo(this.sizeUpdate);
      this.sizeUpdate = -1;
    } else if (this.indexing) {
      shape = this.inserted ? request.repeat : request.first;
      this.inserted = true;
    }
    const body = t.body;
    if (body === null) {
      this.put(shape.headers, id);
      return;
    }
    const length = body.length;
    if (shape.whole !== null && this.sendWindow >= length && this.peerInitialWindow >= length) {
      this.put(shape.whole, id);
      this.sendWindow -= length;
      this.streamWindow[slot] = this.peerInitialWindow - length;
      this.bodySent[slot] = length;
      return;
    }
    this.put(shape.headers, id);
    this.streamWindow[slot] = this.peerInitialWindow;
    this.bodySent[slot] = 0;
    if (!this.sendBody(slot)) this.blocked.push(slot);
  }

  /** Copies a request's frames into the slab with the stream's id. */
  private put(frames: RequestFrames, id: number): void {
    const at = this.reserve(frames.bytes.length);
    const slab = this.slab;
    frames.bytes.copy(slab, at);
    const idAt = frames.idAt;
    for (let i = 0; i < idAt.length; i++) slab.writeUInt32BE(id, at + idAt[i]!);
  }

  /** Sends what the windows allow of a stream's body; true when all of it went. */
  private sendBody(slot: number): boolean {
    const body = this.target.body!;
    const id = this.ids[slot]!;
    let offset = this.bodySent[slot]!;
    while (offset < body.length) {
      const n = Math.min(
        body.length - offset,
        this.peerMaxFrame,
        MAX_SENT_FRAME,
        this.sendWindow,
        this.streamWindow[slot]!,
      );
      if (n <= 0) break;
      const end = offset + n === body.length;
      const at = this.reserve(FRAME_HEADER_BYTES + n);
      writeFrameHeader(this.slab, at, n, DATA, end ? FLAG_END_STREAM : 0, id);
      this.slab.set(body.subarray(offset, offset + n), at + FRAME_HEADER_BYTES);
      offset += n;
      this.sendWindow -= n;
      this.streamWindow[slot]! -= n;
    }
    this.bodySent[slot] = offset;
    return offset === body.length;
  }

  /** A window grew: the bodies waiting for one go on. */
  private unblock(): void {
    const blocked = this.blocked;
    let kept = 0;
    for (let i = 0; i < blocked.length; i++) {
      const slot = blocked[i]!;
      if (!this.sendBody(slot)) blocked[kept++] = slot;
    }
    blocked.length = kept;
  }

  /** Room for `n` bytes in the slab; returns where they go. */
  private reserve(n: number): number {
    if (this.slabPos + n > this.slab.length) {
      // The frames not yet handed to the socket move to a new slab; the old one is the socket's now.
      const pending = this.slabPos - this.slabStart;
      const next = Buffer.allocUnsafe(Math.max(SLAB_BYTES, pending + n));
      this.slab.copy(next, 0, this.slabStart, this.slabPos);
      this.slab = next;
      this.slabStart = 0;
      this.slabPos = pending;
    }
    const at = this.slabPos;
    this.slabPos += n;
    return at;
  }

  private flush(): void {
    const n = this.slabPos - this.slabStart;
    if (n === 0 || this.socket === null) return;
    const bytes = this.slab.subarray(this.slabStart, this.slabPos);
    this.slabStart = this.slabPos;
    this.socket.write(bytes);
    this.ctx.stats.bytesSent += n;
  }

  /** A control frame with a 4-byte payload (RST_STREAM, WINDOW_UPDATE). */
  private putWord(type: number, id: number, value: number): void {
    const at = this.reserve(FRAME_HEADER_BYTES + 4);
    writeFrameHeader(this.slab, at, 4, type, 0, id);
    this.slab.writeUInt32BE(value, at + FRAME_HEADER_BYTES);
  }

  private received(chunk: Buffer): void {
    this.ctx.stats.bytesReceived += chunk.length;
    this.inData = true;
    this.read(chunk);
    this.inData = false;
    this.fill();
    this.flush();
  }

  /** Reads the frames in `chunk` (after what was left of the previous one). */
  private read(chunk: Buffer): void {
    const socket = this.socket;
    let buf = chunk;
    let pos = 0;
    if (this.skip > 0) {
      const n = Math.min(this.skip, buf.length);
      this.skip -= n;
      pos = n;
      if (this.skip === 0 && this.skipEnds !== 0) {
        const id = this.skipEnds;
        this.skipEnds = 0;
        this.streamEnded(id);
      }
    } else if (this.partial !== null) {
      buf = Buffer.concat([this.partial, chunk]);
      this.partial = null;
    }
    const end = buf.length;
    while (end - pos >= FRAME_HEADER_BYTES && this.socket === socket) {
      const length = (buf[pos]! << 16) | (buf[pos + 1]! << 8) | buf[pos + 2]!;
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      if (length > MAX_RECEIVED_FRAME) {
        this.fail('protocol');
        return;
      }
      const start = pos + FRAME_HEADER_BYTES;
      if (type === DATA && this.blockStream === 0) {
        // The payload is not needed: counted as it passes, never buffered.
        const here = Math.min(length, end - start);
        pos = start + here;
        const ends = (flags & FLAG_END_STREAM) !== 0 ? id : 0;
        if (!this.dataFrame(id, length, ends !== 0)) return;
        if (here < length) {
          this.skip = length - here;
          this.skipEnds = ends;
          return;
        }
        if (ends !== 0) this.streamEnded(ends);
        continue;
      }
      if (end - start < length) break;
      pos = start + length;
      this.frame(type, flags, id, buf, start, pos);
    }
    if (pos < end && this.socket === socket) this.partial = buf.subarray(pos);
  }

  /** Flow control for a DATA frame of `length` bytes on stream `id`; false when the connection failed. */
  private dataFrame(id: number, length: number, ends: boolean): boolean {
    if (id === 0) {
      this.fail('protocol');
      return false;
    }
    this.unacked += length;
    if (this.unacked >= REPLENISH_AT) {
      this.putWord(WINDOW_UPDATE, 0, this.unacked);
      this.unacked = 0;
    }
    const slot = this.table.get(id);
    if (slot !== undefined && !ends) {
      const unacked = this.streamUnacked[slot]! + length;
      if (unacked >= REPLENISH_AT) {
        this.putWord(WINDOW_UPDATE, id, unacked);
        this.streamUnacked[slot] = 0;
      } else this.streamUnacked[slot] = unacked;
    }
    return true;
  }

  private frame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (this.blockStream !== 0 && type !== CONTINUATION) {
      this.fail('protocol');
      return;
    }
    switch (type) {
      case HEADERS: {
        let from = start;
        let to = end;
        if ((flags & FLAG_PADDED) !== 0) {
          if (to - from < 1) {
            this.fail('protocol');
            return;
          }
          to -= buf[from]!;
          from++;
        }
        if ((flags & FLAG_PRIORITY) !== 0) from += 5;
        if (id === 0 || to < from) {
          this.fail('protocol');
          return;
        }
        const ends = (flags & FLAG_END_STREAM) !== 0;
        if ((flags & FLAG_END_HEADERS) !== 0) this.headerBlock(id, buf, from, to, ends);
        else {
          this.blockStream = id;
          this.blockEnds = ends;
          this.blockParts = [Buffer.from(buf.subarray(from, to))];
        }
        return;
      }
      case CONTINUATION: {
        if (id === 0 || id !== this.blockStream) {
          this.fail('protocol');
          return;
        }
        this.blockParts.push(Buffer.from(buf.subarray(start, end)));
        if ((flags & FLAG_END_HEADERS) === 0) return;
        const block = Buffer.concat(this.blockParts);
        this.blockStream = 0;
        this.blockParts = [];
        this.headerBlock(id, block, 0, block.length, this.blockEnds);
        return;
      }
      case RST_STREAM: {
        if (id === 0 || end - start !== 4) {
          this.fail('protocol');
          return;
        }
        const slot = this.table.get(id);
        if (slot === undefined) return;
        // NO_ERROR after the response's head: the server is done with the stream (RFC 9113 §8.1 wants
        // END_STREAM first, but Node's server can leave it out); complete, as h2load counts it.
        if (buf.readUInt32BE(start) === NO_ERROR && this.status[slot] !== 0) this.completed(slot);
        else {
          this.release(slot);
          this.ctx.stats.error('reset');
          this.afterStream();
        }
        return;
      }
      case SETTINGS:
        if (id !== 0 || (end - start) % 6 !== 0) {
          this.fail('protocol');
          return;
        }
        if ((flags & FLAG_ACK) === 0) this.settings(buf, start, end);
        return;
      case PING:
        if (id !== 0 || end - start !== 8) {
          this.fail('protocol');
          return;
        }
        if ((flags & FLAG_ACK) === 0) {
          const at = this.reserve(FRAME_HEADER_BYTES + 8);
          writeFrameHeader(this.slab, at, 8, PING, FLAG_ACK, 0);
          buf.copy(this.slab, at + FRAME_HEADER_BYTES, start, end);
        }
        return;
      case GOAWAY:
        if (id !== 0 || end - start < 8) {
          this.fail('protocol');
          return;
        }
        this.goAway(buf.readUInt32BE(start) & 0x7fffffff, buf.readUInt32BE(start + 4));
        return;
      case WINDOW_UPDATE: {
        if (end - start !== 4) {
          this.fail('protocol');
          return;
        }
        const increment = buf.readUInt32BE(start) & 0x7fffffff;
        if (id === 0) this.sendWindow += increment;
        else {
          const slot = this.table.get(id);
          if (slot === undefined) return;
          this.streamWindow[slot]! += increment;
        }
        if (this.blocked.length > 0) this.unblock();
        return;
      }
      case PUSH_PROMISE:
        // Push is off (SETTINGS_ENABLE_PUSH 0): a promise is a connection error.
        this.fail('protocol');
        return;
      default:
        // PRIORITY and unknown frame types are ignored (RFC 9113 §4.1, §5.5).
        return;
    }
  }

  private settings(buf: Buffer, start: number, end: number): void {
    for (let at = start; at < end; at += 6) {
      const key = buf.readUInt16BE(at);
      const value = buf.readUInt32BE(at + 2);
      switch (key) {
        case SETTINGS_HEADER_TABLE_SIZE:
          // A smaller table than the encoder uses: say so in the next block, and index no more.
          if (value < this.tableSize) {
            this.tableSize = value;
            this.sizeUpdate = value;
            this.indexing = false;
          }
          break;
        case SETTINGS_MAX_CONCURRENT_STREAMS:
          this.maxStreams = value;
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) {
            this.fail('protocol');
            return;
          }
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (let slot = 0; slot < this.ids.length; slot++)
            if (this.ids[slot] !== 0) this.streamWindow[slot]! += delta;
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE) {
            this.fail('protocol');
            return;
          }
          this.peerMaxFrame = value;
          break;
      }
    }
    const at = this.reserve(FRAME_HEADER_BYTES);
    writeFrameHeader(this.slab, at, 0, SETTINGS, FLAG_ACK, 0);
    if (!this.connected) {
      // The first frame of the server: the connection is established.
      this.connected = true;
      this.ctx.stats.connectionsOpened++;
      const tableBytes = this.target.request.tableBytes;
      this.indexing = this.sizeUpdate < 0 && tableBytes > 0 && tableBytes <= this.tableSize;
    } else if (this.blocked.length > 0) this.unblock();
  }

  /** A complete header block: decoded whatever its stream, then `:status` read for a stream in flight. */
  private headerBlock(id: number, buf: Buffer, start: number, end: number, ends: boolean): void {
    const fields = this.fields;
    fields.length = 0;
    try {
      this.decoder.decode(buf, start, end, fields, MAX_KEPT_FIELDS);
    } catch {
      this.fail('protocol');
      return;
    }
    const slot = this.table.get(id);
    if (slot === undefined) return;
    if (this.status[slot] === 0) {
      const code = fields[0] === ':status' ? statusCode(fields[1]) : 0;
      if (code === 0 || (code < 200 && ends)) {
        this.streamError(slot);
        return;
      }
      if (code < 200) return; // interim (1xx): the final response follows
      this.status[slot] = code;
    }
    if (ends) this.streamEnded(id);
  }

  /** The server ended stream `id`: its response is complete (or broke the protocol, without a status). */
  private streamEnded(id: number): void {
    const slot = this.table.get(id);
    if (slot === undefined) return;
    if (this.status[slot] === 0) {
      this.streamError(slot);
      return;
    }
    if (this.target.body !== null && this.bodySent[slot]! < this.target.body.length) {
      // Answered before its body went: the rest is not sent.
      this.putWord(RST_STREAM, id, CANCEL);
    }
    this.completed(slot);
  }

  private completed(slot: number): void {
    this.ctx.stats.complete(this.status[slot]!, this.intended[slot]!, this.sent[slot]!, performance.now());
    this.release(slot);
    this.afterStream();
  }

  /** A stream's response broke the protocol: it is reset, counted, and the connection goes on. */
  private streamError(slot: number): void {
    this.putWord(RST_STREAM, this.ids[slot]!, PROTOCOL_ERROR);
    this.release(slot);
    this.ctx.stats.error('protocol');
    this.afterStream();
  }

  /** A stream finished: a connection going away is replaced once its last stream is done. */
  private afterStream(): void {
    if (this.goingAway && this.inFlight === 0) this.replace();
  }

  private release(slot: number): void {
    this.table.delete(this.ids[slot]!);
    this.ids[slot] = 0;
    this.free[this.freeCount++] = slot;
    this.inFlight--;
    if (this.blocked.length > 0) {
      const i = this.blocked.indexOf(slot);
      if (i >= 0) this.blocked.splice(i, 1);
    }
  }

  /**
   * GOAWAY: no new stream here. The streams above `lastId` were not processed: without an error they go
   * again on the next connection (at a constant rate, at their intended times), with one they count as
   * `closed`. The others may still finish.
   */
  private goAway(lastId: number, code: number): void {
    this.goingAway = true;
    for (let slot = 0; slot < this.ids.length; slot++) {
      if (this.ids[slot]! <= lastId) continue;
      const intended = this.intended[slot]!;
      this.release(slot);
      if (code === NO_ERROR) this.pacer.again(intended);
      else this.ctx.stats.error('closed');
    }
    if (this.inFlight === 0) this.replace();
  }

  /** The server closed the connection (or ended its side). */
  private closed(): void {
    if (this.socket === null) return;
    if (this.inFlight > 0 || !this.connected) {
      this.fail(this.connected ? 'closed' : 'connect');
      return;
    }
    this.replace();
  }

  /** The connection takes no more streams and has none open: another takes over. */
  private replace(): void {
    this.flush();
    this.dropSocket();
    this.open();
  }

  /**
   * The connection failed: every stream in flight on it counts as an error of this kind (one error for a
   * failure to connect); then another connection is opened, after a short delay if this one never got as
   * far as the server's SETTINGS.
   */
  private fail(kind: ErrorKind): void {
    if (this.socket === null) return;
    const wasConnected = this.connected;
    this.ctx.stats.error(kind, wasConnected ? Math.max(1, this.inFlight) : 1);
    this.dropSocket();
    if (!this.ctx.running) return;
    if (wasConnected) this.open();
    else this.pacer.wakeIn(RECONNECT_DELAY_MS);
  }

  private dropSocket(): void {
    const socket = this.socket;
    this.socket = null;
    this.connected = false;
    for (let slot = 0; slot < this.ids.length; slot++) if (this.ids[slot] !== 0) this.release(slot);
    this.blocked.length = 0;
    if (socket === null) return;
    socket.removeAllListeners();
    socket.on('error', ignore);
    socket.destroy();
  }
}
