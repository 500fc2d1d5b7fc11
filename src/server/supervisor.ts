/**
 * Multi-core where the platform has no SO_REUSEPORT: `thread_count` worker processes share each listening
 * port through node:cluster's one handle. (On Linux and FreeBSD the workers are threads of one process,
 * each binding its own socket with SO_REUSEPORT: src/server/thread-supervisor.ts. The process path can
 * bind with SO_REUSEPORT as well, which is how the tests run it on Linux.) The lifecycle (ready, restart,
 * reload, stop) is the worker set's (src/server/worker-set.ts); this file is its adapter for processes: a
 * stop is SIGTERM, a hard stop SIGKILL, a reload goes over IPC, and SIGUSR1 (reopen the access log file)
 * is passed on to every worker that listens (one still starting may not handle it yet: Node would take it
 * as the signal to start its inspector; it opens the file anew anyway). `max_connections` bounds the
 * instance: each worker enforces its share (connectionShare). The supervisor also holds the memory store
 * of the rate limiter for its workers: one IPC round trip per decision (src/filters/rate-limit/store-ipc.ts).
 */
import { type ChildProcess, fork } from 'node:child_process';
import cluster from 'node:cluster';
import type { Config } from '../config/schema.ts';
import { answerRateLimitMessage } from '../filters/rate-limit/store-ipc.ts';
import type { InstanceView } from '../observe/instance-view.ts';
import type { Logger } from '../observe/logger.ts';
import { ProcessMetrics } from '../observe/metrics-view.ts';
import { HealthTable } from '../upstream/health.ts';
import { HealthChecker, type HealthStateMessage } from '../upstream/health-checker.ts';
import { WORKER_ENV } from '../util/worker.ts';
import { type InstanceReload, isReloadMessage, MessageParticipant, type ReloadMessage } from './reload.ts';
import type { RunOptions } from './run.ts';
import { WorkerHandle, type WorkerMode, WorkerSet } from './worker-set.ts';
import { REUSE_PORT_SUPPORTED } from './workers.ts';

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

/** A worker process as the worker set drives it. */
class ProcessWorker extends WorkerHandle {
  readonly child: ChildProcess;
  readonly logFields: { readonly worker_pid: number | undefined };
  readonly participant: MessageParticipant;

  constructor(id: number) {
    super(id);
    this.child = spawnWorker(id);
    this.logFields = { worker_pid: this.child.pid };
    this.participant = new MessageParticipant(id, (message) => this.child.send(message));
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }

  terminate(): void {
    this.child.kill('SIGKILL');
  }

  abort(): void {
    // SIGTERM's default action ends a process that does not listen yet; one that listens stops gracefully.
    this.child.kill('SIGTERM');
  }

  reopenLogs(): void {
    // Only a worker that listens handles SIGUSR1: one still starting would take it as the signal to start
    // its inspector (it opens the file anew anyway).
    if (this.listening) this.child.kill('SIGUSR1');
  }
}

/**
 * Worker processes: the supervisor answers their rate-limit decisions (the memory store of the instance),
 * asks them for metric snapshots at a scrape and sends them the health checker's verdicts.
 */
class ProcessMode implements WorkerMode<ProcessWorker> {
  readonly name = 'processes';
  private readonly metrics: ProcessMetrics | null;
  private readonly health: HealthChecker;

  constructor(metrics: ProcessMetrics | null, health: HealthChecker) {
    this.metrics = metrics;
    this.health = health;
  }

  start(id: number, _count: number, set: WorkerSet<ProcessWorker>): ProcessWorker {
    const worker = new ProcessWorker(id);
    const { child } = worker;
    const metrics = this.metrics;
    // A worker that is gone cannot answer: the scrape uses its last snapshot (no 'error' event for it).
    metrics?.add(id, (m) => child.send(m, ignoreSendError));
    child.on('message', (message: WorkerMessage | ReloadMessage) => {
      set.messages++;
      // The workers' rate-limit decisions: the supervisor holds the memory store of the instance.
      if (answerRateLimitMessage(child, message)) return;
      if (metrics?.onMessage(id, message) === true) return;
      if (isReloadMessage(message)) {
        worker.participant.onReply(message);
        return;
      }
      if (message?.type === 'listening') set.listened(worker);
    });
    child.on('exit', (code, signal) => set.exited(worker, code, signal));
    return worker;
  }

  listened(worker: ProcessWorker): void {
    const { child } = worker;
    this.health.replay((key, state) => child.send({ type: 'health-state', key, state }, ignoreSendError));
  }

  ended(worker: ProcessWorker): void {
    this.metrics?.onExit(worker.id);
  }
}

export async function runSupervisor(
  config: Config,
  options: RunOptions,
  logger: Logger,
  onStopped: () => void,
  view: InstanceView | null = null,
): Promise<InstanceReload> {
  // The workers' metrics: a snapshot from each worker at every scrape (no message per request).
  const metrics = view !== null && config.admin?.metrics === true ? new ProcessMetrics() : null;
  if (view !== null) view.metrics = metrics;
  // One checker for the instance: each change of a target's state goes to every worker's own table.
  const health = new HealthChecker(new HealthTable(), logger, (key, state) => {
    const message: HealthStateMessage = { type: 'health-state', key, state };
    for (const worker of set.workers.values()) worker.child.send(message, ignoreSendError);
  });
  const set = new WorkerSet(
    config,
    options,
    logger,
    onStopped,
    view,
    health,
    new ProcessMode(metrics, health),
  );
  if (config.max_connections < config.thread_count) {
    logger.warn(
      { max_connections: config.max_connections, workers: config.thread_count },
      'max_connections is smaller than thread_count: some workers accept no connection',
    );
  }
  return set.run();
}
