/**
 * One client connection speaking HTTP/1.1 (or 1.0): the transport half of each of its exchanges. Requests
 * are handled one at a time in arrival order (pipelined requests wait in the input buffer, so responses are
 * always in request order). For each request it parses the head strictly, hands it to the request flow
 * (src/proxy/flow.ts) as a Downstream, feeds the flow the body when asked (Content-Length counted,
 * chunked framing validated byte by byte, passed as it came or decoded), and frames what the flow answers:
 * a forwarded head (the client's protocol, keep-alive, chunked or close-delimited bodies, HSTS), body
 * bytes with backpressure both ways, local answers, aborts, and the 101 that hands the socket to a
 * WebSocket tunnel. It also hands a connection that opened with the HTTP/2 preface to the HTTP/2 engine.
 *
 * The socket's listeners are shared by all connections (no function per connection); bodies are forwarded as
 * the buffers that arrived.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { ErrorCode } from '../errors.ts';
import { Exchange } from '../exchange.ts';
import { FIELD_TE, type FieldSource, joinedValues, type MessageEdits } from '../http/fields.ts';
import {
  acceptsTrailers,
  addKeptLines,
  addResponseLines,
  ForwardedResponse,
  type HeadLines,
  headLines,
  http1TrailerLines,
  statusForbidsLength,
  UPGRADE_BIT,
} from '../http/forwarding.ts';
import type { FilterRequest } from '../pipeline/contract.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { FilterRequestView } from '../pipeline/filter-exchange.ts';
import type { Downstream, HandshakeRefusal } from '../proxy/downstream.ts';
import { ProxyFlow } from '../proxy/flow.ts';
import { normalizePath } from '../router/normalize-path.ts';
import type { Runtime } from '../runtime/compile.ts';
import {
  BODY_CHUNKED,
  BODY_LENGTH,
  BODY_NONE,
  ProxyRequest,
  REQUEST_BODY_CHUNKED,
  REQUEST_BODY_LENGTH,
  REQUEST_BODY_NONE,
  type UpstreamResponseHead,
} from '../upstream/contract.ts';
import { plainAddress } from '../util/address.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { SlotSet } from '../util/slot-set.ts';
import { checkUpgradeRequest, isWebSocketUpgrade } from '../websocket/handshake.ts';
import type { TunnelRegistry } from '../websocket/registry.ts';
import { Tunnel } from '../websocket/tunnel.ts';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder, type ChunkSink } from './chunked.ts';
import { parseTrailerSection } from './fields.ts';
import { findHeadEnd, HEAD_INCOMPLETE, parseRequestHead, RequestHead, ResponseHead } from './parse-head.ts';
import { buildEditedHead, buildHeadFromRaw } from './serialize.ts';
import { STATUS_TEXT, statusLine } from './status-text.ts';

/** What a listener shares with its connections. `runtime` is swapped on reload. */
export interface ConnectionContext {
  runtime: Runtime;
  readonly connections: SlotSet<DownstreamConnection>;
  shuttingDown: boolean;
  /** Called when a connection has closed (used to finish a graceful shutdown). */
  onConnectionClosed(): void;
  /**
   * Gives back an accepted connection's place in the count of open connections (`max_connections`). A
   * connection constructed as `counted` calls it when its socket closes, instead of the listener adding a
   * `close` listener of its own; it is called without a receiver and may be a socket's listener itself.
   */
  readonly releaseConnection: () => void;
  /**
   * Takes over a connection that opened with the HTTP/2 preface (`buffered` holds what was read), or null
   * when HTTP/2 is not enabled.
   */
  http2: ((socket: Socket, buffered: Buffer) => void) | null;
  /** False when `http1` is not in `protocols`: HTTP/1.x requests are answered 505 and nothing is forwarded. */
  http1: boolean;
  /**
   * The process's WebSocket tunnels; absent or null when `websocket` is not in `protocols` (upgrade
   * requests are then answered 400 and nothing is forwarded).
   */
  tunnels?: TunnelRegistry | null;
}

/** What one listener decides for the connections it accepts (see ProxyServer). */
export interface ListenerPolicy {
  /**
   * On TLS connections: the `Strict-Transport-Security` value (`max-age=...`) sent with every response,
   * replacing the upstream's; null when `tls.hsts` is off.
   */
  hsts: string | null;
  /**
   * On plain connections of a `redirect_https` listener: what follows the host in the redirect's
   * Location (":8443", or "" for 443); null when requests are served.
   */
  redirectPort: string | null;
}

export const DEFAULT_LISTENER_POLICY: ListenerPolicy = Object.freeze({ hsts: null, redirectPort: null });

/** On a graceful stop, how long a connection that has sent nothing yet may take to send its request. */
const FRESH_DRAIN_MS = 150;

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
/** Bytes of its request line, `PRI * HTTP/2.0` and CRLF: what says a client speaks HTTP/2. */
const HTTP2_PREFACE_LINE = 16;

