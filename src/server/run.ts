/**
 * `zproxy run`: starts the proxy for a validated config, either in this process (thread_count 1, or a
 * worker) or as the supervisor of `thread_count` workers: worker threads of this process where the
 * platform has SO_REUSEPORT (src/server/thread-supervisor.ts), else worker processes
 * (src/server/supervisor.ts). Handles SIGTERM/SIGINT with a graceful stop, and SIGUSR1 by reopening the
 * access log file (the supervisors pass it on to each worker).
 */
import { dirname, resolve } from 'node:path';
import type { Config } from '../config/schema.ts';
import type { ConfigWarning } from '../config/warnings.ts';
import { drainThen, InstanceView } from '../observe/instance-view.ts';
import { createLogger, flushLogs, type Logger } from '../observe/logger.ts';
import { MetricRegistry } from '../observe/metrics.ts';
import { LocalMetrics, type MetricSnapshotMessage } from '../observe/metrics-view.ts';
import { HealthTable } from '../upstream/health.ts';
import { isHealthStateMessage } from '../upstream/health-checker.ts';
import { InstanceConnections, instanceShared } from '../util/instance.ts';
import { isWorkerProcess, WORKER_ENV } from '../util/worker.ts';
import {
  InstanceReload,
  isReloadMessage,
  LocalParticipant,
  type ReloadMessage,
  WorkerReload,
} from './reload.ts';
import { connectionShare, REUSE_PORT_SUPPORTED, workerMode } from './workers.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RunOptions {
  /** pino level for the process logger. */
  readonly logLevel: LogLevel;
  /** The file the config came from (for the built-in demo: its copy in a temporary folder). */
  readonly configPath: string | null;
  /** Start the demo origin next to the proxy (the demo configuration routes to it). */
  readonly demo: boolean;
  /** Reload when the config file changes (`--watch`), besides SIGHUP and POST /reload. */
  readonly watch?: boolean;
  /** Warnings about the config (src/config/warnings.ts), logged once at start (not by each worker). */
  readonly warnings?: readonly ConfigWarning[];
}

/** How often buffered log lines are written out at the latest. */
const LOG_FLUSH_INTERVAL_MS = 1000;

function flushLogger(logger: Logger): void {
  logger.flush();
}

/**
 * A worker of an instance as `serve` sees it: its id (1 to `count`), how it tells the supervisor it
 * listens, and how a stop reaches it (a signal for a process, a message for a thread).
 */
export interface WorkerRole {
  readonly id: number;
  readonly count: number;
  readonly kind: 'process' | 'thread';
  listening(): void;
  /** Calls `stop` when the supervisor asks this worker to stop (or is gone). */
  onStopRequest(stop: (reason: string) => void): void;
  /** A worker thread tells the main thread what its metric slots mean (once per allocation). */
  readonly publishMetrics?: MetricRegistry['publish'];
  /** A worker process answers its supervisor's metric requests with snapshots of `registry`. */
  answerMetrics?(registry: MetricRegistry): void;
  /** Hands each reload message of the instance to `handle` (src/server/reload.ts). */
  onReloadMessage(handle: (message: ReloadMessage) => void): void;
  /** Answers the instance during a reload. */
  sendReloadMessage(message: ReloadMessage): void;
  /** Calls `reopen` when the supervisor asks this worker to reopen its log files (it had SIGUSR1). */
  onReopenRequest(reopen: () => void): void;
}

/**
 * The admin listener of the instance (`admin`), started in the per-instance place; null when the config
 * has none. The view is what it reads; the supervisors feed it.
 */
async function startAdmin(
  config: Config,
  options: RunOptions,
  logger: Logger,
  mode: InstanceView['mode'],
): Promise<InstanceView | null> {
  if (config.admin === null) return null;
  const { packageVersion } = await import('../observe/version.ts');
  const view = new InstanceView(config, options.configPath, packageVersion(), mode);
  const { AdminServer } = await import('../observe/admin.ts');
  await new AdminServer(config.admin, view, logger).start();
  return view;
}

