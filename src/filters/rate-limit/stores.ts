/**
 * The rate-limit stores of the process, kept by identity (store kind, Redis URL and timeout) outside the
 * compiled routes, so that a config reload keeps every counter: the counters themselves are keyed by the
 * limit (`<requests_per_minute>:<burst>`) and the request's key. In a worker thread the memory store is the
 * instance's table in shared memory (store-shared.ts); in a worker process it is the supervisor's, reached
 * over IPC (store-ipc.ts).
 */
import { instanceShared } from '../../util/instance.ts';
import { hasSupervisor } from '../../util/worker.ts';
import type { RateLimitStore } from './store.ts';
import { IpcRateLimitStore } from './store-ipc.ts';
import { MemoryRateLimitStore } from './store-memory.ts';
import { RedisRateLimitStore } from './store-redis.ts';
import { SharedRateLimitStore } from './store-shared.ts';

let memory: RateLimitStore | null = null;
const redisStores = new Map<string, RedisRateLimitStore>();

/**
 * The memory store of this worker: the instance's shared table in a worker thread, the supervisor's
 * store over IPC in a worker process, else this process's own.
 */
export function memoryStore(): RateLimitStore {
  if (memory === null) {
    const shared = instanceShared();
    if (shared !== null) memory = new SharedRateLimitStore(shared.rateLimit, shared.seed);
    else memory = hasSupervisor() ? new IpcRateLimitStore() : new MemoryRateLimitStore();
  }
  return memory;
}

export function redisStore(url: string, timeoutMs: number): RedisRateLimitStore {
  const id = `${timeoutMs} ${url}`;
  let store = redisStores.get(id);
  if (store === undefined) {
    store = new RedisRateLimitStore(url, timeoutMs);
    redisStores.set(id, store);
  }
  return store;
}

/** Forgets every store (tests): the next filters start from empty counters. */
export function resetRateLimitStores(): void {
  if (memory instanceof MemoryRateLimitStore) memory.close();
  memory = null;
  redisStores.clear();
}
