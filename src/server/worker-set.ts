/**
 * The one lifecycle of an instance's workers, whatever they run in (worker threads:
 * src/server/thread-supervisor.ts; worker processes: src/server/supervisor.ts). The worker set starts
 * `thread_count` workers, counts those that listen and is ready when all do; fails the start when a worker
 * ends before it listens (a port in use, a bad address) instead of restarting it forever; restarts a
 * worker that ends later (through the crash-loop brake); hands a reload to the workers that listen and
 * starts or stops workers when a reload changes `thread_count`; on SIGTERM or SIGINT asks every worker to
 * stop gracefully, ends those still there `shutdown_grace_ms` + 5 s later, and calls `onStopped` once all
 * have ended. SIGUSR1 asks every worker to reopen its log files; SIGHUP reloads.
 *
 * What differs between the modes is a small adapter (WorkerMode): how a worker starts and how it is
 * reached (a message to a thread, a signal or an IPC message to a process), and what the instance keeps
 * for it besides (its metrics, its connections, the health verdicts it is sent).
 */
import type { Config } from '../config/schema.ts';
import { drainThen, type InstanceView } from '../observe/instance-view.ts';
import type { Logger } from '../observe/logger.ts';
import type { HealthChecker } from '../upstream/health-checker.ts';
import { InstanceReload, type MessageParticipant } from './reload.ts';
import type { RunOptions } from './run.ts';
import { RestartBrake } from './workers.ts';

/** One worker, as the worker set drives it; each mode implements how. */
export abstract class WorkerHandle {
  readonly id: number;
  /** It told that it listens: it serves, takes part in reloads and counts toward `ready`. */
  listening = false;
  /** Why it failed, when it told before ending (or the runtime reported it). */
  failure: Error | null = null;
  /** Fields naming it in the log lines about it, besides `worker` (`thread_id`, `worker_pid`). */
  abstract readonly logFields: Readonly<Record<string, unknown>>;
  /** Its part in a reload. */
  abstract readonly participant: MessageParticipant;

  constructor(id: number) {
    this.id = id;
  }

  /** Asks it to stop gracefully (it finishes its exchanges within `shutdown_grace_ms`). */
  abstract stop(): void;
  /** Ends it now (the graceful stop took too long). */
  abstract terminate(): void;
  /** Ends it because another worker failed to start: it may not listen yet, so a stop request could be lost. */
  abstract abort(): void;
  /** Asks it to reopen its log files (SIGUSR1). */
  abstract reopenLogs(): void;
}

/** What differs between worker threads and worker processes. */
export interface WorkerMode<W extends WorkerHandle> {
  readonly name: 'threads' | 'processes';
  /**
   * Starts worker `id` with the config of the instance now (`count` workers); the handle reports to `set`
   * what the worker tells (listened, exited) and the mode handles the rest of its messages.
   */
  start(id: number, count: number, set: WorkerSet<W>): W;
  /** The worker told that it listens, before it counts toward ready. */
  listened?(worker: W): void;
  /** The worker ended: what the instance kept for it goes (it will not be started again with it). */
  ended?(worker: W): void;
  /** What the instance needs of a reloaded config before the workers prepare it (ReloadTarget.precheck). */
  precheck?(next: Config): Promise<string | null>;
  /** A reload was committed, before workers are started or stopped for its `thread_count`. */
  committed?(next: Config): void;
}

export class WorkerSet<W extends WorkerHandle> {
  /** The workers running now, by id (1 to `count`). */
  readonly workers = new Map<number, W>();
  /** Messages received from the workers since the start (a counter /status shows; none per request). */
  messages = 0;
  private count: number;
  /** The config in force: the start config, then each committed reload's. */
  private config: Config;
  private readonly options: RunOptions;
  private readonly logger: Logger;
  private readonly view: InstanceView | null;
  private readonly health: HealthChecker;
  private readonly mode: WorkerMode<W>;
  private readonly onStopped: () => void;
  private readonly brake = new RestartBrake();
  /** Each listening worker as a reload reaches it. */
  private readonly reloadable = new Map<number, MessageParticipant>();
  private stopping = false;
  private ready = false;
  private listening = 0;
  /** Set when a worker failed before listening during the start: the run fails once all workers are gone. */
  private startupError: Error | null = null;
  private readonly started: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (error: Error) => void;

  constructor(
    config: Config,
    options: RunOptions,
    logger: Logger,
    onStopped: () => void,
    view: InstanceView | null,
    health: HealthChecker,
    mode: WorkerMode<W>,
  ) {
    this.config = config;
    this.count = config.thread_count;
    this.options = options;
    this.logger = logger;
    this.onStopped = onStopped;
    this.view = view;
    this.health = health;
    this.mode = mode;
    this.started = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    if (view !== null) {
      view.health = health;
      view.workerMessages = this;
    }
  }

