/**
 * A reload of a whole instance, run once per instance (by the one process, or by the main thread or the
 * supervisor process of its workers) on SIGHUP, `POST /reload` at the admin listener or `zproxy reload`:
 *
 * 1. the config file is read and checked completely in a short-lived process (schema and semantics:
 *    loadConfigIsolated); settings that cannot change while running are refused;
 * 2. every worker prepares it (builds its new runtime: filters, user modules, JWKS URLs, certificates;
 *    binds the listeners it adds) without changing what serves;
 * 3. when every worker has prepared it, all commit at once; when one could not, the others abort and
 *    nothing changed: the running config keeps serving and the errors (with their JSON paths) are
 *    returned, logged and counted.
 *
 * Reloads run one at a time; a request for one while another runs waits for it and then runs its own
 * (the file may have changed again meanwhile).
 */
import { createHash } from 'node:crypto';
import { readFileSync, type Stats, unwatchFile, watchFile } from 'node:fs';
import type { ConfigError } from '../config/errors.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../observe/logger.ts';
import type { PreparedReload, ProxyServer } from './proxy-server.ts';

/** What a reload answers (the admin listener returns it as JSON; `zproxy reload` prints it). */
export type ReloadOutcome =
  | {
      readonly ok: true;
      /** SHA-256 of the config file that now serves (its first 16 hex digits). */
      readonly config_hash: string;
      readonly loaded_at: string;
      readonly workers: number;
    }
  | { readonly ok: false; readonly errors: readonly string[] };

/** One worker as a reload sees it. */
export interface ReloadParticipant {
  readonly id: number;
  /** Prepares `config`; resolves with null when ready, else with why not (one message). */
  prepare(config: Config): Promise<string | null>;
  commit(): void;
  abort(): void;
}

/** What the instance gives the reload: how to reach its workers and what to do around a commit. */
export interface ReloadTarget {
  /** True when the instance is one process serving itself (thread_count 1): it cannot start workers. */
  readonly singleProcess: boolean;
  /** The workers to prepare the new config in (all that serve; a worker `thread_count` drops is not). */
  participants(next: Config): readonly ReloadParticipant[];
  /**
   * Checks what the instance itself needs of the new config and makes it ready (shared memory for new
   * caches, say) before the workers prepare; a message when the config cannot be taken while running.
   */
  precheck?(next: Config): string | null | Promise<string | null>;
  /** After every worker committed: start or stop workers for `thread_count`, remember the config. */
  committed(next: Config): void;
}

/** The digest of a config file as /status and reload outcomes show it. */
export function configHash(path: string | null): string {
  if (path === null) return 'built-in demo';
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
  } catch {
    return 'unreadable';
  }
}

/** How often `--watch` looks at the config file. */
const CONFIG_POLL_INTERVAL_MS = 1000;

/** How long a worker may take to prepare a reload (a JWKS URL, a user module) before the reload fails. */
const PREPARE_TIMEOUT_MS = 30_000;

/** Settings that cannot change while zproxy runs: a reload that changes them is refused, naming them. */
export function fixedSettingsChanged(running: Config, next: Config, singleProcess: boolean): string | null {
  if (next.worker_mode !== running.worker_mode) {
    return `worker_mode: cannot change while zproxy runs (from "${running.worker_mode}" to "${next.worker_mode}"); restart zproxy`;
  }
  // The admin listener, its token and whether metrics are counted are set when the instance starts.
  if (JSON.stringify(next.admin) !== JSON.stringify(running.admin)) {
    return 'admin: cannot change while zproxy runs (the admin listener, its token and the metrics are set at start); restart zproxy';
  }
  // (With workers, thread_count 1 leaves one worker: the instance keeps its main thread or supervisor.)
  if (singleProcess && next.thread_count !== running.thread_count) {
    return `thread_count: zproxy started with thread_count ${running.thread_count} serves in one process and cannot start workers while it runs (to ${next.thread_count}); restart zproxy`;
  }
  return null;
}

export class InstanceReload {
  private readonly path: string | null;
  private readonly logger: Logger;
  private readonly target: ReloadTarget;
  private running: Promise<ReloadOutcome> | null = null;
  private queued: Promise<ReloadOutcome> | null = null;
  /** The config serving now, and when it was loaded. */
  config: Config;
  loadedAt = new Date();
  hash: string;
  /** Counts for the metrics and /status. */
  succeeded = 0;
  failed = 0;
  lastSuccess: Date | null = null;

