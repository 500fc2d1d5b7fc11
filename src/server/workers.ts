/**
 * What both worker modes share (src/server/thread-supervisor.ts, src/server/supervisor.ts) and what a
 * worker needs to know of them: whether the platform has SO_REUSEPORT, which mode `worker_mode` resolves
 * to, a worker process's share of `max_connections`, and the restart brake of the worker set
 * (src/server/worker-set.ts).
 */
import type { Config } from '../config/schema.ts';

export const REUSE_PORT_SUPPORTED = process.platform === 'linux' || process.platform === 'freebsd';

/** `worker_mode` resolved for this platform: threads need SO_REUSEPORT. */
export function workerMode(config: Config): 'threads' | 'processes' {
  const mode = config.worker_mode;
  if (mode === 'auto') return REUSE_PORT_SUPPORTED ? 'threads' : 'processes';
  if (mode === 'threads' && !REUSE_PORT_SUPPORTED) {
    throw new Error(
      `worker_mode "threads" needs SO_REUSEPORT (Linux, FreeBSD), which ${process.platform} lacks: use "auto" or "processes"`,
    );
  }
  return mode;
}

/**
 * Worker `id`'s share (1 to `workers`) of the instance's `max_connections`: an equal part, the remainder
 * spread one by one over the first workers, so that the shares add up to `total` exactly. Workers share no
 * memory: each one holds to its own share, so the instance never holds more than `total`, while one worker
 * may refuse a connection when another still has room (the kernel, not zproxy, picks the worker).
 */
export function connectionShare(total: number, id: number, workers: number): number {
  const base = Math.floor(total / workers);
  if (!Number.isInteger(id) || id < 1 || id > workers) return base;
  return id <= total % workers ? base + 1 : base;
}

/** Restarts within this window count toward the crash-loop brake. */
const RESTART_WINDOW_MS = 10_000;
const MAX_RESTARTS_IN_WINDOW = 10;

/**
 * The crash-loop brake of the worker set (processes or threads): a worker that ends is started again at
 * once, unless more than MAX_RESTARTS_IN_WINDOW restarts happened in the last RESTART_WINDOW_MS; then
 * each restart waits a second.
 */
export class RestartBrake {
  private readonly restarts: number[] = [];

  /** Counts a restart now; the delay before it, in ms. */
  next(now: number = Date.now()): number {
    const restarts = this.restarts;
    while (restarts.length > 0 && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
    restarts.push(now);
    return restarts.length > MAX_RESTARTS_IN_WINDOW ? 1000 : 0;
  }
}
