/**
 * zproxy's own HTTP/2 server frame layer (RFC 9113), on a socket with a native handle (TCP or TLS).
 *
 * Why it exists: node:http2 costs about 12 µs of CPU per stream on this project's bench machine before
 * any proxying (a Duplex, several objects and native round trips per stream), which keeps h2 short of
 * its throughput target, and nghttp2 silently drops fields whose values hold CR, LF or NUL instead of
 * refusing the request (RFC 9113 §8.2.1). A frame loop in JavaScript costs well under 1 µs per stream,
 * and sees every field. docs/protocols.md describes what it accepts and refuses.
 *
 * Shape: `H2ServerConnection` reads frames from the socket, keeps the HPACK decoder, the streams and
 * both directions of flow control, and batches everything it sends in one socket write per tick.
 * `H2ServerStream` is one request: its `owner` (a StreamOwner) gets the body and the stream's end, and
 * its methods send the response (`respond`, `write`, `end`, `sendTrailers`, `reset`). New streams reach
 * the application once the whole read that carried them is processed, so a stream the client reset in
 * the same read (Rapid Reset) is never seen.
 *
 * Errors: a malformed request is a stream error (RST_STREAM PROTOCOL_ERROR; the application never sees
 * the stream); a protocol violation of the connection is GOAWAY with its code, then close.
 */

import type { Socket } from 'node:net';
import {
  CONNECTION_SPECIFIC_MASK,
  FIELD_CONTENT_LENGTH,
  FIELD_HOST,
  FIELD_TE,
  kindOfName,
} from '../http/fields.ts';
import { TCHAR, validAuthority, validOriginForm } from '../http/syntax.ts';
import { copyBytes } from '../util/bytes.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import { StreamIdTable } from '../util/stream-id-table.ts';
import {
  CANCEL,
  COMPRESSION_ERROR,
  CONTINUATION,
  DATA,
  DEFAULT_WINDOW,
  ENHANCE_YOUR_CALM,
  FLAG_ACK,
  FLAG_END_HEADERS,
  FLAG_END_STREAM,
  FLAG_PADDED,
  FLAG_PRIORITY,
  FLOW_CONTROL_ERROR,
  FRAME_HEADER_BYTES,
  FRAME_SIZE_ERROR,
  GOAWAY,
  HEADERS,
  INTERNAL_ERROR,
  MAX_MAX_FRAME_SIZE,
  MAX_WINDOW,
  MIN_MAX_FRAME_SIZE,
  NO_ERROR,
  PING,
  PREFACE,
  PRIORITY,
  PROTOCOL_ERROR,
  PUSH_PROMISE,
  REFUSED_STREAM,
  RST_STREAM,
  SETTINGS,
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_FRAME_SIZE,
  SETTINGS_MAX_HEADER_LIST_SIZE,
  STREAM_CLOSED,
  WINDOW_UPDATE,
  writeFrameHeader,
} from './frames.ts';
import { DECODED_OK, HpackDecoder, HpackEncoder, HpackError } from './hpack.ts';
import { RateBudget } from './session-limits.ts';

export interface H2ServerOptions {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM). */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: larger request header lists are refused (stream error). */
  maxHeaderListSize: number;
  /** Regular fields accepted per header list (pseudo-header fields not counted). */
  maxHeaderFields: number;
  /** Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  streamWindow: number;
  /** Receive window of the connection. */
  connectionWindow: number;
  /** SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441). */
  enableConnectProtocol: boolean;
  /** Streams the client may reset (or have refused) per second before GOAWAY ENHANCE_YOUR_CALM. */
  maxResetsPerSecond: number;
  /** PING and SETTINGS frames the client may send per second before GOAWAY ENHANCE_YOUR_CALM. */
  maxControlFramesPerSecond: number;
  /** A connection without open streams for this long is closed (GOAWAY NO_ERROR). */
  idleTimeoutMs: number;
}

/** Why a connection ended badly (for the log line the owner writes). */
export interface H2ConnectionError {
  code: number;
  /** What went wrong; for ENHANCE_YOUR_CALM, what the client sent too much of ("stream resets", ...). */
  reason: string;
  /** For ENHANCE_YOUR_CALM: how many of them it sent. */
  count: number;
}

/** Our SETTINGS_MAX_FRAME_SIZE (the default; larger frames are a FRAME_SIZE_ERROR). */
const OUR_MAX_FRAME_SIZE = MIN_MAX_FRAME_SIZE;
/** Our SETTINGS_HEADER_TABLE_SIZE (the default). */
const OUR_HEADER_TABLE_SIZE = 4096;
/**
 * A header block (HEADERS plus CONTINUATION frames) may be this many times the header list limit, plus
 * one frame: HPACK never makes a list much larger than its block, so more is a CONTINUATION flood.
 */
const HEADER_BLOCK_FACTOR = 2;
/** Bytes queued on the socket above which streams stop accepting writes (they get onDrain later). */
const SOCKET_HIGH_WATER = 256 * 1024;
/** Bytes a stream may have queued (waiting for flow-control credit) before write() returns false. */
const STREAM_HIGH_WATER = 64 * 1024;
/** The slab small frames are written into, sent as one chunk per tick. */
const SLAB_BYTES = 64 * 1024;
/** Payloads up to this size are copied into the slab; larger ones are sent by reference. */
const COPY_LIMIT = 4096;
/**
 * Empty DATA frames without END_STREAM and empty header block fragments without END_HEADERS a
 * connection may send: they carry nothing and cost a frame's work each, so a stream of them is a flood.
 */
const MAX_EMPTY_FRAMES = 100;
/**
 * How long a connection that sent its GOAWAY (and ended its side) waits for the client to close before it
 * is destroyed. What the client still sends meanwhile is read and dropped; destroyed with unread input, the
 * socket would be reset and a client that had not yet read the GOAWAY would lose it (seen in CI under load
 * with 250 ms). As long as an HTTP/1.1 connection's lingering close.
 */
const GOAWAY_LINGER_MS = 2000;

const EMPTY = Buffer.alloc(0);

/** Closed stream ids remembered (a power of two), and how they closed. */
const CLOSED_MEMORY = 256;
/** Closed normally or by the client's RST_STREAM: later frames on it are errors. */
const CLOSED = 1;
/** zproxy sent RST_STREAM (or ignored the stream): frames already in flight are ignored. */
const CLOSED_BY_RST = 2;

const NO_KINDS: number[] = [];

const REQUEST_OK = 0;
const REQUEST_MALFORMED = 1;
const REQUEST_TOO_LARGE = 2;

/** A field an HTTP/2 message must not carry (RFC 9113 §8.2.2; `te` is checked on its own). */
function connectionSpecific(name: string): boolean {
  return (CONNECTION_SPECIFIC_MASK & (1 << kindOfName(name))) !== 0;
}

