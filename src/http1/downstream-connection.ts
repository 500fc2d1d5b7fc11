/**
 * One client connection speaking HTTP/1.1 (or 1.0). Requests are handled one at a time in arrival order
 * (pipelined requests wait in the input buffer, so responses are always in request order). For each
 * request: parse the head strictly, route it, pick an upstream target, write the rewritten head and stream
 * the body to a pooled upstream connection, then stream the response back with backpressure both ways.
 *
 * Handlers are bound once per connection; per request there is one Exchange, one upstream head buffer and
 * one downstream head buffer, and bodies are forwarded as the buffers that arrived.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { forwardPathFor, type Runtime } from '../config/runtime.ts';
import { ERROR_CODES, type ErrorCode, errorBody, type ZpError } from '../errors.ts';
import { Exchange } from '../exchange.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FIELD_TE, type FieldSource, joinedValues } from '../http/fields.ts';
import {
  acceptsTrailers,
  ForwardedRequest,
  ForwardedResponse,
  http1RequestAdded,
  http1ResponseAdded,
  http1TrailerLines,
  http2RequestList,
} from '../http/forwarding.ts';
import type { FilterChain } from '../pipeline/chain.ts';
import type { FieldEditList } from '../pipeline/field-edits.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { FilterExchange, FilterRequestView, isPending } from '../pipeline/filter-exchange.ts';
import { renderLocal } from '../pipeline/local-response.ts';
import { normalizePath } from '../router/normalize-path.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE } from '../upstream/contract.ts';
import type { UpstreamTarget } from '../upstream/group.ts';
import type { Pool } from '../upstream/pool.ts';
import { plainAddress } from '../util/address.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { SlotSet } from '../util/slot-set.ts';
import {
  checkUpgradeRequest,
  isWebSocketUpgrade,
  KEEP_UPGRADE,
  switchesToWebSocket,
} from '../websocket/handshake.ts';
import type { TunnelRegistry } from '../websocket/registry.ts';
import { Tunnel } from '../websocket/tunnel.ts';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder } from './chunked.ts';
import { HeldResponse } from './held-response.ts';
import { type Http1BridgeHost, Http2UpstreamBridge } from './http2-upstream-bridge.ts';
import {
  findHeadEnd,
  HEAD_INCOMPLETE,
  parseRequestHead,
  RequestHead,
  type ResponseHead,
} from './parse-head.ts';
import { buildEditedHead, buildHead, buildHeadFromRaw } from './serialize.ts';
import { STATUS_TEXT } from './status-text.ts';
import { type UpgradeHandler, UpstreamConnection } from './upstream-connection.ts';

/** What a listener shares with its connections. `runtime` is swapped on reload. */
export interface ConnectionContext {
  runtime: Runtime;
  readonly connections: SlotSet<DownstreamConnection>;
  shuttingDown: boolean;
  /** Called when a connection has closed (used to finish a graceful shutdown). */
  onConnectionClosed(): void;
  /**
   * Takes over a connection that opened with the HTTP/2 preface (`buffered` holds what was read), or null
   * when HTTP/2 is not enabled.
   */
  readonly http2: ((socket: Socket, buffered: Buffer) => void) | null;
  /** False when `http1` is not in `protocols`: HTTP/1.x requests are answered 505 and nothing is forwarded. */
  readonly http1: boolean;
  /**
   * The process's WebSocket tunnels; absent or null when `websocket` is not in `protocols` (upgrade
   * requests are then answered 400 and nothing is forwarded).
   */
  readonly tunnels?: TunnelRegistry | null;
}

/** What one listener decides for the connections it accepts (see ProxyServer). */
export interface ListenerPolicy {
  /**
   * On TLS connections: the `Strict-Transport-Security` value (`max-age=...`) sent with every response,
   * replacing the upstream's; null when `tls.hsts` is off.
   */
  readonly hsts: string | null;
  /**
   * On plain connections of a `redirect_https` listener: what follows the host in the redirect's
   * Location (":8443", or "" for 443); null when requests are served.
   */
  redirectPort: string | null;
}

export const DEFAULT_LISTENER_POLICY: ListenerPolicy = Object.freeze({ hsts: null, redirectPort: null });

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

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

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Statuses that mean the request itself was malformed: answer, then close (the stream is unreliable). */
function closesConnection(code: ErrorCode): boolean {
  const s = ERROR_CODES[code].status;
  return s === 400 || s === 408 || s === 413 || s === 414 || s === 417 || s === 431 || s === 501 || s === 505;
}

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

export class DownstreamConnection implements Timed, UpgradeHandler, Http1BridgeHost {
  readonly socket: Socket;
  private readonly ctx: ConnectionContext;
  readonly clientAddress: string;
  /** 'https' on a TLS connection, else 'http' (X-Forwarded-Proto). */
  private readonly scheme: string;
  /** Added to every local answer's head (HSTS on TLS connections), or ''. */
  private readonly responseExtra: string;
  /** The Strict-Transport-Security value of this connection's listener (TLS with `tls.hsts`), or null. */
  private readonly hsts: string | null;
  /** The forwarding decisions of the current exchange (reused: one exchange at a time). */
  private readonly forwarded = new ForwardedRequest();
  private readonly forwardedResponse = new ForwardedResponse();
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

