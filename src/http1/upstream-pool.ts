/**
 * Keep-alive connections to one HTTP/1.1 upstream target (`http://`, `https://`): the HTTP/1.1 side of
 * the upstream client contract's pools (src/upstream/contract.ts, UpstreamClient). Connections are reused
 * LIFO (the most recently used connection is the warmest and the least likely to have been closed by the
 * upstream), bounded in total and in idle count, idle ones closed after `idleTimeoutMs`. Requesters beyond
 * the bound wait in FIFO order. `https://` pools open TLS connections.
 *
 * Pools live in a registry keyed by scheme, target, settings and TLS settings (src/runtime/pools.ts), so
 * they outlive a runtime (config reload) and two routes with different TLS settings (CA, client
 * certificate, SNI) never share a connection.
 */
import type {
  ConnectTimer,
  PoolLog,
  PoolSettings,
  UpstreamClient,
  UpstreamHandler,
} from '../upstream/contract.ts';
import type { UpstreamTls } from '../upstream/tls-options.ts';
import { UpstreamConnection } from './upstream-connection.ts';

export class Pool implements UpstreamClient {
  readonly http1 = true;
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
  /** Told how long each new connection took to open (metrics), or null. */
  connectTime: ConnectTimer | null = null;
  /** No route uses the target any more (a reload removed it): connections close instead of idling. */
  private retired = false;

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

  /** No idle connection and no room for another: a requester would wait. */
  get saturated(): boolean {
    return this.idleStack.length === 0 && this.total >= this.settings.maxConnections;
  }

  /** Requesters waiting for a connection. */
  get waiting(): number {
    return this.waiters.length;
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
    if ((!conn.reusable && conn.served > 0) || conn.upgrade || this.retired) {
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

  /** No route uses this target any more: idle connections close now, busy ones when their exchange ends. */
  retire(): void {
    this.retired = true;
    this.closeIdle();
  }
}

function handOver(requester: UpstreamHandler, conn: UpstreamConnection): void {
  requester.onUpstreamReady(conn);
}
