/**
 * An upstream group: the targets of one route, the balancer that picks one per exchange
 * (`load_balancing`: balancer.ts), another one for a retry (an untried primary target, then a backup),
 * and the retry budget's counters.
 */
import type { LoadBalancingConfig } from '../config/schema.ts';
import type { Exchange } from '../exchange.ts';
import type { FieldSource } from '../http/fields.ts';
import type { TargetMetrics } from '../observe/metrics.ts';
import { type Balancer, createBalancer } from './balancer.ts';
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
  /** Its share relative to the route's other targets. */
  readonly weight: number;
  /** Taken only by a retry once every primary target of the route was tried. */
  readonly backup: boolean;
  /** Attempts in flight to this target from this route (least_request reads it). */
  active = 0;
  /** Those of them queued in the pool behind busy connections (circuit-breaker.ts). */
  pending = 0;

  constructor(client: UpstreamClient, hostHeader: string, weight = 1, backup = false) {
    this.client = client;
    this.authority = client.authority;
    this.hostHeader = hostHeader;
    this.weight = weight;
    this.backup = backup;
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
  /** Every target, primary and backup, in config order. */
  readonly targets: readonly UpstreamTarget[];
  /** Requests and retries in flight to these targets (the retry budget). */
  readonly budget = new RetryBudget();
  private readonly primary: readonly UpstreamTarget[];
  private readonly backups: readonly UpstreamTarget[];
  /** null when there is one primary target (it is always the pick). */
  private readonly balancer: Balancer | null;
  /** Where a retry starts looking for a target not tried yet. */
  private nextOther = 0;

  constructor(targets: readonly UpstreamTarget[], balancing: LoadBalancingConfig = DEFAULT_BALANCING) {
    const primary = targets.filter((t) => !t.backup);
    if (primary.length === 0)
      throw new Error('an upstream group needs at least one target that is not a backup');
    this.targets = targets;
    this.primary = primary;
    this.backups = targets.filter((t) => t.backup);
    this.balancer = primary.length === 1 ? null : createBalancer(primary, balancing);
  }

  /** The target of a new exchange. */
  pick(ex: Exchange, fields: FieldSource | null): UpstreamTarget {
    return this.balancer === null ? this.primary[0]! : this.balancer.pick(ex, fields);
  }

  /**
   * The target for a retry: a primary target not tried yet (`tried`), in turn, so a failing target is left
   * for another; then a backup not tried yet; when every target was tried, the next primary in turn.
   */
  pickOther(tried: readonly UpstreamTarget[]): UpstreamTarget {
    const primary = this.primary;
    for (let n = 0; n < primary.length; n++) {
      const t = primary[this.nextOther]!;
      this.nextOther = (this.nextOther + 1) % primary.length;
      if (!tried.includes(t)) return t;
    }
    for (const t of this.backups) if (!tried.includes(t)) return t;
    const t = primary[this.nextOther]!;
    this.nextOther = (this.nextOther + 1) % primary.length;
    return t;
  }
}

const DEFAULT_BALANCING: LoadBalancingConfig = { policy: 'round_robin', hash_key: 'client_ip' };
