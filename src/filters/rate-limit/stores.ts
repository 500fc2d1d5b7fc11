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
import { RedisRateLimitStore, retainRateLimitRedisClients } from './store-redis.ts';
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

/** The identity of a Redis store (and of its client): its timeout and URL. */
export function redisStoreId(url: string, timeoutMs: number): string {
  return `${timeoutMs} ${url}`;
}

export function redisStore(url: string, timeoutMs: number): RedisRateLimitStore {
  const id = redisStoreId(url, timeoutMs);
  let store = redisStores.get(id);
  if (store === undefined) {
    store = new RedisRateLimitStore(url, timeoutMs);
    redisStores.set(id, store);
  }
  return store;
}

/**
 * Keeps the Redis stores (and clients) with an identity in `used` and lets go of the others, which a
 * reload removed. The memory store stays: its counters are the instance's whatever the config.
 */
export function retainRedisStores(used: ReadonlySet<string>): void {
  for (const id of redisStores.keys()) if (!used.has(id)) redisStores.delete(id);
  retainRateLimitRedisClients(used);
}

/** Forgets every store (tests): the next filters start from empty counters. */
export function resetRateLimitStores(): void {
  if (memory instanceof MemoryRateLimitStore) memory.close();
  memory = null;
  redisStores.clear();
}