/** Thrown inside the frame loop to end the connection with GOAWAY. */
class ConnectionError extends Error {
  readonly code: number;
  readonly count: number;
  constructor(code: number, reason: string, count = 0) {
    super(reason);
    this.code = code;
    this.count = count;
  }
}

/**
 * What ends the connection for an exception thrown while its frames were processed: a ConnectionError
 * as it is; anything else is a defect (of the frame layer or of a stream's owner), which costs this one
 * connection (GOAWAY INTERNAL_ERROR, the stack in the reason for the owner's log line), not the process.
 */
function asConnectionError(error: unknown): ConnectionError {
  if (error instanceof ConnectionError) return error;
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return new ConnectionError(INTERNAL_ERROR, `internal error: ${text}`);
}

/** A budget ran out: GOAWAY ENHANCE_YOUR_CALM, naming what the client sent too much of. */
function calm(what: string, count: number): ConnectionError {
  return new ConnectionError(ENHANCE_YOUR_CALM, what, count);
}

/**
 * What handles the events of a stream (the exchange serving it). Calls come only while the stream is
 * not paused, except onStreamClose and onStreamDrain.
 */
export interface StreamOwner {
  /** A request body chunk (the owner may keep it). */
  onRequestData(chunk: Buffer): void;
  /** The request's trailer fields, names and values alternately; onRequestEnd follows. */
  onRequestTrailers(fields: string[]): void;
  /** The request body is complete. */
  onRequestEnd(): void;
  /** write() may be called again after it returned false. */
  onStreamDrain(): void;
  /**
   * The stream is gone: `code` is NO_ERROR when both sides ended normally, else the RST_STREAM code (the
   * client's when `byClient`, else the one zproxy sent), or CANCEL when the connection ended first.
   */
  onStreamClose(code: number, byClient: boolean): void;
}

export class H2ServerStream {
  readonly id: number;
  readonly connection: H2ServerConnection;
  /** The request's pseudo-header fields. */
  method = '';
  scheme = '';
  authority = '';
  path = '';
  /** `:protocol` of an extended CONNECT (RFC 8441), else ''. */
  protocol = '';
  /** The request's regular fields: names (lowercase) and values alternately. */
  fields: string[] = [];
  /** The kind of each of `fields` (src/http/fields.ts: FIELD_*). */
  fieldKinds: number[] = NO_KINDS;
  /** The request's content-length, or -1. */
  contentLength = -1;
  /**
   * The header list was larger than maxHeaderListSize or had more than maxHeaderFields fields: `fields`
   * holds only its start, and the request must be answered with 431.
   */
  tooLarge = false;

  owner: StreamOwner | null = null;

  /** The request has no body: its HEADERS frame carried END_STREAM. */
  bodyless = false;
  /** The client ended its side (END_STREAM received; the body may still be held while paused). */
  remoteEnded = false;
  /** zproxy ended its side (END_STREAM or trailers queued). */
  localEnded = false;
  headersSent = false;
  closed = false;
  /** Body events wait until resume() (a stream starts paused, like a Readable without a reader). */
  paused = true;

  /** Flow control: what the client still accepts on this stream, and what we still accept. */
  sendWindow: number;
  recvWindow: number;
  /** Body bytes delivered and not yet credited back to the client. */
  private unacked = 0;
  /** Body bytes received (checked against content-length). */
  received = 0;
  /** Response body waiting for flow-control credit, and what follows it. */
  queue: Buffer[] = [];
  queued = 0;
  endAfterQueue = false;
  trailersAfterQueue: readonly string[] | null = null;
  /** The stream waits for connection credit (it is in the connection's blocked list). */
  blocked = false;
  /** Reset with NO_ERROR once the response is complete if the request is not (off for tunnels). */
  resetWhenDone = true;
  /** A write returned false: onStreamDrain is due. */
  wantsDrain = false;
  /** Body events received while paused, replayed in order by resume(). */
  private held: Buffer[] | null = null;
  private heldTrailers: string[] | null = null;
  private heldEnd = false;

  constructor(connection: H2ServerConnection, id: number, sendWindow: number, recvWindow: number) {
    this.connection = connection;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /**
   * Sends the response head: `fields` are lowercase names and values alternately, without
   * connection-specific fields. With `endStream` the response has no body.
   */
  respond(status: number, fields: readonly string[], endStream: boolean): void {
    const enc = this.startResponseHead(status);
    if (enc === null) return;
    for (let i = 0; i < fields.length; i += 2) enc.field(fields[i]!, fields[i + 1]!);
    this.sendResponseHead(endStream);
  }

  /**
   * Starts the response head with `:status` and returns the encoder its fields are added to (lowercase
   * names, no connection-specific fields), or null when the stream takes no head (closed, or one was
   * sent); sendResponseHead() then sends it. Nothing else encodes in between: the caller adds the fields
   * and sends at once.
   */
  startResponseHead(status: number): HpackEncoder | null {
    if (this.closed || this.headersSent) return null;
    return this.connection.startHeaderBlock(status);
  }

  /** Sends the head started by startResponseHead(); with `endStream` the response has no body. */
  sendResponseHead(endStream: boolean): void {
    this.headersSent = true;
    if (endStream) this.localEnded = true;
    this.connection.sendHeaderBlock(this, endStream);
    if (endStream) this.connection.maybeClose(this);
  }

  /** Queues response body bytes (the stream keeps `chunk`); false when the caller should wait for onStreamDrain. */
  write(chunk: Buffer): boolean {
    if (this.closed || this.localEnded) return false;
    if (chunk.length > 0) this.connection.sendData(this, chunk, false);
    return this.writable();
  }

  /** write() from `buf[start, end)`, which the stream does not keep (it copies what it cannot send now). */
  writeFrom(buf: Buffer, start: number, end: number): boolean {
    if (this.closed || this.localEnded) return false;
    if (end > start) this.connection.sendDataFrom(this, buf, start, end, false);
    return this.writable();
  }

  /** After a write: false (and onStreamDrain due) when the stream or the socket holds too much. */
  private writable(): boolean {
    if (this.queued <= STREAM_HIGH_WATER && !this.connection.congested()) return true;
    if (!this.wantsDrain) {
      this.wantsDrain = true;
      this.connection.waitDrain(this);
    }
    return false;
  }

  /** end() after `buf[start, end)`, which the stream does not keep. */
  endFrom(buf: Buffer, start: number, end: number): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.connection.sendDataFrom(this, buf, start, end, true);
    this.connection.maybeClose(this);
  }