  private upstream: UpstreamConnection | null = null;
  private waitingPool: Pool | null = null;
  /** The request head as sent upstream, kept for a retry on a fresh connection. */
  private upstreamHead: Buffer | null = null;
  private retried = false;
  /** The current exchange goes to an HTTP/2 upstream (h2c://, h2://) through this bridge. */
  private bridge: Http2UpstreamBridge | null = null;

  private reqBody = REQ_NONE;
  private reqRemaining = 0;
  private reqDone = true;
  private reqChunked: ChunkedDecoder | null = null;

  private keepAlive = true;
  private responseStarted = false;
  private out = OUT_NONE;
  private readingPaused = false;
  /** The next request waits until the client has read what was written. */
  private waitingDrain = false;
  /** True while parseNext runs (a request answered locally inside it must not re-enter it). */
  private parsing = false;
  /** The current exchange is a WebSocket upgrade holding a place in the tunnel registry. */
  private upgrading = false;
  /** The routed exchange's upstream target, forwarded path and whether its request line is reusable. */
  private fwdTarget: UpstreamTarget | null = null;
  private fwdPath = '';
  private fwdRawLine = true;
  /** The upstream's chunked body is decoded (for an HTTP/1.0 client, or for filters that read the body). */
  private decodeChunked = false;
  /** A filter of the exchange is doing I/O (its request phase waits on a promise). */
  private filtering = false;
  /** The upstream's response, held while a response filter waits for I/O (holdResponse). */
  private held: HeldResponse | null = null;
  /** Filters' view of the request head's fields (one per connection: the head object is reused). */
  private requestReader: HeadFieldReader | null = null;
  /** Filters' view of the last upstream response head's fields (reused while the head object is). */
  private responseReader: HeadFieldReader | null = null;

  constructor(socket: Socket, ctx: ConnectionContext, policy: ListenerPolicy = DEFAULT_LISTENER_POLICY) {
    this.socket = socket;
    this.ctx = ctx;
    this.runtime = ctx.runtime;
    this.clientAddress = plainAddress(socket.remoteAddress);
    const encrypted = (socket as TLSSocket).encrypted === true;
    this.scheme = encrypted ? 'https' : 'http';
    const hsts = encrypted ? policy.hsts : null;
    this.hsts = hsts;
    this.responseExtra = hsts === null ? '' : `Strict-Transport-Security: ${hsts}\r\n`;
    this.redirectPort = encrypted ? null : policy.redirectPort;
    this.onData = this.onData.bind(this);
    this.onEnd = this.onEnd.bind(this);
    this.onClose = this.onClose.bind(this);
    this.onDrain = this.onDrain.bind(this);
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', noop);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
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
      if (this.input === null) this.closeGracefully();
      return;
    }
    this.keepAlive = false;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- input

