/**
 * HTTP/2 upstreams (h2c:// with prior knowledge, h2:// over TLS with ALPN h2): a small pool of multiplexed
 * `node:http2` client sessions per target. A session is opened on demand and takes streams while the
 * peer's SETTINGS_MAX_CONCURRENT_STREAMS allows; when every session is full another one is opened, up to
 * `max_connections_per_target` sessions, after which requesters wait in FIFO order. A session that
 * receives GOAWAY takes no new streams (its streams finish) and one that closes or fails is dropped, so
 * the next request opens a fresh one. Idle sessions close after `idle_timeout_ms`.
 *
 * A session is handed out only once the peer's first SETTINGS frame arrived: a peer that does not speak
 * HTTP/2 fails the session with a clear error instead of failing every stream on it.
 */
import type { ClientHttp2Session } from 'node:http2';
import net from 'node:net';
import { ZpError } from '../errors.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import * as tls from '../util/node-tls.ts';
import type { ConnectTimer, PoolLog, PoolSettings, UpstreamClient, UpstreamHandler } from './contract.ts';
import { Http2UpstreamStream } from './http2-stream.ts';
import { installStreamTables } from './session-tables.ts';
import { isTlsError, type UpstreamTls, upstreamTlsError } from './tls-options.ts';

/** Streams allowed on a session whose peer announces no limit. */
const MAX_STREAMS_PER_SESSION = 1000;
/** Receive windows: per stream and per session (the whole connection). */
const STREAM_WINDOW = 256 * 1024;
const SESSION_WINDOW = 8 * 1024 * 1024;

/**
 * After a session stopped taking streams and its last stream is done, the time allowed for the peer to
 * close the connection after our GOAWAY before zproxy closes the socket itself (node:http2 otherwise
 * waits for the peer, which may keep a connection half open after a GOAWAY of its own).
 */
const CLOSE_GRACE_MS = 1000;

const S_CONNECTING = 0;
const S_READY = 1;
const S_DRAINING = 2;
const S_CLOSED = 3;

export class Http2UpstreamSession implements Timed {
  readonly pool: Http2Pool;
  session: ClientHttp2Session | null = null;
  private readonly socket: net.Socket;
  private state = S_CONNECTING;
  /** Streams in use (reserved slots). */
  active = 0;
  /** Requesters waiting for this session to be ready. */
  readonly pending: UpstreamHandler[] = [];
  deadline = 0;
  private error: Error | null = null;

  constructor(pool: Http2Pool) {
    this.pool = pool;
    const t = pool.tls;
    if (t === null) {
      this.socket = net.connect({ host: pool.host, port: pool.port, noDelay: true });
      this.socket.once('connect', () => this.startSession());
    } else {
      this.socket = tls.connect({ ...t.options, host: pool.host, port: pool.port });
      this.socket.setNoDelay(true);
      this.socket.once('secureConnect', () => this.onSecureConnect());
    }
    this.socket.on('error', (err) => {
      this.error ??= err;
    });
    this.socket.once('close', () => this.onClose());
    this.deadline = Date.now() + pool.settings.connectTimeoutMs;
    watchDeadline(this);
  }

  get ready(): boolean {
    return this.state === S_READY;
  }

  get connecting(): boolean {
    return this.state === S_CONNECTING;
  }

  /** Streams this session may carry at once (the peer's limit once known). */
  get capacity(): number {
    const s = this.session;
    if (s === null || this.state === S_CONNECTING) return 100;
    const max = s.remoteSettings.maxConcurrentStreams ?? MAX_STREAMS_PER_SESSION;
    return Math.min(max, MAX_STREAMS_PER_SESSION);
  }

  private onSecureConnect(): void {
    const alpn = (this.socket as tls.TLSSocket).alpnProtocol;
    if (alpn !== 'h2') {
      this.fail(
        new ZpError(
          'ZP_ERR_UPSTREAM_PROTOCOL',
          `The upstream ${this.pool.authority} did not negotiate HTTP/2 by ALPN (got ${alpn === false ? 'no protocol' : alpn})`,
        ),
      );
      return;
    }
    this.startSession();
  }

  private startSession(): void {
    if (this.state !== S_CONNECTING) return;
    const socket = this.socket;
    // node:http2 is loaded by the first HTTP/2 upstream session (a worker that has none never loads it).
    const session = process.getBuiltinModule('node:http2').connect(this.pool.origin, {
      createConnection: () => socket,
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      maxSessionMemory: 32,
    });
    this.session = session;
    // Keeps finished streams' objects young (src/http2/stream-table.ts explains why); false leaves the
    // session as node:http2 made it (the downstream engine logs that once, for the same Node).
    installStreamTables(session);
    session.on('error', (err: Error) => {
      this.error ??= err;
    });
    session.once('remoteSettings', () => this.onReady());
    session.on('goaway', () => this.drain());
    session.once('close', () => this.onClose());
  }

