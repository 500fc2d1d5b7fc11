/**
 * Keep-alive connections to one upstream target: reused LIFO (the most recently used connection is the
 * warmest and the least likely to have been closed by the upstream), bounded in total and in idle count,
 * idle ones closed after `idleTimeoutMs`. Requesters beyond the bound wait in FIFO order.
 *
 * Pools live in a registry keyed by scheme, target, settings and TLS settings, so they outlive a runtime
 * (config reload) and two routes with different TLS settings (CA, client certificate, SNI) never share a
 * connection. `https://` pools open TLS connections; HTTP/2 upstreams have their own pool (Http2Pool).
 */
import { UpstreamConnection } from '../http1/upstream-connection.ts';
import type { Logger } from '../observe/logger.ts';
import type { UpstreamHandler } from './contract.ts';
import { Http2Pool } from './http2-pool.ts';
import type { UpstreamTls } from './tls-options.ts';

export interface PoolSettings {
  readonly connectTimeoutMs: number;
  readonly responseHeaderTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxIdle: number;
}

/** Where the registry reports what a client response cannot explain alone (TLS failures). */
export interface PoolLog {
  logger: Logger | null;
}

export class Pool {
  readonly host: string;
  readonly port: number;
  /** 'host:port', for logs and metrics. */
  readonly authority: string;
  readonly settings: PoolSettings;
  /** TLS settings for https:// targets; null for http:// (plain TCP). */
  readonly tls: UpstreamTls | null;
  readonly log: PoolLog;
  private readonly idleStack: UpstreamConnection[] = [];
  private readonly waiters: UpstreamHandler[] = [];
  /** Live connections: connecting, active and idle. */
  private total = 0;
  /** Connections opened over the pool's life (for tests and metrics). */
  opened = 0;

  constructor(
    host: string,
    port: number,
    settings: PoolSettings,
    tls: UpstreamTls | null = null,
    log: PoolLog = { logger: null },
  ) {
    this.host = host;
    this.port = port;
    this.authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.settings = settings;
    this.tls = tls;
    this.log = log;
  }

  get size(): number {
    return this.total;
  }

  get idleCount(): number {
    return this.idleStack.length;
  }

  /**
   * Returns an idle connection now, or null when the requester will be called back (onUpstreamReady or
   * onUpstreamError). `fresh` skips idle connections (a retry after a stale one failed).
   */
  acquire(requester: UpstreamHandler, fresh: boolean): UpstreamConnection | null {
    if (!fresh) {
      const stack = this.idleStack;
      while (stack.length > 0) {
        const conn = stack.pop()!;
        if (conn.usable) {
          conn.activate(requester);
          return conn;
        }
        conn.destroy();
      }
    }
    if (this.total < this.settings.maxConnections) {
      this.open(requester);
    } else {
      this.waiters.push(requester);
    }
    return null;
  }

  private open(requester: UpstreamHandler): void {
    this.total++;
    this.opened++;
    new UpstreamConnection(this, requester);
  }

  /**
   * A connection of its own for one WebSocket handshake (never pooled, not counted): the handler hears
   * onUpstreamReady when it is connected, then onUpstreamSwitched on a 101.
   */
  upgrade(requester: UpstreamHandler): UpstreamConnection {
    return new UpstreamConnection(this, requester, true);
  }

  /** Withdraws a requester that is still waiting for a connection. */
  cancel(requester: UpstreamHandler): void {
    const i = this.waiters.indexOf(requester);
    if (i !== -1) this.waiters.splice(i, 1);
  }

  /** A connection finished an exchange cleanly: hand it to a waiter, keep it idle, or close it. */
  release(conn: UpstreamConnection): void {
    // An upgrade connection (a WebSocket handshake answered without 101) is never pooled.
    if ((!conn.reusable && conn.served > 0) || conn.upgrade) {
      conn.destroy();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      conn.activate(waiter);
      process.nextTick(handOver, waiter, conn);
      return;
    }
    if (this.idleStack.length >= this.settings.maxIdle) {
      conn.destroy();
      return;
    }
    conn.markIdle();
    this.idleStack.push(conn);
  }

  /** Called by a connection when its socket has closed. */
  remove(conn: UpstreamConnection): void {
    this.total--;
    const i = this.idleStack.indexOf(conn);
    if (i !== -1) this.idleStack.splice(i, 1);
    const waiter = this.waiters.shift();
    if (waiter !== undefined) this.open(waiter);
  }

  /** Closes every idle connection (shutdown). */
  closeIdle(): void {
    const stack = this.idleStack.splice(0);
    for (const conn of stack) conn.destroy();
  }
}

function handOver(requester: UpstreamHandler, conn: UpstreamConnection): void {
  requester.onUpstreamReady(conn);
}

function settingsKey(host: string, port: number, s: PoolSettings, tls: UpstreamTls | null): string {
  const base = `${host}|${port}|${s.connectTimeoutMs}|${s.responseHeaderTimeoutMs}|${s.idleTimeoutMs}|${s.maxConnections}|${s.maxIdle}`;
  return tls === null ? base : `${base}|${tls.key}`;
}

/** Pools keyed by scheme, target, settings and TLS settings; survives reloads. */
export class PoolRegistry implements PoolLog {
  private readonly pools = new Map<string, Pool>();
  private readonly http2Pools = new Map<string, Http2Pool>();
  /** Set by the server: TLS and HTTP/2 session failures are logged here (with their reason). */
  logger: Logger | null = null;

  /** An HTTP/1.1 pool: plain TCP when `tls` is null (http://), else TLS (https://). */
  get(host: string, port: number, settings: PoolSettings, tls: UpstreamTls | null = null): Pool {
    const key = `${tls === null ? 'http' : 'https'}|${settingsKey(host, port, settings, tls)}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new Pool(host, port, settings, tls, this);
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** A pool of multiplexed HTTP/2 sessions: h2c:// when `tls` is null, else h2:// (ALPN h2). */
  getHttp2(host: string, port: number, settings: PoolSettings, tls: UpstreamTls | null): Http2Pool {
    const key = `${tls === null ? 'h2c' : 'h2'}|${settingsKey(host, port, settings, tls)}`;
    let pool = this.http2Pools.get(key);
    if (pool === undefined) {
      pool = new Http2Pool(host, port, settings, tls, this);
      this.http2Pools.set(key, pool);
    }
    return pool;
  }

  all(): IterableIterator<Pool> {
    return this.pools.values();
  }

  allHttp2(): IterableIterator<Http2Pool> {
    return this.http2Pools.values();
  }

  closeIdle(): void {
    for (const pool of this.pools.values()) pool.closeIdle();
    for (const pool of this.http2Pools.values()) pool.closeIdle();
  }
}