  /** Ends the response body, after `chunk` if given. */
  end(chunk?: Buffer): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    this.connection.sendData(this, chunk ?? EMPTY, true);
    this.connection.maybeClose(this);
  }

  /** Ends the response with trailer fields (names and values alternately). */
  sendTrailers(fields: readonly string[]): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    if (this.queued > 0) this.trailersAfterQueue = fields;
    else this.connection.sendTrailerBlock(this, fields);
    this.connection.maybeClose(this);
  }

  /** Resets the stream (RST_STREAM `code`, CANCEL by default). */
  reset(code = CANCEL): void {
    if (this.closed) return;
    this.connection.resetStream(this, code, false);
  }

  /** Stops body events until resume(); the client's window is not credited meanwhile. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const held = this.held;
    if (held !== null) {
      this.held = null;
      for (let i = 0; i < held.length; i++) {
        if (this.closed) return;
        if (this.paused) {
          // Paused again by the owner: keep the rest, in order.
          this.held = this.held === null ? held.slice(i) : [...held.slice(i), ...this.held];
          return;
        }
        this.deliver(held[i]!);
      }
    }
    if (this.paused || this.closed || this.owner === null) return;
    if (this.heldTrailers !== null) {
      const trailers = this.heldTrailers;
      this.heldTrailers = null;
      this.owner.onRequestTrailers(trailers);
    }
    if (this.heldEnd && !this.closed) {
      this.heldEnd = false;
      this.owner.onRequestEnd();
    }
    this.credit(0);
  }

  /** Called by the connection for each DATA payload. */
  deliver(chunk: Buffer): void {
    if (this.paused || this.owner === null) {
      if (this.held === null) this.held = [chunk];
      else this.held.push(chunk);
      return;
    }
    this.owner.onRequestData(chunk);
    this.credit(chunk.length);
  }

  deliverTrailers(fields: string[]): void {
    if (this.paused || this.owner === null || this.held !== null) this.heldTrailers = fields;
    else this.owner.onRequestTrailers(fields);
  }

  deliverEnd(): void {
    if (this.paused || this.owner === null || this.held !== null || this.heldTrailers !== null)
      this.heldEnd = true;
    else this.owner.onRequestEnd();
  }

  /** Credits consumed body bytes back to the client once half a window is owed. */
  private credit(n: number): void {
    this.unacked += n;
    if (this.paused || this.remoteEnded || this.closed) return;
    if (this.unacked >= this.connection.streamWindow / 2) {
      const owed = this.unacked;
      this.unacked = 0;
      this.recvWindow += owed;
      this.connection.sendWindowUpdate(this.id, owed);
    }
  }
}

export class H2ServerConnection implements Timed {
  readonly socket: Socket;
  readonly streamWindow: number;
  private readonly options: H2ServerOptions;
  private readonly onStream: (stream: H2ServerStream) => void;
  /** Called once when the connection is gone, with the error that ended it if any. */
  onClose: ((error: H2ConnectionError | null) => void) | null = null;

  private readonly decoder = new HpackDecoder(OUR_HEADER_TABLE_SIZE);
  private readonly encoder = new HpackEncoder();
  /** Open streams by id (not a Map: see stream-table.ts on churned collections). */
  private readonly streams = new StreamIdTable<H2ServerStream>();

  /** Open streams (metrics). */
  get streamCount(): number {
    return this.streams.size;
  }
  private readonly resets: RateBudget;
  private readonly controlFrames: RateBudget;
  private readonly decoded: string[] = [];
  private emptyFrames = 0;
  /** Streams opened by the read being processed, handed to onStream once it is done. */
  private arrived: H2ServerStream[] = [];

  private input: Buffer | null = null;
  private prefaceSeen = false;
  private settingsSeen = false;
  /** The highest client stream id seen. */
  private lastStreamId = 0;
  /** A header block in progress: its stream id, flags of its HEADERS frame, and its fragments. */
  private blockStream = 0;
  private blockFlags = 0;
  private blockParts: Buffer[] = [];
  private blockBytes = 0;
  /** The block's HEADERS frame made its stream depend on itself (a stream error once decoded). */
  private blockSelfDependent = false;
  /** The last CLOSED_MEMORY stream ids that closed, and how (CLOSED or CLOSED_BY_RST), as a ring. */
  private readonly closedIds = new Int32Array(CLOSED_MEMORY);
  private readonly closedKinds = new Uint8Array(CLOSED_MEMORY);
  private closedNext = 0;

  /** The client's settings. */
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrameSize = MIN_MAX_FRAME_SIZE;
  /** Flow control of the connection: what the client still accepts, and what we still accept. */
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private recvUnacked = 0;
  /** Streams waiting for connection credit, in order. */
  private blocked: H2ServerStream[] = [];
  /** Streams whose write() returned false. */
  private drainWaiters: H2ServerStream[] = [];

  /** Outgoing bytes: sealed chunks plus the slab region being filled. */
  private chunks: Buffer[] = [];
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private slabStart = 0;
  private slabPos = 0;
  private flushScheduled = false;
  private readonly flushBound = () => this.flush();

  /** GOAWAY sent: no new streams; the connection ends when the last stream closes. */
  private goingAway = false;
  private destroyed = false;
  /** When an idle connection is closed (deadlines.ts); 0 while streams are open. */
  deadline = 0;
  private error: H2ConnectionError | null = null;

  constructor(socket: Socket, options: H2ServerOptions, onStream: (stream: H2ServerStream) => void) {
    this.socket = socket;
    this.options = options;
    this.onStream = onStream;
    this.streamWindow = options.streamWindow;
    this.recvWindow = DEFAULT_WINDOW;
    this.resets = new RateBudget(options.maxResetsPerSecond);
    this.controlFrames = new RateBudget(options.maxControlFramesPerSecond);
  }

  /** Sends our SETTINGS and starts reading; `initial` holds bytes already read from the socket. */
  start(initial?: Buffer): void {
    const o = this.options;
    const settings: [number, number][] = [
      [SETTINGS_MAX_CONCURRENT_STREAMS, o.maxConcurrentStreams],
      [SETTINGS_INITIAL_WINDOW_SIZE, o.streamWindow],
      [SETTINGS_MAX_HEADER_LIST_SIZE, o.maxHeaderListSize],
      [SETTINGS_ENABLE_PUSH, 0],
    ];
    if (o.enableConnectProtocol) settings.push([SETTINGS_ENABLE_CONNECT_PROTOCOL, 1]);
    const at = this.reserve(FRAME_HEADER_BYTES + 6 * settings.length);
    writeFrameHeader(this.slab, at, 6 * settings.length, SETTINGS, 0, 0);
    settings.forEach(([id, value], i) => {
      this.slab.writeUInt16BE(id, at + 9 + 6 * i);
      this.slab.writeUInt32BE(value, at + 11 + 6 * i);
    });
    if (o.connectionWindow > DEFAULT_WINDOW) {
      this.recvWindow = o.connectionWindow;
      this.sendWindowUpdate(0, o.connectionWindow - DEFAULT_WINDOW);
    }
    this.socket.setNoDelay(true);
    watchDeadline(this);
    this.deadline = Date.now() + o.idleTimeoutMs;
    this.socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    this.socket.on('end', () => this.onSocketGone(null));
    this.socket.on('close', () => this.onSocketGone(null));
    this.socket.on('error', () => this.onSocketGone(null));
    this.socket.on('drain', () => this.onSocketDrain());
    if (initial !== undefined && initial.length > 0) this.onBytes(initial);
    // A socket handed over by the HTTP/1 engine was paused there.
    this.socket.resume();
  }