  private onReady(): void {
    if (this.state !== S_CONNECTING) return;
    this.state = S_READY;
    // The connect deadline was set when the session was opened: what is left of it tells the time taken.
    this.pool.connectTime?.connected(this.pool.settings.connectTimeoutMs - (this.deadline - Date.now()));
    this.deadline = 0;
    this.session!.setLocalWindowSize(SESSION_WINDOW);
    const pending = this.pending.splice(0);
    const capacity = this.capacity;
    for (const r of pending) {
      if (this.active < capacity) {
        this.active++;
        r.onUpstreamReady(new Http2UpstreamStream(this, r));
      } else {
        this.pool.wait(r);
      }
    }
    if (this.active === 0) this.idle();
    this.pool.serveWaiters();
  }

  /** The stream that used a slot has closed. */
  release(): void {
    this.active--;
    if (this.state !== S_READY) {
      if (this.state === S_DRAINING && this.active === 0) {
        this.session?.close();
        this.deadline = Date.now() + CLOSE_GRACE_MS;
      }
      return;
    }
    if (this.active === 0) this.idle();
    this.pool.serveWaiters();
  }

  /** take() would reserve a slot now, or the session is connecting and takes more requesters. */
  get hasRoom(): boolean {
    if (this.state === S_CONNECTING) return this.pending.length < this.capacity;
    return this.state === S_READY && this.active < this.capacity && !this.session!.destroyed;
  }

  /** Reserves a slot when the session is ready and has room. */
  take(): boolean {
    if (this.state !== S_READY || this.active >= this.capacity || this.session!.destroyed) return false;
    this.active++;
    this.deadline = 0;
    return true;
  }

  private idle(): void {
    this.deadline = Date.now() + this.pool.settings.idleTimeoutMs;
  }

  /** GOAWAY received (or closing): no new streams; the session closes when its streams are done. */
  drain(): void {
    if (this.state === S_CLOSED || this.state === S_DRAINING) return;
    if (this.state === S_CONNECTING) {
      this.fail(new ZpError('ZP_ERR_UPSTREAM_PROTOCOL', 'The upstream refused the HTTP/2 session (GOAWAY)'));
      return;
    }
    this.state = S_DRAINING;
    this.deadline = Date.now() + CLOSE_GRACE_MS;
    this.pool.dropped(this);
    if (this.active === 0) this.session?.close();
  }

  onDeadline(): void {
    if (this.state === S_CONNECTING) {
      this.fail(
        new ZpError('ZP_ERR_UPSTREAM_TIMEOUT', `Connecting to the upstream ${this.pool.authority} timed out`),
      );
    } else if (this.state === S_READY) {
      if (this.active === 0) this.drain();
    } else if (this.state === S_DRAINING) {
      if (this.active > 0) this.deadline = Date.now() + CLOSE_GRACE_MS;
      else {
        this.session?.destroy();
        this.socket.destroy();
      }
    }
  }

  /** Closes the session when no stream uses it (shutdown). */
  closeIfIdle(): void {
    if (this.active === 0 && this.state !== S_CLOSED) {
      if (this.state === S_CONNECTING) this.fail(new ZpError('ZP_ERR_SHUTTING_DOWN'));
      else this.drain();
    }
  }

  private fail(error: ZpError): void {
    if (this.state === S_CLOSED) return;
    this.state = S_CLOSED;
    this.deadline = 0;
    unwatchDeadline(this);
    this.pool.dropped(this);
    const pending = this.pending.splice(0);
    if (this.session !== null) this.session.destroy();
    this.socket.destroy();
    for (const r of pending) r.onUpstreamError(error, null);
    this.pool.serveWaiters();
  }

  private onClose(): void {
    if (this.state === S_CLOSED) return;
    if (this.state === S_CONNECTING) {
      this.fail(this.connectError());
      return;
    }
    this.state = S_CLOSED;
    this.deadline = 0;
    unwatchDeadline(this);
    this.pool.dropped(this);
    this.session?.destroy();
    this.socket.destroy();
    this.pool.serveWaiters();
  }

  /** Why a session that never became ready failed. */
  private connectError(): ZpError {
    const err = this.error as NodeJS.ErrnoException | null;
    const pool = this.pool;
    if (err?.code === 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL') {
      pool.log.logger?.warn({ upstream: pool.authority, reason: err.message }, 'upstream refused ALPN h2');
      return new ZpError(
        'ZP_ERR_UPSTREAM_PROTOCOL',
        `The upstream ${pool.authority} did not negotiate HTTP/2 by ALPN (it refused h2)`,
      );
    }
    if (pool.tls !== null && isTlsError(err)) {
      pool.log.logger?.warn(
        { upstream: pool.authority, code: err!.code, reason: err!.message },
        'upstream TLS failure',
      );
      return upstreamTlsError(err!, pool.authority);
    }
    if (this.session === null) return new ZpError('ZP_ERR_UPSTREAM_CONNECT');
    const reason = err === null ? 'closed the connection' : err.message;
    pool.log.logger?.warn({ upstream: pool.authority, reason }, 'upstream HTTP/2 session failed');
    return new ZpError(
      'ZP_ERR_UPSTREAM_PROTOCOL',
      `The upstream ${pool.authority} did not answer the HTTP/2 connection preface: ${reason}`,
    );
  }
}

