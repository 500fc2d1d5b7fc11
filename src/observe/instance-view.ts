/**
 * The instance as its admin listener sees it (docs/operations.md): whether it is ready, its status, its
 * metrics summed over the workers, and the reload hook. One per instance, made in the per-instance place
 * (the single process, the main thread of worker threads, the process supervisor) by src/server/run.ts;
 * the supervisors feed it the workers' metrics and their count.
 */
import type { Config, RouteConfig } from '../config/schema.ts';
import type { ErrorCode } from '../errors.ts';
import {
  labels,
  OVERLOAD_LIMITS,
  ROUTE_LOAD_STATES,
  routeLabel,
  TARGET_LOAD_STATES,
  VALUE,
} from './metrics.ts';
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

/**
 * The instance's reload (src/server/reload.ts, InstanceReload): what it serves now and what it counted.
 * The admin listener's POST /reload calls it; /status and /metrics read it.
 */
export interface ReloadSource {
  readonly config: Config;
  readonly loadedAt: Date;
  /** The config file's digest (its SHA-256's first 16 hex digits). */
  readonly hash: string;
  readonly succeeded: number;
  readonly failed: number;
  readonly lastSuccess: Date | null;
  reload(reason: string): Promise<ReloadResult>;
}

/** How the workers run: one process, worker threads or worker processes. */
export type InstanceMode = 'single' | 'threads' | 'processes';

export class InstanceView {
  readonly startedAt = Date.now();
  readonly version: string;
  readonly mode: InstanceMode;
  /** The config the instance started with (the reload's, once attached, is the one serving). */
  private readonly startConfig: Config;
  readonly configPath: string | null;
  /** The instance's reload, once the supervisor (or the single process) has made it. */
  private reloads: ReloadSource | null = null;
  /** Every listener is bound (set by the supervisor, or the single process, once they listen). */
  listening = false;
  /** A graceful stop has begun: /readyz answers 503. */
  draining = false;
  /** Workers serving now (set by the supervisors; 1 for a single process). */
  workers = 1;
  /** The workers' metrics; null when metrics are off. */
  metrics: WorkerMetrics | null = null;
  /** The messages the main thread or the supervisor received from its workers (none for one process). */
  workerMessages: { readonly messages: number } | null = null;
  /** The targets' health (the instance's health checker, src/upstream/health-checker.ts). */
  health: HealthSource | null = null;
  constructor(config: Config, configPath: string | null, version: string, mode: InstanceMode) {
    this.startConfig = config;
    this.configPath = configPath;
    this.version = version;
    this.mode = mode;
  }

  attachReload(source: ReloadSource): void {
    this.reloads = source;
  }

  /** The config serving now. */
  get config(): Config {
    return this.reloads?.config ?? this.startConfig;
  }

  /** POST /reload (501 until the instance's reload is attached). */
  reload(): Promise<ReloadResult> {
    return this.reloads === null ? reloadUnavailable() : this.reloads.reload('POST /reload');
  }

  /** Ready for traffic: listening and not stopping. */
  get ready(): boolean {
    return this.listening && !this.draining;
  }

  /** Every worker's series summed, with the instance's own. */
  async collect(): Promise<MetricSumType> {
    const sum = new MetricSum();
    if (this.metrics !== null) await this.metrics.collect(sum);
    const r = this.reloads;
    sum.add('zproxy_reloads_total', labels([['result', 'success']]), VALUE, r?.succeeded ?? 0);
    sum.add('zproxy_reloads_total', labels([['result', 'failure']]), VALUE, r?.failed ?? 0);
    // Until a reload succeeds, the time the running config was loaded: the start.
    const last = r?.lastSuccess ?? r?.loadedAt ?? new Date(this.startedAt);
    sum.add('zproxy_reload_last_success_timestamp_seconds', '', VALUE, last.getTime() / 1000);
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
        hash: this.reloads?.hash ?? null,
        loaded_at: (this.reloads?.loadedAt ?? new Date(this.startedAt)).toISOString(),
      },
      reloads:
        this.reloads === null
          ? null
          : {
              succeeded: this.reloads.succeeded,
              failed: this.reloads.failed,
              last_success: this.reloads.lastSuccess?.toISOString() ?? null,
            },
      workers: {
        mode: this.mode,
        configured: this.config.thread_count,
        running: this.workers,
        messages_received: this.workerMessages?.messages ?? 0,
      },
      connections,
      routes: this.config.routes.map((route) => {
        const name = routeLabel(route);
        // Refusals are counted per target (a route-wide limit under the target the request was headed for).
        const refusedAt = (url: string) =>
          sum === null
            ? null
            : Object.fromEntries(
                OVERLOAD_LIMITS.map((limit) => [
                  limit,
                  gauge(
                    'zproxy_upstream_overload_total',
                    labels([
                      ['route', name],
                      ['target', url],
                      ['limit', limit],
                    ]),
                  ),
                ]),
              );
        const upstream = route.upstream.map(({ url }) => ({
          url,
          health: this.health?.targetStatus(route, url) ?? null,
          pool:
            sum === null
              ? null
              : {
                  idle: gauge(
                    'zproxy_upstream_pool_connections',
                    labels([
                      ['target', url],
                      ['state', 'idle'],
                    ]),
                  ),
                  busy: gauge(
                    'zproxy_upstream_pool_connections',
                    labels([
                      ['target', url],
                      ['state', 'busy'],
                    ]),
                  ),
                },
          load:
            sum === null
              ? null
              : Object.fromEntries(
                  TARGET_LOAD_STATES.map((state) => [
                    state,
                    gauge(
                      'zproxy_upstream_target_load',
                      labels([
                        ['route', name],
                        ['target', url],
                        ['state', state],
                      ]),
                    ),
                  ]),
                ),
          refused: refusedAt(url),
        }));
        let refused: Record<string, number> | null = null;
        if (sum !== null) {
          refused = {};
          for (const limit of OVERLOAD_LIMITS) refused[limit] = 0;
          for (const target of upstream)
            for (const limit of OVERLOAD_LIMITS) refused[limit]! += target.refused?.[limit] ?? 0;
        }
        return {
          path: route.path,
          host: route.host,
          methods: route.methods,
          circuit_breaking: {
            // Per worker: each worker counts and limits its own requests.
            limits: route.circuit_breaking,
            load:
              sum === null
                ? null
                : Object.fromEntries(
                    ROUTE_LOAD_STATES.map((state) => [
                      state,
                      gauge(
                        'zproxy_upstream_route_load',
                        labels([
                          ['route', name],
                          ['state', state],
                        ]),
                      ),
                    ]),
                  ),
            refused,
          },
          upstream,
        };
      }),
    };
  }
}

/** What /status reads of the targets' health. */
export interface HealthSource {
  targetStatus(route: RouteConfig, url: string): object | null;
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