export async function run(config: Config, options: RunOptions): Promise<void> {
  // SIGHUP never stops zproxy: until the instance can reload, it is ignored.
  process.on('SIGHUP', ignoreSignal);
  const worker = isWorkerProcess() ? processRole(config) : null;
  if (worker === null) {
    const logger = startLogger(options.logLevel, {});
    // Workers load the same config: only the supervisor (or the single process) reports its warnings.
    for (const { code, path, message } of options.warnings ?? []) logger.warn({ code, path }, message);
    if (options.demo) {
      const { startDemoOrigin } = await import('../demo/origin.ts');
      await startDemoOrigin();
      logger.info({ url: 'http://127.0.0.1:8001', config: options.configPath }, 'demo origin listening');
    }
    if (config.thread_count > 1) {
      // The workers write their own lines from now on: what this thread logged comes first.
      flushLogs();
      const stopped = () => {
        logger.info('stopped');
        flushLogs();
        process.exit(0);
      };
      // Each supervisor is loaded only when it runs (the main thread keeps little in memory).
      if (workerMode(config) === 'threads') {
        const view = await startAdmin(config, options, logger, 'threads');
        const { runThreadSupervisor } = await import('./thread-supervisor.ts');
        await runThreadSupervisor(config, options, logger, stopped, view);
      } else {
        const view = await startAdmin(config, options, logger, 'processes');
        const { runSupervisor } = await import('./supervisor.ts');
        await runSupervisor(config, options, logger, stopped, view);
      }
      logger.flush();
      return;
    }
    await serve(config, options, null, logger, await startAdmin(config, options, logger, 'single'));
    return;
  }
  await serve(config, options, worker, startLogger(options.logLevel, { worker: worker.id }));
}

function startLogger(level: LogLevel, bindings: Record<string, unknown>): Logger {
  const logger = createLogger(level, bindings);
  // The log destination buffers until 4 KiB: flush it now and then so that lines are seen while they matter.
  setInterval(flushLogger, LOG_FLUSH_INTERVAL_MS, logger).unref();
  return logger;
}

/** This worker process (started by the process supervisor, src/server/supervisor.ts). */
function processRole(config: Config): WorkerRole {
  return {
    id: Number(process.env[WORKER_ENV]),
    count: config.thread_count,
    kind: 'process',
    listening: () => process.send?.({ type: 'listening' }),
    onStopRequest(stop) {
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      // The supervisor is gone (crashed or killed): a worker must not go on serving on its own.
      process.on('disconnect', () => stop('supervisor disconnected'));
      // A SIGHUP sent to the whole process group is the supervisor's to act on (a reload).
      process.on('SIGHUP', ignoreSignal);
    },
    answerMetrics(registry) {
      process.on('message', (message: { type?: string; seq?: number } | null) => {
        if (message?.type !== 'metric-request') return;
        const answer: MetricSnapshotMessage = {
          type: 'metric-snapshot',
          seq: message.seq ?? 0,
          snapshot: registry.snapshot(),
        };
        process.send?.(answer);
      });
    },
    onReloadMessage(handle) {
      process.on('message', (message: unknown) => {
        if (isReloadMessage(message)) handle(message);
      });
    },
    sendReloadMessage: (message) => process.send?.(message),
    onReopenRequest(reopen) {
      process.on('SIGUSR1', reopen);
    },
  };
}

function ignoreSignal(): void {}

/**
 * Serves `config` in this process (no `worker`) or as one worker of an instance: a worker process, or a
 * worker thread (src/server/worker-thread.ts). Stops gracefully when asked, then ends the process (or
 * the thread: `process.exit` in a worker thread ends that thread only).
 */