export class Http2Pool implements UpstreamClient {
  readonly http1 = false;
  readonly host: string;
  readonly port: number;
  /** 'host:port', for logs. */
  readonly authority: string;
  /** The URL given to http2.connect (its scheme sets `:scheme`). */
  readonly origin: string;
  /** `:scheme` of requests sent on this pool's sessions. */
  readonly scheme: string;
  readonly settings: PoolSettings;
  readonly tls: UpstreamTls | null;
  readonly log: PoolLog;
  /** Sessions that are connecting or ready (draining and closed ones are dropped from here). */
  private readonly sessions: Http2UpstreamSession[] = [];
  private readonly waiters: UpstreamHandler[] = [];
  /** Sessions opened over the pool's life (for tests and metrics). */
  opened = 0;
  /** Told how long each new session took to be ready (metrics), or null. */
  connectTime: ConnectTimer | null = null;

  constructor(host: string, port: number, settings: PoolSettings, t: UpstreamTls | null, log: PoolLog) {
    this.host = host;
    this.port = port;
    this.authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.scheme = t === null ? 'http' : 'https';
    this.origin = `${this.scheme}://${this.authority}`;
    this.settings = settings;
    this.tls = t;
    this.log = log;
  }

  /** Sessions with no stream in use (metrics). */
  get idleCount(): number {
    let n = 0;
    for (const s of this.sessions) if (s.active === 0) n++;
    return n;
  }

  get size(): number {
    return this.sessions.length;
  }

  /** No session with a free stream, none connecting with room, no room for another: a requester would wait. */
  get saturated(): boolean {
    const sessions = this.sessions;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      if (s.hasRoom) return false;
    }
    return sessions.length >= this.settings.maxConnections;
  }

  /** Requesters waiting for a stream. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Reserves a stream slot: returns the attempt on a ready session now, or null when the requester will be
   * called back (onUpstreamReady with the attempt, or onUpstreamError).
   */
  acquire(requester: UpstreamHandler, _fresh = false): Http2UpstreamStream | null {
    const sessions = this.sessions;
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      if (s.take()) return new Http2UpstreamStream(s, requester);
    }
    for (let i = 0; i < sessions.length; i++) {
      const s = sessions[i]!;
      if (s.connecting && s.pending.length < s.capacity) {
        s.pending.push(requester);
        return null;
      }
    }
    if (sessions.length < this.settings.maxConnections) this.open().pending.push(requester);
    else this.waiters.push(requester);
    return null;
  }

  private open(): Http2UpstreamSession {
    this.opened++;
    const s = new Http2UpstreamSession(this);
    this.sessions.push(s);
    return s;
  }

  /** Withdraws a requester still waiting for a session. */
  cancel(requester: UpstreamHandler): void {
    let i = this.waiters.indexOf(requester);
    if (i !== -1) {
      this.waiters.splice(i, 1);
      return;
    }
    for (const s of this.sessions) {
      i = s.pending.indexOf(requester);
      if (i !== -1) {
        s.pending.splice(i, 1);
        return;
      }
    }
  }

  /** Queues a requester until a slot frees (used by a session that got more requesters than its limit). */
  wait(requester: UpstreamHandler): void {
    this.waiters.push(requester);
  }

  /** A session stopped taking streams (GOAWAY, idle close, failure). */
  dropped(session: Http2UpstreamSession): void {
    const i = this.sessions.indexOf(session);
    if (i !== -1) this.sessions.splice(i, 1);
  }

  /** Hands free slots to waiting requesters; opens sessions for the rest while the bound allows. */
  serveWaiters(): void {
    const waiters = this.waiters;
    while (waiters.length > 0) {
      let session: Http2UpstreamSession | null = null;
      for (const s of this.sessions) {
        if (s.take()) {
          session = s;
          break;
        }
      }
      if (session !== null) {
        process.nextTick(handOver, waiters.shift()!, session);
        continue;
      }
      const connecting = this.sessions.find((s) => s.connecting && s.pending.length < s.capacity);
      if (connecting !== undefined) connecting.pending.push(waiters.shift()!);
      else if (this.sessions.length < this.settings.maxConnections)
        this.open().pending.push(waiters.shift()!);
      else return;
    }
  }

  /** Closes every session without streams (shutdown). */
  closeIdle(): void {
    for (const s of this.sessions.slice()) s.closeIfIdle();
  }

  /** No route uses this target any more: sessions without streams close now, the others drain. */
  retire(): void {
    for (const s of this.sessions.slice()) {
      s.closeIfIdle();
      s.drain();
    }
  }
}

function handOver(requester: UpstreamHandler, session: Http2UpstreamSession): void {
  requester.onUpstreamReady(new Http2UpstreamStream(session, requester));
}
