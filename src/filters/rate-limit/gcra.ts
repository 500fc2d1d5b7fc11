/**
 * GCRA (the generic cell rate algorithm, a token bucket kept as one number per key): a key may make a
 * request every `intervalMs` on average and `capacity` requests back to back after being idle. The state
 * of a key is its theoretical arrival time (TAT): the time at which its bucket would be full again. A
 * request at `now` is allowed when `max(tat, now) + intervalMs - now <= capacity * intervalMs`, and then
 * moves the TAT by one interval. The same arithmetic runs in the Redis script (store-redis.ts).
 */

/** A limit: one request per `intervalMs` sustained, `capacity` at once. */
export interface RateLimitPolicy {
  /** 60000 / requests_per_minute. */
  readonly intervalMs: number;
  /** burst + 1. */
  readonly capacity: number;
  readonly requestsPerMinute: number;
  /** Store identity of the limit: `<requests_per_minute>:<burst>`. */
  readonly id: string;
}

export function ratePolicy(requestsPerMinute: number, burst: number | undefined): RateLimitPolicy {
  const b = burst ?? requestsPerMinute - 1;
  return {
    intervalMs: 60_000 / requestsPerMinute,
    capacity: b + 1,
    requestsPerMinute,
    id: `${requestsPerMinute}:${b}`,
  };
}

/**
 * One decision. A store fills a reused object (memory) or a new one (Redis, IPC): `allowed`, requests
 * `remaining` right after this one, `resetMs` until the bucket is full again, `retryAfterMs` until the
 * next request would be allowed (0 when allowed).
 */
export interface Decision {
  allowed: boolean;
  remaining: number;
  resetMs: number;
  retryAfterMs: number;
}

export function newDecision(): Decision {
  return { allowed: false, remaining: 0, resetMs: 0, retryAfterMs: 0 };
}

/**
 * Applies GCRA to `tat` (the key's stored TAT, or 0 when it has none) at `now`; fills `out` and returns
 * the new TAT to store (unchanged when denied).
 */
export function gcra(policy: RateLimitPolicy, tat: number, now: number, out: Decision): number {
  const interval = policy.intervalMs;
  const tolerance = interval * policy.capacity;
  const start = Math.max(tat, now);
  const next = start + interval;
  const ahead = next - now;
  if (ahead > tolerance + 1e-9) {
    out.allowed = false;
    out.remaining = 0;
    out.resetMs = start - now;
    out.retryAfterMs = ahead - tolerance;
    return tat;
  }
  out.allowed = true;
  out.remaining = Math.floor((tolerance - ahead) / interval + 1e-9);
  out.resetMs = ahead;
  out.retryAfterMs = 0;
  return next;
}
