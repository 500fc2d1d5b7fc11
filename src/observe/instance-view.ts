/**
 * The instance as its admin listener sees it (docs/operations.md): whether it is ready, its status, its
 * metrics summed over the workers, and the reload hook. One per instance, made in the per-instance place
 * (the single process, the main thread of worker threads, the process supervisor) by src/server/run.ts;
 * the supervisors feed it the workers' metrics and their count.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Config } from '../config/schema.ts';
import type { ErrorCode } from '../errors.ts';
import { labels, VALUE } from './metrics.ts';
import { MetricSum, type MetricSum as MetricSumType, type WorkerMetrics } from './metrics-view.ts';

/** What a reload answers: `ok` with whatever the reload reports, or the reasons it changed nothing. */
export type ReloadResult =
  | ({ readonly ok: true } & Readonly<Record<string, unknown>>)
  | {
      readonly ok: false;
      /** What is wrong, each naming its JSON path. */
      readonly errors: readonly string[];
      /** The HTTP status the admin listener answers with (default 422). */
      readonly status?: number;
      /** The ZP_ERR code of the answer's `error` (default ZP_ERR_CONFIG). */
      readonly code?: ErrorCode;
    };

/** The stand-in until reload exists: the admin listener answers 501. */
function reloadUnavailable(): Promise<ReloadResult> {
  return Promise.resolve({
    ok: false,
    status: 501,
    code: 'ZP_ERR_NOT_IMPLEMENTED',
    errors: ['Reload is not available yet'],
  });
}

/** How the workers run: one process, worker threads or worker processes. */
export type InstanceMode = 'single' | 'threads' | 'processes';

export class InstanceView {
  readonly startedAt = Date.now();
  readonly version: string;
  readonly mode: InstanceMode;
  config: Config;
  readonly configPath: string | null;
  /** SHA-256 of the config file's bytes (of the config's JSON for the built-in demo). */
  configHash: string;
  /** When the running config was loaded (ms since the epoch). */
  loadedAt = Date.now();
  /** Every listener is bound (set by the supervisor, or the single process, once they listen). */
  listening = false;
  /** A graceful stop has begun: /readyz answers 503. */
  draining = false;
  /** Workers serving now (set by the supervisors; 1 for a single process). */
  workers = 1;
  /** The workers' metrics; null when metrics are off. */
  metrics: WorkerMetrics | null = null;
  /** POST /reload: replaced by the reload's implementation. */
  reload: () => Promise<ReloadResult> = reloadUnavailable;
  private reloadsSucceeded = 0;
  private reloadsFailed = 0;
  private lastReloadSuccess = Date.now() / 1000;

  constructor(config: Config, configPath: string | null, version: string, mode: InstanceMode) {
    this.config = config;
    this.configPath = configPath;
    this.version = version;
    this.mode = mode;
    this.configHash = hashConfig(config, configPath);
  }

  /** Ready for traffic: listening and not stopping. */
  get ready(): boolean {
    return this.listening && !this.draining;
  }

  /** A reload ended (the reload's implementation calls this): counted, and the new config recorded. */
  recordReload(ok: boolean, config?: Config): void {
    if (!ok) {
      this.reloadsFailed++;
      return;
    }
    this.reloadsSucceeded++;
    this.lastReloadSuccess = Date.now() / 1000;
    if (config !== undefined) {
      this.config = config;
      this.configHash = hashConfig(config, this.configPath);
      this.loadedAt = Date.now();
    }
  }

  /** Every worker's series summed, with the instance's own. */
  async collect(): Promise<MetricSumType> {
    const sum = new MetricSum();
    if (this.metrics !== null) await this.metrics.collect(sum);
    sum.add('zproxy_reloads_total', labels([['result', 'success']]), VALUE, this.reloadsSucceeded);
    sum.add('zproxy_reloads_total', labels([['result', 'failure']]), VALUE, this.reloadsFailed);
    sum.add('zproxy_reload_last_success_timestamp_seconds', '', VALUE, this.lastReloadSuccess);
    // Worker processes sent their own CPU time and memory; this process adds its own (with worker threads,
    // or one process, that is the whole instance).
    const cpu = process.cpuUsage();
    sum.add('zproxy_process_cpu_seconds_total', '', VALUE, (cpu.user + cpu.system) / 1e6);
    sum.add('zproxy_process_resident_memory_bytes', '', VALUE, process.memoryUsage.rss());
    if (this.mode !== 'single') {
      sum.add(
        'zproxy_process_heap_used_bytes',
        labels([['worker', '0']]),
        VALUE,
        process.memoryUsage().heapUsed,
      );
    }
    sum.add('zproxy_workers', '', VALUE, this.workers);
    sum.add('zproxy_uptime_seconds', '', VALUE, (Date.now() - this.startedAt) / 1000);
    return sum;
  }

  /** GET /status. */
  async status(): Promise<Record<string, unknown>> {
    const sum = this.metrics === null ? null : await this.collect();
    const gauge = (family: Parameters<MetricSumType['value']>[0], l: string): number | null =>
      sum === null ? null : sum.value(family, l);
    const connections =
      sum === null
        ? null
        : {
            http1: gauge('zproxy_downstream_connections', labels([['protocol', 'http1']])),
            http2: gauge('zproxy_downstream_connections', labels([['protocol', 'http2']])),
            pending: gauge('zproxy_downstream_connections', labels([['protocol', 'pending']])),
            websocket_tunnels: gauge('zproxy_websocket_tunnels', ''),
            http2_streams: gauge('zproxy_http2_streams', ''),
          };
    return {
      version: this.version,
      uptime_seconds: Math.round((Date.now() - this.startedAt) / 1000),
      ready: this.ready,
      draining: this.draining,
      config: {
        file: this.configPath,
        sha256: this.configHash,
        loaded_at: new Date(this.loadedAt).toISOString(),
      },
      workers: { mode: this.mode, configured: this.config.thread_count, running: this.workers },
      connections,
      routes: this.config.routes.map((route) => ({
        path: route.path,
        host: route.host,
        methods: route.methods,
        upstream: route.upstream.map((target) => ({
          url: target,
          pool:
            sum === null
              ? null
              : {
                  idle: gauge(
                    'zproxy_upstream_pool_connections',
                    labels([
                      ['target', target],
                      ['state', 'idle'],
                    ]),
                  ),
                  busy: gauge(
                    'zproxy_upstream_pool_connections',
                    labels([
                      ['target', target],
                      ['state', 'busy'],
                    ]),
                  ),
                },
        })),
      })),
    };
  }
}

function hashConfig(config: Config, path: string | null): string {
  let bytes: Buffer | string;
  try {
    bytes = path === null ? JSON.stringify(config) : readFileSync(path);
  } catch {
    bytes = JSON.stringify(config);
  }
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The start of a graceful stop: /readyz answers 503 at once, the listeners keep serving for
 * `shutdown_delay_ms` (a load balancer, or Kubernetes, takes the instance out of rotation meanwhile),
 * then `stop` runs.
 */
export function drainThen(delayMs: number, view: InstanceView | null, stop: () => void): void {
  if (view !== null) view.draining = true;
  if (delayMs <= 0) stop();
  else setTimeout(stop, delayMs);
}
