/**
 * A rate-limit store decides for one key of one limit. Memory stores answer synchronously; the Redis
 * store and the cross-worker memory store (a worker asking its supervisor) return promises. A store that
 * cannot answer rejects (or throws) and the filter applies `on_store_error`.
 */
import type { Decision, RateLimitPolicy } from './gcra.ts';

export interface RateLimitStore {
  /** The decision for `key`; a synchronous result may be a reused object, read it at once. */
  take(policy: RateLimitPolicy, key: string): Decision | Promise<Decision>;
}
