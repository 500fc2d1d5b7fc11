/**
 * An upstream group: the targets of one route, the balancer that picks one per exchange (round-robin
 * for now; health-aware balancing comes with health checks), another one for a retry, and the retry
 * budget's counters.
 */
import type { TargetMetrics } from '../observe/metrics.ts';
import type { UpstreamAttempt, UpstreamClient, UpstreamHandler } from './contract.ts';
import { RetryBudget } from './retry.ts';

export class UpstreamTarget {
  /** The target's pool: keep-alive HTTP/1.1 connections or multiplexed HTTP/2 sessions. */
  readonly client: UpstreamClient;
  /** 'host:port' of the target, for logs. */
  readonly authority: string;
  /** The Host value to send when the client's Host is not preserved: 'host' or 'host:port'. */
  readonly hostHeader: string;
  /** The target's metric slots (set when a runtime is compiled with metrics on), else null. */
  metrics: TargetMetrics | null = null;

  constructor(client: UpstreamClient, hostHeader: string) {
    this.client = client;
    this.authority = client.authority;
    this.hostHeader = hostHeader;
  }

  /**
   * Takes a connection or stream for `handler`: returns it now, or null when the handler will hear
   * (onUpstreamReady or onUpstreamError). `fresh` skips idle connections (a retry after a stale one).
   */
  acquire(handler: UpstreamHandler, fresh: boolean): UpstreamAttempt | null {
    return this.client.acquire(handler, fresh);
  }

  /** Withdraws a handler still waiting for a connection or stream. */
  cancel(handler: UpstreamHandler): void {
    this.client.cancel(handler);
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
