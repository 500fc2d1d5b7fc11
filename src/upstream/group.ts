/**
 * An upstream group: the targets of one route and the balancer that picks one per exchange (round-robin
 * for now; health-aware balancing comes with health checks).
 */
import type { Http2Pool } from './http2-pool.ts';
import type { Pool } from './pool.ts';

export class UpstreamTarget {
  /**
   * The HTTP/1.1 pool (http://, https://). An HTTP/2 target's is never used: its exchanges, HTTP/1.1
   * ones included, go to `http2`.
   */
  readonly pool: Pool;
  /** The HTTP/2 session pool of an h2c:// or h2:// target; null for HTTP/1.1 targets. */
  readonly http2: Http2Pool | null;
  /** The Host value to send when the client's Host is not preserved: 'host' or 'host:port'. */
  readonly hostHeader: string;

  constructor(pool: Pool, hostHeader: string, http2: Http2Pool | null = null) {
    this.pool = pool;
    this.hostHeader = hostHeader;
    this.http2 = http2;
  }
}

export class UpstreamGroup {
  readonly targets: readonly UpstreamTarget[];
  private next = 0;

  constructor(targets: readonly UpstreamTarget[]) {
    if (targets.length === 0) throw new Error('an upstream group needs at least one target');
    this.targets = targets;
  }

  pick(): UpstreamTarget {
    const targets = this.targets;
    if (targets.length === 1) return targets[0]!;
    const t = targets[this.next]!;
    this.next = this.next + 1 === targets.length ? 0 : this.next + 1;
    return t;
  }
}