const ST_HEAD = 0;
const ST_FORWARD = 1;
const ST_CLOSING = 2;
const ST_CLOSED = 3;
/** The connection was switched to WebSocket: a Tunnel owns the socket now (this object only keeps count). */
const ST_TUNNEL = 4;

const REQ_NONE = 0;
const REQ_LENGTH = 1;
const REQ_CHUNKED = 2;

/** How the response body is framed toward the client. */
const OUT_NONE = 0;
const OUT_PASS = 1;
const OUT_RECHUNK = 2;
const OUT_UNTIL_CLOSE = 3;

/** Input bytes held for pipelined requests before reading pauses. */
const PIPELINE_HIGH_WATER = 64 * 1024;
/** After answering and closing, keep discarding client bytes this long so the answer is not lost to RST. */
const LINGER_MS = 2000;

const CONTINUE_100 = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');

function errorCodeForStatus(status: number): ErrorCode {
  switch (status) {
    case 414:
      return 'ZP_ERR_URI_TOO_LONG';
    case 417:
      return 'ZP_ERR_EXPECTATION_FAILED';
    case 431:
      return 'ZP_ERR_HEADERS_TOO_LARGE';
    case 501:
      return 'ZP_ERR_NOT_IMPLEMENTED';
    case 505:
      return 'ZP_ERR_VERSION_NOT_SUPPORTED';
    default:
      return 'ZP_ERR_BAD_REQUEST';
  }
}

export class DownstreamConnection implements Timed, Downstream, ChunkSink {
  readonly socket: Socket;
  private readonly ctx: ConnectionContext;
  readonly clientAddress: string;
  /** 'https' on a TLS connection, else 'http' (X-Forwarded-Proto). */
  readonly scheme: string;
  /** The Strict-Transport-Security value of this connection's listener (TLS with `tls.hsts`), or null. */
  readonly hsts: string | null;
  /** Added to every local answer's head (HSTS on TLS connections), or ''. */
  private readonly responseExtra: string;
  /** Port suffix of the https redirect every request gets, or null (see ListenerPolicy). */
  private readonly redirectPort: string | null;
  private state = ST_HEAD;
  deadline = 0;
  /** No request has been read on this connection yet (an HTTP/2 preface may still arrive). */
  private fresh = true;

  /** Unparsed input: the start of the next head, body bytes not yet forwarded, pipelined requests. */
  private input: Buffer | null = null;
  private scanFrom = 0;
  private readonly head = new RequestHead();
  private runtime: Runtime;
  private exchange: Exchange | null = null;
  /** The request flow of the exchange in progress. */
  private flow: ProxyFlow | null = null;

  private reqBody = REQ_NONE;
  private reqRemaining = 0;
  private reqDone = true;
  private reqChunked: ChunkedDecoder | null = null;
  /** The flow asked for the request body (resumeRequest): bytes go to it as they arrive. */
  private bodyFlowing = false;
  /** The chunked request body is handed over decoded (its data), not as it came. */
  private decodeBody = false;
  /** The trailer section of a decoded chunked request body. */
  private reqTrailers: FieldSource | null = null;

  private keepAlive = true;
  /**
   * The client said this request is its last (`Connection: close`, or HTTP/1.0 without keep-alive): it
   * sends nothing after it (RFC 9112 §9.6), so the connection may be closed at once after the response.
   */
  private clientCloses = false;
  /** TCP_NODELAY is set on the socket (see send). */
  private noDelay: boolean;
  /** Something was written on this connection already (see send). */
  private wrote = false;
  private responseHeadSent = false;
  private out = OUT_NONE;
  private readingPaused = false;
  /** The next request waits until the client has read what was written. */
  private waitingDrain = false;
  /** True while parseNext runs (a request answered locally inside it must not re-enter it). */
  private parsing = false;
  /** The flow of the last exchange, reused for the next one when it can be (ProxyFlow.reuse). */
  private spareFlow: ProxyFlow | null = null;
  /** The policy of the listener that accepted the connection (a reload that removes it closes the connection). */
  readonly listener: ListenerPolicy;
  /** What the exchanges' flows fill and read, reused: one exchange at a time. */
  private readonly proxyRequest = new ProxyRequest();
  private readonly forwardedResponse = new ForwardedResponse();
  /** Filters' view of the request head's fields (one per connection: the head object is reused). */
  private requestReader: HeadFieldReader | null = null;
  /** This connection's close releases its place in the count of open connections (ctx.releaseConnection). */
  private readonly counted: boolean;
  /** The `drain` listener is on the socket: added by the first write the socket did not take whole. */
  private drainListening = false;

