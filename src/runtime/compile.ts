/**
 * Compile, then serve: turns a validated config into the runtime the engines read on every request.
 * Everything that can be decided from the configuration is decided here, once. Long-lived state (upstream
 * pools) comes from registries keyed by identity, so it survives a new runtime.
 */
import type { Config, RouteConfig } from '../config/schema.ts';
import { parseUpstreamUrl } from '../config/upstream-schemes.ts';
import { compileTrustedProxies, ForwardingPolicy } from '../http/forwarding.ts';
import type { HeadLimits } from '../http1/parse-head.ts';
import type { AccessLog } from '../observe/access-log.ts';
import type { Logger } from '../observe/logger.ts';
import { type MetricRegistry, type RouteMetrics, routeLabel } from '../observe/metrics.ts';
import { buildChains, type FilterChain } from '../pipeline/chain.ts';
import type { Filter } from '../pipeline/contract.ts';
import type { FilterRegistry } from '../pipeline/registry.ts';
import { Router } from '../router/router.ts';
import { CircuitBreaker } from '../upstream/circuit-breaker.ts';
import type { PoolSettings } from '../upstream/contract.ts';
import { UpstreamGroup, UpstreamTarget } from '../upstream/group.ts';
import { healthKey, OutlierPolicy, TargetHealth } from '../upstream/health.ts';
import { RetryPolicy } from '../upstream/retry.ts';
import { compileUpstreamTls, type UpstreamTls } from '../upstream/tls-options.ts';
import type { PoolRegistry } from './pools.ts';

export interface CompiledRoute {
  /** Position in `routes`. */
  readonly index: number;
  /** The route's path pattern, used as its name in logs. */
  readonly pattern: string;
  readonly stripPrefix: boolean;
  readonly group: UpstreamGroup;
  /** Retries and failover (`retry`). */
  readonly retry: RetryPolicy;
  /** The limits of `circuit_breaking` and the route's queued count. */
  readonly breaker: CircuitBreaker;
  /** `request_buffering.max_bytes`: bodies up to it are read whole before an attempt (0: streamed). */
  readonly bufferBodyBytes: number;
  /** Idle timeout of this route's WebSocket tunnels. */
  readonly websocketIdleTimeoutMs: number;
  /** The route's filters (docs/filters.md), null when it has none. */
  readonly filters: FilterChain | null;
  /**
   * Methods the router accepts for this route only so that its filters can answer them (OPTIONS for a
   * CORS preflight, PURGE for the cache) although `methods` does not list them; null when none. When no
   * filter answers such a request it gets 405 with `allow`.
   */
  readonly filterOnlyMethods: ReadonlySet<string> | null;
  /** The Allow value of a 405 for this route (its `methods`). */
  readonly allow: string;
  /** The route's metric slots (by its host and pattern), null when metrics are off. */
  readonly metrics: RouteMetrics | null;
}

/** The methods a route's `methods` allow, as the router lists them in Allow (GET implies HEAD). */
function allowOf(methods: readonly string[] | null): string {
  if (methods === null) return '';
  const set = new Set(methods);
  if (set.has('GET')) set.add('HEAD');
  return [...set].sort().join(', ');
}

/** The extra methods a route's filters answer (see CompiledRoute.filterOnlyMethods), or null. */
function filterOnlyMethods(route: RouteConfig, filters: FilterChain | null): Set<string> | null {
  if (route.methods === null || filters === null) return null;
  const extra = new Set<string>();
  for (const method of filters.extraMethods) if (!route.methods.includes(method)) extra.add(method);
  return extra.size === 0 ? null : extra;
}

export interface Runtime {
  readonly config: Config;
  readonly router: Router<CompiledRoute>;
  /** The compiled routes, in config order. */
  readonly routes: readonly CompiledRoute[];
  readonly headLimits: HeadLimits;
  /** 0 = unlimited. */
  readonly maxBodyBytes: number;
  readonly connectionTimeoutMs: number;
  /** Time allowed between two reads of a request body (`request_body_timeout_ms`). */
  readonly requestBodyTimeoutMs: number;
  /** What requests and responses keep, lose and gain on the way (trusted_proxies, preserve_host). */
  readonly forwarding: ForwardingPolicy;
  readonly accessLog: AccessLog | null;
  /** Most WebSocket tunnels open at once (handshakes in progress included). */
  readonly maxTunnels: number;
  /** On shutdown, how long tunnels keep running before they are closed. */
  readonly tunnelDrainTimeoutMs: number;
  /** The routes' filter chains (null for a route without filters): what disposeRuntime lets go of. */
  readonly chains: readonly (FilterChain | null)[];
  /** Where exchanges no route matched are counted (route `(none)`), null when metrics are off. */
  readonly unmatchedMetrics: RouteMetrics | null;
  /** The exchanges running on this runtime, and what to do once a retired one has none left. */
  readonly use: RuntimeUse;
}

