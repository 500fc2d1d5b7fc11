/**
 * What the workers of one instance share. With worker threads (src/server/supervisor.ts), the main thread
 * makes the instance's shared memory once and hands it to every worker in its workerData; each worker
 * installs it here before it builds its runtime, and the per-instance parts of the filters read it from
 * here (the rate limiter's memory store: src/filters/rate-limit/store-shared.ts; the cache's memory
 * stores: src/filters/cache/store-shared.ts). A single process, or a
 * worker process (the platforms without SO_REUSEPORT), has none: its stores are its own (or its
 * supervisor's, over IPC).
 */

export interface InstanceShared {
  /** The rate limiter's table of GCRA states (createRateLimitTable). */
  readonly rateLimit: SharedArrayBuffer;
  /** The upstream targets' health records (src/upstream/health.ts: createHealthTable). */
  readonly health: SharedArrayBuffer;
  /** The open connections of the instance (InstanceConnections). */
  readonly connections: SharedArrayBuffer;
  /** The memory caches, by store identity (`memory:<max_bytes>`; createCacheBuffer). */
  readonly caches: Readonly<Record<string, SharedArrayBuffer>>;
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

/**
 * The open downstream connections of an instance, counted in shared memory so that `max_connections`
 * bounds the instance exactly, whichever worker the kernel hands a connection to: word 0 is the total,
 * word `id` the connections worker `id` holds. A worker takes a place only if the total stays within the
 * limit (one atomic add, undone when it does not). When a worker ends without closing its connections
 * (a crash), the main thread gives its places back (reclaim).
 */
export class InstanceConnections {
  private readonly counts: Int32Array;

  /** A new counter for `workers` workers (in the main thread). */
  static create(workers: number): SharedArrayBuffer {
    return new SharedArrayBuffer(4 * (workers + 1));
  }

  constructor(buffer: SharedArrayBuffer) {
    this.counts = new Int32Array(buffer);
  }

  /** Takes a place for worker `id`; false when the instance already holds `max`. */
  tryAcquire(id: number, max: number): boolean {
    if (Atomics.add(this.counts, 0, 1) >= max) {
      Atomics.sub(this.counts, 0, 1);
      return false;
    }
    Atomics.add(this.counts, id, 1);
    return true;
  }

  release(id: number): void {
    Atomics.sub(this.counts, id, 1);
    Atomics.sub(this.counts, 0, 1);
  }

  /** The connections of the instance. */
  get total(): number {
    return Atomics.load(this.counts, 0);
  }

  /** Gives back the places of worker `id`, which has ended (its connections ended with it). */
  reclaim(id: number): void {
    const held = Atomics.exchange(this.counts, id, 0);
    Atomics.sub(this.counts, 0, held);
  }
}