  private onData(chunk: Buffer): void {
    const state = this.state;
    if (state === ST_FORWARD && !this.reqDone && this.input === null) {
      if (this.upstream !== null) {
        this.forwardBody(chunk);
        return;
      }
      if (this.bridge?.streaming === true) {
        this.forwardBridgeBody(chunk);
        return;
      }
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

  /** Gives the connection to the HTTP/2 server when it opened with the preface (or a prefix of it). */
  private handOverHttp2(buf: Buffer): boolean {
    const n = Math.min(buf.length, HTTP2_PREFACE.length);
    if (buf.compare(HTTP2_PREFACE, 0, n, 0, n) !== 0) return false;
    if (buf.length < HTTP2_PREFACE.length) {
      // Only part of the preface so far: wait for the rest.
      this.scanFrom = buf.length > 4 ? buf.length - 3 : 1;
      return true;
    }
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onClose);
    socket.off('drain', this.onDrain);
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
    this.exchange = ex;
    this.state = ST_FORWARD;
    this.keepAlive = false;
    this.reqDone = false;
    this.respondError(code, message);
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
    this.exchange = ex;
    ex.bytesIn = headEnd;
    this.input = headEnd < buf.length ? buf.subarray(headEnd) : null;
    if (!this.ctx.http1) {
      this.reqDone = false;
      this.respondError('ZP_ERR_VERSION_NOT_SUPPORTED', 'HTTP/1.x is not enabled; use HTTP/2');
      return;
    }
    this.state = ST_FORWARD;
    this.deadline = 0;
    this.responseStarted = false;
    this.filtering = false;
    this.retried = false;
    this.out = OUT_NONE;
    this.keepAlive =
      !this.ctx.shuttingDown && (minor === 1 ? !head.connectionClose : head.connectionKeepAlive);

    if (head.chunked) {
      this.reqBody = REQ_CHUNKED;
      this.reqDone = false;
      if (this.reqChunked === null) this.reqChunked = new ChunkedDecoder();
      this.reqChunked.reset();
    } else if (head.contentLength > 0) {
      this.reqBody = REQ_LENGTH;
      this.reqRemaining = head.contentLength;
      this.reqDone = false;
    } else {
      this.reqBody = REQ_NONE;
      this.reqDone = true;
    }

    // The request-target: origin-form, or absolute-form whose authority replaces Host (RFC 9112 §3.2.2).
    const target = head.target;
    let rawPath: string;
    let query = '';
    let rawLineUsable = true;
    if (target.charCodeAt(0) === 0x2f) {
      const q = target.indexOf('?');
      rawPath = q === -1 ? target : target.slice(0, q);
      if (q !== -1) query = target.slice(q);
    } else {
      const abs = /^http:\/\/([^/?#@]+)([^#]*)$/i.exec(target);
      if (abs === null) {
        this.respondError('ZP_ERR_BAD_REQUEST', 'Unsupported request-target form');
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
      this.respondError('ZP_ERR_BAD_REQUEST', 'Invalid request path');
      return;
    }
    ex.path = path;
    ex.query = query;
    if (path !== rawPath) rawLineUsable = false;

    if (this.redirectPort !== null) {
      this.redirectToHttps(ex.host, target.charCodeAt(0) === 0x2f ? target : `${rawPath}${query}`);
      return;
    }
    if (rt.maxBodyBytes > 0 && head.contentLength > rt.maxBodyBytes) {
      this.respondError('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    const m = rt.router.match(ex.host, head.method, path);
    if (m.status !== 200) {
      if (m.status === 405)
        this.respondError('ZP_ERR_METHOD_NOT_ALLOWED', undefined, `Allow: ${m.allow}\r\n`);
      else this.respondError('ZP_ERR_NOT_FOUND');
      return;
    }
    const route = m.value;
    ex.route = route;
    ex.params = m.params;
    const forwardPath = forwardPathFor(route, path, m.matchedLength);
    if (forwardPath !== path) rawLineUsable = false;
    const upstreamTarget = route.group.pick();
    ex.upstream = upstreamTarget.authority;
    this.fwdTarget = upstreamTarget;
    this.fwdPath = forwardPath;
    this.fwdRawLine = rawLineUsable;
    const chain = route.filters;
    if (chain === null) this.forward(ex);
    else this.runRequestFilters(chain, ex, `${forwardPath}${query}`);
  }

  /** The request phases of the route's filters; then forward(), or their local answer. */
  private runRequestFilters(chain: FilterChain, ex: Exchange, target: string): void {
    const head = this.head;
    const route = ex.route!;
    const websocket = head.connectionUpgrade && isWebSocketUpgrade(head);
    this.requestReader ??= new HeadFieldReader(head);
    const request = new FilterRequestView(ex, head.method, this.scheme, websocket, this.requestReader);
    const fx = new FilterExchange(chain, ex, request, target);
    ex.filters = fx;
    if (route.filterOnlyMethods?.has(head.method) === true) fx.methodNotAllowed = route.allow;
    const outcome = fx.runRequest();
    if (isPending(outcome)) {
      // Body bytes that arrive meanwhile wait in `input` (reading pauses past PIPELINE_HIGH_WATER).
      this.awaitFilters(ex, outcome, (local) => this.afterRequestFilters(ex, local));
      return;
    }
    this.afterRequestFilters(ex, outcome);
  }

  /**
   * A filter phase waits for I/O: `done` gets its result, unless the exchange ended meanwhile or ran out of
   * time first (connection_timeout_ms: onDeadline answers 504 ZP_ERR_FILTER_TIMEOUT).
   */
  private awaitFilters(
    ex: Exchange,
    outcome: Promise<undefined | LocalResponse>,
    done: (local: LocalResponse | undefined) => void,
  ): void {
    this.filtering = true;
    this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    const settle = (local: LocalResponse | undefined): void => {
      if (this.exchange !== ex || this.state !== ST_FORWARD || !this.filtering) return;
      this.filtering = false;
      this.deadline = 0;
      done(local);
    };
    outcome.then(settle, () => settle(undefined));
  }

  private afterRequestFilters(ex: Exchange, local: LocalResponse | undefined): void {
    if (local !== undefined) {
      ex.upstream = '';
      this.respondFiltered(local);
      return;
    }
    const allow = ex.filters!.methodNotAllowed;
    if (allow !== null) {
      ex.upstream = '';
      this.respondError('ZP_ERR_METHOD_NOT_ALLOWED', undefined, `Allow: ${allow}\r\n`);
      return;
    }
    this.forward(ex);
  }

  /** Builds the upstream request head of a routed exchange and sends it to the picked target. */
  private forward(ex: Exchange): void {
    const rt = this.runtime;
    const head = this.head;
    const minor = head.versionMinor;
    const upstreamTarget = this.fwdTarget!;
    let forwardTarget = `${this.fwdPath}${ex.query}`;
    let rawLineUsable = this.fwdRawLine;
    const fx = ex.filters;
    let edits: FieldEditList | null = null;
    if (fx !== null) {
      edits = fx.upstreamEditsOrNull;
      if (fx.targetOverride !== null) {
        forwardTarget = fx.targetOverride;
        rawLineUsable = false;
      }
    }

    const fwd = this.forwarded;
    rt.forwarding.request(
      fwd,
      head,
      this.clientAddress,
      this.scheme,
      ex.host,
      head.host,
      ex.httpVersion,
      upstreamTarget.hostHeader,
    );
    let dropMask = fwd.dropMask;
    // WebSocket: the parser records `Connection: upgrade`, so any other request pays one flag test here.
    const upgrade = head.connectionUpgrade && isWebSocketUpgrade(head);
    if (upgrade) {
      if (!this.admitUpgrade(upstreamTarget)) return;
      dropMask &= KEEP_UPGRADE;
    }
    if (upstreamTarget.http2 !== null) {
      this.startBridge(upstreamTarget, forwardTarget);
      return;
    }
    let suffix = http1RequestAdded(fwd, edits);
    if (upgrade) suffix += 'Connection: Upgrade\r\n';
    if (this.reqBody === REQ_CHUNKED) suffix += 'Transfer-Encoding: chunked\r\n\r\n';
    else suffix += '\r\n';
    if (edits !== null) {
      this.upstreamHead =
        rawLineUsable && minor === 1
          ? buildEditedHead('', head, head.start, head.fieldsStart, dropMask, edits.dropped, suffix)
          : buildEditedHead(
              `${head.method} ${forwardTarget} HTTP/1.1\r\n`,
              head,
              0,
              0,
              dropMask,
              edits.dropped,
              suffix,
            );
    } else {
      this.upstreamHead =
        rawLineUsable && minor === 1
          ? buildHeadFromRaw('', head, head.start, head.fieldsStart, dropMask, suffix)
          : buildHead(`${head.method} ${forwardTarget} HTTP/1.1\r\n`, head, dropMask, suffix);
    }

    if (head.expectContinue && !this.reqDone && minor === 1) this.socket.write(CONTINUE_100);

    const pool = upstreamTarget.pool!;
    if (upgrade) {
      // A tunnel gets a connection of its own, never a pooled one (onUpstreamReady, then onUpgraded).
      this.upstream = new UpstreamConnection(pool, this, true);
      return;
    }
    const conn = pool.acquire(this, false);
    if (conn !== null) this.onUpstreamReady(conn);
    else {
      this.waitingPool = pool;
      this.deadline = Date.now() + pool.settings.connectTimeoutMs + 1000;
    }
  }

  /**
   * A WebSocket upgrade request: answers it and returns false when it is refused (WebSocket disabled, a
   * malformed handshake, an HTTP/2 upstream, shutting down, the tunnel cap reached), else reserves a place
   * for its tunnel.
   */
  private admitUpgrade(target: UpstreamTarget): boolean {
    const tunnels = this.ctx.tunnels;
    if (!tunnels) {
      this.respondError('ZP_ERR_WEBSOCKET_DISABLED', 'WebSocket is not enabled (protocols)');
      return false;
    }
    const problem = checkUpgradeRequest(this.head);
    if (problem !== null) {
      this.respondError(problem.code, problem.message, problem.fields);
      return false;
    }
    if (target.http2 !== null) {
      this.respondError('ZP_ERR_WEBSOCKET_UPSTREAM_UNSUPPORTED');
      return false;
    }
    if (this.ctx.shuttingDown) {
      this.respondError('ZP_ERR_SHUTTING_DOWN');
      return false;
    }
    if (!tunnels.reserve(this.runtime.maxTunnels)) {
      this.respondError('ZP_ERR_TUNNEL_LIMIT');
      return false;
    }
    this.upgrading = true;
    return true;
  }

  /** The exchange ends without a tunnel: its reserved place is given back. */
  private endUpgrade(): void {
    this.upgrading = false;
    this.ctx.tunnels!.release();
  }

  /**
   * Hands the exchange to an Http2UpstreamBridge (the picked target is h2c:// or h2://). The forwarded
   * fields are the ones decided above for an HTTP/1.1 upstream, mapped onto HTTP/2 by the bridge.
   */
  private startBridge(target: UpstreamTarget, path: string): void {
    const head = this.head;
    const ex = this.exchange!;
    const pool = target.http2!;
    ex.upstream = pool.authority;
    const edits = ex.filters?.upstreamEditsOrNull ?? null;
    const headers = http2RequestList(this.forwarded, head, head.method, pool.scheme, path, edits);
    const chunked = this.reqBody === REQ_CHUNKED;
    const bridge = new Http2UpstreamBridge(
      this,
      pool,
      headers,
      head.method === 'HEAD',
      chunked,
      this.reqDone,
      acceptsTrailers(joinedValues(head, FIELD_TE)),
      this.hsts,
      this.runtime.forwarding,
    );
    this.bridge = bridge;
    bridge.filters = ex.filters;
    bridge.filterTimeoutMs = this.runtime.connectionTimeoutMs;
    // The decoder hands the chunk data (and trailers) to the bridge: HTTP/2 frames the body itself.
    if (chunked) this.reqChunked!.reset(bridge);
    if (head.expectContinue && !this.reqDone && head.versionMinor === 1) this.socket.write(CONTINUE_100);
    bridge.start();
  }

  /** Request body bytes for the bridge (content-length: as they arrived; chunked: decoded into it). */
  private forwardBridgeBody(chunk: Buffer): void {
    const bridge = this.bridge!;
    const n = this.consumeBody(chunk);
    if (n < 0) return;
    this.exchange!.bytesIn += n;
    if (n > 0 && this.reqBody === REQ_LENGTH) bridge.write(n === chunk.length ? chunk : chunk.subarray(0, n));
    if (n < chunk.length) {
      this.input = chunk.subarray(n);
      if (this.input.length > PIPELINE_HIGH_WATER) this.pauseReading();
    }
    if (this.reqDone) {
      this.deadline = 0;
      bridge.requestEnd();
    } else this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
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

  /** Body bytes arrived while an upstream connection is attached. */
  private forwardBody(chunk: Buffer): void {
    const n = this.consumeBody(chunk);
    if (n < 0) return;
    this.exchange!.bytesIn += n;
    const upstream = this.upstream!;
    if (n > 0 && !upstream.write(n === chunk.length ? chunk : chunk.subarray(0, n))) this.pauseReading();
    if (n < chunk.length) {
      this.input = chunk.subarray(n);
      if (this.input.length > PIPELINE_HIGH_WATER) this.pauseReading();
    }
    if (this.reqDone) upstream.requestSent();
    else this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
  }

  private failRequestBody(code: ErrorCode, message?: string): void {
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.destroy();
    this.keepAlive = false;
    if (this.responseStarted) {
      this.abort(code);
      return;
    }
    this.respondError(code, message);
  }

  // ---------------------------------------------------------------- upstream callbacks

  onUpstreamReady(conn: UpstreamConnection): void {
    // (An upgrade connection is this.upstream from its creation.)
    if (
      this.state !== ST_FORWARD ||
      (this.upstream !== null && this.upstream !== conn) ||
      this.upstreamHead === null
    ) {
      conn.pool.release(conn);
      return;
    }
    this.waitingPool = null;
    this.upstream = conn;
    this.deadline = 0;
    // Chunked response bodies are decoded (and re-chunked) for HTTP/1.0 clients and for filters that
    // read the body (they must see the data, not the chunk framing).
    this.decodeChunked =
      this.head.versionMinor === 0 || (this.exchange?.filters?.chain.onResponseBody ?? null) !== null;
    conn.beginRequest(this.head.method === 'HEAD', this.decodeChunked);
    const input = this.input;
    let more: boolean;
    if (!this.reqDone && input !== null) {
      // Body bytes that arrived with the head go out with it in one writev.
      const socket = conn.socket;
      socket.cork();
      more = conn.write(this.upstreamHead);
      const n = this.consumeBody(input);
      if (n < 0) {
        socket.uncork();
        return;
      }
      this.exchange!.bytesIn += n;
      if (n > 0) more = conn.write(n === input.length ? input : input.subarray(0, n));
      this.input = n < input.length ? input.subarray(n) : null;
      socket.uncork();
    } else {
      more = conn.write(this.upstreamHead);
    }
    if (this.reqDone) conn.requestSent();
    else {
      this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
      if (more && (this.input === null || this.input.length <= PIPELINE_HIGH_WATER)) this.resumeReading();
    }
    if (!more) this.pauseReading();
  }

  onUpstreamDrain(): void {
    if (this.state === ST_FORWARD && !this.reqDone && this.input === null) this.resumeReading();
  }

  onUpstreamError(error: ZpError, conn: UpstreamConnection | null): void {
    if (conn !== null && conn !== this.upstream && this.upstream !== null) return;
    this.upstream = null;
    if (this.state !== ST_FORWARD || this.exchange === null || this.responseStarted) return;
    if (
      error.retryable &&
      !this.retried &&
      this.reqBody === REQ_NONE &&
      conn !== null &&
      IDEMPOTENT.has(this.head.method)
    ) {
      // A reused connection failed before any response byte: the upstream closed it while idle.
      this.retried = true;
      const fresh = conn.pool.acquire(this, true);
      if (fresh !== null) this.onUpstreamReady(fresh);
      else this.waitingPool = conn.pool;
      return;
    }
    if (!this.reqDone) this.keepAlive = false;
    this.respondError(error.code, error.message);
  }

  onResponseHead(
    conn: UpstreamConnection,
    rh: ResponseHead,
    framing: number,
    body: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    const ex = this.exchange;
    if (ex === null || conn !== this.upstream) return;
    const fx = ex.filters;
    if (fx !== null) {
      let reader = this.responseReader;
      if (reader === null || reader.head !== rh) {
        reader = new HeadFieldReader(rh);
        this.responseReader = reader;
      }
      const outcome = fx.runResponse(rh.status, reader);
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(ex, outcome, new HeldResponse(conn, rh, framing, body, bodyStart, bodyEnd));
          return;
        }
        // A filter answers instead (a cache entry refreshed by this 304, ...): the upstream's body is not read.
        this.respondFiltered(outcome);
        return;
      }
    }
    this.sendResponseHead(ex, conn, rh, framing, body, bodyStart, bodyEnd);
  }

  /**
   * A response filter waits for I/O: the upstream's response is held (nothing more read, nothing sent)
   * until it is done, for at most connection_timeout_ms (onDeadline answers 504 ZP_ERR_FILTER_TIMEOUT).
   */
  private holdResponse(ex: Exchange, outcome: Promise<undefined | LocalResponse>, held: HeldResponse): void {
    this.held = held;
    this.awaitFilters(ex, outcome, (local) => this.releaseResponse(ex, held, local));
  }

  /** The response filters are done: send the held response (or their answer instead). */
  private releaseResponse(ex: Exchange, held: HeldResponse, local: LocalResponse | undefined): void {
    if (this.held !== held) return;
    this.held = null;
    if (local !== undefined) {
      this.respondFiltered(local);
      return;
    }
    const conn = held.conn;
    this.sendResponseHead(ex, conn, held.head, held.framing, held.body, held.bodyStart, held.bodyEnd);
    let more = true;
    for (const chunk of held.chunks) {
      if (this.exchange !== ex) return;
      more = this.onResponseBody(chunk, 0, chunk.length);
    }
    if (this.exchange !== ex) return;
    if (held.ended) this.onResponseEnd(conn, held.trailers);
    else if (more) conn.resume();
  }

  /** Writes the response head (with the filters' edits) and the body bytes that came with it. */
  private sendResponseHead(
    ex: Exchange,
    conn: UpstreamConnection,
    rh: ResponseHead,
    framing: number,
    body: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    const fx = ex.filters;
    let edits: FieldEditList | null = null;
    if (fx !== null) {
      edits = fx.responseEditsOrNull;
      if (bodyEnd > bodyStart) fx.body(body.subarray(bodyStart, bodyEnd));
    }
    ex.status = rh.status;
    const fr = this.forwardedResponse;
    this.runtime.forwarding.response(
      fr,
      rh.status,
      rh.versionMinor === 1 ? '1.1' : '1.0',
      this.hsts,
      framing === BODY_CHUNKED,
    );
    const suffix = this.responseFraming(framing, http1ResponseAdded(fr, edits));
    const headBuf =
      edits === null
        ? buildHeadFromRaw(
            'HTTP/1.1 ',
            rh,
            rh.statusStart,
            rh.fieldsStart,
            fr.dropMask,
            suffix,
            body,
            bodyStart,
            bodyEnd,
          )
        : buildEditedHead(
            'HTTP/1.1 ',
            rh,
            rh.statusStart,
            rh.fieldsStart,
            fr.dropMask,
            edits.dropped,
            suffix,
            body,
            bodyStart,
            bodyEnd,
          );
    this.responseStarted = true;
    ex.bytesOut += headBuf.length;
    if (!this.socket.write(headBuf)) conn.pause();
  }

  /**
   * Decides how the response body is framed toward the client (`out`, and keep-alive) from the upstream's
   * framing (BODY_*); returns `suffix` followed by the framing and Connection fields and the blank line.
   */
  private responseFraming(framing: number, suffix: string): string {
    // An answer before the request body was fully sent: the rest of the body is not read.
    if (!this.reqDone) this.keepAlive = false;
    const client11 = this.head.versionMinor === 1;
    let out: number;
    if (framing === BODY_NONE) out = OUT_NONE;
    else if (framing === BODY_LENGTH) out = OUT_PASS;
    else if (client11) {
      out = framing === BODY_CHUNKED && !this.decodeChunked ? OUT_PASS : OUT_RECHUNK;
      suffix += 'Transfer-Encoding: chunked\r\n';
    } else {
      // An HTTP/1.0 client: no chunked coding; the body ends when the connection closes.
      out = OUT_UNTIL_CLOSE;
      this.keepAlive = false;
    }
    this.out = out;
    if (!this.keepAlive) return `${suffix}Connection: close\r\n\r\n`;
    if (!client11) return `${suffix}Connection: keep-alive\r\n\r\n`;
    return `${suffix}\r\n`;
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    if (this.held !== null) {
      this.held.hold(buf, start, end);
      return false;
    }
    const n = end - start;
    if (n === 0) return true;
    const data = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    const ex = this.exchange!;
    const fx = ex.filters;
    if (fx !== null) fx.body(data);
    let ok: boolean;
    if (this.out === OUT_RECHUNK) {
      const socket = this.socket;
      socket.cork();
      const size = Buffer.from(`${n.toString(16)}\r\n`, 'latin1');
      socket.write(size);
      socket.write(data);
      ok = socket.write(CRLF);
      socket.uncork();
      ex.bytesOut += n + size.length + 2;
    } else {
      ok = this.socket.write(data);
      ex.bytesOut += n;
    }
    if (!ok) this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    return ok;
  }

  holdsResponseBytes(): boolean {
    return this.socket.writableLength > 0;
  }

  onResponseEnd(conn: UpstreamConnection, trailers: FieldSource | null): void {
    if (conn !== this.upstream) return;
    if (this.held !== null) {
      this.held.ended = true;
      this.held.trailers = trailers;
      return;
    }
    if (this.out === OUT_RECHUNK) {
      const last =
        trailers === null ? LAST_CHUNK : Buffer.from(`0\r\n${http1TrailerLines(trailers)}\r\n`, 'latin1');
      this.socket.write(last);
      this.exchange!.bytesOut += last.length;
    }
    this.upstream = null;
    if (this.reqDone) conn.pool.release(conn);
    else conn.destroy();
    this.finishExchange();
  }

  onResponseAborted(error: ZpError): void {
    this.upstream = null;
    if (this.held !== null) {
      // Nothing was sent yet (a response filter was waiting): the client gets an error response.
      this.held = null;
      this.filtering = false;
      this.respondError(error.code, error.message);
      return;
    }
    this.abort(error.code);
  }

  /**
   * The upstream answered a WebSocket upgrade with 101: the 101 goes to the client, then the client
   * socket and the upstream socket are joined by a Tunnel, which owns both from here on. This connection
   * stops reading its socket and stays in `ctx.connections` (counted, closed by a shutdown) until it closes.
   */
  onUpgraded(conn: UpstreamConnection, rh: ResponseHead, buf: Buffer, rest: number): void {
    const ex = this.exchange;
    if (conn !== this.upstream || ex === null || this.state !== ST_FORWARD) {
      conn.socket.destroy();
      return;
    }
    this.upstream = null;
    if (!switchesToWebSocket(rh)) {
      conn.socket.destroy();
      this.respondError(
        'ZP_ERR_UPSTREAM_BAD_RESPONSE',
        'The upstream answered 101 without switching to websocket',
      );
      return;
    }
    ex.status = 101;
    // The exchange's filters are done: the tunnel carries frames they do not see.
    ex.filters?.finish(false);
    const fr = this.forwardedResponse;
    this.runtime.forwarding.response(fr, 101, rh.versionMinor === 1 ? '1.1' : '1.0', this.hsts, false);
    const headBuf = buildHeadFromRaw(
      'HTTP/1.1 ',
      rh,
      rh.statusStart,
      rh.fieldsStart,
      fr.dropMask & KEEP_UPGRADE,
      `Connection: Upgrade\r\n${http1ResponseAdded(fr, null)}\r\n`,
    );
    this.responseStarted = true;
    ex.bytesOut += headBuf.length;
    const socket = this.socket;
    socket.write(headBuf);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('drain', this.onDrain);
    const toUpstream = this.input;
    this.input = null;
    this.exchange = null;
    this.upstreamHead = null;
    this.upgrading = false;
    this.readingPaused = false;
    this.state = ST_TUNNEL;
    this.deadline = 0;
    unwatchDeadline(this);
    const tunnel = new Tunnel(
      this.ctx.tunnels!,
      ex,
      this.runtime.accessLog,
      socket,
      conn.socket,
      ex.route!.websocketIdleTimeoutMs,
    );
    tunnel.start(toUpstream, rest < buf.length ? buf.subarray(rest) : null);
  }

  // ---------------------------------------------------------------- HTTP/2 upstream bridge (Http1BridgeHost)

  bridgeStreamReady(): void {
    if (this.state !== ST_FORWARD || this.reqDone) return;
    const input = this.input;
    if (input !== null) {
      this.input = null;
      this.forwardBridgeBody(input);
    } else this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    const bridge = this.bridge;
    if (bridge !== null && !this.reqDone && this.input === null && !bridge.blocked) this.resumeReading();
  }

  bridgeResponseHead(status: number, fields: string, framing: number): boolean {
    const ex = this.exchange!;
    ex.status = status;
    const head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? ''}\r\n${this.responseFraming(framing, fields)}`;
    const buf = Buffer.from(head, 'latin1');
    this.responseStarted = true;
    ex.bytesOut += buf.length;
    return this.socket.write(buf);
  }

  bridgeResponseEnd(trailerLines: string | null): void {
    if (this.out === OUT_RECHUNK) {
      const last = trailerLines === null ? LAST_CHUNK : Buffer.from(`0\r\n${trailerLines}\r\n`, 'latin1');
      this.socket.write(last);
      this.exchange!.bytesOut += last.length;
    }
    this.bridge = null;
    this.finishExchange();
  }

  bridgeLocal(local: LocalResponse): void {
    this.bridge = null;
    this.respondFiltered(local);
  }

  bridgeFail(code: ErrorCode, message?: string): void {
    this.bridge = null;
    this.respondError(code, message);
  }

  bridgeAbort(code: ErrorCode): void {
    this.bridge = null;
    this.abort(code);
  }

  pauseRequest(): void {
    this.pauseReading();
  }

  // ---------------------------------------------------------------- output and completion

  /** Answers the current exchange locally with a JSON error; `fields` are added field lines (CRLF each). */
  private respondError(code: ErrorCode, message?: string, fields = ''): void {
    const info = ERROR_CODES[code];
    const fx = this.exchange!.filters;
    if (fx !== null && info.side === 'upstream' && !this.responseStarted && fx.wantsUpstreamError) {
      // Filters may answer instead of zproxy's 502/504 (the cache's stale-if-error). Nothing of the failed
      // attempt may go on meanwhile (a pool that finds a connection later, say).
      const ex = this.exchange!;
      this.upstream?.destroy();
      this.upstream = null;
      if (this.waitingPool !== null) {
        this.waitingPool.cancel(this);
        this.waitingPool = null;
      }
      const outcome = fx.runUpstreamError(info.status);
      if (isPending(outcome)) {
        this.awaitFilters(ex, outcome, (local) => this.answerUpstreamError(code, message, fields, local));
        return;
      }
      this.answerUpstreamError(code, message, fields, outcome);
      return;
    }
    this.respondErrorNow(code, message, fields);
  }

  /** After onUpstreamError: the filters' answer (the upstream's failure stays in the log), or zproxy's. */
  private answerUpstreamError(
    code: ErrorCode,
    message: string | undefined,
    fields: string,
    local: LocalResponse | undefined,
  ): void {
    if (local === undefined) {
      this.respondErrorNow(code, message, fields);
      return;
    }
    this.exchange!.errorCode = code;
    if (closesConnection(code)) this.keepAlive = false;
    this.respondFiltered(local);
  }

  private respondErrorNow(code: ErrorCode, message?: string, fields = ''): void {
    const info = ERROR_CODES[code];
    if (closesConnection(code)) this.keepAlive = false;
    this.exchange!.errorCode = code;
    this.respondLocal(info.status, 'application/json', errorBody(code, message), fields);
  }

  /**
   * A `redirect_https` listener answers every plain-HTTP request with a permanent redirect to the same
   * host (without its port) and target over https. 308 keeps the method and body on the redirected request.
   */
  private redirectToHttps(host: string, target: string): void {
    if (host === '') {
      this.keepAlive = false;
      this.respondError('ZP_ERR_BAD_REQUEST', 'A Host is required to redirect to https');
      return;
    }
    // The parser accepted Host as host[:port]; the port is dropped (an IPv6 literal keeps its brackets).
    const colon = host.lastIndexOf(':');
    const name = colon > host.lastIndexOf(']') ? host.slice(0, colon) : host;
    const location = `https://${name}${this.redirectPort}${target}`;
    this.respondLocal(308, 'text/plain', `Redirecting to ${location}\n`, `Location: ${location}\r\n`);
  }

  /** Answers the current exchange from zproxy itself (no upstream involved). */
  private respondLocal(status: number, contentType: string, body: string, fields: string): void {
    const ex = this.exchange!;
    if (!this.reqDone) this.keepAlive = false;
    let head = `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${fields}${this.responseExtra}`;
    head += this.keepAlive ? '\r\n' : 'Connection: close\r\n\r\n';
    const payload = ex.method === 'HEAD' ? head : head + body;
    this.sendLocal(status, Buffer.from(payload, 'utf8'));
  }

  /** Writes a whole local answer (the upstream side, if any, is let go first) and ends the exchange. */
  private sendLocal(status: number, out: Buffer): void {
    const ex = this.exchange!;
    this.upstream?.destroy();
    this.upstream = null;
    if (this.bridge !== null) this.cancelBridge();
    if (this.waitingPool !== null) {
      this.waitingPool.cancel(this);
      this.waitingPool = null;
    }
    ex.status = status;
    ex.bytesOut += out.length;
    this.responseStarted = true;
    this.socket.write(out);
    this.finishExchange();
  }

  /** Answers the current exchange with a filter's LocalResponse (the chain's response edits applied). */
  private respondFiltered(local: LocalResponse): void {
    const ex = this.exchange!;
    const r = renderLocal(local, ex.filters?.responseEditsOrNull ?? null, ex.method === 'HEAD');
    if (!this.reqDone) this.keepAlive = false;
    let head = `HTTP/1.1 ${r.status} ${STATUS_TEXT[r.status] ?? 'Unknown'}\r\n`;
    const fields = r.fields;
    for (let i = 0; i < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
    head += this.responseExtra;
    if (!this.keepAlive) head += 'Connection: close\r\n\r\n';
    else head += this.head.versionMinor === 0 ? 'Connection: keep-alive\r\n\r\n' : '\r\n';
    const headBuf = Buffer.from(head, 'latin1');
    this.sendLocal(
      r.status,
      r.body === null || ex.method === 'HEAD' ? headBuf : Buffer.concat([headBuf, r.body]),
    );
  }

  /** The response cannot be completed: close the connection so the client cannot take it as whole. */
  private abort(code: ErrorCode): void {
    if (this.upgrading) this.endUpgrade();
    const ex = this.exchange;
    if (ex !== null) {
      ex.errorCode = code;
      if (ex.status === 0) ex.status = code === 'ZP_ERR_CLIENT_ABORTED' ? 499 : ERROR_CODES[code].status;
      this.logExchange(ex, true);
    }
    this.exchange = null;
    this.held = null;
    this.upstream?.destroy();
    this.upstream = null;
    if (this.bridge !== null) this.cancelBridge();
    if (this.waitingPool !== null) {
      this.waitingPool.cancel(this);
      this.waitingPool = null;
    }
    this.state = ST_CLOSED;
    // A close-delimited body (HTTP/1.0 client) that ended with a FIN would look complete: reset instead.
    const cutShort = this.responseStarted && this.out === OUT_UNTIL_CLOSE && !this.socket.destroyed;
    if (cutShort) this.socket.resetAndDestroy();
    else this.socket.destroy();
  }

  /** The exchange ends on the client side: the upstream HTTP/2 stream is cancelled at once. */
  private cancelBridge(): void {
    const bridge = this.bridge!;
    this.bridge = null;
    bridge.cancel();
  }

  private logExchange(ex: Exchange, aborted: boolean): void {
    ex.endTime = performance.now();
    ex.filters?.finish(aborted);
    const log = this.runtime.accessLog;
    if (log !== null) log.write(ex);
  }

  private finishExchange(): void {
    if (this.upgrading) this.endUpgrade();
    const ex = this.exchange!;
    this.exchange = null;
    this.held = null;
    this.upstreamHead = null;
    this.logExchange(ex, false);
    if (!this.keepAlive || this.ctx.shuttingDown) {
      this.closeGracefully();
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

  private onDrain(): void {
    if (this.state === ST_FORWARD) {
      if (this.upstream !== null && this.responseStarted) {
        this.deadline = 0;
        this.upstream.resume();
      } else if (this.bridge !== null && this.responseStarted) {
        this.deadline = 0;
        this.bridge.resume();
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
        if (this.filtering) {
          this.filtering = false;
          this.keepAlive = false;
          this.respondError('ZP_ERR_FILTER_TIMEOUT');
        } else if (this.waitingPool !== null) {
          this.respondError('ZP_ERR_UPSTREAM_UNAVAILABLE');
        } else if (!this.reqDone && !this.responseStarted) {
          this.failRequestBody('ZP_ERR_REQUEST_TIMEOUT');
        } else {
          // The client stopped reading the response.
          this.abort('ZP_ERR_CLIENT_ABORTED');
        }
        return;
      default:
        this.socket.destroy();
    }
  }

  private onEnd(): void {
    // The client half-closed. An exchange in progress cannot deliver its response: abort it.
    if (this.state === ST_FORWARD) this.abort('ZP_ERR_CLIENT_ABORTED');
  }

  private onClose(): void {
    if (this.exchange !== null) this.abort('ZP_ERR_CLIENT_ABORTED');
    this.state = ST_CLOSED;
    this.input = null;
    unwatchDeadline(this);
    this.ctx.connections.delete(this);
    this.ctx.onConnectionClosed();
  }
}

function noop(): void {}
