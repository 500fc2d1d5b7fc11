/**
 * Multi-core with worker threads (the default where the platform has SO_REUSEPORT): the main thread of
 * the process starts `thread_count` worker threads (src/server/worker-thread.ts), each of which binds
 * every listener with SO_REUSEPORT, so the kernel spreads connections over them. The main thread makes
 * the instance's shared memory once (src/util/instance.ts: the rate limiter's table, the memory caches,
 * the count of open connections that max_connections bounds exactly) and hands it to
 * every worker; it serves no request and handles no message per request. It restarts a worker that ends
 * (an uncaught exception, running out of memory: only that thread ends, the others keep serving, the
 * shared memory lives on), and on SIGTERM or SIGINT asks every worker to stop gracefully and resolves
 * `onStopped` once they have. SIGUSR1 (reopen the access log file) is passed on to every worker as a
 * message: signals reach the main thread only.
 */
import { randomInt } from 'node:crypto';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/schema.ts';
import { createRateLimitTable } from '../filters/rate-limit/store-shared.ts';
import { drainThen, type InstanceView } from '../observe/instance-view.ts';
import type { Logger } from '../observe/logger.ts';
import { type MetricSeriesMessage, ThreadMetrics } from '../observe/metrics-view.ts';
import { createHealthTable, HealthTable } from '../upstream/health.ts';
import { HealthChecker } from '../upstream/health-checker.ts';
import { InstanceConnections, type InstanceShared } from '../util/instance.ts';
import { InstanceReload, isReloadMessage, MessageParticipant, type ReloadMessage } from './reload.ts';
import type { RunOptions } from './run.ts';
import { RestartBrake } from './workers.ts';

/** What a worker thread is given (its workerData). */
export interface WorkerThreadData {
  readonly config: Config;
  readonly options: RunOptions;
  readonly id: number;
  readonly count: number;
  readonly shared: InstanceShared;
}

/** Messages between the main thread and a worker (and those of a reload: ReloadMessage). */
export type WorkerThreadMessage =
  | { readonly type: 'listening' }
  | { readonly type: 'stop' }
  /** SIGUSR1 reached the process: reopen the log files. */
  | { readonly type: 'reopen' }
  | { readonly type: 'failed'; readonly message: string }
  | MetricSeriesMessage
  | ReloadMessage;

/** Workers the instance's shared connection count has room for: a reload may raise thread_count up to it. */
const MAX_WORKERS = 1024;

