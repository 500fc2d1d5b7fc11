/**
 * Validated input -> the normalised `Config`: defaults filled, shorthands expanded (one upstream ->
 * a list, host/port -> listeners, thread_count 0 -> CPU count), then deep-frozen.
 */
import { availableParallelism } from 'node:os';
import {
  type CircuitBreakingConfig,
  type Config,
  type ConfigInput,
  CONFIG_DEFAULTS as D,
  type HealthCheckConfig,
  type HealthCheckInput,
  type LoadBalancingConfig,
  type MiddlewareConfig,
  type MiddlewareInput,
  type OutlierDetectionConfig,
  type OutlierDetectionInput,
  type RequestBufferingConfig,
  type RetryConfig,
  type RouteConfig,
  type RouteInput,
  type TlsConfig,
  type UpstreamTlsConfig,
} from './schema.ts';
import { normaliseUpstreamUrl } from './semantic.ts';
import { targetEntries } from './upstream-targets.ts';

export function normaliseConfig(input: ConfigInput): Config {
  const limits = input.limits ?? {};
  const upstream = input.upstream_defaults ?? {};
  const http2 = input.http2 ?? {};
  const ws = input.websocket ?? {};
  const websocket = {
    idle_timeout_ms: ws.idle_timeout_ms ?? D.websocket.idle_timeout_ms,
    max_tunnels: ws.max_tunnels ?? D.websocket.max_tunnels,
    drain_timeout_ms: ws.drain_timeout_ms ?? D.websocket.drain_timeout_ms,
  };
  const topTls = normaliseTls(input.tls ?? {});
  const upstreamTls = normaliseUpstreamTls(upstream.tls ?? {}, D.upstream_defaults.tls);
  const retry = normaliseRetry(upstream.retry ?? {}, D.upstream_defaults.retry);
  const balancing = normaliseBalancing(upstream.load_balancing ?? {}, D.upstream_defaults.load_balancing);
  const breaking = normaliseBreaking(upstream.circuit_breaking ?? {}, D.upstream_defaults.circuit_breaking);
  const buffering = {
    max_bytes: upstream.request_buffering?.max_bytes ?? D.upstream_defaults.request_buffering.max_bytes,
  };
  const health = {
    check: upstream.health_check ?? null,
    outlier: upstream.outlier_detection ?? {},
  };
  const config: Config = {
    listeners:
      input.listeners === undefined
        ? [
            {
              host: input.host ?? D.host,
              port: input.port ?? D.port,
              tls: topTls,
              redirect_https: D.listener.redirect_https,
            },
          ]
        : input.listeners.map((listener) => ({
            host: listener.host,
            port: listener.port,
            tls: listener.tls === undefined ? topTls : normaliseTls(listener.tls),
            redirect_https: listener.redirect_https ?? D.listener.redirect_https,
          })),
    thread_count: resolveThreadCount(input.thread_count ?? D.thread_count),
    worker_mode: input.worker_mode ?? D.worker_mode,
    backlog: input.backlog ?? D.backlog,
    max_connections: input.max_connections ?? D.max_connections,
    connection_timeout_ms: input.connection_timeout_ms ?? D.connection_timeout_ms,
    request_body_timeout_ms:
      input.request_body_timeout_ms ?? input.connection_timeout_ms ?? D.connection_timeout_ms,
    protocols: [...(input.protocols ?? D.protocols)],
    tls: topTls,
    http2: {
      max_concurrent_streams: http2.max_concurrent_streams ?? D.http2.max_concurrent_streams,
      max_header_list_bytes: http2.max_header_list_bytes ?? D.http2.max_header_list_bytes,
      stream_window_bytes: http2.stream_window_bytes ?? D.http2.stream_window_bytes,
      connection_window_bytes: http2.connection_window_bytes ?? D.http2.connection_window_bytes,
      max_resets_per_second: http2.max_resets_per_second ?? D.http2.max_resets_per_second,
    },
    websocket,
    routes: input.routes.map((route) =>
      normaliseRoute(
        route,
        upstreamTls,
        retry,
        balancing,
        breaking,
        buffering,
        health,
        websocket.idle_timeout_ms,
      ),
    ),
    middlewares: (input.middlewares ?? []).map(normaliseMiddleware),
    limits: {
      max_header_bytes: limits.max_header_bytes ?? D.limits.max_header_bytes,
      max_header_count: limits.max_header_count ?? D.limits.max_header_count,
      max_uri_bytes: limits.max_uri_bytes ?? D.limits.max_uri_bytes,
      max_body_bytes: limits.max_body_bytes ?? D.limits.max_body_bytes,
    },
    upstream_defaults: {
      connect_timeout_ms: upstream.connect_timeout_ms ?? D.upstream_defaults.connect_timeout_ms,
      response_header_timeout_ms:
        upstream.response_header_timeout_ms ?? D.upstream_defaults.response_header_timeout_ms,
      idle_timeout_ms: upstream.idle_timeout_ms ?? D.upstream_defaults.idle_timeout_ms,
      max_connections_per_target:
        upstream.max_connections_per_target ?? D.upstream_defaults.max_connections_per_target,
      // Unset: as many as the pool may open (Envoy caps connections, not idle ones). Reused LIFO, the
      // connections recent concurrency needed stay warm and idle_timeout_ms closes the others.
      max_idle_per_target:
        upstream.max_idle_per_target ??
        upstream.max_connections_per_target ??
        D.upstream_defaults.max_connections_per_target,
      tls: upstreamTls,
      retry,
      load_balancing: balancing,
      circuit_breaking: breaking,
      request_buffering: buffering,
      health_check: health.check,
      outlier_detection: health.outlier,
    },
    preserve_host: input.preserve_host ?? D.preserve_host,
    trusted_proxies: [...(input.trusted_proxies ?? D.trusted_proxies)],
    access_log: {
      enabled: input.access_log?.enabled ?? D.access_log.enabled,
      file: input.access_log?.file ?? D.access_log.file,
    },
    tracing: { traceparent: input.tracing?.traceparent ?? D.tracing.traceparent },
    shutdown_grace_ms: input.shutdown_grace_ms ?? D.shutdown_grace_ms,
    shutdown_delay_ms: input.shutdown_delay_ms ?? D.shutdown_delay_ms,
    admin:
      input.admin === undefined
        ? null
        : {
            host: input.admin.host ?? D.admin.host,
            port: input.admin.port,
            token: input.admin.token ?? null,
            metrics: input.admin.metrics ?? D.admin.metrics,
          },
  };
  return deepFreeze(config);
}

