/**
 * HTTP/2 from clients: sessions are served by `node:http2` on sockets handed over either by an HTTP/1
 * connection that saw the connection preface (h2c with prior knowledge) or by the listener after a TLS
 * handshake that chose `h2` by ALPN. Each stream becomes a StreamExchange.
 *
 * Hardening (docs/protocols.md, "HTTP/2 limits"): the SETTINGS and node:http2's own flood protections
 * come from `config.http2` (session-limits.ts); on top of them every session has a SessionGuard that
 * counts streams the client cancels (Rapid Reset, CVE-2023-44487), streams node:http2 refused on its own
 * (HPACK bombs, malformed header blocks) and PING/SETTINGS frames, and closes
 * the session with GOAWAY ENHANCE_YOUR_CALM when a budget runs out. Streams already reset when they reach
 * zproxy are never forwarded.
 */
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.ts';
import { ERROR_CODES, errorBody } from '../errors.ts';
import type { ConnectionContext } from '../http1/downstream-connection.ts';
import type { Logger } from '../observe/logger.ts';
import { plainAddress } from '../util/address.ts';
import { SlotSet } from '../util/slot-set.ts';
import { CONTROL_FRAMES_PER_SECOND, http2ServerOptions, RateBudget } from './session-limits.ts';
import { kOwner, type OwnedStream, StreamExchange } from './stream-exchange.ts';
import { installStreamTables } from './stream-table.ts';

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

/** How long a session closed for flooding lingers after its GOAWAY (see SessionGuard.enhanceYourCalm). */
const GOAWAY_LINGER_MS = 250;

/** How often the streams node:http2 refused on its own are counted (SessionGuard.checkRefused). */
const REFUSED_CHECK_MS = 200;

/** The SessionGuard of a session. */
const kGuard = Symbol('zproxy.http2.guard');
/** Set on a stream that zproxy itself resets (so the reset is not counted as the client's). */
const kResetByProxy = Symbol('zproxy.http2.resetByProxy');

type GuardedSession = http2.ServerHttp2Session & { [kGuard]?: SessionGuard };
type TrackedStream = OwnedStream & { [kResetByProxy]?: boolean; [kGuard]?: SessionGuard };

/**
 * Per-session budgets: streams cancelled by the client (RST_STREAM, or closed before the response was
 * complete) per second, and PING + SETTINGS frames per second. The first budget that runs out closes the
 * session with GOAWAY ENHANCE_YOUR_CALM and one warn log line.
 */
class SessionGuard {
  readonly session: http2.ServerHttp2Session;
  /** The client's address, and the scheme its requests are forwarded with (read once per session). */
  readonly clientAddress: string;
  readonly scheme: string;
  /** The Strict-Transport-Security value for responses on this session (TLS only), or null. */
  readonly hsts: string | null;
  readonly resets: RateBudget;
  readonly controlFrames = new RateBudget(CONTROL_FRAMES_PER_SECOND);
  private readonly logger: Logger | null;
  /** The session was closed for exceeding a budget (or is going away): nothing more is counted. */
  closed = false;
  /** Streams of this session that reached zproxy ('stream' events). */
  streamsSeen = 0;
  /** Streams node:http2 refused before zproxy saw them, as counted by the last checkRefused(). */
  private refused = 0;

  constructor(
    session: http2.ServerHttp2Session,
    maxResetsPerSecond: number,
    logger: Logger | null,
    hsts: string | null,
  ) {
    this.session = session;
    this.clientAddress = plainAddress(session.socket?.remoteAddress);
    this.scheme = session.encrypted === true ? 'https' : 'http';
    this.hsts = hsts;
    this.resets = new RateBudget(maxResetsPerSecond);
    this.logger = logger;
  }

  onReset(): void {
    if (!this.closed && !this.resets.take()) this.enhanceYourCalm('stream resets', this.resets.count);
  }

