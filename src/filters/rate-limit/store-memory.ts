/**
 * The in-process memory store: one TAT per limit and key (a Map of the limit's keys per limit id, so
 * that no key string is built per request), answered synchronously. Keys whose
 * bucket is full again are dropped by a coarse sweep (one unref'd timer per store), so memory follows the
 * keys active in the last minute or so. In a worker process the memory store is the supervisor's
 * (store-ipc.ts): this class then runs in the supervisor only.
 */
import { type Decision, gcra, newDecision, type RateLimitPolicy } from './gcra.ts';
import type { RateLimitStore } from './store.ts';

const SWEEP_INTERVAL_MS = 10_000;

export class MemoryRateLimitStore implements RateLimitStore {
  /** Limit id -> (key -> TAT). */
  readonly limits = new Map<string, Map<string, number>>();
  /** The decision returned by take(), reused: read it before the next call. */
  readonly decision: Decision = newDecision();
  readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  take(policy: RateLimitPolicy, key: string): Decision {
    let tats = this.limits.get(policy.id);
    if (tats === undefined) {
      tats = new Map();
      this.limits.set(policy.id, tats);
    }
    const now = this.now();
    const tat = tats.get(key) ?? 0;
    const next = gcra(policy, tat, now, this.decision);
    if (next !== tat) {
      tats.set(key, next);
      if (this.timer === null) this.timer = setInterval(sweep, SWEEP_INTERVAL_MS, this).unref();
    }
    return this.decision;
  }

  /** Drops the keys whose bucket is full again (their TAT is past). */
  sweep(): void {
    const now = this.now();
    for (const [id, tats] of this.limits) {
      for (const [key, tat] of tats) if (tat <= now) tats.delete(key);
      if (tats.size === 0) this.limits.delete(id);
    }
    if (this.limits.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.limits.clear();
  }
}

function sweep(store: MemoryRateLimitStore): void {
  store.sweep();
}
