/**
 * The upstream pools of a process, keyed by scheme, target, settings and TLS settings: they outlive a
 * runtime (a config reload compiles new routes onto the same pools), and two routes with different TLS
 * settings (CA, client certificate, SNI) never share a connection. HTTP/1.1 targets (`http://`,
 * `https://`) get a pool of keep-alive connections (src/http1/upstream-pool.ts), HTTP/2 targets (`h2c://`,
 * `h2://`) a pool of multiplexed sessions (src/upstream/http2-pool.ts). The targets' health records
 * (src/upstream/health.ts) outlive runtimes the same way: the registry holds their table.
 */
import { Pool } from '../http1/upstream-pool.ts';
import type { Logger } from '../observe/logger.ts';
import type { PoolLog, PoolSettings } from '../upstream/contract.ts';
import { HealthTable } from '../upstream/health.ts';
import { Http2Pool } from '../upstream/http2-pool.ts';
import type { UpstreamTls } from '../upstream/tls-options.ts';

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
  /** The targets' health: the instance's shared table with worker threads, else this process's own. */
  readonly health: HealthTable;

  constructor(health: HealthTable = new HealthTable()) {
    this.health = health;
  }

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

  /**
   * Keeps the pools in `used` (the targets of the runtimes still serving) and retires the others, which a
   * reload removed: their idle connections close, the busy ones when their exchange ends.
   */
  retain(used: ReadonlySet<Pool | Http2Pool>): void {
    for (const [key, pool] of this.pools) {
      if (used.has(pool)) continue;
      this.pools.delete(key);
      pool.retire();
    }
    for (const [key, pool] of this.http2Pools) {
      if (used.has(pool)) continue;
      this.http2Pools.delete(key);
      pool.retire();
    }
  }
}