  /** Starts a graceful close: GOAWAY NO_ERROR, existing streams finish, new ones are ignored. */
  close(): void {
    if (this.goingAway || this.destroyed) return;
    this.goingAway = true;
    this.sendGoaway(NO_ERROR);
    if (this.streams.size === 0) this.endSocket();
  }

  /**
   * Closes at once with GOAWAY `code`; a connection already closing (its GOAWAY sent, its socket ended)
   * is destroyed (the end of a graceful stop).
   */
  destroy(code = NO_ERROR, reason = 'closed'): void {
    if (this.destroyed) this.socket.destroy();
    else this.fail(new ConnectionError(code, reason));
  }

  // ---------------------------------------------------------------------------------------------
  // Reading

  private onBytes(chunk: Buffer): void {
    if (this.destroyed) return;
    let buf = this.input === null ? chunk : Buffer.concat([this.input, chunk]);
    this.input = null;
    let off = 0;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, PREFACE.length);
        if (buf.compare(PREFACE, 0, n, 0, n) !== 0)
          throw new ConnectionError(PROTOCOL_ERROR, 'invalid preface');
        if (buf.length < PREFACE.length) {
          this.input = buf;
          return;
        }
        this.prefaceSeen = true;
        off = PREFACE.length;
      }
      while (buf.length - off >= FRAME_HEADER_BYTES && !this.destroyed) {
        const length = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (length > OUR_MAX_FRAME_SIZE)
          throw new ConnectionError(FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        if (buf.length - off < FRAME_HEADER_BYTES + length) break;
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
        const start = off + FRAME_HEADER_BYTES;
        off = start + length;
        this.onFrame(type, flags, id, buf, start, off);
      }
    } catch (error) {
      this.fail(asConnectionError(error));
      return;
    }
    if (this.arrived.length > 0) {
      try {
        this.deliverArrived();
      } catch (error) {
        this.fail(asConnectionError(error));
        return;
      }
    }
    if (off < buf.length && !this.destroyed) {
      buf = buf.subarray(off);
      // Keep a copy when the remainder is small, so a large read buffer is not held for a few bytes.
      this.input = buf.length < 1024 ? Buffer.from(buf) : buf;
    }
    this.scheduleFlush();
  }

  /** Hands the streams opened by the last read to the application, unless they closed meanwhile. */
  private deliverArrived(): void {
    const arrived = this.arrived;
    this.arrived = [];
    for (const stream of arrived) if (!stream.closed && !this.destroyed) this.onStream(stream);
  }

  private onFrame(type: number, flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (!this.settingsSeen) {
      if (type !== SETTINGS || flags & FLAG_ACK)
        throw new ConnectionError(PROTOCOL_ERROR, 'first frame is not SETTINGS');
      this.settingsSeen = true;
    }
    if (this.blockStream !== 0) {
      if (type !== CONTINUATION || id !== this.blockStream)
        throw new ConnectionError(PROTOCOL_ERROR, 'header block interrupted');
      this.addFragment(buf, start, end);
      if (flags & FLAG_END_HEADERS) this.endHeaderBlock();
      return;
    }
    switch (type) {
      case DATA:
        this.onDataFrame(flags, id, buf, start, end);
        return;
      case HEADERS:
        this.onHeadersFrame(flags, id, buf, start, end);
        return;
      case PRIORITY:
        if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (end - start !== 5) this.streamError(id, FRAME_SIZE_ERROR);
        // A stream cannot depend on itself (RFC 9113 §5.3.1); priorities are otherwise ignored.
        else if ((buf.readUInt32BE(start) & 0x7fffffff) === id) this.streamError(id, PROTOCOL_ERROR);
        return;
      case RST_STREAM:
        this.onRstStream(id, buf, start, end);
        return;
      case SETTINGS:
        this.onSettings(flags, id, buf, start, end);
        return;
      case PUSH_PROMISE:
        throw new ConnectionError(PROTOCOL_ERROR, 'PUSH_PROMISE from a client');
      case PING:
        if (id !== 0) throw new ConnectionError(PROTOCOL_ERROR, 'PING on a stream');
        if (end - start !== 8) throw new ConnectionError(FRAME_SIZE_ERROR, 'PING of the wrong size');
        if (flags & FLAG_ACK) return;
        this.countControlFrame();
        this.writeFrame(PING, FLAG_ACK, 0, buf, start, end);
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (end - start < 8) throw new ConnectionError(FRAME_SIZE_ERROR, 'GOAWAY too short');
        this.close();
        return;
      case WINDOW_UPDATE:
        this.onWindowUpdate(id, buf, start, end);
        return;
      case CONTINUATION:
        throw new ConnectionError(PROTOCOL_ERROR, 'CONTINUATION without HEADERS');
      default:
        return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onDataFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'DATA on stream 0');
    const length = end - start;
    if (length === 0 && (flags & FLAG_END_STREAM) === 0) this.countEmptyFrame();
    this.recvWindow -= length;
    if (this.recvWindow < 0) throw new ConnectionError(FLOW_CONTROL_ERROR, 'connection window exceeded');
    // The connection window is credited as soon as the bytes are taken off the socket: memory per
    // stream is bounded by the stream window, which is credited only as the body is consumed.
    this.recvUnacked += length;
    if (this.recvUnacked >= this.options.connectionWindow / 2) {
      this.recvWindow += this.recvUnacked;
      this.sendWindowUpdate(0, this.recvUnacked);
      this.recvUnacked = 0;
    }
    if (flags & FLAG_PADDED) {
      if (length < 1) throw new ConnectionError(FRAME_SIZE_ERROR, 'padded DATA without padding length');
      const pad = buf[start]!;
      start++;
      if (pad > end - start) throw new ConnectionError(PROTOCOL_ERROR, 'padding longer than the frame');
      end -= pad;
    }
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if (id > this.lastStreamId) throw new ConnectionError(PROTOCOL_ERROR, 'DATA on an idle stream');
      // After zproxy's RST_STREAM, DATA already in flight is ignored (its bytes were credited above);
      // on a stream closed otherwise it is a stream error (RFC 9113 §5.1).
      if (this.closedKind(id) !== CLOSED_BY_RST) this.writeRst(id, STREAM_CLOSED);
      return;
    }
    if (stream.remoteEnded) {
      this.resetStream(stream, STREAM_CLOSED, false);
      return;
    }
    stream.recvWindow -= length;
    if (stream.recvWindow < 0) {
      this.resetStream(stream, FLOW_CONTROL_ERROR, false);
      return;
    }
    stream.received += end - start;
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    if (
      stream.contentLength >= 0 &&
      (stream.received > stream.contentLength || (endStream && stream.received !== stream.contentLength))
    ) {
      this.resetStream(stream, PROTOCOL_ERROR, false);
      return;
    }
    if (end > start) stream.deliver(buf.subarray(start, end));
    if (endStream) {
      stream.remoteEnded = true;
      if (!stream.closed) stream.deliverEnd();
      this.maybeClose(stream);
    }
  }

  private onHeadersFrame(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0 || (id & 1) === 0) throw new ConnectionError(PROTOCOL_ERROR, 'HEADERS on an even stream id');
    if (flags & FLAG_PADDED) {
      if (end - start < 1)
        throw new ConnectionError(FRAME_SIZE_ERROR, 'padded HEADERS without padding length');
      const pad = buf[start]!;
      start++;
      if (pad > end - start) throw new ConnectionError(PROTOCOL_ERROR, 'padding longer than the frame');
      end -= pad;
    }
    this.blockSelfDependent = false;
    if (flags & FLAG_PRIORITY) {
      if (end - start < 5) throw new ConnectionError(FRAME_SIZE_ERROR, 'HEADERS too short for its priority');
      this.blockSelfDependent = (buf.readUInt32BE(start) & 0x7fffffff) === id;
      start += 5;
    }
    this.blockStream = id;
    this.blockFlags = flags;
    this.blockParts.length = 0;
    this.blockBytes = 0;
    this.addFragment(buf, start, end);
    if (flags & FLAG_END_HEADERS) this.endHeaderBlock();
  }

  private addFragment(buf: Buffer, start: number, end: number): void {
    if (end === start && (this.blockFlags & FLAG_END_HEADERS) === 0) this.countEmptyFrame();
    this.blockBytes += end - start;
    if (this.blockBytes > HEADER_BLOCK_FACTOR * this.options.maxHeaderListSize + OUR_MAX_FRAME_SIZE)
      throw calm('CONTINUATION frames', this.blockBytes);
    // A single-frame block is decoded in place; fragments are copied (the read buffer may be reused).
    this.blockParts.push(
      this.blockParts.length === 0 && (this.blockFlags & FLAG_END_HEADERS) !== 0
        ? buf.subarray(start, end)
        : Buffer.from(buf.subarray(start, end)),
    );
  }

  private endHeaderBlock(): void {
    const id = this.blockStream;
    const flags = this.blockFlags;
    const block = this.blockParts.length === 1 ? this.blockParts[0]! : Buffer.concat(this.blockParts);
    this.blockStream = 0;
    this.blockParts.length = 0;
    const out = this.decoded;
    out.length = 0;
    let result: number;
    try {
      result = this.decoder.decode(block, 0, block.length, out, this.options.maxHeaderListSize);
    } catch (error) {
      if (error instanceof HpackError) throw new ConnectionError(COMPRESSION_ERROR, error.message);
      throw error;
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      if (this.blockSelfDependent) this.resetStream(existing, PROTOCOL_ERROR, false);
      else this.onTrailerBlock(existing, out, result, endStream);
      return;
    }
    if (id <= this.lastStreamId) {
      // Not an open stream: after zproxy's RST_STREAM the block only kept HPACK in step (RFC 9113 §5.1);
      // otherwise the stream closed earlier, or the id went backwards (§5.1.1).
      const kind = this.closedKind(id);
      if (kind === CLOSED_BY_RST) return;
      if (kind === CLOSED) throw new ConnectionError(STREAM_CLOSED, 'HEADERS on a closed stream');
      throw new ConnectionError(PROTOCOL_ERROR, 'stream id lower than an earlier one');
    }
    this.lastStreamId = id;
    if (this.goingAway) {
      this.remember(id, CLOSED_BY_RST); // past the GOAWAY's last stream id: ignored, as are its frames
      return;
    }
    if (this.blockSelfDependent) {
      this.refuse(id, PROTOCOL_ERROR);
      return;
    }
    if (this.streams.size >= this.options.maxConcurrentStreams) {
      this.refuse(id, REFUSED_STREAM);
      return;
    }
    const stream = new H2ServerStream(this, id, this.peerInitialWindow, this.options.streamWindow);
    const verdict = this.readRequest(stream, out);
    if (verdict === REQUEST_MALFORMED || (endStream && stream.contentLength > 0)) {
      this.refuse(id, PROTOCOL_ERROR);
      return;
    }
    if (result !== DECODED_OK || verdict === REQUEST_TOO_LARGE) {
      // Answered with 431 by the application; repeated, it is an HPACK bomb: counted like a reset.
      stream.tooLarge = true;
      if (!this.resets.take()) throw calm('refused streams', this.resets.count);
    }
    stream.remoteEnded = endStream;
    stream.bodyless = endStream;
    this.streams.set(id, stream);
    this.deadline = 0;
    this.arrived.push(stream);
    if (endStream) stream.deliverEnd();
  }

  private onTrailerBlock(stream: H2ServerStream, out: string[], result: number, endStream: boolean): void {
    if (stream.remoteEnded) {
      this.resetStream(stream, STREAM_CLOSED, false);
      return;
    }
    if (!endStream || result !== DECODED_OK || !validTrailers(out)) {
      this.resetStream(stream, PROTOCOL_ERROR, false);
      return;
    }
    if (stream.contentLength >= 0 && stream.received !== stream.contentLength) {
      this.resetStream(stream, PROTOCOL_ERROR, false);
      return;
    }
    stream.remoteEnded = true;
    stream.deliverTrailers(out.slice());
    stream.deliverEnd();
    this.maybeClose(stream);
  }

  /**
   * Checks a request header list (RFC 9113 §8.2, §8.3) and fills the stream's request fields:
   * REQUEST_MALFORMED, REQUEST_TOO_LARGE (more than maxHeaderFields fields) or REQUEST_OK.
   */
  private readRequest(stream: H2ServerStream, out: string[]): number {
    let i = 0;
    let seen = 0; // bits: 1 method, 2 scheme, 4 authority, 8 path, 16 protocol
    for (; i < out.length && out[i]!.charCodeAt(0) === 0x3a; i += 2) {
      const name = out[i]!;
      const value = out[i + 1]!;
      let bit: number;
      if (name === ':method') {
        bit = 1;
        stream.method = value;
      } else if (name === ':scheme') {
        bit = 2;
        stream.scheme = value;
      } else if (name === ':authority') {
        bit = 4;
        stream.authority = value;
      } else if (name === ':path') {
        bit = 8;
        stream.path = value;
      } else if (name === ':protocol' && this.options.enableConnectProtocol) {
        bit = 16;
        stream.protocol = value;
      } else return REQUEST_MALFORMED;
      if (seen & bit || !validValue(value)) return REQUEST_MALFORMED;
      seen |= bit;
    }
    const method = stream.method;
    const authority = stream.authority;
    if (method === 'CONNECT' && (seen & 16) === 0) {
      // RFC 9113 §8.5: only :method and :authority, which is the host and port to connect to.
      if (seen !== (1 | 4) || !validAuthority(authority, 0, authority.length, true, true))
        return REQUEST_MALFORMED;
    } else {
      if ((seen & (1 | 2 | 8)) !== (1 | 2 | 8)) return REQUEST_MALFORMED;
      if (seen & 16 && (method !== 'CONNECT' || (seen & 4) === 0)) return REQUEST_MALFORMED;
      if (!validToken(method)) return REQUEST_MALFORMED;
      // The request-target and Host grammar of the HTTP/1.1 parser (src/http/syntax.ts): an HTTP/1.1
      // upstream gets :path as its request-target and :authority as its Host.
      if (!validPath(method, stream.path)) return REQUEST_MALFORMED;
      if ((seen & 4) !== 0 && !validAuthority(authority, 0, authority.length, false, false))
        return REQUEST_MALFORMED;
    }
    const fields: string[] = [];
    // Each field's kind is looked up once, here, and handed on with the fields (FieldList).
    const kinds: number[] = [];
    let count = 0;
    let tooMany = false;
    for (; i < out.length; i += 2) {
      const name = out[i]!;
      const value = out[i + 1]!;
      if (!validName(name) || !validValue(value)) return REQUEST_MALFORMED;
      const kind = kindOfName(name);
      if ((CONNECTION_SPECIFIC_MASK & (1 << kind)) !== 0) return REQUEST_MALFORMED;
      if (kind === FIELD_TE && value !== 'trailers') return REQUEST_MALFORMED;
      if (kind === FIELD_CONTENT_LENGTH) {
        if (!/^[0-9]{1,15}$/.test(value)) return REQUEST_MALFORMED;
        const n = Number(value);
        if (stream.contentLength >= 0 && stream.contentLength !== n) return REQUEST_MALFORMED;
        stream.contentLength = n;
      }
      if (kind === FIELD_HOST) {
        // Routing and the upstream must see one host (RFC 9113 §8.3.1); without :authority, the host
        // field is the authority and obeys the same grammar.
        if ((seen & 4) !== 0) {
          if (value.toLowerCase() !== authority.toLowerCase()) return REQUEST_MALFORMED;
        } else if (!validAuthority(value, 0, value.length, false, false)) return REQUEST_MALFORMED;
      }
      if (++count > this.options.maxHeaderFields) tooMany = true;
      else {
        fields.push(name, value);
        kinds.push(kind);
      }
    }
    stream.fields = fields;
    stream.fieldKinds = kinds;
    return tooMany ? REQUEST_TOO_LARGE : REQUEST_OK;
  }

  private onRstStream(id: number, buf: Buffer, start: number, end: number): void {
    if (id === 0) throw new ConnectionError(PROTOCOL_ERROR, 'RST_STREAM on stream 0');
    if (end - start !== 4) throw new ConnectionError(FRAME_SIZE_ERROR, 'RST_STREAM of the wrong size');
    if (id > this.lastStreamId) throw new ConnectionError(PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    const code = buf.readUInt32BE(start);
    this.closeStream(stream, code, true);
    if (!this.resets.take()) throw calm('stream resets', this.resets.count);
  }

  private onSettings(flags: number, id: number, buf: Buffer, start: number, end: number): void {
    if (id !== 0) throw new ConnectionError(PROTOCOL_ERROR, 'SETTINGS on a stream');
    if (flags & FLAG_ACK) {
      if (end > start) throw new ConnectionError(FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if ((end - start) % 6 !== 0) throw new ConnectionError(FRAME_SIZE_ERROR, 'SETTINGS of the wrong size');
    this.countControlFrame();
    for (let p = start; p < end; p += 6) {
      const setting = buf.readUInt16BE(p);
      const value = buf.readUInt32BE(p + 2);
      switch (setting) {
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(PROTOCOL_ERROR, 'SETTINGS_ENABLE_PUSH above 1');
          break;
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW)
            throw new ConnectionError(FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE too large');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          let overflow = false;
          this.streams.forEach((stream) => {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) overflow = true;
          });
          if (overflow) throw new ConnectionError(FLOW_CONTROL_ERROR, 'stream window overflow');
          if (delta > 0)
            this.streams.forEach((stream) => {
              this.pump(stream);
            });
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < MIN_MAX_FRAME_SIZE || value > MAX_MAX_FRAME_SIZE)
            throw new ConnectionError(PROTOCOL_ERROR, 'SETTINGS_MAX_FRAME_SIZE out of range');
          this.peerMaxFrameSize = value;
          break;
        // SETTINGS_HEADER_TABLE_SIZE: our encoder uses no dynamic table; SETTINGS_MAX_CONCURRENT_STREAMS:
        // zproxy never pushes; SETTINGS_MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored.
        default:
          break;
      }
    }
    this.writeFrame(SETTINGS, FLAG_ACK, 0, EMPTY, 0, 0);
  }

  private onWindowUpdate(id: number, buf: Buffer, start: number, end: number): void {
    if (end - start !== 4) throw new ConnectionError(FRAME_SIZE_ERROR, 'WINDOW_UPDATE of the wrong size');
    const increment = buf.readUInt32BE(start) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW)
        throw new ConnectionError(FLOW_CONTROL_ERROR, 'connection window overflow');
      const blocked = this.blocked;
      this.blocked = [];
      for (const stream of blocked) {
        stream.blocked = false;
        this.pump(stream);
      }
      return;
    }
    if (id > this.lastStreamId) throw new ConnectionError(PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    if (increment === 0) {
      this.resetStream(stream, PROTOCOL_ERROR, false);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.resetStream(stream, FLOW_CONTROL_ERROR, false);
      return;
    }
    this.pump(stream);
  }

  private countEmptyFrame(): void {
    if (++this.emptyFrames > MAX_EMPTY_FRAMES) throw calm('empty frames', this.emptyFrames);
  }

  private countControlFrame(): void {
    if (!this.controlFrames.take()) throw calm('PING/SETTINGS frames', this.controlFrames.count);
  }

  /** A malformed or refused request: RST_STREAM, counted against the reset budget. */
  private refuse(id: number, code: number): void {
    this.writeRst(id, code);
    if (!this.resets.take()) throw calm('refused streams', this.resets.count);
  }

  private streamError(id: number, code: number): void {
    const stream = this.streams.get(id);
    if (stream !== undefined) this.resetStream(stream, code, false);
    else this.writeRst(id, code);
  }

  // ---------------------------------------------------------------------------------------------
  // Writing

  /** Reserves `n` bytes in the slab and returns their position. */
  private reserve(n: number): number {
    if (this.slabPos + n > this.slab.length) {
      this.seal();
      this.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, n));
      this.slabStart = 0;
      this.slabPos = 0;
    }
    const at = this.slabPos;
    this.slabPos += n;
    this.scheduleFlush();
    return at;
  }

  /** Moves the filled part of the slab to the chunk list. */
  private seal(): void {
    if (this.slabPos > this.slabStart) {
      this.chunks.push(this.slab.subarray(this.slabStart, this.slabPos));
      this.slabStart = this.slabPos;
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flushBound);
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.destroyed) return;
    this.seal();
    const chunks = this.chunks;
    if (chunks.length === 0) return;
    this.chunks = [];
    const socket = this.socket;
    if (chunks.length === 1) socket.write(chunks[0]!);
    else {
      socket.cork();
      for (const chunk of chunks) socket.write(chunk);
      socket.uncork();
    }
  }

  private writeFrame(
    type: number,
    flags: number,
    id: number,
    payload: Buffer,
    start: number,
    end: number,
  ): void {
    const length = end - start;
    const at = this.reserve(FRAME_HEADER_BYTES + length);
    writeFrameHeader(this.slab, at, length, type, flags, id);
    if (length > 0) copyBytes(payload, start, end, this.slab, at + FRAME_HEADER_BYTES);
  }

  sendWindowUpdate(id: number, increment: number): void {
    const at = this.reserve(FRAME_HEADER_BYTES + 4);
    writeFrameHeader(this.slab, at, 4, WINDOW_UPDATE, 0, id);
    this.slab.writeUInt32BE(increment, at + FRAME_HEADER_BYTES);
  }

  /** Records how a stream id was closed, for frames that arrive on it later. */
  private remember(id: number, kind: number): void {
    const i = this.closedNext;
    this.closedIds[i] = id;
    this.closedKinds[i] = kind;
    this.closedNext = (i + 1) & (CLOSED_MEMORY - 1);
  }

  /** How a recently closed stream id was closed (the latest record), or 0 when it is not remembered. */
  private closedKind(id: number): number {
    for (let n = 1; n <= CLOSED_MEMORY; n++) {
      const i = (this.closedNext - n) & (CLOSED_MEMORY - 1);
      if (this.closedIds[i] === id) return this.closedKinds[i]!;
    }
    return 0;
  }

  private writeRst(id: number, code: number): void {
    this.remember(id, CLOSED_BY_RST);
    const at = this.reserve(FRAME_HEADER_BYTES + 4);
    writeFrameHeader(this.slab, at, 4, RST_STREAM, 0, id);
    this.slab.writeUInt32BE(code, at + FRAME_HEADER_BYTES);
  }

  private sendGoaway(code: number): void {
    const at = this.reserve(FRAME_HEADER_BYTES + 8);
    writeFrameHeader(this.slab, at, 8, GOAWAY, 0, 0);
    this.slab.writeUInt32BE(this.lastStreamId, at + FRAME_HEADER_BYTES);
    this.slab.writeUInt32BE(code, at + FRAME_HEADER_BYTES + 4);
  }

  /** Writes a header block as HEADERS plus CONTINUATION frames of at most the peer's frame size. */
  private writeHeaderBlock(id: number, block: Buffer, endStream: boolean): void {
    const max = this.peerMaxFrameSize;
    let type = HEADERS;
    let pos = 0;
    do {
      const n = Math.min(max, block.length - pos);
      const last = pos + n === block.length;
      let flags = last ? FLAG_END_HEADERS : 0;
      if (type === HEADERS && endStream) flags |= FLAG_END_STREAM;
      this.writeFrame(type, flags, id, block, pos, pos + n);
      pos += n;
      type = CONTINUATION;
    } while (pos < block.length);
  }

  /** A header block beginning with `:status` in the connection's encoder (see H2ServerStream.startResponseHead). */
  startHeaderBlock(status: number): HpackEncoder {
    const enc = this.encoder;
    enc.begin();
    enc.status(status);
    return enc;
  }

  /** Sends the block the encoder holds as `stream`'s HEADERS (and CONTINUATION frames). */
  sendHeaderBlock(stream: H2ServerStream, endStream: boolean): void {
    this.writeHeaderBlock(stream.id, this.encoder.end(), endStream);
  }

  sendTrailerBlock(stream: H2ServerStream, fields: readonly string[]): void {
    const enc = this.encoder;
    enc.begin();
    for (let i = 0; i < fields.length; i += 2) enc.field(fields[i]!, fields[i + 1]!);
    this.writeHeaderBlock(stream.id, enc.end(), true);
  }

  /** Queues response body bytes on `stream` and sends what flow control allows. */
  sendData(stream: H2ServerStream, chunk: Buffer, endStream: boolean): void {
    if (chunk.length > 0) {
      stream.queue.push(chunk);
      stream.queued += chunk.length;
    }
    if (endStream) stream.endAfterQueue = true;
    this.pump(stream);
  }

  /** sendData() from `buf[start, end)`: copied into the outgoing slab when it can go at once, else queued as a copy. */
  sendDataFrom(stream: H2ServerStream, buf: Buffer, start: number, end: number, endStream: boolean): void {
    const n = end - start;
    if (
      stream.queued === 0 &&
      !stream.closed &&
      n <= COPY_LIMIT &&
      n <= stream.sendWindow &&
      n <= this.sendWindow &&
      n <= this.peerMaxFrameSize
    ) {
      stream.sendWindow -= n;
      this.sendWindow -= n;
      this.writeFrame(DATA, endStream ? FLAG_END_STREAM : 0, stream.id, buf, start, end);
      return;
    }
    this.sendData(stream, Buffer.from(buf.subarray(start, end)), endStream);
  }

  /** Sends as much of the stream's queue as both windows allow. */
  private pump(stream: H2ServerStream): void {
    if (stream.closed) return;
    while (stream.queued > 0) {
      const allowed = Math.min(stream.sendWindow, this.sendWindow, this.peerMaxFrameSize);
      if (allowed <= 0) {
        if (this.sendWindow <= 0 && !stream.blocked) {
          stream.blocked = true;
          this.blocked.push(stream);
        }
        return;
      }
      const head = stream.queue[0]!;
      let payload: Buffer;
      if (head.length <= allowed) {
        payload = head;
        stream.queue.shift();
      } else {
        payload = head.subarray(0, allowed);
        stream.queue[0] = head.subarray(allowed);
      }
      const n = payload.length;
      stream.queued -= n;
      stream.sendWindow -= n;
      this.sendWindow -= n;
      const last = stream.queued === 0 && stream.endAfterQueue && stream.trailersAfterQueue === null;
      this.writeData(stream.id, payload, last);
      if (last) stream.endAfterQueue = false;
    }
    if (stream.trailersAfterQueue !== null) {
      const trailers = stream.trailersAfterQueue;
      stream.trailersAfterQueue = null;
      stream.endAfterQueue = false;
      this.sendTrailerBlock(stream, trailers);
    } else if (stream.endAfterQueue) {
      stream.endAfterQueue = false;
      this.writeData(stream.id, EMPTY, true);
    }
    this.maybeClose(stream);
    if (stream.wantsDrain && stream.queued <= STREAM_HIGH_WATER && !this.congested()) {
      stream.wantsDrain = false;
      stream.owner?.onStreamDrain();
    }
  }

  private writeData(id: number, payload: Buffer, endStream: boolean): void {
    const flags = endStream ? FLAG_END_STREAM : 0;
    if (payload.length <= COPY_LIMIT) {
      this.writeFrame(DATA, flags, id, payload, 0, payload.length);
      return;
    }
    const at = this.reserve(FRAME_HEADER_BYTES);
    writeFrameHeader(this.slab, at, payload.length, DATA, flags, id);
    this.seal();
    this.chunks.push(payload);
  }

  /** True when the socket holds more unsent bytes than it should. */
  congested(): boolean {
    return this.socket.writableLength > SOCKET_HIGH_WATER;
  }

  waitDrain(stream: H2ServerStream): void {
    this.drainWaiters.push(stream);
  }

  private onSocketDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const stream of waiters) {
      if (stream.closed || !stream.wantsDrain) continue;
      if (stream.queued > STREAM_HIGH_WATER) {
        this.drainWaiters.push(stream);
        continue;
      }
      stream.wantsDrain = false;
      stream.owner?.onStreamDrain();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Stream and connection ends

  /**
   * Closes the stream once both sides have ended and its response has left. A response complete while
   * the client is still sending its request is followed by RST_STREAM NO_ERROR, which tells the client
   * to stop (RFC 9113 §8.1), unless the stream is a tunnel (`resetWhenDone` off).
   */
  maybeClose(stream: H2ServerStream): void {
    if (
      stream.closed ||
      !stream.localEnded ||
      stream.queued !== 0 ||
      stream.endAfterQueue ||
      stream.trailersAfterQueue !== null
    )
      return;
    if (stream.remoteEnded) this.closeStream(stream, NO_ERROR, false);
    else if (stream.resetWhenDone) this.resetStream(stream, NO_ERROR, false);
  }

  /** Resets a stream: close, then RST_STREAM `code` (recorded after the close, so it is the latest). */
  resetStream(stream: H2ServerStream, code: number, byClient: boolean): void {
    if (stream.closed) return;
    this.closeStream(stream, code, byClient);
    this.writeRst(stream.id, code);
  }

  private closeStream(stream: H2ServerStream, code: number, byClient: boolean): void {
    if (stream.closed) return;
    stream.closed = true;
    this.remember(stream.id, CLOSED);
    stream.queue.length = 0;
    stream.queued = 0;
    this.streams.delete(stream.id);
    stream.owner?.onStreamClose(code, byClient);
    if (this.streams.size === 0) {
      if (this.goingAway) this.endSocket();
      else this.deadline = Date.now() + this.options.idleTimeoutMs;
    }
  }

  private fail(error: ConnectionError): void {
    if (this.destroyed) return;
    this.error = { code: error.code, reason: error.message, count: error.count };
    this.goingAway = true;
    this.sendGoaway(error.code);
    this.flush();
    this.finish(error.code);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), GOAWAY_LINGER_MS).unref();
  }

  private endSocket(): void {
    this.flush();
    this.finish(NO_ERROR);
    this.socket.end();
    // A client that never closes its side does not keep the socket.
    setTimeout(() => this.socket.destroy(), GOAWAY_LINGER_MS).unref();
  }

  private onSocketGone(_: null): void {
    if (this.destroyed) return;
    this.finish(CANCEL);
    this.socket.destroy();
  }

  /** No stream for idleTimeoutMs: a graceful close. */
  onDeadline(): void {
    if (this.streams.size === 0 && !this.destroyed) this.close();
  }

  /** Closes every stream with `code` and reports the connection gone, once. */
  private finish(code: number): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.deadline = 0;
    unwatchDeadline(this);
    this.streams.forEach((stream) => {
      this.closeStream(stream, code, false);
    });
    this.onClose?.(this.error);
  }
}