  constructor(path: string | null, config: Config, logger: Logger, target: ReloadTarget) {
    this.path = path;
    this.config = config;
    this.logger = logger;
    this.target = target;
    this.hash = configHash(path);
  }

  /**
   * `zproxy run --watch`: reloads when the config file changes (its size, modification time or inode:
   * an edit in place, a file renamed over it, a Kubernetes ConfigMap's symlink swap), checked every
   * `intervalMs`. A change that leaves the content as it is (the same hash) reloads nothing.
   */
  watch(intervalMs = CONFIG_POLL_INTERVAL_MS): void {
    const path = this.path;
    if (path === null) return;
    watchFile(path, { interval: intervalMs, persistent: false }, (current: Stats, previous: Stats) => {
      if (
        current.mtimeMs === previous.mtimeMs &&
        current.size === previous.size &&
        current.ino === previous.ino
      )
        return;
      if (current.nlink === 0 && current.size === 0) return; // removed: wait for the new file
      if (configHash(path) === this.hash) return;
      void this.reload('config file changed');
    });
    this.unwatch = () => unwatchFile(path);
  }

  /** Stops watching the config file (a stop). */
  unwatch: () => void = () => {};

  /** Reloads the config file (one reload at a time; see the module comment). */
  reload(reason: string): Promise<ReloadOutcome> {
    if (this.running === null) {
      this.running = this.run(reason).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // One waits behind the running reload; later requests share it.
    if (this.queued === null) {
      this.queued = this.running.then(() => {
        this.queued = null;
        return this.reload(reason);
      });
    }
    return this.queued;
  }

  private async run(reason: string): Promise<ReloadOutcome> {
    const started = performance.now();
    this.logger.info({ reason, file: this.path }, 'reload requested');
    const outcome = await this.attempt();
    const duration_ms = Math.round(performance.now() - started);
    if (outcome.ok) {
      this.succeeded++;
      this.lastSuccess = new Date();
      this.logger.info({ reason, config_hash: outcome.config_hash, duration_ms }, 'reloaded');
    } else {
      this.failed++;
      this.logger.error(
        { reason, errors: outcome.errors, duration_ms },
        'reload failed; the running config keeps serving',
      );
    }
    return outcome;
  }

  private async attempt(): Promise<ReloadOutcome> {
    if (this.path === null) {
      return fail(['zproxy runs the built-in demo (no config file): there is nothing to reload']);
    }
    let next: Config;
    try {
      const { loadConfigIsolated } = await import('../config/load-isolated.ts');
      const loaded = await loadConfigIsolated(this.path);
      next = loaded.config;
      for (const { code, path, message } of loaded.warnings) this.logger.warn({ code, path }, message);
    } catch (error) {
      const issues = (error as Partial<ConfigError>).issues;
      if (Array.isArray(issues)) return fail(issues.map((i) => i.message));
      return fail([(error as Error).message]);
    }
    const hash = configHash(this.path);
    const refused =
      fixedSettingsChanged(this.config, next, this.target.singleProcess) ??
      (await this.target.precheck?.(next));
    if (refused != null) return fail([refused]);
    const workers = this.target.participants(next);
    const prepared: ReloadParticipant[] = [];
    const errors: string[] = [];
    await Promise.all(
      workers.map(async (worker) => {
        const error = await withTimeout(worker.prepare(next), PREPARE_TIMEOUT_MS, worker.id);
        if (error === null) prepared.push(worker);
        else errors.push(workers.length > 1 ? `worker ${worker.id}: ${error}` : error);
      }),
    );
    if (errors.length > 0) {
      // A worker that timed out aborts once it has prepared.
      for (const worker of workers) worker.abort();
      // Every worker fails the same way on a bad filter: say it once.
      return fail([...new Set(errors.map((e) => e.replace(/^worker \d+: /, '')))]);
    }
    for (const worker of workers) worker.commit();
    this.config = next;
    this.loadedAt = new Date();
    this.hash = hash;
    this.target.committed(next);
    return { ok: true, config_hash: hash, loaded_at: this.loadedAt.toISOString(), workers: workers.length };
  }
}

function fail(errors: string[]): ReloadOutcome {
  return { ok: false, errors };
}

function withTimeout(promise: Promise<string | null>, ms: number, id: number): Promise<string | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`worker ${id} did not prepare the reload within ${ms} ms`), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: Error) => {
        clearTimeout(timer);
        resolve(error.message);
      },
    );
  });
}

// ---------------------------------------------------------------- between the instance and its workers