  /**
   * Counts the streams the client opened that node:http2 refused before they reached zproxy (header
   * blocks over the field count or list size, as an HPACK bomb makes them, or malformed ones): nghttp2
   * resets them on its own and tells the application nothing, but it does record the last stream id it
   * processed. Client streams have odd ids from 1 up, so the id says how many were opened. Each refused
   * stream takes from the reset budget.
   */
  checkRefused(): void {
    if (this.closed) return;
    let last: number | undefined;
    try {
      last = this.session.state.lastProcStreamID;
    } catch {
      return; // destroyed
    }
    if (last === undefined) return;
    const refused = ((last + 1) >>> 1) - this.streamsSeen;
    if (refused <= this.refused) return;
    const added = refused - this.refused;
    this.refused = refused;
    for (let i = 0; i < added; i++) {
      if (!this.resets.take()) {
        this.enhanceYourCalm('refused streams', this.refused);
        return;
      }
    }
  }

  onControlFrame(): void {
    if (!this.closed && !this.controlFrames.take())
      this.enhanceYourCalm('PING/SETTINGS frames', this.controlFrames.count);
  }

  private enhanceYourCalm(what: string, count: number): void {
    this.closed = true;
    const session = this.session;
    this.logger?.warn(
      { client: plainAddress(session.socket?.remoteAddress), count, limit: what },
      `HTTP/2 client exceeded the ${what} rate; GOAWAY ENHANCE_YOUR_CALM`,
    );
    // GOAWAY first, then the connection is closed a moment later: closing at once while the client is
    // still sending would make the kernel answer with a TCP reset that can discard the GOAWAY before the
    // client reads it. New streams are refused from the GOAWAY on; open streams close with the session,
    // which aborts their upstream requests at once (StreamExchange).
    try {
      session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    } catch {
      // The session is already going away.
    }
    setTimeout(destroySession, GOAWAY_LINGER_MS, session).unref();
  }
}

export class Http2Downstream {
  private readonly ctx: ConnectionContext;
  private readonly logger: Logger | null;
  /** installStreamTables failed once and it was logged. */
  private warnedStreamTables = false;
  /** The node:http2 server for the current runtime's config (rebuilt when a reload changes it). */
  private server: http2.Http2Server;
  private serverConfig: Config;
  readonly sessions = new SlotSet<http2.ServerHttp2Session>();
  /** Runs SessionGuard.checkRefused on every session while there are sessions. */
  private refusedCheck: NodeJS.Timeout | null = null;
  /**
   * The HSTS value for the session being created: set by acceptSecure around the synchronous 'connection'
   * emit (node:http2 creates the session and emits 'session' within it), null for h2c.
   */
  private nextHsts: string | null = null;

  /** `logger` receives the warn line of a session closed for flooding (none when omitted). */
  constructor(ctx: ConnectionContext, logger?: Logger) {
    this.ctx = ctx;
    this.logger = logger ?? null;
    this.serverConfig = ctx.runtime.config;
    this.server = this.createServer(this.serverConfig);
  }

  /** The server whose SETTINGS and limits match the running config; sessions keep the one they began with. */
  private currentServer(): http2.Http2Server {
    const config = this.ctx.runtime.config;
    if (config !== this.serverConfig) {
      const prior = this.serverConfig;
      this.serverConfig = config;
      if (
        JSON.stringify(prior.http2) !== JSON.stringify(config.http2) ||
        prior.limits.max_header_count !== config.limits.max_header_count
      )
        this.server = this.createServer(config);
    }
    return this.server;
  }