function resolveThreadCount(count: number): number {
  return count === 0 ? Math.max(1, availableParallelism()) : count;
}

type TlsInput = NonNullable<ConfigInput['tls']>;

function normaliseTls(tls: TlsInput): TlsConfig {
  const hsts = tls.hsts ?? {};
  return {
    enabled: tls.enabled ?? D.tls.enabled,
    cert_file: tls.cert_file ?? null,
    key_file: tls.key_file ?? null,
    certificates: (tls.certificates ?? []).map((c) => ({
      server_names: c.server_names.map((n) => n.toLowerCase()),
      cert_file: c.cert_file,
      key_file: c.key_file,
    })),
    min_version: tls.min_version ?? D.tls.min_version,
    ciphers: tls.ciphers ?? D.tls.ciphers,
    hsts: {
      enabled: hsts.enabled ?? D.tls.hsts.enabled,
      max_age_seconds: hsts.max_age_seconds ?? D.tls.hsts.max_age_seconds,
      include_subdomains: hsts.include_subdomains ?? D.tls.hsts.include_subdomains,
      preload: hsts.preload ?? D.tls.hsts.preload,
    },
    plain_http: tls.plain_http ?? D.tls.plain_http,
  };
}

type UpstreamTlsInput = NonNullable<RouteInput['upstream_tls']>;

/** Fields given in `input` over `base`. */
function normaliseUpstreamTls(input: UpstreamTlsInput, base: UpstreamTlsConfig): UpstreamTlsConfig {
  return {
    verify: input.verify ?? base.verify,
    ca_file: input.ca_file === undefined ? base.ca_file : input.ca_file,
    server_name: input.server_name === undefined ? base.server_name : input.server_name,
    cert_file: input.cert_file === undefined ? base.cert_file : input.cert_file,
    key_file: input.key_file === undefined ? base.key_file : input.key_file,
  };
}

type RetryInput = NonNullable<RouteInput['retry']>;

/** `given` laid over `base` (upstream_defaults.retry over the built-in defaults, a route's over those). */
function normaliseRetry(given: RetryInput, base: RetryConfig): RetryConfig {
  return {
    attempts: given.attempts ?? base.attempts,
    on: [...(given.on ?? base.on)],
    statuses: [...(given.statuses ?? base.statuses)],
    per_try_timeout_ms: given.per_try_timeout_ms ?? base.per_try_timeout_ms,
    budget_percent: given.budget_percent ?? base.budget_percent,
    min_concurrent: given.min_concurrent ?? base.min_concurrent,
    buffer_bytes: given.buffer_bytes ?? base.buffer_bytes,
  };
}