export async function serve(
  config: Config,
  options: RunOptions,
  worker: WorkerRole | null,
  logger: Logger = startLogger(options.logLevel, worker === null ? {} : { worker: worker.id }),
  view: InstanceView | null = null,
): Promise<void> {
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    flushLogs();
    process.exit(1);
  });

  // max_connections bounds the instance: worker threads count in shared memory, a worker process holds
  // its share.
  const shared = worker?.kind === 'thread' ? instanceShared() : null;
  // Loaded here, not at the top: the main thread of worker threads serves nothing and does not load it.
  const { ProxyServer } = await import('./proxy-server.ts');
  // This worker's metric slots: shared memory the main thread reads (threads), snapshots for the
  // supervisor (processes), or read here by the admin listener (one process).
  const metrics =
    config.admin?.metrics === true
      ? new MetricRegistry(worker?.kind === 'thread', worker?.id ?? 1, worker?.publishMetrics ?? null)
      : null;
  if (metrics !== null) worker?.answerMetrics?.(metrics);
  if (view !== null && metrics !== null) view.metrics = new LocalMetrics(metrics);
  const server = new ProxyServer(config, {
    metrics,
    logger,
    // SO_REUSEPORT wherever the platform has it, a single process too: a new zproxy (a new version, a
    // rolling restart) can bind the same port while this one drains (docs/operations.md).
    reusePort: REUSE_PORT_SUPPORTED,
    maxConnections:
      worker === null || shared !== null
        ? config.max_connections
        : connectionShare(config.max_connections, worker.id, worker.count),
    instanceConnections:
      shared === null || worker === null
        ? undefined
        : { counter: new InstanceConnections(shared.connections), worker: worker.id },
    // Relative paths in filter configs (user filter modules) are the config file's.
    baseDir: options.configPath === null ? process.cwd() : dirname(resolve(options.configPath)),
    // The instance checks its targets once: here when this process is the instance, else in the main
    // thread (which writes the table the threads share) or the supervisor (which sends each change).
    checkHealth: worker === null,
    ...(shared === null ? {} : { health: new HealthTable(shared.health) }),
  });
  if (view !== null) view.health = server.healthChecker;
  // SIGUSR1 (logrotate's postrotate): the access log file is reopened. A listener also keeps Node from
  // taking SIGUSR1 as its signal to start the inspector.
  const reopen = (): void => server.reopenLogs();
  if (worker === null) process.on('SIGUSR1', reopen);
  else worker.onReopenRequest(reopen);
  await server.start();
  logger.flush();
  if (worker?.kind === 'process') {
    // Once listening (an IPC listener keeps a worker that failed to start from exiting): the verdicts of
    // the supervisor's health checks, for this worker's own table.
    process.on('message', (message: unknown) => {
      if (!isHealthStateMessage(message)) return;
      const table = server.pools.health;
      const record = table.record(message.key);
      if (record !== -1) table.setActive(record, message.state, Date.now());
    });
  }
  /** The config serving now (a reload replaces it). */
  let running = (): Config => config;
  if (worker === null) {
    // This process is the instance: it reloads itself on SIGHUP.
    const reload = new InstanceReload(options.configPath, config, logger, {
      singleProcess: true,
      participants: () => [new LocalParticipant(server)],
      committed: () => {},
    });
    process.on('SIGHUP', () => {
      if (!stopping) void reload.reload('SIGHUP');
    });
    view?.attachReload(reload);
    if (options.watch === true) reload.watch();
    running = () => reload.config;
  } else {
    // Worker threads count connections in shared memory; a worker process holds its share.
    const maxConnections = (next: Config) =>
      shared !== null
        ? next.max_connections
        : connectionShare(next.max_connections, worker.id, next.thread_count);
    const reload = new WorkerReload(server, maxConnections, (message) => worker.sendReloadMessage(message));
    worker.onReloadMessage((message) => reload.handle(message));
  }
  worker?.listening();
  if (view !== null) view.listening = true;

  let stopping = false;
  const stop = (reason: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal: reason, connections: server.connectionCount }, 'stopping');
    void server.stop().then(() => {
      logger.info('stopped');
      flushLogs();
      process.exit(0);
    });
  };
  if (worker === null) {
    // /readyz answers 503 first; the listeners serve on for shutdown_delay_ms, then the graceful stop.
    process.on('SIGTERM', () => drainThen(running().shutdown_delay_ms, view, () => stop('SIGTERM')));
    process.on('SIGINT', () => drainThen(running().shutdown_delay_ms, view, () => stop('SIGINT')));
  } else {
    worker.onStopRequest(stop);
  }
}