/** The worker entry next to this file: worker-thread.ts from src/, worker-thread.js from dist/. */
const WORKER_ENTRY = new URL(`./worker-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url);

/**
 * The memory caches the config's cache filters use, made in shared memory; the cache's modules are
 * loaded only when the config has a cache filter (the serving process loads a filter only when used).
 */
async function memoryCaches(
  config: Config,
  existing: Readonly<Record<string, SharedArrayBuffer>> = {},
): Promise<Record<string, SharedArrayBuffer>> {
  const uses = [config.middlewares, ...config.routes.map((r) => r.middlewares)].some((list) =>
    list.some((m) => m.type === 'cache'),
  );
  if (!uses) return { ...existing };
  const { memoryCacheSizes } = await import('../filters/cache/filter.ts');
  const { createCacheBuffer } = await import('../filters/cache/store-shared.ts');
  const caches = { ...existing };
  for (const [identity, maxBytes] of memoryCacheSizes(config)) {
    caches[identity] ??= createCacheBuffer(maxBytes);
  }
  return caches;
}

export async function runThreadSupervisor(
  config: Config,
  options: RunOptions,
  logger: Logger,
  onStopped: () => void,
  view: InstanceView | null = null,
): Promise<InstanceReload> {
  let count = config.thread_count;
  /** The config workers start with (a reload replaces it). */
  let current = config;
  // The workers' metrics: their shared slots, read at a scrape; a worker that ends leaves its counters.
  const metrics = view !== null && config.admin?.metrics === true ? new ThreadMetrics() : null;
  if (view !== null) view.metrics = metrics;
  let shared: InstanceShared = {
    rateLimit: createRateLimitTable(),
    health: createHealthTable(),
    connections: InstanceConnections.create(Math.max(count, MAX_WORKERS)),
    caches: await memoryCaches(config),
    seed: randomInt(2 ** 31),
  };
  const connections = new InstanceConnections(shared.connections);
  // One checker for the instance, here: it writes the table every worker reads.
  const health = new HealthChecker(new HealthTable(shared.health), logger);
  if (view !== null) view.health = health;
  // The warnings were logged once by this thread; the workers do not repeat them.
  const workerOptions: RunOptions = { ...options, warnings: [] };
  const workers = new Map<number, Worker>();
  /** Each listening worker as a reload reaches it. */
  const reloadable = new Map<number, MessageParticipant>();
  const brake = new RestartBrake();
  let stopping = false;
  let ready = false;
  let listening = 0;
  let startupError: Error | null = null;
  let resolveReady: () => void;
  let rejectReady: (error: Error) => void;
  const started = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });

  const start = (id: number): void => {
    const data: WorkerThreadData = { config: current, options: workerOptions, id, count, shared };
    const worker = new Worker(WORKER_ENTRY, { workerData: data });
    workers.set(id, worker);
    const participant = new MessageParticipant(
      id,
      (message) => worker.postMessage(message),
      () => ({ caches: shared.caches }),
    );
    // threadId reads -1 once the thread has ended: kept for the lines about its end.
    const threadId = worker.threadId;
    logger.info({ worker: id, thread_id: threadId }, 'worker started');
    let workerListening = false;
    let failure: Error | null = null;
    if (view !== null) view.workers = workers.size;
    worker.on('message', (message: WorkerThreadMessage) => {
      if (message?.type === 'metric-series') {
        metrics?.onSeries(id, message);
        return;
      }
      if (isReloadMessage(message)) {
        participant.onReply(message);
        return;
      }
      if (message?.type === 'failed') failure = new Error(message.message);
      if (message?.type !== 'listening') return;
      workerListening = true;
      reloadable.set(id, participant);
      if (++listening === count && !ready) {
        ready = true;
        logger.info({ workers: count, mode: 'threads' }, 'ready');
        if (view !== null) view.listening = true;
        resolveReady();
      }
    });
    // An error the worker did not handle itself (running out of memory; a failure before it listens).
    worker.on('error', (error: Error & { code?: string }) => {
      failure = error;
      logger.error({ worker: id, thread_id: threadId, err: error, code: error.code }, 'worker failed');
    });
    worker.on('exit', (code) => {
      if (workers.get(id) === worker) workers.delete(id);
      if (view !== null) view.workers = workers.size;
      metrics?.onExit(id);
      if (reloadable.get(id) === participant) reloadable.delete(id);
      if (workerListening) listening--;
      participant.gone();
      // Its connections ended with it: their places in max_connections are free again.
      connections.reclaim(id);
      if (stopping) {
        if (workers.size > 0) return;
        if (startupError !== null) rejectReady(startupError);
        else onStopped();
        return;
      }
      if (!workerListening && !ready) {
        // A worker failed before listening while starting up (port in use, bad address): fail like a
        // single process does instead of restarting it forever.
        logger.fatal({ worker: id, code, err: failure }, 'worker failed to start');
        startupError = failure ?? new Error(`worker ${id} exited before listening (code ${code})`);
        stopping = true;
        if (workers.size === 0) rejectReady(startupError);
        for (const other of workers.values()) void other.terminate();
        return;
      }
      const delay = brake.next();
      logger.error({ worker: id, thread_id: threadId, code, restart_in_ms: delay }, 'worker exited');
      setTimeout(() => {
        // A reload may have lowered thread_count meanwhile.
        if (!stopping && id <= count) start(id);
      }, delay);
    });
  };

  const reload = new InstanceReload(options.configPath, config, logger, {
    singleProcess: false,
    async precheck(next) {
      if (next.thread_count > MAX_WORKERS) {
        return `thread_count: at most ${MAX_WORKERS} workers can run after a reload (found ${next.thread_count}); restart zproxy`;
      }
      // The memory caches a new cache filter needs, in shared memory before any worker builds it.
      shared = { ...shared, caches: await memoryCaches(next, shared.caches) };
      return null;
    },
    participants: (next) =>
      [...reloadable.values()].filter((p) => p.id <= next.thread_count).sort((a, b) => a.id - b.id),
    committed(next) {
      health.update(next);
      current = next;
      const previous = count;
      count = next.thread_count;
      // thread_count: workers beyond it stop gracefully; new ones start with the new config.
      for (const [id, worker] of workers) {
        if (id > count) worker.postMessage({ type: 'stop' } satisfies WorkerThreadMessage);
      }
      for (let id = previous + 1; id <= count; id++) if (!workers.has(id)) start(id);
      if (count !== previous) logger.info({ from: previous, to: count }, 'thread_count changed');
    },
  });
  view?.attachReload(reload);
  if (options.watch === true) reload.watch();

  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    health.stop();
    logger.info({ signal }, 'stopping workers');
    if (workers.size === 0) {
      onStopped();
      return;
    }
    const message: WorkerThreadMessage = { type: 'stop' };
    for (const worker of workers.values()) worker.postMessage(message);
    const hardStop = setTimeout(() => {
      for (const worker of workers.values()) void worker.terminate();
    }, config.shutdown_grace_ms + 5000);
    hardStop.unref();
  };
  // /readyz answers 503 first; the workers serve on for shutdown_delay_ms, then stop gracefully.
  process.on('SIGTERM', (signal: NodeJS.Signals) =>
    drainThen(reload.config.shutdown_delay_ms, view, () => stop(signal)),
  );
  process.on('SIGINT', (signal: NodeJS.Signals) =>
    drainThen(reload.config.shutdown_delay_ms, view, () => stop(signal)),
  );
  process.on('SIGUSR1', () => {
    const message: WorkerThreadMessage = { type: 'reopen' };
    for (const worker of workers.values()) worker.postMessage(message);
  });
  // SIGHUP reloads the config file (never stops zproxy).
  process.on('SIGHUP', () => {
    if (!stopping) void reload.reload('SIGHUP');
  });

  for (let id = 1; id <= count; id++) start(id);
  health.update(config);
  await started;
  return reload;
}
