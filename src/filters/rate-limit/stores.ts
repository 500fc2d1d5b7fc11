/**
 * The rate-limit stores of the process, kept by identity (store kind, Redis URL and timeout) outside the
 * compiled routes, so that a config reload keeps every counter: the counters themselves are keyed by the
 * limit (`<requests_per_minute>:<burst>`) and the request's key. In a worker process the memory store is
 * the supervisor's, reached over IPC (store-ipc.ts).
 */
import { WORKER_ENV } from '../../server/supervisor.ts';
import type { RateLimitStore } from './store.ts';
import { IpcRateLimitStore } from './store-ipc.ts';
import { MemoryRateLimitStore } from './store-memory.ts';
import { RedisRateLimitStore } from './store-redis.ts';

let memory: RateLimitStore | null = null;
const redisStores = new Map<string, RedisRateLimitStore>();

/** True in a worker process started by the supervisor (thread_count > 1). */
function inWorker(): boolean {
  return process.env[WORKER_ENV] !== undefined && process.send !== undefined;
}

export function memoryStore(): RateLimitStore {
  memory ??= inWorker() ? new IpcRateLimitStore() : new MemoryRateLimitStore();
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