/** The route label of metrics: the pattern, after its host when it has one (routeLabel). */
export function routeName(route: RouteConfig): string {
  return routeLabel(route);
}

/**
 * The exchanges that began on a runtime and have not ended: a reload swaps in a new runtime at once, and
 * the old one is let go of (retireRuntime) only when the exchanges that began on it have ended, so that
 * each exchange finishes with the routes and filters it started with.
 */
export class RuntimeUse {
  exchanges = 0;
  /** Set when the runtime is retired: called once its last exchange has ended. */
  private onIdle: (() => void) | null = null;

  begin(): void {
    this.exchanges++;
  }

  end(): void {
    if (--this.exchanges === 0 && this.onIdle !== null) {
      const idle = this.onIdle;
      this.onIdle = null;
      idle();
    }
  }

  /** Calls `idle` once no exchange runs on the runtime (at once when none does). */
  whenIdle(idle: () => void): void {
    if (this.exchanges <= 0) idle();
    else this.onIdle = idle;
  }
}

function compileRoute(
  route: RouteConfig,
  index: number,
  config: Config,
  pools: PoolRegistry,
  filters: FilterChain | null,
  metrics: MetricRegistry | null,
): CompiledRoute {
  const d = config.upstream_defaults;
  const settings: PoolSettings = {
    connectTimeoutMs: d.connect_timeout_ms,
    responseHeaderTimeoutMs: d.response_header_timeout_ms,
    idleTimeoutMs: d.idle_timeout_ms,
    maxConnections: d.max_connections_per_target,
    maxIdle: d.max_idle_per_target,
  };
  const where = `routes[${index}].upstream_tls`;
  const outlier = route.outlier_detection === null ? null : new OutlierPolicy(route.outlier_detection);
  const targets = route.upstream.map(({ url, weight, backup }) => {
    const { scheme, host, port, hostHeader } = parseUpstreamUrl(url);
    // TLS files are read here, once per route compile; the pools are keyed by their contents too.
    const tls: UpstreamTls | null =
      scheme === 'https' || scheme === 'h2'
        ? compileUpstreamTls(route.upstream_tls, host, scheme === 'h2' ? 'h2' : 'http/1.1', where)
        : null;
    const pool =
      scheme === 'http' || scheme === 'https'
        ? pools.get(host, port, settings, tls)
        : pools.getHttp2(host, port, settings, tls);
    const target = new UpstreamTarget(pool, hostHeader, weight, backup);
    // One target is the pick whatever its health: only a choice among several needs the records.
    if (route.upstream.length > 1 && (outlier !== null || route.health_check !== null)) {
      const record = pools.health.record(healthKey(url, route.health_check, route.outlier_detection));
      if (record !== -1)
        target.health = new TargetHealth(
          pools.health,
          record,
          outlier,
          route.health_check?.slow_start_ms ?? 0,
        );
    }
    if (metrics !== null) {
      const m = metrics.target(url);
      target.metrics = m;
      pool.connectTime = m;
      if (!m.pools.includes(pool)) m.pools.push(pool);
    }
    return target;
  });
  const breaker = new CircuitBreaker(route.circuit_breaking, targets);
  const name = routeName(route);
  if (metrics !== null) {
    for (let i = 0; i < targets.length; i++)
      breaker.metrics[i] = metrics.breaker(name, route.upstream[i]!.url);
  }
  const group = new UpstreamGroup(targets, route.load_balancing);
  group.logger = pools.logger;
  return {
    index,
    pattern: route.path,
    stripPrefix: route.strip_prefix,
    group,
    retry: new RetryPolicy(route.retry),
    breaker,
    bufferBodyBytes: route.request_buffering.max_bytes,
    websocketIdleTimeoutMs: route.websocket_idle_timeout_ms,
    filters,
    filterOnlyMethods: filterOnlyMethods(route, filters),
    allow: allowOf(route.methods),
    metrics: metrics === null ? null : metrics.route(name),
  };
}

/**
 * `chains` are the routes' filter chains, built beforehand (buildChains: factories may do I/O); null
 * when the config has no middlewares or they are not built yet.
 */