  private createServer(config: Config): http2.Http2Server {
    const server = http2.createServer(http2ServerOptions(config));
    const maxResets = config.http2.max_resets_per_second;
    const connectionWindow = config.http2.connection_window_bytes;
    server.on('session', (session: GuardedSession) => {
      // Keeps finished streams' objects young (stream-table.ts explains why).
      if (!installStreamTables(session) && !this.warnedStreamTables) {
        this.warnedStreamTables = true;
        this.logger?.warn('node:http2 session state has an unexpected shape: stream tables left as they are');
      }
      this.sessions.add(session);
      this.refusedCheck ??= setInterval(checkRefused, REFUSED_CHECK_MS, this.sessions).unref();
      const guard = new SessionGuard(session, maxResets, this.logger, this.nextHsts);
      session[kGuard] = guard;
      session.on('error', ignore);
      session.on('ping', () => guard.onControlFrame());
      session.on('remoteSettings', () => guard.onControlFrame());
      try {
        session.setLocalWindowSize(connectionWindow);
      } catch {
        // The session is already closing.
      }
      session.once('close', () => {
        guard.closed = true;
        this.sessions.delete(session);
        if (this.sessions.size === 0) this.stopRefusedCheck();
        this.ctx.onConnectionClosed();
      });
    });
    server.on('stream', (stream: TrackedStream, headers: http2.IncomingHttpHeaders) =>
      this.onStream(stream, headers),
    );
    return server;
  }

  private onStream(stream: TrackedStream, headers: http2.IncomingHttpHeaders): void {
    // A stream may already carry an error (its session failed in the same read); never let it throw.
    stream.on('error', ignore);
    const session = stream.session as GuardedSession | undefined;
    const guard = session?.[kGuard];
    if (session === undefined || guard === undefined) return;
    guard.streamsSeen++;
    if (guard.closed) return;
    // A stream reset in the same read as its HEADERS reaches this event already closed: it is counted and
    // never forwarded.
    if (stream.closed || stream.destroyed) {
      guard.onReset();
      return;
    }
    stream[kGuard] = guard;
    stream.on('close', onStreamClose);
    const verdict = checkRequestHeaders(headers, this.ctx.runtime.config.http2.max_header_list_bytes);
    if (verdict === HEADERS_MALFORMED) {
      resetByProxy(stream, NGHTTP2_PROTOCOL_ERROR);
      guard.onReset();
      return;
    }
    if (verdict === HEADERS_TOO_LARGE) {
      respondHeadersTooLarge(stream, guard.hsts);
      return;
    }
    stream.close = closeByProxy;
    new StreamExchange(
      this.ctx.runtime,
      stream,
      headers,
      guard.clientAddress,
      guard.scheme,
      guard.hsts,
      this.ctx.tunnels ?? null,
    );
  }

  /** Serves a connection whose first bytes (`buffered`, the preface and maybe more) were already read. */
  accept(socket: Socket, buffered: Buffer): void {
    // The session replays bytes left in the socket's buffer on its next tick; the socket stays paused
    // until then so that nothing else consumes them.
    socket.unshift(buffered);
    this.currentServer().emit('connection', socket);
  }