function normaliseBalancing(
  given: Partial<LoadBalancingConfig>,
  base: LoadBalancingConfig,
): LoadBalancingConfig {
  return {
    policy: given.policy ?? base.policy,
    hash_key: given.hash_key ?? base.hash_key,
    panic_threshold_percent: given.panic_threshold_percent ?? base.panic_threshold_percent,
  };
}

/** A route's active checks: upstream_defaults' fields, the route's over them; null when none apply. */
function normaliseHealthCheck(
  given: HealthCheckInput | undefined,
  base: HealthCheckInput | null,
): HealthCheckConfig | null {
  if (given === undefined && base === null) return null;
  const { enabled, ...check } = { ...D.upstream_defaults.health_check, ...base, ...given };
  return enabled ? { ...check, expected_statuses: [...check.expected_statuses] } : null;
}

/** A route's outlier detection: the defaults, upstream_defaults' fields, the route's; null when off. */
function normaliseOutlierDetection(
  given: OutlierDetectionInput | undefined,
  base: OutlierDetectionInput,
): OutlierDetectionConfig | null {
  const { enabled, ...outlier } = { ...D.upstream_defaults.outlier_detection, ...base, ...given };
  return enabled ? { ...outlier, statuses: [...outlier.statuses] } : null;
}

type BreakingInput = NonNullable<RouteInput['circuit_breaking']>;

/** `given` laid over `base`; a null given replaces a number (no limit). */
function normaliseBreaking(given: BreakingInput, base: CircuitBreakingConfig): CircuitBreakingConfig {
  return {
    max_requests: given.max_requests === undefined ? base.max_requests : given.max_requests,
    max_pending: given.max_pending === undefined ? base.max_pending : given.max_pending,
    max_retries: given.max_retries === undefined ? base.max_retries : given.max_retries,
    max_requests_per_target:
      given.max_requests_per_target === undefined
        ? base.max_requests_per_target
        : given.max_requests_per_target,
    max_pending_per_target:
      given.max_pending_per_target === undefined ? base.max_pending_per_target : given.max_pending_per_target,
  };
}

function normaliseRoute(
  route: RouteInput,
  upstreamTls: UpstreamTlsConfig,
  retry: RetryConfig,
  balancing: LoadBalancingConfig,
  breaking: CircuitBreakingConfig,
  buffering: RequestBufferingConfig,
  health: { readonly check: HealthCheckInput | null; readonly outlier: OutlierDetectionInput },
  websocketIdleTimeoutMs: number,
): RouteConfig {
  return {
    path: route.path,
    upstream: targetEntries(route.upstream).map(({ url, weight, backup }) => {
      const normalised = normaliseUpstreamUrl(url);
      // Unreachable after validation; kept as a guard so a bad URL can never slip through.
      if (normalised === null) throw new Error(`unvalidated upstream URL ${url}`);
      return { url: normalised, weight: weight ?? 1, backup: backup ?? false };
    }),
    load_balancing: normaliseBalancing(route.load_balancing ?? {}, balancing),
    health_check: normaliseHealthCheck(route.health_check, health.check),
    outlier_detection: normaliseOutlierDetection(route.outlier_detection, health.outlier),
    methods: route.methods === undefined ? null : [...route.methods],
    host: route.host === undefined ? null : route.host.toLowerCase(),
    strip_prefix: route.strip_prefix ?? D.route.strip_prefix,
    middlewares: (route.middlewares ?? []).map(normaliseMiddleware),
    inherit_middlewares: route.inherit_middlewares ?? D.route.inherit_middlewares,
    upstream_tls: normaliseUpstreamTls(route.upstream_tls ?? {}, upstreamTls),
    retry: normaliseRetry(route.retry ?? {}, retry),
    circuit_breaking: normaliseBreaking(route.circuit_breaking ?? {}, breaking),
    request_buffering: { max_bytes: route.request_buffering?.max_bytes ?? buffering.max_bytes },
    websocket_idle_timeout_ms: route.websocket_idle_timeout_ms ?? websocketIdleTimeoutMs,
  };
}

function normaliseMiddleware(middleware: MiddlewareInput): MiddlewareConfig {
  const config = structuredClone(middleware.config ?? {});
  if (middleware.path === undefined) return { type: middleware.type, config };
  return { type: middleware.type, config, path: middleware.path };
}

/** Freezes a value and everything reachable from it. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value;
}
