/**
 * What the workers of one instance share. With worker threads (src/server/supervisor.ts), the main thread
 * makes the instance's shared memory once and hands it to every worker in its workerData; each worker
 * installs it here before it builds its runtime, and the per-instance parts of the filters read it from
 * here (the rate limiter's memory store: src/filters/rate-limit/store-shared.ts). A single process, or a
 * worker process (the platforms without SO_REUSEPORT), has none: its stores are its own (or its
 * supervisor's, over IPC).
 */

export interface InstanceShared {
  /** The rate limiter's table of GCRA states (createRateLimitTable). */
  readonly rateLimit: SharedArrayBuffer;
  /** The instance's hash seed (the same in every worker, unknown to clients). */
  readonly seed: number;
}

let shared: InstanceShared | null = null;

/** Installs the instance's shared memory in this worker (before anything reads it). */
export function installInstanceShared(value: InstanceShared | null): void {
  shared = value;
}

/** The instance's shared memory, or null when this worker has none. */
export function instanceShared(): InstanceShared | null {
  return shared;
}