  /**
   * `counted`: the socket is an accepted one whose place in the count of open connections nothing else
   * gives back; the connection releases it when the socket closes (or hands that to the socket when it
   * hands the socket over).
   */
  constructor(
    socket: Socket,
    ctx: ConnectionContext,
    policy: ListenerPolicy = DEFAULT_LISTENER_POLICY,
    counted = false,
  ) {
    this.socket = socket;
    this.counted = counted;
    this.ctx = ctx;
    this.listener = policy;
    this.runtime = ctx.runtime;
    this.clientAddress = plainAddress(socket.remoteAddress);
    const encrypted = (socket as TLSSocket).encrypted === true;
    this.scheme = encrypted ? 'https' : 'http';
    const hsts = encrypted ? policy.hsts : null;
    this.hsts = hsts;
    this.responseExtra = hsts === null ? '' : `Strict-Transport-Security: ${hsts}\r\n`;
    this.redirectPort = encrypted ? null : policy.redirectPort;
    (socket as OwnedSocket)[OWNER] = this;
    // A TLS connection has had several writes (its handshake) and the listener set TCP_NODELAY on it.
    this.noDelay = encrypted;
    socket.on('data', socketData);
    socket.on('end', socketEnd);
    socket.on('error', noop);
    socket.on('close', socketClose);
    ctx.connections.add(this);
    this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    watchDeadline(this);
  }

  /** True when no exchange is in progress (a graceful shutdown may close it now). */
  get idle(): boolean {
    return this.state === ST_HEAD && this.input === null;
  }

