/**
 * Multi-core with worker threads (the default where the platform has SO_REUSEPORT): the main thread of
 * the process starts `thread_count` worker threads (src/server/worker-thread.ts), each of which binds
 * every listener with SO_REUSEPORT, so the kernel spreads connections over them. The main thread makes
 * the instance's shared memory once (src/util/instance.ts: the rate limiter's table, the memory caches,
 * the count of open connections that max_connections bounds exactly) and hands it to every worker; it
 * serves no request and handles no message per request. The lifecycle (ready, restart, reload, stop) is
 * the worker set's (src/server/worker-set.ts); this file is its adapter for threads: a stop, a reload and
 * SIGUSR1 (reopen the log files) reach a thread as messages (signals reach the main thread only), a hard
 * stop terminates the thread. A thread that ends (an uncaught exception, running out of memory) ends
 * alone: the others keep serving, the shared memory lives on, its places in max_connections are freed.
 */
import { randomInt } from 'node:crypto';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Config } from '../config/schema.ts';
import { createRateLimitTable } from '../filters/rate-limit/store-shared.ts';
import type { InstanceView } from '../observe/instance-view.ts';
import type { Logger } from '../observe/logger.ts';
import { type MetricSeriesMessage, ThreadMetrics } from '../observe/metrics-view.ts';
import { createHealthTable, HealthTable } from '../upstream/health.ts';
import { HealthChecker } from '../upstream/health-checker.ts';
import { InstanceConnections, type InstanceShared } from '../util/instance.ts';
import { type InstanceReload, isReloadMessage, MessageParticipant, type ReloadMessage } from './reload.ts';
import type { RunOptions } from './run.ts';
import { WorkerHandle, type WorkerMode, WorkerSet } from './worker-set.ts';

/** What a worker thread is given (its workerData). */
export interface WorkerThreadData {
  readonly config: Config;
  readonly options: RunOptions;
  readonly id: number;
  readonly count: number;
  readonly shared: InstanceShared;
  /** The count of metric announcements (ThreadMetrics.add): bumped before each is posted. */
  readonly metricSeries: SharedArrayBuffer | null;
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

/** A worker thread as the worker set drives it. */
class ThreadWorker extends WorkerHandle {
  readonly thread: Worker;
  readonly logFields: { readonly thread_id: number };
  readonly participant: MessageParticipant;

  constructor(id: number, data: WorkerThreadData, caches: () => Record<string, SharedArrayBuffer>) {
    super(id);
    this.thread = new Worker(WORKER_ENTRY, { workerData: data });
    // threadId reads -1 once the thread has ended: kept for the lines about its end.
    this.logFields = { thread_id: this.thread.threadId };
    this.participant = new MessageParticipant(
      id,
      (message) => this.thread.postMessage(message),
      () => ({ caches: caches() }),
    );
  }

  stop(): void {
    this.thread.postMessage({ type: 'stop' } satisfies WorkerThreadMessage);
  }

  terminate(): void {
    void this.thread.terminate();
  }

  abort(): void {
    // A thread that does not listen yet would not see a stop message.
    void this.thread.terminate();
  }

  reopenLogs(): void {
    this.thread.postMessage({ type: 'reopen' } satisfies WorkerThreadMessage);
  }
}

/** Worker threads: the instance's shared memory, and the metric slots each worker announces. */
class ThreadMode implements WorkerMode<ThreadWorker> {
  readonly name = 'threads';
  /** The config workers start with (a reload replaces it). */
  private current: Config;
  private shared: InstanceShared;
  private readonly connections: InstanceConnections;
  private readonly options: RunOptions;
  private readonly logger: Logger;
  private readonly metrics: ThreadMetrics | null;

  constructor(
    config: Config,
    options: RunOptions,
    logger: Logger,
    shared: InstanceShared,
    metrics: ThreadMetrics | null,
  ) {
    this.current = config;
    this.shared = shared;
    this.connections = new InstanceConnections(shared.connections);
    // The warnings were logged once by this thread; the workers do not repeat them.
    this.options = { ...options, warnings: [] };
    this.logger = logger;
    this.metrics = metrics;
  }

  start(id: number, count: number, set: WorkerSet<ThreadWorker>): ThreadWorker {
    const data: WorkerThreadData = {
      config: this.current,
      options: this.options,
      id,
      count,
      shared: this.shared,
      metricSeries: this.metrics?.add(id) ?? null,
    };
    const worker = new ThreadWorker(id, data, () => this.shared.caches);
    const { metrics, logger } = this;
    worker.thread.on('message', (message: WorkerThreadMessage) => {
      set.messages++;
      if (message?.type === 'metric-series') {
        metrics?.onSeries(id, message);
        return;
      }
      if (isReloadMessage(message)) {
        worker.participant.onReply(message);
        return;
      }
      if (message?.type === 'failed') worker.failure = new Error(message.message);
      if (message?.type === 'listening') set.listened(worker);
    });
    // An error the worker did not handle itself (running out of memory; a failure before it listens).
    worker.thread.on('error', (error: Error & { code?: string }) => {
      worker.failure = error;
      logger.error({ worker: id, ...worker.logFields, err: error, code: error.code }, 'worker failed');
    });
    worker.thread.on('exit', (code) => set.exited(worker, code));
    return worker;
  }

  ended(worker: ThreadWorker): void {
    this.metrics?.onExit(worker.id);
    // Its connections ended with it: their places in max_connections are free again.
    this.connections.reclaim(worker.id);
  }

  async precheck(next: Config): Promise<string | null> {
    if (next.thread_count > MAX_WORKERS) {
      return `thread_count: at most ${MAX_WORKERS} workers can run after a reload (found ${next.thread_count}); restart zproxy`;
    }
    // The memory caches a new cache filter needs, in shared memory before any worker builds it.
    this.shared = { ...this.shared, caches: await memoryCaches(next, this.shared.caches) };
    return null;
  }

  committed(next: Config): void {
    this.current = next;
  }
}

export async function runThreadSupervisor(
  config: Config,
  options: RunOptions,
  logger: Logger,
  onStopped: () => void,
  view: InstanceView | null = null,
): Promise<InstanceReload> {
  // The workers' metrics: their shared slots, read at a scrape; a worker that ends leaves its counters.
  const metrics = view !== null && config.admin?.metrics === true ? new ThreadMetrics() : null;
  if (view !== null) view.metrics = metrics;
  const shared: InstanceShared = {
    rateLimit: createRateLimitTable(),
    health: createHealthTable(),
    connections: InstanceConnections.create(Math.max(config.thread_count, MAX_WORKERS)),
    caches: await memoryCaches(config),
    seed: randomInt(2 ** 31),
  };
  // One checker for the instance, here: it writes the table every worker reads.
  const health = new HealthChecker(new HealthTable(shared.health), logger);
  const mode = new ThreadMode(config, options, logger, shared, metrics);
  return new WorkerSet(config, options, logger, onStopped, view, health, mode).run();
}