  /** Starts the workers, the reload and the signal handlers; resolves once every worker listens. */
  async run(): Promise<InstanceReload> {
    const { config, options, logger, view } = this;
    const reload = new InstanceReload(options.configPath, config, logger, {
      singleProcess: false,
      ...(this.mode.precheck === undefined ? {} : { precheck: (next) => this.mode.precheck!(next) }),
      participants: (next) =>
        [...this.reloadable.values()].filter((p) => p.id <= next.thread_count).sort((a, b) => a.id - b.id),
      committed: (next) => this.committed(next),
    });
    view?.attachReload(reload);
    if (options.watch === true) reload.watch();

    // /readyz answers 503 first; the workers serve on for shutdown_delay_ms, then stop gracefully.
    process.on('SIGTERM', (signal: NodeJS.Signals) =>
      drainThen(reload.config.shutdown_delay_ms, view, () => this.stop(signal)),
    );
    process.on('SIGINT', (signal: NodeJS.Signals) =>
      drainThen(reload.config.shutdown_delay_ms, view, () => this.stop(signal)),
    );
    process.on('SIGUSR1', () => {
      for (const worker of this.workers.values()) worker.reopenLogs();
    });
    // SIGHUP reloads the config file (never stops zproxy).
    process.on('SIGHUP', () => {
      if (!this.stopping) void reload.reload('SIGHUP');
    });

    for (let id = 1; id <= this.count; id++) this.start(id);
    this.health.update(config);
    await this.started;
    return reload;
  }

  private start(id: number): void {
    const worker = this.mode.start(id, this.count, this);
    this.workers.set(id, worker);
    this.logger.info({ worker: id, ...worker.logFields }, 'worker started');
    if (this.view !== null) this.view.workers = this.workers.size;
  }

  /** The worker told that it listens. */
  listened(worker: W): void {
    worker.listening = true;
    this.mode.listened?.(worker);
    this.reloadable.set(worker.id, worker.participant);
    if (++this.listening === this.count && !this.ready) {
      this.ready = true;
      this.logger.info({ workers: this.count, mode: this.mode.name }, 'ready');
      if (this.view !== null) this.view.listening = true;
      this.resolveReady();
    }
  }

  /** The worker ended (`signal` undefined where the mode has none: a thread). */
  exited(worker: W, code: number | null, signal?: NodeJS.Signals | null): void {
    const { id } = worker;
    const { logger } = this;
    if (this.workers.get(id) === worker) this.workers.delete(id);
    if (this.view !== null) this.view.workers = this.workers.size;
    this.mode.ended?.(worker);
    if (this.reloadable.get(id) === worker.participant) this.reloadable.delete(id);
    if (worker.listening) this.listening--;
    worker.participant.gone();
    if (this.stopping) {
      if (this.workers.size > 0) return;
      if (this.startupError !== null) this.rejectReady(this.startupError);
      else this.onStopped();
      return;
    }
    if (!worker.listening && !this.ready) {
      // A worker failed before listening while starting up (port in use, bad address): fail like a
      // single process does instead of restarting it forever.
      logger.fatal(
        { worker: id, ...worker.logFields, code, signal, err: worker.failure ?? undefined },
        'worker failed to start',
      );
      const how = signal === undefined ? `code ${code}` : `code ${code}, signal ${signal}`;
      this.startupError = worker.failure ?? new Error(`worker ${id} exited before listening (${how})`);
      this.stopping = true;
      if (this.workers.size === 0) this.rejectReady(this.startupError);
      for (const other of this.workers.values()) other.abort();
      return;
    }
    const delay = this.brake.next();
    logger.error({ worker: id, ...worker.logFields, code, signal, restart_in_ms: delay }, 'worker exited');
    setTimeout(() => {
      // A reload may have lowered thread_count meanwhile.
      if (!this.stopping && id <= this.count) this.start(id);
    }, delay);
  }

  private committed(next: Config): void {
    // The hard stop's delay (shutdown_grace_ms) is the reloaded config's, like the workers' own grace.
    this.config = next;
    this.health.update(next);
    this.mode.committed?.(next);
    const previous = this.count;
    this.count = next.thread_count;
    // thread_count: workers beyond it stop gracefully; new ones start with the new config.
    for (const [id, worker] of this.workers) if (id > this.count) worker.stop();
    for (let id = previous + 1; id <= this.count; id++) if (!this.workers.has(id)) this.start(id);
    if (this.count !== previous) this.logger.info({ from: previous, to: this.count }, 'thread_count changed');
  }

  private stop(signal: NodeJS.Signals): void {
    if (this.stopping) return;
    this.stopping = true;
    this.health.stop();
    this.logger.info({ signal }, 'stopping workers');
    if (this.workers.size === 0) {
      this.onStopped();
      return;
    }
    for (const worker of this.workers.values()) worker.stop();
    const hardStop = setTimeout(() => {
      for (const worker of this.workers.values()) worker.terminate();
    }, this.config.shutdown_grace_ms + 5000);
    hardStop.unref();
  }
}
