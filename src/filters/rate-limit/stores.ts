/**
 * The rate-limit stores of the process, kept by identity (store kind, Redis URL and timeout) outside the
 * compiled routes, so that a config reload keeps every counter: the counters themselves are keyed by the
 * limit (`<requests_per_minute>:<burst>`) and the request's key. In a worker process the memory store is
 * the supervisor's, reached over IPC (store-ipc.ts).
 */
import { hasSupervisor } from '../../util/worker.ts';
import type { RateLimitStore } from './store.ts';
import { IpcRateLimitStore } from './store-ipc.ts';
import { MemoryRateLimitStore } from './store-memory.ts';
import { RedisRateLimitStore } from './store-redis.ts';

let memory: RateLimitStore | null = null;
const redisStores = new Map<string, RedisRateLimitStore>();

export function memoryStore(): RateLimitStore {
  memory ??= hasSupervisor() ? new IpcRateLimitStore() : new MemoryRateLimitStore();
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