/** Trailers carry no pseudo-header fields and no connection-specific fields (RFC 9113 §8.1). */
function validTrailers(out: string[]): boolean {
  for (let i = 0; i < out.length; i += 2) {
    const name = out[i]!;
    if (!validName(name) || !validValue(out[i + 1]!) || connectionSpecific(name)) return false;
  }
  return true;
}

/** A field name: a non-empty token without uppercase letters (RFC 9113 §8.2.1). */
function validName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) if (TOKEN_LOWER[name.charCodeAt(i)] !== 1) return false;
  return true;
}

function validToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/**
 * A `:path` (RFC 9113 §8.3.1): origin-form with the characters an HTTP/1.1 request-target may hold, or
 * `*` for OPTIONS (answered 400 later, as over HTTP/1.1). The path of an extended CONNECT (RFC 8441 §4)
 * is origin-form too.
 */
function validPath(method: string, path: string): boolean {
  if (path.length === 1 && path.charCodeAt(0) === 0x2a) return method === 'OPTIONS';
  return validOriginForm(path);
}

/** A field value: no NUL, CR or LF, and no whitespace at either end (RFC 9113 §8.2.1). */
function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  for (let i = 0; i < n; i++) {
    c = value.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return false;
  }
  return true;
}

/** tchar without uppercase letters: the characters of an HTTP/2 field name. */
const TOKEN_LOWER = new Uint8Array(256);
for (let c = 0; c < 256; c++) if (TCHAR[c] === 1 && !(c >= 0x41 && c <= 0x5a)) TOKEN_LOWER[c] = 1;
