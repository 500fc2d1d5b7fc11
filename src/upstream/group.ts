/**
 * An upstream group: the targets of one route, the balancer that picks one per exchange (round-robin
 * for now; health-aware balancing comes with health checks), another one for a retry, and the retry
 * budget's counters.
 */
import type { UpstreamAttempt, UpstreamHandler } from './contract.ts';
import { Http2Pool } from './http2-pool.ts';
import type { Pool } from './pool.ts';
import { RetryBudget } from './retry.ts';

export class UpstreamTarget {
  /** The HTTP/1.1 connection pool of an http:// or https:// target; null for HTTP/2 targets. */
  readonly pool: Pool | null;
  /**
   * The HTTP/2 session pool of an h2c:// or h2:// target (its exchanges, HTTP/1.1 ones included, go
   * there); null for HTTP/1.1 targets.
   */
  readonly http2: Http2Pool | null;
  /** 'host:port' of the target, for logs. */
  readonly authority: string;
  /** The Host value to send when the client's Host is not preserved: 'host' or 'host:port'. */
  readonly hostHeader: string;

  /**
   * Takes a connection or stream for `handler`: returns it now, or null when the handler will hear
   * (onUpstreamReady or onUpstreamError). `fresh` skips idle connections (a retry after a stale one).
   */
  acquire(handler: UpstreamHandler, fresh: boolean): UpstreamAttempt | null {
    return this.pool !== null ? this.pool.acquire(handler, fresh) : this.http2!.acquire(handler);
  }

  /** Withdraws a handler still waiting for a connection or stream. */
  cancel(handler: UpstreamHandler): void {
    if (this.pool !== null) this.pool.cancel(handler);
    else this.http2!.cancel(handler);
  }

  /** Exactly one of `pool` and `http2` is given. */
  constructor(pool: Pool | Http2Pool, hostHeader: string) {
    const h2 = pool instanceof Http2Pool;
    this.pool = h2 ? null : pool;
    this.http2 = h2 ? pool : null;
    this.authority = pool.authority;
    this.hostHeader = hostHeader;
  }
}

export class UpstreamGroup {
  readonly targets: readonly UpstreamTarget[];
  /** Requests and retries in flight to these targets (the retry budget). */
  readonly budget = new RetryBudget();
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

  /**
   * The target for a retry: the next one in turn that was not tried yet (`tried`), so a failing target
   * is left for another; when every target was tried, the next one in turn.
   */
  pickOther(tried: readonly UpstreamTarget[]): UpstreamTarget {
    const targets = this.targets;
    if (targets.length === 1) return targets[0]!;
    for (let n = 0; n < targets.length; n++) {
      const t = this.pick();
      if (!tried.includes(t)) return t;
    }
    return this.pick();
  }
}
