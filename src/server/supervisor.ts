/**
 * Multi-core where the platform has no SO_REUSEPORT: `thread_count` worker processes share each listening
 * port through node:cluster's one handle. (On Linux and FreeBSD the workers are threads of one process,
 * each binding its own socket with SO_REUSEPORT: src/server/thread-supervisor.ts. The process path can
 * bind with SO_REUSEPORT as well, which is how the tests run it on Linux.) The supervisor restarts a worker that dies and, on SIGTERM or
 * SIGINT, asks every worker to stop gracefully and exits 0 once they have. `max_connections` bounds the
 * instance: each worker enforces its share (connectionShare). SIGUSR1 (reopen the access log file) is
 * passed on to every worker that listens (one still starting may not handle it yet: Node would take it
 * as the signal to start its inspector; it opens the file anew anyway).
 */
import { type ChildProcess, fork } from 'node:child_process';
import cluster from 'node:cluster';
import type { Config } from '../config/schema.ts';
import { answerRateLimitMessage } from '../filters/rate-limit/store-ipc.ts';
import { drainThen, type InstanceView } from '../observe/instance-view.ts';
import type { Logger } from '../observe/logger.ts';
import { ProcessMetrics } from '../observe/metrics-view.ts';
import { HealthTable } from '../upstream/health.ts';
import { HealthChecker, type HealthStateMessage } from '../upstream/health-checker.ts';
import { WORKER_ENV } from '../util/worker.ts';
import { InstanceReload, isReloadMessage, MessageParticipant, type ReloadMessage } from './reload.ts';
import type { RunOptions } from './run.ts';
import { REUSE_PORT_SUPPORTED, RestartBrake } from './workers.ts';

export interface WorkerMessage {
  readonly type: 'listening';
}

function spawnWorker(id: number): ChildProcess {
  const env = { ...process.env, [WORKER_ENV]: String(id) };
  if (REUSE_PORT_SUPPORTED) {
    return fork(process.argv[1]!, process.argv.slice(2), { env, stdio: 'inherit' });
  }
  cluster.setupPrimary({ exec: process.argv[1]!, args: process.argv.slice(2) });
  return cluster.fork(env).process;
}

function ignoreSendError(): void {}

export async function runSupervisor(
  config: Config,
  options: RunOptions,
  logger: Logger,
  onStopped: () => void,
  view: InstanceView | null = null,
): Promise<InstanceReload> {
  let count = config.thread_count;
  // The workers' metrics: a snapshot from each worker at every scrape (no message per request).
  const metrics = view !== null && config.admin?.metrics === true ? new ProcessMetrics() : null;
  if (view !== null) view.metrics = metrics;
  const workers = new Map<number, ChildProcess>();
  /** Each listening worker as a reload reaches it. */
  const reloadable = new Map<number, MessageParticipant>();
  /** The workers that have told they listen (and so handle SIGUSR1). */
  const serving = new Set<ChildProcess>();
  const brake = new RestartBrake();
  let stopping = false;
  let ready = false;
  let listening = 0;
  let resolveReady: () => void;
  let rejectReady: (error: Error) => void;
  const started = new Promise<void>((resolve, reject) => {
    resolveReady = resolve;
    rejectReady = reject;
  });
  /** Set when a worker failed before listening during startup: the run fails once all workers are gone. */
  let startupError: Error | null = null;
  // One checker for the instance: each change of a target's state goes to every worker's own table.
  const health = new HealthChecker(new HealthTable(), logger, (key, state) => {
    const message: HealthStateMessage = { type: 'health-state', key, state };
    for (const child of workers.values()) child.send(message, ignoreSendError);
  });
  if (view !== null) view.health = health;

  const start = (id: number): void => {
    const child = spawnWorker(id);
    workers.set(id, child);
    logger.info({ worker: id, worker_pid: child.pid }, 'worker started');
    let childListening = false;
    if (view !== null) view.workers = workers.size;
    // A worker that is gone cannot answer: the scrape uses its last snapshot (no 'error' event for it).
    metrics?.add(id, (m) => child.send(m, ignoreSendError));
    const participant = new MessageParticipant(id, (message) => child.send(message));
    child.on('message', (message: WorkerMessage | ReloadMessage) => {
      // The workers' rate-limit decisions: the supervisor holds the memory store of the instance.
      if (answerRateLimitMessage(child, message)) return;
      if (metrics?.onMessage(id, message) === true) return;
      if (isReloadMessage(message)) {
        participant.onReply(message);
        return;
      }
      if (message?.type !== 'listening') return;
      childListening = true;
      health.replay((key, state) => child.send({ type: 'health-state', key, state }, ignoreSendError));
      reloadable.set(id, participant);
      serving.add(child);
      if (++listening === count && !ready) {
        ready = true;
        logger.info({ workers: count, mode: 'processes' }, 'ready');
        if (view !== null) view.listening = true;
        resolveReady();
      }
    });
    child.on('exit', (code, signal) => {
      serving.delete(child);
      if (workers.get(id) === child) workers.delete(id);
      if (view !== null) view.workers = workers.size;
      metrics?.onExit(id);
      if (reloadable.get(id) === participant) reloadable.delete(id);
      if (childListening) listening--;
      participant.gone();
      if (stopping) {
        if (workers.size > 0) return;
        if (startupError !== null) rejectReady(startupError);
        else onStopped();
        return;
      }
      if (!childListening && !ready) {
        // A worker failed before listening while starting up (port in use, bad address): fail like a
        // single process does instead of restarting it forever.
        logger.fatal({ worker: id, worker_pid: child.pid, code, signal }, 'worker failed to start');
        startupError = new Error(`worker ${id} exited before listening (code ${code}, signal ${signal})`);
        stopping = true;
        if (workers.size === 0) rejectReady(startupError);
        for (const other of workers.values()) other.kill('SIGTERM');
        return;
      }
      const delay = brake.next();
      logger.error(
        { worker: id, worker_pid: child.pid, code, signal, restart_in_ms: delay },
        'worker exited',
      );
      setTimeout(() => {
        // A reload may have lowered thread_count meanwhile.
        if (!stopping && id <= count) start(id);
      }, delay);
    });
  };

  // A worker process reads the config file when it starts: after a reload, the file it reads is the new
  // one (unless it changed again since; a restarted worker then serves what the file says).
  const reload = new InstanceReload(options.configPath, config, logger, {
    singleProcess: false,
    participants: (next) =>
      [...reloadable.values()].filter((p) => p.id <= next.thread_count).sort((a, b) => a.id - b.id),
    committed(next) {
      health.update(next);
      const previous = count;
      count = next.thread_count;
      for (const [id, child] of workers) if (id > count) child.kill('SIGTERM');
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
    for (const child of workers.values()) child.kill('SIGTERM');
    const hardStop = setTimeout(() => {
      for (const child of workers.values()) child.kill('SIGKILL');
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
    for (const child of serving) child.kill('SIGUSR1');
  });
  // SIGHUP reloads the config file (never stops zproxy).
  process.on('SIGHUP', () => {
    if (!stopping) void reload.reload('SIGHUP');
  });

  if (config.max_connections < count) {
    logger.warn(
      { max_connections: config.max_connections, workers: count },
      'max_connections is smaller than thread_count: some workers accept no connection',
    );
  }
  for (let id = 1; id <= count; id++) start(id);
  health.update(config);
  await started;
  return reload;
}
