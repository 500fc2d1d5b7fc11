/**
 * Retries and failover, compiled per route from `retry` (upstream_defaults.retry with the route's fields
 * over it): which failures are tried again, how many attempts in all, the statuses that count as
 * failures, the per-attempt timeout, and the retry budget (in the manner of Envoy's: retries in flight at
 * most a percentage of the requests in flight to the route, with a floor), so that a failing upstream is
 * not hit with a storm of retries. The request flow (src/proxy/flow.ts) asks; the group counts.
 */
import type { RetryCondition, RetryConfig } from '../config/schema.ts';
import { LIMIT_RETRIES, LIMIT_RETRY_BUDGET } from './circuit-breaker.ts';

export class RetryPolicy {
  /** Attempts in all, the first included (1: no retries). */
  readonly attempts: number;
  readonly onConnectFailure: boolean;
  readonly onRefusedStream: boolean;
  readonly onReset: boolean;
  readonly onTimeout: boolean;
  /** Upstream statuses (500-599) retried for idempotent methods, by status - 500; null when none. */
  private readonly statuses: Uint8Array | null;
  /** 0 = none. */
  readonly perTryTimeoutMs: number;
  readonly budgetPercent: number;
  readonly minConcurrent: number;
  /** Request body bytes kept for a retry (0 when retries are off: nothing is kept). */
  readonly bufferBytes: number;

  constructor(config: RetryConfig) {
    this.attempts = config.attempts;
    const on = new Set<RetryCondition>(config.on);
    this.onConnectFailure = on.has('connect-failure');
    this.onRefusedStream = on.has('refused-stream');
    this.onReset = on.has('reset');
    this.onTimeout = on.has('timeout');
    if (config.statuses.length === 0) this.statuses = null;
    else {
      const statuses = new Uint8Array(100);
      for (const s of config.statuses) statuses[s - 500] = 1;
      this.statuses = statuses;
    }
    this.perTryTimeoutMs = config.per_try_timeout_ms;
    this.budgetPercent = config.budget_percent;
    this.minConcurrent = config.min_concurrent;
    this.bufferBytes = config.attempts > 1 ? config.buffer_bytes : 0;
  }

  /** True when an upstream answer with this status is a failure to retry. */
  retriesStatus(status: number): boolean {
    const s = this.statuses;
    return s !== null && status >= 500 && status < 600 && s[status - 500] === 1;
  }
}

/**
 * Requests and retries in flight to one route's upstream group (per worker): the retry budget's counts,
 * and circuit_breaking's max_requests and max_retries (circuit-breaker.ts) compare them too.
 */
export class RetryBudget {
  /** Exchanges of the route that went to an upstream and have not ended. */
  inFlight = 0;
  /** Those of them that are in a retry. */
  retries = 0;

  /**
   * Why one more retry does not fit: LIMIT_RETRIES (circuit_breaking.max_retries, `maxRetries`) or
   * LIMIT_RETRY_BUDGET (budget_percent of the requests in flight, at least min_concurrent); -1 when it fits.
   */
  refusal(policy: RetryPolicy, maxRetries: number): number {
    if (this.retries >= maxRetries) return LIMIT_RETRIES;
    const allowed = Math.max(policy.minConcurrent, Math.floor((this.inFlight * policy.budgetPercent) / 100));
    return this.retries < allowed ? -1 : LIMIT_RETRY_BUDGET;
  }
}