/** The messages of a reload between the instance (main thread, supervisor) and a worker. */
export type ReloadMessage =
  | {
      readonly type: 'reload-prepare';
      readonly seq: number;
      readonly config: Config;
      /** Worker threads: the instance's memory caches, new ones included (src/util/instance.ts). */
      readonly caches?: Readonly<Record<string, SharedArrayBuffer>>;
    }
  | { readonly type: 'reload-commit'; readonly seq: number }
  | { readonly type: 'reload-abort'; readonly seq: number }
  | { readonly type: 'reload-prepared'; readonly seq: number; readonly error: string | null };

export function isReloadMessage(message: unknown): message is ReloadMessage {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.startsWith('reload-');
}

let nextSeq = 1;

/**
 * A worker reached by messages (a thread's port, a process's IPC channel): `post` sends to it, and the
 * supervisor hands each `reload-prepared` reply it receives from that worker to `onReply`.
 */
export class MessageParticipant implements ReloadParticipant {
  readonly id: number;
  private readonly post: (message: ReloadMessage) => void;
  private readonly extra: () => Partial<Extract<ReloadMessage, { type: 'reload-prepare' }>>;
  private seq = 0;
  private settle: ((error: string | null) => void) | null = null;

  constructor(
    id: number,
    post: (message: ReloadMessage) => void,
    extra: () => Partial<Extract<ReloadMessage, { type: 'reload-prepare' }>> = () => ({}),
  ) {
    this.id = id;
    this.post = post;
    this.extra = extra;
  }

  prepare(config: Config): Promise<string | null> {
    this.seq = nextSeq++;
    return new Promise((resolve) => {
      this.settle = resolve;
      this.post({ ...this.extra(), type: 'reload-prepare', seq: this.seq, config });
    });
  }

  onReply(message: ReloadMessage): void {
    if (message.type !== 'reload-prepared' || message.seq !== this.seq || this.settle === null) return;
    const settle = this.settle;
    this.settle = null;
    settle(message.error);
  }

  /** The worker ended while preparing. */
  gone(): void {
    this.settle?.(`worker ${this.id} ended during the reload`);
    this.settle = null;
  }

  commit(): void {
    this.post({ type: 'reload-commit', seq: this.seq });
  }

  abort(): void {
    this.post({ type: 'reload-abort', seq: this.seq });
  }
}

/** The one server of a single-process instance, reached by direct calls. */
export class LocalParticipant implements ReloadParticipant {
  readonly id = 1;
  private readonly server: ProxyServer;
  private prepared: PreparedReload | null = null;

  constructor(server: ProxyServer) {
    this.server = server;
  }

  async prepare(config: Config): Promise<string | null> {
    try {
      this.prepared = await this.server.prepareReload(config);
      return null;
    } catch (error) {
      return (error as Error).message;
    }
  }

  commit(): void {
    if (this.prepared !== null) this.server.commitReload(this.prepared);
    this.prepared = null;
  }

  abort(): void {
    if (this.prepared !== null) void this.server.abortReload(this.prepared);
    this.prepared = null;
  }
}

/**
 * The worker's side: prepares a reload in its server when asked, answers whether it could, then commits
 * or aborts it. An abort that arrives before the preparation is done aborts it once done.
 */
export class WorkerReload {
  private readonly server: ProxyServer;
  private readonly maxConnections: (config: Config) => number;
  private readonly reply: (message: ReloadMessage) => void;
  private readonly pending = new Map<number, Promise<PreparedReload | null>>();

  constructor(
    server: ProxyServer,
    maxConnections: (config: Config) => number,
    reply: (message: ReloadMessage) => void,
  ) {
    this.server = server;
    this.maxConnections = maxConnections;
    this.reply = reply;
  }

  handle(message: ReloadMessage): void {
    if (message.type === 'reload-prepare') {
      const seq = message.seq;
      const prepared = this.server.prepareReload(message.config, this.maxConnections(message.config)).then(
        (ready) => {
          this.reply({ type: 'reload-prepared', seq, error: null });
          return ready;
        },
        (error: Error) => {
          this.reply({ type: 'reload-prepared', seq, error: error.message });
          return null;
        },
      );
      this.pending.set(seq, prepared);
      return;
    }
    if (message.type !== 'reload-commit' && message.type !== 'reload-abort') return;
    const prepared = this.pending.get(message.seq);
    if (prepared === undefined) return;
    this.pending.delete(message.seq);
    void prepared.then((ready) => {
      if (ready === null) return;
      if (message.type === 'reload-commit') this.server.commitReload(ready);
      else void this.server.abortReload(ready);
    });
  }
}