  /**
   * Serves a TLS connection whose handshake has completed with ALPN `h2`. `hsts` is the
   * Strict-Transport-Security value of its listener (`tls.hsts`), or null when HSTS is off: every response
   * on the session, proxied or zproxy's own, then carries it (replacing the upstream's).
   */
  acceptSecure(socket: TLSSocket, hsts: string | null = null): void {
    // node:http2 waits for 'secureConnect' while `secureConnecting` is set, an event only client sockets
    // emit; a server-side TLSSocket made outside a tls.Server keeps the flag, so it is cleared here as
    // tls.Server does before 'secureConnection'.
    (socket as TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    const server = this.currentServer();
    this.nextHsts = hsts;
    try {
      server.emit('connection', socket);
    } finally {
      this.nextHsts = null;
    }
  }

  /** Graceful stop: GOAWAY on every session; streams in progress may finish. */
  shutdown(): void {
    for (const session of this.sessions) session.close();
  }

  private stopRefusedCheck(): void {
    if (this.refusedCheck !== null) clearInterval(this.refusedCheck);
    this.refusedCheck = null;
  }

  destroy(): void {
    this.stopRefusedCheck();
    for (const session of this.sessions) session.destroy();
  }
}

const HEADERS_OK = 0;
const HEADERS_MALFORMED = 1;
const HEADERS_TOO_LARGE = 2;

/**
 * One pass over a request's header list for the checks node:http2 leaves to the application (nghttp2
 * already refuses uppercase names, connection-specific fields, `te` other than `trailers`, pseudo-header
 * errors and content-length mismatches):
 * - HEADERS_MALFORMED: a `host` field that names another authority than `:authority` (RFC 9113 §8.3.1)
 *   would let routing and the upstream see different hosts (checked first: a stream error);
 * - HEADERS_TOO_LARGE: the list is larger than `maxBytes` as RFC 9113 §6.5.2 counts it (name + value + 32
 *   per field). nghttp2 applies SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged it;
 *   a client that sends before acknowledging would get its default (unlimited), so it is checked here.
 */
function checkRequestHeaders(headers: http2.IncomingHttpHeaders, maxBytes: number): number {
  let size = 0;
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === 'string') size += name.length + value.length + 32;
    else if (Array.isArray(value)) for (const v of value) size += name.length + v.length + 32;
    else size += name.length + String(value).length + 32;
  }
  const host = headers.host;
  const authority = headers[':authority'];
  if (host !== undefined && authority !== undefined && host.toLowerCase() !== authority.toLowerCase())
    return HEADERS_MALFORMED;
  return size > maxBytes ? HEADERS_TOO_LARGE : HEADERS_OK;
}

/** 431 with the usual JSON error body (not forwarded, so no upstream and no exchange). */
function respondHeadersTooLarge(stream: TrackedStream, hsts: string | null): void {
  const body = errorBody('ZP_ERR_HEADERS_TOO_LARGE');
  const headers: http2.OutgoingHttpHeaders = {
    ':status': ERROR_CODES.ZP_ERR_HEADERS_TOO_LARGE.status,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  if (hsts !== null) headers['strict-transport-security'] = hsts;
  stream.respond(headers);
  stream.end(body);
}

const prototypeClose = (stream: http2.ServerHttp2Stream) =>
  Object.getPrototypeOf(stream).close as typeof stream.close;

/** Replaces `close` on forwarded streams so that resets sent by zproxy are told apart from the client's. */
function closeByProxy(this: TrackedStream, code?: number, callback?: () => void): void {
  this[kResetByProxy] = true;
  prototypeClose(this).call(this, code, callback);
}

function resetByProxy(stream: TrackedStream, code: number): void {
  stream[kResetByProxy] = true;
  stream.close(code);
}

/**
 * A stream the client cancelled: it closed before zproxy's response was complete (RST_STREAM with any
 * code, NO_ERROR included) and zproxy did not reset it.
 */
function onStreamClose(this: TrackedStream): void {
  if (this[kResetByProxy] !== true) {
    const cancelled =
      (this.rstCode ?? NGHTTP2_NO_ERROR) !== NGHTTP2_NO_ERROR || !this.headersSent || !this.writableEnded;
    if (cancelled) this[kGuard]?.onReset();
  }
  // The exchange serving the stream (StreamExchange or Http2UpstreamExchange) learns it closed.
  this[kOwner]?.onStreamClose();
}

function destroySession(session: http2.ServerHttp2Session): void {
  // With an error argument so that node:http2 keeps the code (without one it sends NO_ERROR); the
  // 'error' event this emits is ignored.
  session.destroy(new Error('HTTP/2 client exceeded a rate limit'), NGHTTP2_ENHANCE_YOUR_CALM);
}

function checkRefused(sessions: SlotSet<http2.ServerHttp2Session>): void {
  sessions.forEachMember((session) => (session as GuardedSession)[kGuard]?.checkRefused());
}

function ignore(): void {}
