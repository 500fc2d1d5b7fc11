/**
 * Circuit breaking (docs/upstreams.md, "Circuit breaking"), compiled per route from `circuit_breaking`
 * (upstream_defaults.circuit_breaking with the route's fields over it): the most requests a route has in
 * flight to its upstreams, queued behind busy connections, and in a retry, and the most it has in flight
 * to, or queued for, one of its targets. Beyond a limit the request flow (src/proxy/flow.ts) answers 503
 * ZP_ERR_UPSTREAM_OVERLOADED at once, or, for a retry, does not send it (the first answer stands).
 *
 * The counts live where they are kept anyway: the route's requests and retries in flight in its group's
 * RetryBudget (retry.ts, which also decides whether a retry fits: max_retries and the budget), a target's
 * requests in flight in UpstreamTarget.active, a target's queued requests in UpstreamTarget.pending, the
 * route's queued requests here. Every check is an integer compare when an exchange or an attempt starts.
 * Counts and limits are per worker (each worker has its own pools and counts).
 */
import type { CircuitBreakingConfig } from '../config/schema.ts';
import type { BreakerMetrics } from '../observe/metrics.ts';
import type { UpstreamTarget } from './group.ts';

/** The limits, in the order of the metrics' `limit` label (OVERLOAD_LIMITS of src/observe/metrics.ts). */
export const LIMIT_REQUESTS = 0;
export const LIMIT_PENDING = 1;
export const LIMIT_RETRIES = 2;
export const LIMIT_RETRY_BUDGET = 3;
export const LIMIT_TARGET_REQUESTS = 4;
export const LIMIT_TARGET_PENDING = 5;

/** What the 503's message says, by limit (the retry limits never answer: the first answer stands). */
const MESSAGES = [
  "The route's requests in flight are at circuit_breaking.max_requests",
  "The route's requests waiting for an upstream connection are at circuit_breaking.max_pending",
  "The route's retries in flight are at circuit_breaking.max_retries",
  "The route's retries in flight are at the retry budget",
  "The route's requests in flight to this upstream target are at circuit_breaking.max_requests_per_target",
  "The route's requests waiting for a connection to this upstream target are at circuit_breaking.max_pending_per_target",
] as const;

/** A limit that is null in the config: never reached by a count. */
const NO_LIMIT = 0x7fffffff;

function limit(value: number | null): number {
  return value === null ? NO_LIMIT : value;
}

export class CircuitBreaker {
  readonly maxRequests: number;
  readonly maxPending: number;
  readonly maxRetries: number;
  readonly maxRequestsPerTarget: number;
  readonly maxPendingPerTarget: number;
  /** The limits as configured (null: none), for /status. */
  readonly config: CircuitBreakingConfig;
  /** The route's requests waiting in a target's pool queue (every connection or stream in use). */
  pending = 0;
  /** The route's targets, in config order (the metrics' handles are in the same order). */
  readonly targets: readonly UpstreamTarget[];
  /** Each target's overload counters and gauges (set when a runtime is compiled with metrics on). */
  readonly metrics: (BreakerMetrics | null)[];
  /** Refusals by limit, this worker, since the route was compiled (tests; the metrics count for good). */
  readonly refused: number[] = [0, 0, 0, 0, 0, 0];

  constructor(config: CircuitBreakingConfig, targets: readonly UpstreamTarget[]) {
    this.config = config;
    this.maxRequests = limit(config.max_requests);
    this.maxPending = limit(config.max_pending);
    this.maxRetries = limit(config.max_retries);
    this.maxRequestsPerTarget = limit(config.max_requests_per_target);
    this.maxPendingPerTarget = limit(config.max_pending_per_target);
    this.targets = targets;
    this.metrics = targets.map(() => null);
  }

  /** A limit refused a request (or a retry) headed for `target`: counted. */
  refuse(which: number, target: UpstreamTarget): void {
    this.refused[which]!++;
    const i = this.targets.indexOf(target);
    if (i !== -1) this.metrics[i]?.overloaded(which);
  }

  /** The 503's message for a limit. */
  static message(which: number): string {
    return MESSAGES[which]!;
  }

  /** The targets' gauges: requests in flight to each and queued for each (the sampler, once a second). */
  sample(): void {
    const targets = this.targets;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      this.metrics[i]?.load(t.active, t.pending);
    }
  }
}
