/**
 * Keep-alive connections to one upstream target: reused LIFO (the most recently used connection is the
 * warmest and the least likely to have been closed by the upstream), bounded in total and in idle count,
 * idle ones closed after `idleTimeoutMs`. Requesters beyond the bound wait in FIFO order.
 *
 * Pools live in a registry keyed by target and settings, so they outlive a runtime (config reload).
 */
import { UpstreamConnection, type UpstreamRequester } from '../http1/upstream-connection.ts';

export interface PoolSettings {
  readonly connectTimeoutMs: number;
  readonly responseHeaderTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxIdle: number;
}

export class Pool {
  readonly host: string;
  readonly port: number;
  /** 'host:port', for logs and metrics. */
  readonly authority: string;
  readonly settings: PoolSettings;
  private readonly idleStack: UpstreamConnection[] = [];
  private readonly waiters: UpstreamRequester[] = [];
  /** Live connections: connecting, active and idle. */
  private total = 0;
  /** Connections opened over the pool's life (for tests and metrics). */
  opened = 0;

  constructor(host: string, port: number, settings: PoolSettings) {
    this.host = host;
    this.port = port;
    this.authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.settings = settings;
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
  acquire(requester: UpstreamRequester, fresh: boolean): UpstreamConnection | null {
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

  private open(requester: UpstreamRequester): void {
    this.total++;
    this.opened++;
    new UpstreamConnection(this, requester);
  }

  /** Withdraws a requester that is still waiting for a connection. */
  cancel(requester: UpstreamRequester): void {
    const i = this.waiters.indexOf(requester);
    if (i !== -1) this.waiters.splice(i, 1);
  }

  /** A connection finished an exchange cleanly: hand it to a waiter, keep it idle, or close it. */
  release(conn: UpstreamConnection): void {
    if (!conn.reusable && conn.served > 0) {
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

function handOver(requester: UpstreamRequester, conn: UpstreamConnection): void {
  requester.onUpstreamReady(conn);
}

/** Pools keyed by target and settings; survives reloads. */
export class PoolRegistry {
  private readonly pools = new Map<string, Pool>();

  get(host: string, port: number, settings: PoolSettings): Pool {
    const key = `${host}|${port}|${settings.connectTimeoutMs}|${settings.responseHeaderTimeoutMs}|${settings.idleTimeoutMs}|${settings.maxConnections}|${settings.maxIdle}`;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new Pool(host, port, settings);
      this.pools.set(key, pool);
    }
    return pool;
  }

  all(): IterableIterator<Pool> {
    return this.pools.values();
  }

  closeIdle(): void {
    for (const pool of this.pools.values()) pool.closeIdle();
  }
}