export function compileRuntime(
  config: Config,
  pools: PoolRegistry,
  accessLog: AccessLog | null,
  chains: readonly (FilterChain | null)[] | null = null,
  metrics: MetricRegistry | null = null,
): Runtime {
  const routes = config.routes.map((route, index) =>
    compileRoute(route, index, config, pools, chains?.[index] ?? null, metrics),
  );
  const router = new Router(
    config.routes.map((route, index) => {
      const extra = routes[index]!.filterOnlyMethods;
      return {
        host: route.host,
        path: route.path,
        methods: extra === null ? route.methods : [...route.methods!, ...extra],
        value: routes[index]!,
      };
    }),
  );
  return {
    config,
    router,
    routes,
    headLimits: {
      maxHeaderBytes: config.limits.max_header_bytes,
      maxHeaderCount: config.limits.max_header_count,
      maxUriBytes: config.limits.max_uri_bytes,
    },
    maxBodyBytes: config.limits.max_body_bytes,
    connectionTimeoutMs: config.connection_timeout_ms,
    requestBodyTimeoutMs: config.request_body_timeout_ms,
    forwarding: new ForwardingPolicy(
      compileTrustedProxies(config.trusted_proxies),
      config.preserve_host,
      config.tracing.traceparent,
    ),
    accessLog: config.access_log.enabled ? accessLog : null,
    maxTunnels: config.websocket.max_tunnels,
    tunnelDrainTimeoutMs: config.websocket.drain_timeout_ms,
    chains: chains ?? [],
    unmatchedMetrics: metrics === null ? null : metrics.route('(none)'),
    use: new RuntimeUse(),
  };
}

export interface BuildOptions {
  readonly pools: PoolRegistry;
  readonly accessLog: AccessLog | null;
  /** The filter types the chains are built from (a FilterRegistry of the built-in filters). */
  readonly filters: FilterRegistry;
  readonly logger?: Logger | null;
  /** Relative paths in filter configs (user filter modules) are resolved against this directory. */
  readonly baseDir?: string;
  /** The worker's metric slots the routes and targets bind to (null or absent: metrics off). */
  readonly metrics?: MetricRegistry | null;
  /** The running runtime (a reload): its filters whose entries did not change are taken over (buildChains). */
  readonly previous?: Runtime;
}

/**
 * Compiles a config into a live runtime: its filter chains are built first (a factory may do I/O: a
 * JWKS, a user module), then the router and routes. The upstream pools come from `pools` and outlive the
 * runtime; what the runtime owns is let go by disposeRuntime.
 */
export async function buildRuntime(config: Config, options: BuildOptions): Promise<Runtime> {
  const hasFilters = config.middlewares.length > 0 || config.routes.some((r) => r.middlewares.length > 0);
  const chains = hasFilters
    ? await buildChains(config, {
        filters: options.filters,
        logger: options.logger ?? null,
        ...(options.baseDir === undefined ? {} : { baseDir: options.baseDir }),
        ...(options.previous === undefined ? {} : { previous: options.previous.chains }),
      })
    : null;
  return compileRuntime(config, options.pools, options.accessLog, chains, options.metrics ?? null);
}

/**
 * Lets go of what a runtime owns once no exchange uses it any more (a stop; a reload, once the old
 * runtime's exchanges are done): each filter's close(). The pools are the registry's and stay.
 */
export async function disposeRuntime(runtime: Runtime): Promise<void> {
  await disposeChains(runtime.chains);
}

/**
 * Each filter's close(), for chains built outside a runtime (`zproxy check`) or by one; the filters in
 * `keep` (taken over by a newer runtime) are left alone.
 */
export async function disposeChains(
  chains: readonly (FilterChain | null)[],
  keep: ReadonlySet<Filter> | null = null,
): Promise<void> {
  const closing: Promise<void>[] = [];
  for (const chain of chains) {
    if (chain === null) continue;
    for (const filter of chain.filters) {
      if (keep?.has(filter) === true) continue;
      if (filter.close !== undefined) closing.push(Promise.resolve().then(() => filter.close!()));
    }
  }
  await Promise.allSettled(closing);
}

/** Every filter of a runtime's chains. */
export function filtersOf(runtime: Runtime): Set<Filter> {
  const all = new Set<Filter>();
  for (const chain of runtime.chains) if (chain !== null) for (const filter of chain.filters) all.add(filter);
  return all;
}
