/**
 * An upstream group: the targets of one route, the balancer that picks one per exchange
 * (`load_balancing`: balancer.ts), another one for a retry (an untried primary target, then a backup),
 * and the retry budget's counters.
 *
 * With health (health.ts: active checks, outlier detection), a pick skips the targets that are out:
 * the balancer picks among the primary targets that are up; when none is, among the backups that are up;
 * when fewer than `panic_threshold_percent` of the primaries are up (or no target at all is), among all
 * primaries as if every one were (the panic mode: the load is spread rather than piled on a few).
 */
import type { LoadBalancingConfig } from '../config/schema.ts';
import type { Exchange } from '../exchange.ts';
import type { FieldSource } from '../http/fields.ts';
import type { Logger } from '../observe/logger.ts';
import type { TargetMetrics } from '../observe/metrics.ts';
import { type Balancer, createBalancer, isUp } from './balancer.ts';
import type { UpstreamAttempt, UpstreamClient, UpstreamHandler } from './contract.ts';
import type { TargetHealth } from './health.ts';
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
  /** The target's health record (health.ts), null when the route has neither checks nor outlier detection. */
  health: TargetHealth | null = null;

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
  /** Where a pick among the backups starts (no primary is up). */
  private nextBackup = 0;
  /** True when a target has a health record: picks look at it. */
  private readonly healthAware: boolean;
  private readonly panicPercent: number;
  /** Where ejections are logged. */
  logger: Logger | null = null;

  constructor(targets: readonly UpstreamTarget[], balancing: LoadBalancingConfig = DEFAULT_BALANCING) {
    const primary = targets.filter((t) => !t.backup);
    if (primary.length === 0)
      throw new Error('an upstream group needs at least one target that is not a backup');
    this.targets = targets;
    this.primary = primary;
    this.backups = targets.filter((t) => t.backup);
    this.balancer = primary.length === 1 ? null : createBalancer(primary, balancing);
    this.panicPercent = balancing.panic_threshold_percent;
    this.healthAware = targets.some((t) => t.health !== null);
  }

  /** The target of a new exchange. */
  pick(ex: Exchange, fields: FieldSource | null): UpstreamTarget {
    const first = this.balancer === null ? this.primary[0]! : this.balancer.pick(ex, fields);
    return this.healthAware ? this.pickHealthy(ex, fields, first) : first;
  }

  /** `first`, the balancer's pick, when it is up (and not held back by its slow start); else another. */
  private pickHealthy(ex: Exchange, fields: FieldSource | null, first: UpstreamTarget): UpstreamTarget {
    const now = Date.now();
    const h = first.health;
    if (h === null) return first;
    if (h.up(now)) {
      if (h.slowStartMs === 0 || this.balancer === null || Math.random() < h.share(now)) return first;
      // Warming up after it came back: this time, the balancer's next pick if that one is up.
      const other = this.balancer.pick(ex, fields);
      return isUp(other, now) ? other : first;
    }
    const primary = this.primary;
    let up = 0;
    for (let i = 0; i < primary.length; i++) if (isUp(primary[i]!, now)) up++;
    if (up === 0) {
      const backups = this.backups;
      for (let n = 0; n < backups.length; n++) {
        const b = backups[this.nextBackup]!;
        this.nextBackup = this.nextBackup + 1 === backups.length ? 0 : this.nextBackup + 1;
        if (isUp(b, now)) return b;
      }
      return first;
    }
    if (up * 100 < this.panicPercent * primary.length || this.balancer === null) return first;
    return this.balancer.pickUp(ex, fields, now);
  }

  /** `target` answered with `status`: a failure for its outlier detection when the route counts it. */
  responded(target: UpstreamTarget, status: number): void {
    const h = target.health;
    const policy = h?.outlier ?? null;
    if (h === null || policy === null) return;
    if (policy.failsOn(status)) this.failed(target);
    else h.table.succeeded(h.record);
  }

  /**
   * An attempt to `target` failed (a connection failure, a timeout, a reset, a bad response, or a status
   * the route counts). Enough failures in a row eject the target, unless max_ejection_percent of the
   * route's targets are ejected already (one may always be).
   */
  failed(target: UpstreamTarget): void {
    const h = target.health;
    const policy = h?.outlier ?? null;
    if (h === null || policy === null) return;
    if (h.table.failed(h.record) < policy.consecutiveFailures) return;
    const now = Date.now();
    let ejected = 0;
    for (const t of this.targets)
      if (t.health !== null && t.health.table.ejectedUntil(t.health.record) > now) ejected++;
    const allowed = Math.max(1, Math.floor((this.targets.length * policy.maxEjectionPercent) / 100));
    if (ejected >= allowed) return;
    const ms = h.table.eject(h.record, now, policy.baseEjectionMs, policy.maxEjectionMs);
    if (ms > 0) {
      this.logger?.warn(
        { target: target.authority, ejection_ms: ms, failures: policy.consecutiveFailures },
        'upstream target ejected (outlier detection)',
      );
    }
  }

  /**
   * The target for a retry: a primary target not tried yet (`tried`), in turn, so a failing target is left
   * for another; then a backup not tried yet; when every target was tried, the next primary in turn.
   */
  pickOther(tried: readonly UpstreamTarget[]): UpstreamTarget {
    const primary = this.primary;
    if (this.healthAware) {
      // Untried targets that are up first, primaries before backups.
      const now = Date.now();
      for (let n = 0; n < primary.length; n++) {
        const t = primary[(this.nextOther + n) % primary.length]!;
        if (!tried.includes(t) && isUp(t, now)) {
          this.nextOther = (this.nextOther + n + 1) % primary.length;
          return t;
        }
      }
      for (const t of this.backups) if (!tried.includes(t) && isUp(t, now)) return t;
    }
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

const DEFAULT_BALANCING: LoadBalancingConfig = {
  policy: 'round_robin',
  hash_key: 'client_ip',
  panic_threshold_percent: 50,
};