  /** Graceful shutdown: close now if idle, otherwise after the exchange in progress. */
  shutdown(): void {
    if (this.state === ST_HEAD) {
      if (this.input !== null) return;
      if (this.fresh) {
        // Accepted just now, its first request may be on its way: it gets a moment to arrive and is
        // answered (with Connection: close) rather than lost to a close.
        this.deadline = Math.min(this.deadline, Date.now() + FRESH_DRAIN_MS);
      } else this.closeGracefully();
      return;
    }
    this.keepAlive = false;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- input

  onData(chunk: Buffer): void {
    const state = this.state;
    if (state === ST_FORWARD && !this.reqDone && this.bodyFlowing && this.input === null) {
      this.forwardBody(chunk);
      return;
    }
    if (state === ST_CLOSING || state === ST_CLOSED) return; // lingering close: discard
    this.input = this.input === null ? chunk : Buffer.concat([this.input, chunk]);
    if (state === ST_HEAD) {
      if (!this.waitingDrain) this.parseNext();
    } else if (this.input.length > PIPELINE_HIGH_WATER) {
      this.pauseReading();
    }
  }

  private parseNext(): void {
    // A request answered locally (404, 405, ...) finishes inside startExchange and calls back here; the
    // loop in parseLoop goes on with the next pipelined request instead of recursing once per request
    // (thousands of pipelined 404s in one read would otherwise overflow the stack and kill the process).
    if (this.parsing) return;
    this.parsing = true;
    try {
      this.parseLoop();
    } finally {
      this.parsing = false;
    }
  }

  private parseLoop(): void {
    while (this.state === ST_HEAD && this.input !== null && !this.waitingDrain) {
      const buf = this.input;
      const limits = this.runtime.headLimits;
      // Most heads arrive whole in one read: parse at once. Once a head is known to be incomplete,
      // re-parse only when a blank line has arrived after what was already scanned, so a head trickled
      // byte by byte costs a linear scan, not a parse per byte. (Empty lines before the request-line are
      // skipped by the parser, RFC 9112 §2.2, and then simply leave the head incomplete.)
      const end =
        this.scanFrom === 0 || findHeadEnd(buf, this.scanFrom) !== -1
          ? parseRequestHead(buf, 0, buf.length, limits, this.head)
          : HEAD_INCOMPLETE;
      if (end === HEAD_INCOMPLETE) {
        if (buf.length > limits.maxHeaderBytes) {
          // Too big to be a head: 414 when the request-target alone is over its limit, else 431.
          const r = parseRequestHead(buf, 0, buf.length, limits, this.head);
          if (r !== -414) this.head.error = 'head larger than limits.max_header_bytes';
          this.rejectHead(r === -414 ? -414 : -431);
          return;
        }
        this.scanFrom = buf.length > 4 ? buf.length - 3 : 1;
        return;
      }
      this.scanFrom = 0;
      if (end < 0) {
        // The HTTP/2 preface reads as a malformed HTTP/1 head: checked only then, so HTTP/1 pays nothing.
        // (A redirect_https listener serves plain HTTP/1 only: its h2c preface is refused like a bad request.)
        if (
          this.fresh &&
          this.ctx.http2 !== null &&
          buf[0] === 0x50 &&
          this.redirectPort === null &&
          this.handOverHttp2(buf)
        )
          return;
        this.rejectHead(end);
        return;
      }
      this.fresh = false;
      this.startExchange(buf, end);
    }
  }

  /**
   * Gives the connection to the HTTP/2 server when it opened with the preface's request line
   * (`PRI * HTTP/2.0`): the HTTP/2 engine checks the rest, and answers a preface that goes wrong after it
   * with GOAWAY PROTOCOL_ERROR (RFC 9113 §3.4) rather than this engine's 400.
   */
  private handOverHttp2(buf: Buffer): boolean {
    const line = Math.min(buf.length, HTTP2_PREFACE_LINE);
    if (buf.compare(HTTP2_PREFACE, 0, line, 0, line) !== 0) return false;
    const n = Math.min(buf.length, HTTP2_PREFACE.length);
    if (buf.length < HTTP2_PREFACE.length && buf.compare(HTTP2_PREFACE, 0, n, 0, n) === 0) {
      // Only part of the preface so far: wait for the rest.
      this.scanFrom = buf.length > 4 ? buf.length - 3 : 1;
      return true;
    }
    const socket = this.socket;
    socket.off('data', socketData);
    socket.off('end', socketEnd);
    socket.off('close', socketClose);
    if (this.drainListening) socket.off('drain', socketDrain);
    // The HTTP/2 engine keeps the socket: its close gives the connection's place back from now on.
    if (this.counted) socket.on('close', this.ctx.releaseConnection);
    (socket as OwnedSocket)[OWNER] = null;
    socket.pause();
    this.state = ST_CLOSED;
    this.input = null;
    unwatchDeadline(this);
    this.ctx.connections.delete(this);
    this.ctx.http2!(socket, buf);
    return true;
  }

  /** A request head that cannot be parsed: answer with its status and close. */
  private rejectHead(negativeStatus: number): void {
    const head = this.head;
    const version = head.versionMinor === 0 ? '1.0' : '1.1';
    const code = errorCodeForStatus(-negativeStatus);
    this.rejectInput(code, head.method, head.target, head.host ?? '', version, head.error || undefined);
  }

  /** Answers input that never became a forwardable request (malformed, too slow), then closes. */
  private rejectInput(
    code: ErrorCode,
    method: string,
    target: string,
    host: string,
    version: string,
    message?: string,
  ): void {
    const ex = new Exchange(performance.now(), method, target, host, version, this.clientAddress);
    ex.bytesIn = this.input === null ? 0 : this.input.length;
    this.input = null;
    this.keepAlive = false;
    this.reqDone = false;
    this.begin(ex).onRequestError(code, message);
  }

  /** The exchange in progress gets its flow (reading the connection's fields from here on). */
  private begin(ex: Exchange): ProxyFlow {
    this.exchange = ex;
    this.state = ST_FORWARD;
    this.deadline = 0;
    this.responseHeadSent = false;
    this.bodyFlowing = false;
    this.out = OUT_NONE;
    // The previous exchange's flow takes this one when nothing can call it any more (the common case).
    const spare = this.spareFlow;
    let flow: ProxyFlow;
    if (spare?.reuse(ex)) flow = spare;
    else {
      flow = new ProxyFlow(this.ctx, this, ex, this.proxyRequest, this.forwardedResponse);
      this.spareFlow = flow;
    }
    this.flow = flow;
    return flow;
  }

  private startExchange(buf: Buffer, headEnd: number): void {
    const rt = this.ctx.runtime;
    this.runtime = rt;
    const head = this.head;
    const minor = head.versionMinor;
    const ex = new Exchange(
      performance.now(),
      head.method,
      head.target,
      head.host ?? '',
      minor === 1 ? '1.1' : '1.0',
      this.clientAddress,
    );
    ex.bytesIn = headEnd;
    this.input = headEnd < buf.length ? buf.subarray(headEnd) : null;
    const clientCloses = minor === 1 ? head.connectionClose : !head.connectionKeepAlive;
    this.clientCloses = clientCloses;
    this.keepAlive = !this.ctx.shuttingDown && !clientCloses;
    let body = REQUEST_BODY_NONE;
    if (head.chunked) {
      this.reqBody = REQ_CHUNKED;
      this.reqDone = false;
      body = REQUEST_BODY_CHUNKED;
      if (this.reqChunked === null) this.reqChunked = new ChunkedDecoder();
      this.reqChunked.reset();
    } else if (head.contentLength > 0) {
      this.reqBody = REQ_LENGTH;
      this.reqRemaining = head.contentLength;
      this.reqDone = false;
      body = REQUEST_BODY_LENGTH;
    } else {
      this.reqBody = REQ_NONE;
      this.reqDone = true;
    }
    this.decodeBody = false;
    this.reqTrailers = null;
    const flow = this.begin(ex);
    if (!this.ctx.http1) {
      flow.onRequestError('ZP_ERR_VERSION_NOT_SUPPORTED', 'HTTP/1.x is not enabled; use HTTP/2');
      return;
    }

    // The request-target: origin-form, or absolute-form whose authority replaces Host (RFC 9112 §3.2.2).
    const target = head.target;
    let rawPath: string;
    let query = '';
    let rawLineUsable = minor === 1;
    if (target.charCodeAt(0) === 0x2f) {
      const q = target.indexOf('?');
      rawPath = q === -1 ? target : target.slice(0, q);
      if (q !== -1) query = target.slice(q);
    } else {
      const abs = /^http:\/\/([^/?#@]+)([^#]*)$/i.exec(target);
      if (abs === null) {
        flow.onRequestError('ZP_ERR_BAD_REQUEST', 'Unsupported request-target form');
        return;
      }
      ex.host = abs[1]!;
      const rest = abs[2]!;
      const q = rest.indexOf('?');
      rawPath = q === -1 ? rest : rest.slice(0, q);
      if (rawPath === '') rawPath = '/';
      if (q !== -1) query = rest.slice(q);
      rawLineUsable = false;
    }
    const path = normalizePath(rawPath);
    if (path === null) {
      flow.onRequestError('ZP_ERR_BAD_REQUEST', 'Invalid request path');
      return;
    }
    ex.path = path;
    ex.query = query;
    if (this.redirectPort !== null) {
      this.redirectToHttps(flow, ex.host, target.charCodeAt(0) === 0x2f ? target : `${rawPath}${query}`);
      return;
    }
    flow.fieldsSource = head;
    flow.hostField = head.host;
    flow.requestBody = body;
    flow.requestTrailers = body === REQUEST_BODY_CHUNKED;
    flow.contentLength = head.contentLength;
    flow.rawTarget = rawLineUsable && path === rawPath;
    // WebSocket: the parser records `Connection: upgrade`, so any other request pays one flag test here.
    flow.websocket = head.connectionUpgrade && isWebSocketUpgrade(head);
    flow.start();
  }

  /**
   * A `redirect_https` listener answers every plain-HTTP request with a permanent redirect to the same
   * host (without its port) and target over https. 308 keeps the method and body on the redirected request.
   */
  private redirectToHttps(flow: ProxyFlow, host: string, target: string): void {
    if (host === '') {
      this.keepAlive = false;
      flow.onRequestError('ZP_ERR_BAD_REQUEST', 'A Host is required to redirect to https');
      return;
    }
    // The parser accepted Host as host[:port]; the port is dropped (an IPv6 literal keeps its brackets).
    const colon = host.lastIndexOf(':');
    const name = colon > host.lastIndexOf(']') ? host.slice(0, colon) : host;
    const location = `https://${name}${this.redirectPort}${target}`;
    flow.respondFromTransport(
      308,
      ['Content-Type', 'text/plain', 'Location', location],
      `Redirecting to ${location}\n`,
    );
  }

  // ---------------------------------------------------------------- request body (Downstream)

  get acceptsChunked(): boolean {
    return this.head.versionMinor === 1;
  }

  get responseStarted(): boolean {
    return this.responseHeadSent;
  }

  filterRequest(websocket: boolean): FilterRequest {
    this.requestReader ??= new HeadFieldReader(this.head);
    return new FilterRequestView(
      this.exchange!,
      this.head.method,
      this.scheme,
      websocket,
      this.requestReader,
    );
  }

  checkWebSocket(): HandshakeRefusal | null {
    return checkUpgradeRequest(this.head);
  }

  /**
   * The flow takes the request body from now on: `Expect: 100-continue` is answered, what arrived with
   * the head goes first, then reading resumes. `decode`: a chunked body is handed over as its data.
   */
  resumeRequest(decode: boolean): void {
    if (this.state !== ST_FORWARD || this.reqDone) return;
    if (!this.bodyFlowing) {
      this.bodyFlowing = true;
      if (decode && this.reqBody === REQ_CHUNKED) {
        this.decodeBody = true;
        this.reqChunked!.reset(this);
      }
      if (this.head.expectContinue && this.head.versionMinor === 1) this.send(CONTINUE_100);
    }
    const input = this.input;
    if (input !== null) {
      this.input = null;
      this.forwardBody(input);
      if (this.state !== ST_FORWARD || this.reqDone) return;
    } else this.deadline = Date.now() + this.runtime.requestBodyTimeoutMs;
    if (this.input === null) this.resumeReading();
  }

  pauseRequest(): void {
    this.pauseReading();
    // zproxy holds the body back (the upstream is slow to take it): the client is not late meanwhile.
    if (this.state === ST_FORWARD && !this.reqDone) this.deadline = 0;
  }

  /** Body bytes for the flow (content-length: as they arrived; chunked: as they arrived, or decoded). */
  private forwardBody(chunk: Buffer): void {
    const n = this.consumeBody(chunk);
    if (n < 0) return;
    const flow = this.flow!;
    this.exchange!.bytesIn += n;
    if (n > 0 && !this.decodeBody) flow.onRequestBody(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (n < chunk.length) {
      this.input = chunk.subarray(n);
      if (this.input.length > PIPELINE_HIGH_WATER) this.pauseReading();
    }
    if (this.reqDone) {
      this.deadline = 0;
      flow.onRequestEnd(this.reqTrailers);
    } else this.deadline = Date.now() + this.runtime.requestBodyTimeoutMs;
  }

  /** ChunkSink: decoded data of a chunked request body. */
  chunkData(buf: Buffer, start: number, end: number): void {
    if (end > start)
      this.flow!.onRequestBody(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** ChunkSink: the trailer section of a decoded chunked request body. */
  chunkTrailers(fields: string): void {
    this.reqTrailers = parseTrailerSection(fields);
  }

  /** Consumes request body bytes from buf[0, ...): returns how many belong to the body, or -1 on error. */
  private consumeBody(buf: Buffer): number {
    if (this.reqBody === REQ_LENGTH) {
      const n = Math.min(buf.length, this.reqRemaining);
      this.reqRemaining -= n;
      if (this.reqRemaining === 0) this.reqDone = true;
      return n;
    }
    const decoder = this.reqChunked!;
    const r = decoder.feed(buf, 0, buf.length);
    if (r === CHUNKED_ERROR) {
      this.failRequestBody('ZP_ERR_BAD_REQUEST', `Invalid chunked body: ${decoder.error}`);
      return -1;
    }
    const max = this.runtime.maxBodyBytes;
    if (max > 0 && decoder.dataBytes > max) {
      this.failRequestBody('ZP_ERR_BODY_TOO_LARGE');
      return -1;
    }
    if (r === CHUNKED_MORE) return buf.length;
    this.reqDone = true;
    return r;
  }

  private failRequestBody(code: ErrorCode, message?: string): void {
    this.keepAlive = false;
    this.flow!.onRequestError(code, message);
  }

  // ---------------------------------------------------------------- response (Downstream)

  respond(
    head: UpstreamResponseHead,
    framing: number,
    forwarded: ForwardedResponse,
    edits: MessageEdits | null,
    buf: Buffer,
    start: number,
    end: number,
  ): boolean {
    const ex = this.exchange!;
    const status = head.status;
    let headBuf: Buffer;
    if (head instanceof ResponseHead) {
      // Arrived over HTTP/1.1: the status line and the kept field lines are copied as they came.
      const suffix = headLines.clear();
      addResponseLines(suffix, forwarded, edits);
      this.responseFraming(framing, suffix);
      headBuf =
        edits === null
          ? buildHeadFromRaw(
              'HTTP/1.1 ',
              head,
              head.statusStart,
              head.fieldsStart,
              forwarded.dropMask,
              suffix,
              buf,
              start,
              end,
            )
          : buildEditedHead(
              'HTTP/1.1 ',
              head,
              head.statusStart,
              head.fieldsStart,
              forwarded.dropMask,
              edits.dropped,
              suffix,
              buf,
              start,
              end,
            );
    } else {
      // Arrived over HTTP/2: the status line and the kept fields are written as lines.
      const lines = headLines.clear().add(statusLine(status));
      addKeptLines(lines, head, forwarded.dropMask, edits);
      addResponseLines(lines, forwarded, edits);
      if (
        framing === BODY_NONE &&
        !statusForbidsLength(status) &&
        status !== 304 &&
        ex.method !== 'HEAD' &&
        head.indexOfField('content-length') === -1
      ) {
        // A response that is its head alone (HTTP/2 END_STREAM): an empty body with a length.
        lines.add('Content-Length: 0\r\n');
      }
      this.responseFraming(framing, lines);
      if (end > start) {
        // The first body bytes go out in the same write.
        headBuf = Buffer.allocUnsafe(lines.length + (end - start));
        buf.copy(headBuf, lines.writeTo(headBuf, 0), start, end);
      } else headBuf = lines.toBuffer();
    }
    this.responseHeadSent = true;
    ex.bytesOut += headBuf.length;
    return this.send(headBuf);
  }

  /**
   * Decides how the response body is framed toward the client (`out`, and keep-alive) from what the flow
   * hands over (BODY_*); returns `suffix` followed by the framing and Connection fields and the blank line.
   */
  private responseFraming(framing: number, lines: HeadLines): void {
    // An answer before the request body was fully received: the rest of the body is not read.
    if (!this.reqDone) this.keepAlive = false;
    const client11 = this.head.versionMinor === 1;
    let out: number;
    if (framing === BODY_NONE) out = OUT_NONE;
    else if (framing === BODY_LENGTH || framing === BODY_CHUNKED) out = OUT_PASS;
    else if (client11) {
      out = OUT_RECHUNK;
      lines.add('Transfer-Encoding: chunked\r\n');
    } else {
      // An HTTP/1.0 client: no chunked coding; the body ends when the connection closes.
      out = OUT_UNTIL_CLOSE;
      this.keepAlive = false;
    }
    if (framing === BODY_CHUNKED) lines.add('Transfer-Encoding: chunked\r\n');
    this.out = out;
    if (!this.keepAlive) lines.add('Connection: close\r\n\r\n');
    else if (!client11) lines.add('Connection: keep-alive\r\n\r\n');
    else lines.add('\r\n');
  }

  write(buf: Buffer, start: number, end: number): boolean {
    const n = end - start;
    if (n === 0) return true;
    const data = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    const ex = this.exchange!;
    let ok: boolean;
    if (this.out === OUT_RECHUNK) {
      const socket = this.socket;
      if (!this.noDelay) this.setNoDelay();
      socket.cork();
      const size = Buffer.from(`${n.toString(16)}\r\n`, 'latin1');
      socket.write(size);
      socket.write(data);
      ok = socket.write(CRLF);
      socket.uncork();
      if (!ok && !this.drainListening) this.listenDrain();
      ex.bytesOut += n + size.length + 2;
    } else {
      ok = this.send(data);
      ex.bytesOut += n;
    }
    if (!ok) this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    return ok;
  }

  holdsResponseBytes(): boolean {
    return this.socket.writableLength > 0;
  }

  /** The last chunk, with the trailers when the client accepts them (`TE: trailers`, RFC 9110 §10.1.4). */
  end(trailers: FieldSource | null): void {
    if (this.out !== OUT_RECHUNK) return;
    const last =
      trailers === null || !acceptsTrailers(joinedValues(this.head, FIELD_TE))
        ? LAST_CHUNK
        : Buffer.from(`0\r\n${http1TrailerLines(trailers)}\r\n`, 'latin1');
    this.send(last);
    this.exchange!.bytesOut += last.length;
  }

  /** Answers from zproxy itself: status line, the given fields, HSTS, Connection, the body. */
  respondLocal(status: number, fields: readonly string[], body: Buffer | null, close: boolean): void {
    const ex = this.exchange!;
    if (close || !this.reqDone) this.keepAlive = false;
    let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Unknown'}\r\n`;
    for (let i = 0; i < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
    head += this.responseExtra;
    if (!this.keepAlive) head += 'Connection: close\r\n\r\n';
    else head += this.head.versionMinor === 0 ? 'Connection: keep-alive\r\n\r\n' : '\r\n';
    const headBuf = Buffer.from(head, 'latin1');
    const out =
      body === null || body.length === 0 || ex.method === 'HEAD' ? headBuf : Buffer.concat([headBuf, body]);
    this.responseHeadSent = true;
    ex.bytesOut += out.length;
    this.send(out);
  }

  /** The response cannot be completed: close the connection so the client cannot take it as whole. */
  abort(_code: ErrorCode): void {
    this.state = ST_CLOSED;
    // A close-delimited body (HTTP/1.0 client) that ended with a FIN would look complete: reset instead.
    const cutShort = this.responseHeadSent && this.out === OUT_UNTIL_CLOSE && !this.socket.destroyed;
    if (cutShort) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  /**
   * The upstream switched to WebSocket: the 101 goes to the client, then the client socket and the
   * upstream socket are joined by a Tunnel, which owns both from here on. This connection stops reading
   * its socket and stays in `ctx.connections` (counted, closed by a shutdown) until it closes.
   */
  switchToTunnel(
    head: UpstreamResponseHead,
    forwarded: ForwardedResponse,
    upstream: Duplex,
    rest: Buffer | null,
    idleTimeoutMs: number,
  ): void {
    const ex = this.exchange!;
    const rh = head as ResponseHead;
    ex.status = 101;
    const headBuf = buildHeadFromRaw(
      'HTTP/1.1 ',
      rh,
      rh.statusStart,
      rh.fieldsStart,
      forwarded.dropMask & ~UPGRADE_BIT,
      upgradeLines(forwarded),
    );
    this.responseHeadSent = true;
    ex.bytesOut += headBuf.length;
    const socket = this.socket;
    // The tunnel writes frames as they come: none may wait for an acknowledgement (Nagle).
    if (!this.noDelay) this.setNoDelay();
    socket.write(headBuf);
    socket.off('data', socketData);
    socket.off('end', socketEnd);
    if (this.drainListening) socket.off('drain', socketDrain);
    const toUpstream = this.input;
    this.input = null;
    this.exchange = null;
    this.flow = null;
    this.readingPaused = false;
    this.state = ST_TUNNEL;
    this.deadline = 0;
    unwatchDeadline(this);
    const tunnel = new Tunnel(this.ctx.tunnels!, ex, this.runtime.accessLog, socket, upstream, idleTimeoutMs);
    tunnel.start(toUpstream, rest);
  }

  /** The exchange is over: the next request, or the end of the connection. */
  finished(): void {
    if (this.state !== ST_FORWARD) return;
    this.exchange = null;
    this.flow = null;
    if (!this.keepAlive || this.ctx.shuttingDown) {
      if (
        this.clientCloses &&
        this.reqDone &&
        this.input === null &&
        this.scheme === 'http' &&
        this.socket.writableLength === 0
      )
        this.closeNow();
      else this.closeGracefully();
      return;
    }
    this.state = ST_HEAD;
    this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    if (this.socket.writableNeedDrain) {
      // The client is not reading what we send: read no further requests until it does.
      this.waitingDrain = true;
      this.pauseReading();
      return;
    }
    this.resumeReading();
    if (this.input !== null) this.parseNext();
  }

  // ---------------------------------------------------------------- connection

  /**
   * Writes to the socket. TCP_NODELAY costs a system call per connection, and Nagle's algorithm holds back
   * a small segment only while data sent before it is unacknowledged: the first write of a connection
   * never waits (nor does the FIN after it), so the option is set before the second write, and a
   * connection that writes one response and closes never pays for it.
   */
  private send(buf: Buffer): boolean {
    if (!this.noDelay) {
      if (this.wrote) this.setNoDelay();
      else this.wrote = true;
    }
    const ok = this.socket.write(buf);
    if (!ok && !this.drainListening) this.listenDrain();
    return ok;
  }

  /**
   * Listens for `drain` from the first write the socket did not take whole on (the socket emits it only
   * after such a write): a connection whose writes all go straight to the kernel never adds the listener.
   */
  private listenDrain(): void {
    this.drainListening = true;
    this.socket.on('drain', socketDrain);
  }

  private setNoDelay(): void {
    this.noDelay = true;
    this.socket.setNoDelay(true);
  }

  /**
   * Closes at once after the last response, without a half-close and without waiting for the client's
   * FIN: the client asked for the close (it sends nothing more, RFC 9112 §9.6), everything it sent has
   * been read, and the whole response is in the kernel's send buffer, which still sends it, then a FIN.
   * (A close with unread input would make the kernel reset the connection and could lose the response:
   * closeGracefully is for every other case. TLS connections end with their close_notify there too.)
   */
  private closeNow(): void {
    this.state = ST_CLOSED;
    this.socket.destroy();
  }

  /** Ends the connection after what was written, then discards input for a while (lingering close). */
  private closeGracefully(): void {
    this.state = ST_CLOSING;
    this.input = null;
    this.deadline = Date.now() + LINGER_MS;
    this.resumeReading();
    this.socket.end();
  }

  private pauseReading(): void {
    if (!this.readingPaused) {
      this.readingPaused = true;
      this.socket.pause();
    }
  }

  private resumeReading(): void {
    if (this.readingPaused) {
      this.readingPaused = false;
      this.socket.resume();
    }
  }

  onDrain(): void {
    if (this.state === ST_FORWARD) {
      if (this.responseHeadSent) {
        this.deadline = 0;
        this.flow?.onClientDrain();
      }
      return;
    }
    if (this.waitingDrain && this.state === ST_HEAD) {
      this.waitingDrain = false;
      this.resumeReading();
      if (this.input !== null) this.parseNext();
    }
  }

  onDeadline(): void {
    switch (this.state) {
      case ST_HEAD:
        if (this.input === null) {
          // Idle keep-alive connection: close quietly.
          this.closeGracefully();
        } else {
          // A head that did not arrive in time (slowloris).
          this.rejectInput('ZP_ERR_REQUEST_TIMEOUT', '', '', '', '1.1');
        }
        return;
      case ST_FORWARD:
        if (!this.reqDone && !this.responseHeadSent) {
          this.failRequestBody('ZP_ERR_REQUEST_TIMEOUT');
        } else {
          // The client stopped reading the response.
          this.socket.destroy();
        }
        return;
      default:
        this.socket.destroy();
    }
  }

  onEnd(): void {
    // The client half-closed. An exchange in progress cannot deliver its response: abort it.
    if (this.state === ST_FORWARD) this.socket.destroy();
  }

  onClose(): void {
    const flow = this.flow;
    this.flow = null;
    this.exchange = null;
    this.state = ST_CLOSED;
    this.input = null;
    if (flow !== null) flow.onClientGone();
    unwatchDeadline(this);
    this.ctx.connections.delete(this);
    if (this.counted) this.ctx.releaseConnection();
    this.ctx.onConnectionClosed();
  }
}

function noop(): void {}

/** What follows the upstream's kept fields in a 101 that starts a tunnel. */
function upgradeLines(forwarded: ForwardedResponse): HeadLines {
  const lines = headLines.clear().add('Connection: Upgrade\r\n');
  addResponseLines(lines, forwarded, null);
  return lines.add('\r\n');
}

/**
 * The socket's listeners are these four functions, shared by every connection (`drain` only once a write
 * was not taken whole): each finds its connection
 * on the socket (OWNER) instead of a function bound per connection.
 */
const OWNER = Symbol('zproxy.connection');
type OwnedSocket = Socket & { [OWNER]: DownstreamConnection | null };

function socketData(this: Socket, chunk: Buffer): void {
  (this as OwnedSocket)[OWNER]!.onData(chunk);
}

function socketEnd(this: Socket): void {
  (this as OwnedSocket)[OWNER]!.onEnd();
}

function socketClose(this: Socket): void {
  (this as OwnedSocket)[OWNER]!.onClose();
}

function socketDrain(this: Socket): void {
  (this as OwnedSocket)[OWNER]!.onDrain();
}
