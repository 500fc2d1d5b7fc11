/**
 * One pooled HTTP/1.1 connection to an upstream target: the HTTP/1.1 side of the upstream client contract
 * (src/upstream/contract.ts). It renders the request head from the forwarding decisions (the client's
 * field lines copied as they came when they arrived over HTTP/1.1), frames a body of unknown length as
 * chunks, parses the response head strictly, tracks the response body's framing byte by byte and hands
 * body bytes to its handler as the buffers that arrived. Socket handlers are bound once per connection,
 * never per request. An https:// pool's connections are TLS sockets (the choice is made once, when the
 * connection opens; reading and writing are the same afterwards).
 *
 * An *upgrade* connection is opened for one WebSocket handshake and is never pooled: it accepts a `101`
 * that switches to websocket (and answers zproxy's key when zproxy made the handshake), and then gives
 * its socket (and the bytes read past the head) to the handler, which joins it into a tunnel
 * (src/websocket/). Any other answer is read like a normal response.
 */
import net from 'node:net';
import { ZpError } from '../errors.ts';
import type { FieldSource } from '../http/fields.ts';
import {
  addKeptLines,
  addRequestLines,
  CONTENT_LENGTH_BIT,
  headLines,
  http1TrailerLines,
  UPGRADE_BIT,
} from '../http/forwarding.ts';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_END,
  type ProxyRequest,
  REQUEST_BODY_CHUNKED,
  REQUEST_BODY_NONE,
  REQUEST_BODY_STREAM,
  type UpstreamAttempt,
  type UpstreamHandler,
} from '../upstream/contract.ts';
import { isTlsError, upstreamTlsError } from '../upstream/tls-options.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import * as tls from '../util/node-tls.ts';
import { acceptValue, switchesToWebSocket } from '../websocket/handshake.ts';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder, type ChunkSink } from './chunked.ts';
import { parseTrailerSection } from './fields.ts';
import {
  findHeadEnd,
  HEAD_INCOMPLETE,
  type HeadLimits,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from './parse-head.ts';
import { buildEditedHead, buildHead, buildHeadFromRaw } from './serialize.ts';
import type { Pool } from './upstream-pool.ts';

const ST_CONNECTING = 0;
const ST_IDLE = 1;
const ST_ACTIVE = 2;
const ST_CLOSED = 3;

const PH_WAIT = 0;
const PH_HEAD = 1;
const PH_BODY = 2;
const PH_DONE = 3;

/** Largest body copied into the response head's buffer instead of being written separately. */
const INLINE_BODY_MAX = 16 * 1024;

/**
 * Size of the buffer each upstream connection reads into. It is reused from read to read (Node's
 * `onread`), so a response body costs no allocation per read unless the client is slower than the
 * upstream and a write is still queued (then the next read gets a fresh buffer).
 */
const READ_BUFFER_SIZE = 64 * 1024;

const CRLF = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = '0\r\n\r\n';

const RESPONSE_LIMITS: HeadLimits = { maxHeaderBytes: 65536, maxHeaderCount: 256, maxUriBytes: 0 };

export class UpstreamConnection implements Timed, ChunkSink, UpstreamAttempt {
  readonly http1 = true;
  readonly pool: Pool;
  readonly socket: net.Socket;
  private state = ST_CONNECTING;
  private phase = PH_WAIT;
  requester: UpstreamHandler | null;
  /** Requests completed on this connection (> 0 means a request now runs on a reused connection). */
  served = 0;
  deadline = 0;
  /** Bytes of the current response received so far. */
  responseBytes = 0;
  /** The current response allows the connection to be reused. */
  private keepAlive = true;
  private headRequest = false;
  private decodeChunked = false;
  private readonly head = new ResponseHead();
  private pending: Buffer | null = null;
  private scanFrom = 0;
  private framing = BODY_NONE;
  private remaining = 0;
  private chunked: ChunkedDecoder | null = null;
  private paused = false;
  private readBuffer: Buffer | null = null;
  /** Slices of the read buffer were handed to the requester during the current read. */
  private handedOut = false;
  /** The Sec-WebSocket-Key zproxy sent on a client's behalf (its 101 must answer it), else ''. */
  private websocketKey = '';
  /** send() corked the socket: the head waits for flush() (or the end of the body). */
  private corked = false;
  /** The request body is sent chunked by this connection (write frames, end writes the last chunk). */
  private chunkedRequest = false;
  /** send() sent a head whose body is not complete yet. */
  private requestOpen = false;
  /** The trailer section of the current (decoded) chunked response, until its end is reported. */
  private trailers: FieldSource | null = null;
  /** The last socket error (its code tells a TLS failure from a TCP one). */
  private error: NodeJS.ErrnoException | null = null;
  /** Opened for one Upgrade request: accepts 101, never pooled, not counted by the pool. */
  readonly upgrade: boolean;
  /** The 'data' listener of an upgrade connection (removed when the socket is handed over). */
  private onData: ((chunk: Buffer) => void) | null = null;

  constructor(pool: Pool, requester: UpstreamHandler, upgrade = false) {
    this.pool = pool;
    this.requester = requester;
    this.upgrade = upgrade;
    this.onConnect = this.onConnect.bind(this);
    this.onRead = this.onRead.bind(this);
    this.nextReadBuffer = this.nextReadBuffer.bind(this);
    this.onEnd = this.onEnd.bind(this);
    this.onError = this.onError.bind(this);
    this.onClose = this.onClose.bind(this);
    this.onDrain = this.onDrain.bind(this);
    // An upgrade connection reads with 'data' events, so that its socket can go on as a plain stream after
    // the 101; pooled connections read into their own reused buffer (`onread`).
    const onread = upgrade ? undefined : { buffer: this.nextReadBuffer, callback: this.onRead };
    let socket: net.Socket;
    if (pool.tls === null) {
      socket = net.connect({ host: pool.host, port: pool.port, noDelay: true, onread });
      socket.on('connect', this.onConnect);
    } else {
      // tls.connect takes `onread` like net.connect (the decrypted bytes land in our buffer); the
      // typings do not list it.
      socket = tls.connect({
        ...pool.tls.options,
        host: pool.host,
        port: pool.port,
        onread,
      } as tls.ConnectionOptions);
      socket.setNoDelay(true);
      socket.on('secureConnect', this.onConnect);
    }
    this.socket = socket;
    if (upgrade) {
      this.onData = (chunk: Buffer) => {
        this.onRead(chunk.length, chunk);
      };
      socket.on('data', this.onData);
    }
    socket.on('end', this.onEnd);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
    this.deadline = Date.now() + pool.settings.connectTimeoutMs;
    watchDeadline(this);
  }

  get idle(): boolean {
    return this.state === ST_IDLE;
  }

  get usable(): boolean {
    return this.state === ST_IDLE && !this.socket.destroyed;
  }

  /** True while the current response has started arriving (no retry possible after this). */
  get responseStarted(): boolean {
    return this.responseBytes > 0;
  }

  private onConnect(): void {
    if (this.state !== ST_CONNECTING) return;
    // The connect deadline was set when the connection was opened: what is left of it tells the time taken.
    this.pool.connectTime?.connected(this.pool.settings.connectTimeoutMs - (this.deadline - Date.now()));
    this.state = ST_ACTIVE;
    this.deadline = 0;
    const r = this.requester;
    if (r === null) {
      this.pool.release(this);
      return;
    }
    r.onUpstreamReady(this);
  }

  /** Takes the connection out of the idle stack for a new requester. */
  activate(requester: UpstreamHandler): void {
    this.state = ST_ACTIVE;
    this.requester = requester;
    this.deadline = 0;
  }

  /**
   * Starts a request: resets response parsing. `head` tells a HEAD request (the response has no body);
   * `decode` asks for chunked bodies to be decoded for the requester (HTTP/1.0 clients).
   */
  beginRequest(headRequest: boolean, decode: boolean): void {
    this.phase = PH_HEAD;
    this.headRequest = headRequest;
    this.decodeChunked = decode;
    this.responseBytes = 0;
    this.keepAlive = true;
    this.pending = null;
    this.scanFrom = 0;
    this.trailers = null;
    this.chunkedRequest = false;
    this.requestOpen = false;
  }

  /**
   * Sends a request head rendered from the forwarding decisions: the client's field lines copied as they
   * came when they arrived over HTTP/1.1 (the request line too when it is unchanged), else written as
   * lines; then zproxy's fields and the framing. A body of unknown length is sent chunked (write() frames
   * each piece, end() writes the last chunk with the trailers).
   */
  send(req: ProxyRequest): void {
    this.beginRequest(req.headRequest, req.decodeResponse);
    const fields = req.fields!;
    const fwd = req.forwarded;
    const edits = req.edits;
    const body = req.body;
    let dropMask = fwd.dropMask;
    const websocket = req.websocket;
    this.websocketKey = websocket === 'forward' ? '' : websocket;
    if (websocket === 'forward') dropMask &= ~UPGRADE_BIT;
    const chunked = body === REQUEST_BODY_CHUNKED || body === REQUEST_BODY_STREAM;
    if (chunked) dropMask |= CONTENT_LENGTH_BIT;
    const rawHead = fields instanceof RequestHead;
    const lines = headLines.clear();
    // A request that did not arrive over HTTP/1.1: its start line and kept fields are written as lines too.
    if (!rawHead) {
      lines.add(req.method).add(' ').add(req.path).add(' HTTP/1.1\r\n');
      addKeptLines(lines, fields, dropMask, edits);
    }
    addRequestLines(lines, fwd, edits);
    if (websocket === 'forward') lines.add('Connection: Upgrade\r\n');
    else if (websocket !== '') {
      lines
        .add('Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ')
        .add(websocket)
        .add('\r\n');
    }
    lines.add(chunked ? 'Transfer-Encoding: chunked\r\n\r\n' : '\r\n');
    this.chunkedRequest = body === REQUEST_BODY_STREAM;
    this.requestOpen = body !== REQUEST_BODY_NONE;
    const socket = this.socket;
    if (this.requestOpen) {
      socket.cork();
      this.corked = true;
    }
    if (rawHead) {
      const raw = req.rawLine;
      const line = raw ? '' : `${req.method} ${req.path} HTTP/1.1\r\n`;
      const from = raw ? fields.start : 0;
      const to = raw ? fields.fieldsStart : 0;
      socket.write(
        edits === null
          ? raw
            ? buildHeadFromRaw('', fields, from, to, dropMask, lines)
            : buildHead(line, fields, dropMask, lines)
          : buildEditedHead(line, fields, from, to, dropMask, edits.dropped, lines),
      );
    } else socket.write(lines.toBuffer());
    if (!this.requestOpen) this.requestSent();
  }

  /** Sends the head and the body bytes written since send() in one write. */
  flush(): void {
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
  }

  /**
   * Writes request bytes, a Buffer or a string of byte values (latin1: written from the string by Node's
   * native stream code, without a Buffer); false when the socket buffer is full (wait for the requester's
   * resume). A body of unknown length (send) is framed as one chunk per write.
   */
  write(data: Buffer | string): boolean {
    const socket = this.socket;
    if (typeof data === 'string') return socket.write(data, 'latin1');
    if (!this.chunkedRequest) return socket.write(data);
    if (data.length === 0) return true;
    const corked = this.corked;
    if (!corked) socket.cork();
    socket.write(`${data.length.toString(16)}\r\n`, 'latin1');
    socket.write(data);
    const ok = socket.write(CRLF);
    if (!corked) socket.uncork();
    return ok;
  }

  /** The request body is complete (the last chunk, with the trailers, when it is sent chunked). */
  end(trailers: FieldSource | null): void {
    if (!this.requestOpen) return;
    this.requestOpen = false;
    if (this.chunkedRequest) {
      this.socket.write(trailers === null ? LAST_CHUNK : `0\r\n${http1TrailerLines(trailers)}\r\n`, 'latin1');
    }
    this.flush();
    this.requestSent();
  }

  /** The response is complete: back to the pool, unless the request was not sent whole (closed). */
  release(): void {
    if (this.requestOpen) this.destroy();
    else this.pool.release(this);
  }

  /** The handler keeps the response head: it gets a buffer of its own (the read buffer is reused). */
  keepHead(): void {
    const head = this.head;
    head.buf = Buffer.from(head.buf);
  }

  /** HTTP/1.1 has no stream resets. */
  get resetCode(): number {
    return 0;
  }

  /** The request has been sent completely: start the response-header timeout. */
  requestSent(): void {
    if (this.phase === PH_HEAD && this.responseBytes === 0) {
      this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
    }
  }

  pause(): void {
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** 'host:port' of the target. */
  get authority(): string {
    return this.pool.authority;
  }

  /** Abandons the connection (client went away, request failed): never reused. */
  cancel(): void {
    this.destroy();
  }

  /** Abandons the connection (client went away, request failed): never reused. */
  destroy(): void {
    this.requester = null;
    if (this.state !== ST_CLOSED) this.socket.destroy();
  }

  /** Puts the connection back into the idle state after a complete exchange. */
  markIdle(): void {
    this.state = ST_IDLE;
    this.requester = null;
    this.phase = PH_WAIT;
    this.resume();
    this.deadline = Date.now() + this.pool.settings.idleTimeoutMs;
  }

  /** The finished exchange left the connection in a reusable state. */
  get reusable(): boolean {
    return this.phase === PH_DONE && this.keepAlive && this.state === ST_ACTIVE && !this.socket.destroyed;
  }

  onDeadline(): void {
    if (this.state === ST_CLOSED) return;
    if (this.state === ST_CONNECTING) {
      this.failBeforeHead(new ZpError('ZP_ERR_UPSTREAM_TIMEOUT', 'Connecting to the upstream timed out'));
    } else if (this.state === ST_ACTIVE) {
      if (this.phase === PH_HEAD) {
        this.failBeforeHead(
          new ZpError('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream did not send a response in time'),
        );
      } else if (this.phase === PH_BODY) {
        const r = this.requester;
        this.destroy();
        r?.onResponseAborted(new ZpError('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream stopped sending the body'));
        return;
      }
    }
    this.destroy();
  }

  private failBeforeHead(error: ZpError): void {
    const r = this.requester;
    this.requester = null;
    this.socket.destroy();
    r?.onUpstreamError(error, this);
  }

  private nextReadBuffer(): Buffer {
    let buf = this.readBuffer;
    if (buf === null) {
      buf = Buffer.allocUnsafeSlow(READ_BUFFER_SIZE);
      this.readBuffer = buf;
    }
    return buf;
  }

  /** Node's onread callback: `n` bytes were read into `buf`. Returning false pauses reading. */
  private onRead(n: number, buf: Buffer): boolean {
    if (this.state !== ST_ACTIVE || this.phase === PH_WAIT || this.phase === PH_DONE) {
      // Bytes nobody asked for: the connection is no longer in a known state.
      this.destroy();
      return false;
    }
    const r = this.requester;
    this.responseBytes += n;
    const chunk = buf.subarray(0, n);
    if (this.phase === PH_HEAD) this.readHead(chunk);
    else this.readBody(chunk, 0);
    // Output still queued may point into the read buffer: lend it out and read into a new one.
    if (this.handedOut) {
      this.handedOut = false;
      if (r?.holdsResponseBytes()) this.readBuffer = null;
    }
    return !this.paused;
  }

  private readHead(chunk: Buffer): void {
    let buf: Buffer;
    if (this.pending === null) buf = chunk;
    else {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    for (;;) {
      const head = this.head;
      // Parse at once on a fresh head; after an incomplete one, only when a blank line has arrived.
      const end =
        this.scanFrom === 0 || findHeadEnd(buf, this.scanFrom) !== -1
          ? parseResponseHead(buf, 0, buf.length, RESPONSE_LIMITS, head)
          : HEAD_INCOMPLETE;
      if (end === HEAD_INCOMPLETE) {
        if (buf.length > RESPONSE_LIMITS.maxHeaderBytes) {
          this.failBeforeHead(new ZpError('ZP_ERR_UPSTREAM_BAD_RESPONSE', 'Response head too large'));
          return;
        }
        this.scanFrom = buf.length > 4 ? buf.length - 3 : 1;
        // A copy: the read buffer is reused for the next read.
        this.pending = Buffer.from(buf);
        return;
      }
      if (end < 0) {
        this.failBeforeHead(
          new ZpError('ZP_ERR_UPSTREAM_BAD_RESPONSE', `Invalid response from the upstream: ${head.error}`),
        );
        return;
      }
      this.scanFrom = 0;
      const status = head.status;
      if (status < 200) {
        if (status === 101) {
          if (this.upgrade) {
            this.handOver(head, buf, end);
            return;
          }
          this.failBeforeHead(
            new ZpError('ZP_ERR_UPSTREAM_BAD_RESPONSE', 'Unexpected 101 from the upstream'),
          );
          return;
        }
        // Interim responses (100, 103, ...) are consumed here; zproxy answers Expect itself.
        if (end === buf.length) return;
        buf = buf.subarray(end);
        continue;
      }
      this.startBody(head, buf, end);
      return;
    }
  }

  /** A 101 on an upgrade connection: the socket leaves this connection for the requester's tunnel. */
  private handOver(head: ResponseHead, buf: Buffer, rest: number): void {
    const key = this.websocketKey;
    if (
      !switchesToWebSocket(head) ||
      (key !== '' && head.get('sec-websocket-accept')?.trim() !== acceptValue(key))
    ) {
      this.failBeforeHead(
        new ZpError(
          'ZP_ERR_UPSTREAM_BAD_RESPONSE',
          key === ''
            ? 'The upstream answered 101 without switching to websocket'
            : 'The upstream answered 101 without switching to websocket for this handshake',
        ),
      );
      return;
    }
    const socket = this.socket;
    socket.pause();
    socket.off('data', this.onData!);
    socket.off('connect', this.onConnect);
    socket.off('secureConnect', this.onConnect);
    socket.off('end', this.onEnd);
    socket.off('error', this.onError);
    socket.off('close', this.onClose);
    socket.off('drain', this.onDrain);
    socket.on('error', noop);
    this.state = ST_CLOSED;
    this.phase = PH_DONE;
    this.deadline = 0;
    unwatchDeadline(this);
    const r = this.requester;
    this.requester = null;
    if (r?.onUpstreamSwitched === undefined) socket.destroy();
    else r.onUpstreamSwitched(this, head, socket, rest < buf.length ? buf.subarray(rest) : null);
  }

  private startBody(head: ResponseHead, buf: Buffer, bodyStart: number): void {
    this.keepAlive = head.versionMinor === 1 ? !head.connectionClose : head.connectionKeepAlive;
    const status = head.status;
    let framing: number;
    if (this.headRequest || status === 204 || status === 304) framing = BODY_NONE;
    else if (head.chunked) framing = BODY_CHUNKED;
    else if (head.contentLength >= 0) framing = head.contentLength === 0 ? BODY_NONE : BODY_LENGTH;
    else {
      framing = BODY_UNTIL_END;
      this.keepAlive = false;
    }
    this.framing = framing;
    this.phase = PH_BODY;
    // While the body streams, the response-header timeout becomes an idle-read timeout.
    this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
    if (framing === BODY_LENGTH) this.remaining = head.contentLength;
    else if (framing === BODY_CHUNKED) {
      if (this.chunked === null) this.chunked = new ChunkedDecoder();
      this.chunked.reset(this.decodeChunked ? this : null);
    }
    // A small body that arrived whole with the head goes out with the head, in one write.
    let inlineEnd = bodyStart;
    if (
      framing === BODY_LENGTH &&
      this.remaining <= INLINE_BODY_MAX &&
      buf.length - bodyStart >= this.remaining
    ) {
      inlineEnd = bodyStart + this.remaining;
      this.remaining = 0;
    }
    const r = this.requester!;
    r.onResponseHead(this, head, framing, buf, bodyStart, inlineEnd);
    if (this.requester !== r) return; // the requester gave up while handling the head
    if (framing === BODY_NONE || (framing === BODY_LENGTH && this.remaining === 0)) {
      if (inlineEnd < buf.length) this.keepAlive = false; // bytes after the response
      this.finish();
      return;
    }
    if (bodyStart < buf.length) this.readBody(buf, bodyStart);
  }

  private readBody(buf: Buffer, start: number): void {
    const r = this.requester;
    if (r === null) return;
    this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
    this.handedOut = true;
    const end = buf.length;
    let more = true;
    switch (this.framing) {
      case BODY_LENGTH: {
        const n = Math.min(end - start, this.remaining);
        this.remaining -= n;
        more = r.onResponseBody(buf, start, start + n);
        if (this.remaining === 0) {
          if (start + n < end) this.keepAlive = false; // the upstream sent more than it announced
          this.finish();
          return;
        }
        break;
      }
      case BODY_CHUNKED: {
        const decoder = this.chunked!;
        const stop = decoder.feed(buf, start, end);
        if (stop === CHUNKED_ERROR) {
          this.destroy();
          r.onResponseAborted(
            new ZpError(
              'ZP_ERR_UPSTREAM_BAD_RESPONSE',
              `Invalid chunked body from the upstream: ${decoder.error}`,
            ),
          );
          return;
        }
        const bodyEnd = stop === CHUNKED_MORE ? end : stop;
        if (!this.decodeChunked) more = r.onResponseBody(buf, start, bodyEnd);
        if (stop !== CHUNKED_MORE) {
          if (bodyEnd < end) this.keepAlive = false;
          this.finish();
          return;
        }
        break;
      }
      default:
        more = r.onResponseBody(buf, start, end);
    }
    if (!more) this.pause();
  }

  /** ChunkSink: decoded data (chunked decoding was asked for). */
  chunkData(buf: Buffer, start: number, end: number): void {
    const r = this.requester;
    if (r !== null && !r.onResponseBody(buf, start, end)) this.pause();
  }

  /** ChunkSink: the trailer section of a decoded chunked response (handed over with its end). */
  chunkTrailers(fields: string): void {
    this.trailers = parseTrailerSection(fields);
  }

  private finish(): void {
    this.phase = PH_DONE;
    this.deadline = 0;
    this.served++;
    const r = this.requester;
    const trailers = this.trailers;
    this.trailers = null;
    if (r !== null) r.onResponseEnd(this, trailers);
  }

  private onEnd(): void {
    // The upstream finished sending. For a close-delimited body this is its end.
    if (this.state === ST_ACTIVE && this.phase === PH_BODY && this.framing === BODY_UNTIL_END) {
      this.finish();
    }
    this.socket.destroy();
  }

  private onError(err: NodeJS.ErrnoException): void {
    // 'close' follows and carries the consequences.
    this.error = err;
  }

  /** A TLS failure (handshake, verification, alert) as a 502 naming the reason, logged once. */
  private tlsFailure(): ZpError | null {
    const err = this.error;
    if (this.pool.tls === null || err === null || !isTlsError(err)) return null;
    const error = upstreamTlsError(err, this.pool.authority);
    this.pool.log.logger?.warn(
      { upstream: this.pool.authority, code: err.code, reason: err.message },
      'upstream TLS failure',
    );
    return error;
  }

  private onDrain(): void {
    this.requester?.onUpstreamDrain();
  }

  private onClose(): void {
    const wasActive = this.state === ST_ACTIVE || this.state === ST_CONNECTING;
    const connecting = this.state === ST_CONNECTING;
    this.state = ST_CLOSED;
    this.deadline = 0;
    unwatchDeadline(this);
    if (!this.upgrade) this.pool.remove(this);
    const r = this.requester;
    this.requester = null;
    if (r === null || !wasActive) return;
    if (connecting) {
      r.onUpstreamError(this.tlsFailure() ?? new ZpError('ZP_ERR_UPSTREAM_CONNECT'), null);
    } else if (this.phase === PH_HEAD) {
      // TLS 1.3: a server that refuses the client certificate says so after the handshake.
      const tlsError = this.tlsFailure();
      if (tlsError !== null) {
        r.onUpstreamError(tlsError, this);
        return;
      }
      r.onUpstreamError(
        new ZpError('ZP_ERR_UPSTREAM_RESET', undefined, {
          retryable: this.served > 0 && this.responseBytes === 0,
        }),
        this,
      );
    } else if (this.phase === PH_BODY) {
      r.onResponseAborted(
        new ZpError('ZP_ERR_UPSTREAM_RESET', 'The upstream closed the connection mid-body'),
      );
    }
  }
}

function noop(): void {}
