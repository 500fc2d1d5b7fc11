/**
 * The configuration schema: the single source of the input types, the validator (see validate.ts)
 * and the shipped JSON Schema file (see json-schema.ts), plus the normalised `Config` contract that
 * the rest of zproxy reads.
 */
import { type Static, Type } from '@sinclair/typebox';
import { annotate, booleanField, integerField, openObject, stringEnum } from './fields.ts';

export { UPSTREAM_DEFAULT_PORTS, UPSTREAM_SCHEMES, type UpstreamScheme } from './upstream-schemes.ts';

import { MIDDLEWARE_TYPES, type MiddlewareType, middlewareConfigClauses } from './middleware-schemas.ts';
import { WARNING_CODES } from './warning-codes.ts';

// ---------------------------------------------------------------------------------------------
// Defaults (the schema annotations and the normaliser both read this table)
// ---------------------------------------------------------------------------------------------

export const PROTOCOLS = ['http1', 'http2', 'websocket'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/**
 * When a failed attempt is tried again (`retry.on`): a connection that could not be made, an HTTP/2
 * stream the upstream refused (never processed), a connection that failed before any response byte, an
 * attempt past `retry.per_try_timeout_ms` (or the response-header timeout).
 */
export const RETRY_CONDITIONS = ['connect-failure', 'refused-stream', 'reset', 'timeout'] as const;
export type RetryCondition = (typeof RETRY_CONDITIONS)[number];

/** How a route chooses among its targets (`load_balancing.policy`; docs/upstreams.md). */
export const BALANCING_POLICIES = ['round_robin', 'least_request', 'random', 'hash'] as const;
export type BalancingPolicy = (typeof BALANCING_POLICIES)[number];

/** The methods of an active health check (`health_check.method`). */
export const HEALTH_CHECK_METHODS = ['GET', 'HEAD', 'OPTIONS'] as const;
export type HealthCheckMethod = (typeof HEALTH_CHECK_METHODS)[number];

/** What `hash` hashes (`load_balancing.hash_key`): the client address, the path, a header or a cookie. */
export const HASH_KEY_PATTERN =
  "^(?:client_ip|path|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|cookie:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$";

/** What a TLS listener does with connections that speak plain HTTP on its port (`tls.plain_http`). */
export const PLAIN_HTTP_MODES = ['reject', 'redirect', 'serve'] as const;
export type PlainHttpMode = (typeof PLAIN_HTTP_MODES)[number];

/**
 * How the `thread_count` workers of an instance run (`worker_mode`): `auto` is threads where the platform
 * has SO_REUSEPORT (Linux, FreeBSD), else processes.
 */
export const WORKER_MODES = ['auto', 'threads', 'processes'] as const;
export type WorkerMode = (typeof WORKER_MODES)[number];

export const CONFIG_DEFAULTS = {
  host: '0.0.0.0',
  port: 8000,
  thread_count: 1,
  worker_mode: 'auto' as WorkerMode,
  backlog: 511,
  max_connections: 10000,
  connection_timeout_ms: 30000,
  protocols: [...PROTOCOLS],
  tls: {
    enabled: false,
    cert_file: null,
    key_file: null,
    certificates: [],
    min_version: 'TLSv1.2',
    ciphers: null,
    hsts: { enabled: false, max_age_seconds: 31536000, include_subdomains: false, preload: false },
    plain_http: 'reject',
  },
  http2: {
    max_concurrent_streams: 128,
    max_header_list_bytes: 16384,
    stream_window_bytes: 1048576,
    connection_window_bytes: 4194304,
    max_resets_per_second: 100,
  },
  websocket: { idle_timeout_ms: 300000, max_tunnels: 10000, drain_timeout_ms: 5000 },
  middlewares: [],
  limits: {
    max_header_bytes: 16384,
    max_header_count: 100,
    max_uri_bytes: 8192,
    max_body_bytes: 104857600,
  },
  upstream_defaults: {
    connect_timeout_ms: 5000,
    response_header_timeout_ms: 60000,
    idle_timeout_ms: 4000,
    max_connections_per_target: 1024,
    max_idle_per_target: 1024,
    tls: { verify: true, ca_file: null, server_name: null, cert_file: null, key_file: null },
    retry: {
      attempts: 2,
      on: ['connect-failure', 'refused-stream', 'reset'] as RetryCondition[],
      statuses: [] as number[],
      per_try_timeout_ms: 0,
      budget_percent: 20,
      min_concurrent: 3,
      buffer_bytes: 65536,
    },
    load_balancing: {
      policy: 'round_robin' as BalancingPolicy,
      hash_key: 'client_ip',
      panic_threshold_percent: 50,
    },
    health_check: {
      enabled: true,
      path: '/',
      method: 'GET' as HealthCheckMethod,
      host: null as string | null,
      interval_ms: 5000,
      timeout_ms: 2000,
      jitter_ms: 0,
      healthy_threshold: 2,
      unhealthy_threshold: 3,
      expected_statuses: ['2xx', '3xx'] as (number | string)[],
      slow_start_ms: 0,
    },
    outlier_detection: {
      enabled: true,
      consecutive_failures: 5,
      statuses: [502, 503, 504] as number[],
      base_ejection_ms: 30000,
      max_ejection_ms: 300000,
      max_ejection_percent: 50,
    },
    request_buffering: { max_bytes: 0 },
    circuit_breaking: {
      max_requests: null as number | null,
      max_pending: 1024 as number | null,
      max_retries: null as number | null,
      max_requests_per_target: null as number | null,
      max_pending_per_target: null as number | null,
    },
  },
  preserve_host: true,
  trusted_proxies: [],
  access_log: { enabled: true, file: null as string | null },
  tracing: { traceparent: true },
  shutdown_grace_ms: 10000,
  shutdown_delay_ms: 0,
  admin: { host: '127.0.0.1', metrics: true },
  accept_risks: [],
  listener: { redirect_https: false },
  route: { strip_prefix: false, middlewares: [], inherit_middlewares: true },
} as const;

const D = CONFIG_DEFAULTS;

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

/** A DNS label; "_" is accepted too (container and service names often use it). */
const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?';
const HOSTNAME = `${LABEL}(?:\\.${LABEL})*`;

/** `scheme://host[:port]` with an optional trailing "/", nothing else. */
export const UPSTREAM_URL_PATTERN = `^(?:https?|h2c?)://(?:\\[[0-9A-Fa-f:.]+\\]|${HOSTNAME})(?::[0-9]{1,5})?/?$`;
export const UPSTREAM_URL_EXPECTED =
  'an http://, https://, h2c:// or h2:// URL without path, query or user info, such as http://127.0.0.1:8080';
export const ROUTE_HOST_PATTERN = `^(?:\\[[0-9A-Fa-f:.]+\\]|(?:\\*\\.)?${HOSTNAME}\\.?)$`;
export const ROUTE_HOST_EXPECTED =
  'a hostname such as api.example.com, a wildcard such as *.example.com, or an IP address (IPv6 in [ ])';
export const METHOD_PATTERN = '^[A-Z]+$';

const PortSchema = (options: { description: string; default?: number }) =>
  integerField({ minimum: 0, maximum: 65535, ...options });

const MiddlewareSchema = Type.Object(
  {
    type: stringEnum(MIDDLEWARE_TYPES, {
      description: `Middleware type: one of ${MIDDLEWARE_TYPES.join(', ')}.`,
    }),
    config: Type.Optional(
      openObject({
        description: 'Settings of the middleware; the allowed keys depend on `type`.',
        default: {},
      }),
    ),
    path: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "Only for type `module`: the user filter module (a .ts or .js file), relative to the config file's directory.",
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'A middleware (filter) applied to requests, in list order.',
    allOf: middlewareConfigClauses(),
  },
);

const MiddlewareListSchema = (description: string) =>
  Type.Array(MiddlewareSchema, annotate({ description, default: [] }));

const UpstreamUrlSchema = Type.String({
  pattern: UPSTREAM_URL_PATTERN,
  description: 'An upstream origin: http://host[:port] (port 80 when omitted), no path or query.',
  'x-expected': UPSTREAM_URL_EXPECTED,
});

/** A target of a route: a URL, or a URL with its weight and whether it is a backup. */
const UpstreamTargetSchema = Type.Union(
  [
    UpstreamUrlSchema,
    Type.Object(
      {
        url: UpstreamUrlSchema,
        weight: Type.Optional(
          integerField({
            minimum: 1,
            maximum: 1000,
            description:
              'Share of requests relative to the other targets (round_robin, least_request, random, hash).',
            default: 1,
          }),
        ),
        backup: Type.Optional(
          booleanField({
            description:
              'A backup target gets requests only when no other target can take them: a retry after every other target was tried.',
            default: false,
          }),
        ),
      },
      { additionalProperties: false, description: 'A target with a weight or as a backup.' },
    ),
  ],
  {
    'x-expected': `${UPSTREAM_URL_EXPECTED}, or an object {"url": ..., "weight": 2, "backup": false}`,
  },
);

/** `load_balancing`, per route or in `upstream_defaults` (defaults given only there). */
const LoadBalancingSchema = (defaults: boolean) => {
  const B = D.upstream_defaults.load_balancing;
  const d = <T>(value: T) => (defaults ? { default: value } : {});
  return Type.Object(
    {
      policy: Type.Optional(
        stringEnum(BALANCING_POLICIES, {
          description:
            'round_robin: in turn by weight, smoothly (no bursts to the heaviest target); least_request: the less loaded of two targets drawn at random (requests in flight over weight); random: drawn by weight; hash: the same key goes to the same target (consistent hashing: a target that leaves moves only its own keys).',
          ...d(B.policy),
        }),
      ),
      hash_key: Type.Optional(
        Type.String({
          pattern: HASH_KEY_PATTERN,
          ...annotate({
            description: 'What `hash` hashes: client_ip, path, header:<name> or cookie:<name>.',
            expected: 'client_ip, path, header:<name> or cookie:<name>',
            ...d(B.hash_key),
          }),
        }),
      ),
      panic_threshold_percent: Type.Optional(
        integerField({
          minimum: 0,
          maximum: 100,
          description:
            "When fewer than this percentage of the route's primary targets are healthy (health checks, outlier detection), requests are spread over all of them, healthy or not, rather than piled on the few (Envoy's panic threshold). 0: never.",
          ...d(B.panic_threshold_percent),
        }),
      ),
    },
    {
      additionalProperties: false,
      ...annotate({ description: 'How a target is chosen for each request.', ...d(B) }),
    },
  );
};

/** `health_check`, per route or in `upstream_defaults` (defaults given only there). */
const HealthCheckSchema = (defaults: boolean) => {
  const H = D.upstream_defaults.health_check;
  const d = <T>(value: T) => (defaults ? { default: value } : {});
  return Type.Object(
    {
      enabled: Type.Optional(
        booleanField({
          description:
            'Check the targets. In upstream_defaults, the presence of health_check turns checks on for every route; a route turns them off with false here.',
          ...d(H.enabled),
        }),
      ),
      path: Type.Optional(
        Type.String({
          pattern: '^/[\\x21-\\x7e]*$',
          ...annotate({
            description: 'The path (and query) asked for.',
            expected: 'a path starting with / (no spaces)',
            ...d(H.path),
          }),
        }),
      ),
      method: Type.Optional(
        stringEnum(HEALTH_CHECK_METHODS, { description: 'The method of the check.', ...d(H.method) }),
      ),
      host: Type.Optional(
        Type.Union([Type.String({ minLength: 1, pattern: '^[A-Za-z0-9.:\\[\\]-]+$' }), Type.Null()], {
          ...annotate({
            description:
              "The Host sent with the check. null: the target's host (and port when not the default).",
            expected: 'a host name, or null',
            ...d(H.host),
          }),
        }),
      ),
      interval_ms: Type.Optional(
        integerField({
          minimum: 100,
          description: 'Time between two checks of a target.',
          ...d(H.interval_ms),
        }),
      ),
      timeout_ms: Type.Optional(
        integerField({
          minimum: 1,
          description: 'Time allowed for a check (connection and response head); longer is a failure.',
          ...d(H.timeout_ms),
        }),
      ),
      jitter_ms: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'A random time up to this is added to each interval, so checks of many targets spread out.',
          ...d(H.jitter_ms),
        }),
      ),
      healthy_threshold: Type.Optional(
        integerField({
          minimum: 1,
          description: "Good checks in a row that bring a target that was down back (HAProxy's rise).",
          ...d(H.healthy_threshold),
        }),
      ),
      unhealthy_threshold: Type.Optional(
        integerField({
          minimum: 1,
          description: "Failed checks in a row that take a target out of rotation (HAProxy's fall).",
          ...d(H.unhealthy_threshold),
        }),
      ),
      expected_statuses: Type.Optional(
        Type.Array(
          Type.Union(
            [
              Type.Integer({ minimum: 100, maximum: 599 }),
              Type.String({ pattern: '^[1-5]xx$', 'x-expected': 'a status class from "1xx" to "5xx"' }),
            ],
            {
              'x-expected': 'a status from 100 to 599, or a class from "1xx" to "5xx"',
            },
          ),
          {
            minItems: 1,
            uniqueItems: true,
            ...annotate({
              description: 'Statuses of a good check: statuses (204) or classes ("2xx").',
              expected: 'a non-empty list of statuses from 100 to 599 or classes such as "2xx"',
              ...d(H.expected_statuses),
            }),
          },
        ),
      ),
      slow_start_ms: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'A target that comes back gets its share of requests gradually over this time (from a tenth of it); 0: at once. Not for load_balancing hash.',
          ...d(H.slow_start_ms),
        }),
      ),
    },
    {
      additionalProperties: false,
      ...annotate({
        description:
          'Active health checks: the instance asks each target for a path every interval; a target that fails unhealthy_threshold checks in a row gets no new requests until healthy_threshold checks in a row pass.',
        ...(defaults ? {} : {}),
      }),
    },
  );
};

/** `outlier_detection`, per route or in `upstream_defaults` (defaults given only there). */
const OutlierDetectionSchema = (defaults: boolean) => {
  const O = D.upstream_defaults.outlier_detection;
  const d = <T>(value: T) => (defaults ? { default: value } : {});
  return Type.Object(
    {
      enabled: Type.Optional(booleanField({ description: 'Eject failing targets.', ...d(O.enabled) })),
      consecutive_failures: Type.Optional(
        integerField({
          minimum: 1,
          description:
            'Failed exchanges in a row that eject a target: connection failures, timeouts, resets, and answers with one of statuses.',
          ...d(O.consecutive_failures),
        }),
      ),
      statuses: Type.Optional(
        Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), {
          uniqueItems: true,
          ...annotate({
            description: 'Upstream answers that count as failures.',
            expected: 'a list of unique statuses from 500 to 599, such as [502, 503, 504]',
            ...d(O.statuses),
          }),
        }),
      ),
      base_ejection_ms: Type.Optional(
        integerField({
          minimum: 1,
          description:
            "How long an ejection lasts, times the target's ejections in a row (it grows each time).",
          ...d(O.base_ejection_ms),
        }),
      ),
      max_ejection_ms: Type.Optional(
        integerField({ minimum: 1, description: 'The longest an ejection lasts.', ...d(O.max_ejection_ms) }),
      ),
      max_ejection_percent: Type.Optional(
        integerField({
          minimum: 0,
          maximum: 100,
          description:
            "Most of a route's targets ejected at once, in percent (one target may always be ejected).",
          ...d(O.max_ejection_percent),
        }),
      ),
    },
    {
      additionalProperties: false,
      ...annotate({
        description:
          'Passive health: a target whose real exchanges fail consecutive_failures times in a row is ejected (gets no new requests) for a while.',
        ...d(O),
      }),
    },
  );
};

const tlsSchema = (annotation: Record<string, unknown>) =>
  Type.Object(
    {
      enabled: Type.Optional(
        booleanField({ description: 'Accept TLS connections.', default: D.tls.enabled }),
      ),
      cert_file: Type.Optional(
        Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
          ...annotate({
            description: 'Path of the PEM certificate chain (required when enabled).',
            default: null,
          }),
          'x-expected': 'a file path or null',
        }),
      ),
      key_file: Type.Optional(
        Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
          ...annotate({
            description: 'Path of the PEM private key (required when enabled).',
            default: null,
          }),
          'x-expected': 'a file path or null',
        }),
      ),
      certificates: Type.Optional(
        Type.Array(
          Type.Object(
            {
              server_names: Type.Array(
                Type.String({
                  pattern: ROUTE_HOST_PATTERN,
                  'x-expected': 'a host name such as api.example.com or *.example.com',
                }),
                {
                  minItems: 1,
                  description:
                    'Names (SNI) this certificate is chosen for: exact, or *.example.com for subdomains.',
                },
              ),
              cert_file: Type.String({ minLength: 1, description: 'Path of the PEM certificate chain.' }),
              key_file: Type.String({ minLength: 1, description: 'Path of the PEM private key.' }),
            },
            { additionalProperties: false, description: 'A certificate chosen by SNI.' },
          ),
          {
            ...annotate({
              description:
                'Certificates chosen by the name the client asks for (SNI). The default certificate (cert_file/key_file, else the first of these) answers clients that send no or an unknown name.',
              default: [],
            }),
          },
        ),
      ),
      min_version: Type.Optional(
        stringEnum(['TLSv1.2', 'TLSv1.3'] as const, {
          description: 'The oldest TLS version accepted.',
          default: D.tls.min_version,
        }),
      ),
      ciphers: Type.Optional(
        Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
          ...annotate({
            description:
              "OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are not affected), e.g. 'ECDHE+AESGCM:ECDHE+CHACHA20'. null keeps Node's default list.",
            default: D.tls.ciphers,
          }),
          'x-expected': 'an OpenSSL cipher list string or null',
        }),
      ),
      hsts: Type.Optional(
        Type.Object(
          {
            enabled: Type.Optional(
              booleanField({
                description:
                  'Add Strict-Transport-Security to responses sent over TLS (unless the upstream set one).',
                default: D.tls.hsts.enabled,
              }),
            ),
            max_age_seconds: Type.Optional(
              integerField({
                minimum: 0,
                description: 'The max-age directive.',
                default: D.tls.hsts.max_age_seconds,
              }),
            ),
            include_subdomains: Type.Optional(
              booleanField({ description: 'Add includeSubDomains.', default: D.tls.hsts.include_subdomains }),
            ),
            preload: Type.Optional(
              booleanField({ description: 'Add preload.', default: D.tls.hsts.preload }),
            ),
          },
          {
            additionalProperties: false,
            ...annotate({ description: 'HTTP Strict Transport Security (RFC 6797).', default: D.tls.hsts }),
          },
        ),
      ),
      plain_http: Type.Optional(
        stringEnum(PLAIN_HTTP_MODES, {
          description:
            'What the listener does with connections that speak plain HTTP (HTTP/1.x or h2c) on its TLS port: `reject` answers 400 (ZP_ERR_PLAIN_HTTP_ON_TLS; an h2c preface gets GOAWAY INADEQUATE_SECURITY) and closes; `redirect` answers HTTP/1.x requests with a 308 redirect to https:// on the same port; `serve` serves them as plain HTTP (X-Forwarded-Proto: http). A listener with `redirect_https` redirects. Only used when `enabled` is true.',
          default: D.tls.plain_http,
        }),
      ),
    },
    { additionalProperties: false, ...annotation },
  );

const TlsSchema = tlsSchema(annotate({ description: 'TLS settings.', default: D.tls }));

const ListenerSchema = Type.Object(
  {
    host: Type.String({
      minLength: 1,
      description: 'Address to bind, e.g. 0.0.0.0, ::, 127.0.0.1 or a hostname.',
      'x-expected': 'an address such as 0.0.0.0 or 127.0.0.1',
    }),
    port: PortSchema({ description: 'TCP port to bind; 0 picks a free port.' }),
    tls: Type.Optional(
      tlsSchema({
        description: 'TLS settings of this listener, replacing the top-level `tls` block for it.',
      }),
    ),
    redirect_https: Type.Optional(
      booleanField({
        description:
          'Answer every plain-HTTP request on this listener with a 308 redirect to https:// (the port of the first TLS listener, omitted when 443). TLS connections are served normally. On a listener with TLS this takes the place of `tls.plain_http`.',
        default: D.listener.redirect_https,
      }),
    ),
  },
  { additionalProperties: false, description: 'One address the proxy listens on.' },
);

const OptionalFile = (description: string) =>
  Type.Optional(
    Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
      ...annotate({ description, default: null }),
      'x-expected': 'a file path or null',
    }),
  );

const RetrySchema = (defaults: boolean) => {
  const R = D.upstream_defaults.retry;
  const d = <T>(value: T) => (defaults ? { default: value } : {});
  return Type.Object(
    {
      attempts: Type.Optional(
        integerField({
          minimum: 1,
          maximum: 10,
          description:
            'Attempts in all, the first one included: 1 never retries. A retry goes to another target of the route when it has one.',
          ...d(R.attempts),
        }),
      ),
      on: Type.Optional(
        Type.Array(stringEnum(RETRY_CONDITIONS), {
          uniqueItems: true,
          ...annotate({
            description:
              'Failures that are retried. connect-failure and refused-stream (the upstream never processed the request) are retried for every method; reset (a connection that failed before any response byte) and timeout only for idempotent methods.',
            ...d(R.on),
            expected: `a list of unique conditions from ${RETRY_CONDITIONS.join(', ')}`,
          }),
        }),
      ),
      statuses: Type.Optional(
        Type.Array(Type.Integer({ minimum: 500, maximum: 599 }), {
          uniqueItems: true,
          ...annotate({
            description:
              'Upstream answers with one of these statuses are retried (idempotent methods only; the answer is dropped unless it is the last attempt).',
            ...d(R.statuses),
            expected: 'a list of unique statuses from 500 to 599, such as [502, 503, 504]',
          }),
        }),
      ),
      per_try_timeout_ms: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'Time allowed for each attempt, from sending the request to the response head (0: only response_header_timeout_ms). An attempt past it is a timeout.',
          ...d(R.per_try_timeout_ms),
        }),
      ),
      budget_percent: Type.Optional(
        integerField({
          minimum: 0,
          maximum: 100,
          description:
            "Retries in flight allowed as a percentage of the route's requests in flight (a failing upstream is not hit with a retry storm).",
          ...d(R.budget_percent),
        }),
      ),
      min_concurrent: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'Retries in flight always allowed, whatever the budget says (so a quiet route can retry).',
          ...d(R.min_concurrent),
        }),
      ),
      buffer_bytes: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'Request body bytes kept so that a request whose body was already sent can be sent again; a larger body is not retried once a byte of it reached an upstream.',
          ...d(R.buffer_bytes),
        }),
      ),
    },
    {
      additionalProperties: false,
      ...annotate(
        defaults
          ? { description: 'Retries and failover for every route.', default: R }
          : { description: "This route's retries; fields not given come from upstream_defaults.retry." },
      ),
    },
  );
};

/** A circuit-breaking limit: an integer from `minimum`, or null for none. */
const limitField = (minimum: number, description: string, given: Record<string, unknown>) =>
  Type.Union([Type.Integer({ minimum }), Type.Null()], {
    ...annotate({
      description,
      ...given,
      expected: `an integer >= ${minimum}, or null for no limit`,
    }),
  });

/**
 * `circuit_breaking`, per route or in `upstream_defaults` (defaults given only there): the most requests
 * a route sends, queues and retries at once, and the most it sends or queues to one of its targets, per
 * worker. Beyond a limit the request is answered 503 ZP_ERR_UPSTREAM_OVERLOADED at once.
 */
const CircuitBreakingSchema = (defaults: boolean) => {
  const C = D.upstream_defaults.circuit_breaking;
  const d = <T>(value: T) => (defaults ? { default: value } : {});
  return Type.Object(
    {
      max_requests: Type.Optional(
        limitField(
          1,
          "Requests of the route in flight to its upstreams at once (from the first attempt to the response's end), per worker; null: no limit.",
          d(C.max_requests),
        ),
      ),
      max_pending: Type.Optional(
        limitField(
          0,
          "Requests of the route waiting for a connection or stream that other requests hold (the target's pool at max_connections_per_target), per worker; null: no limit.",
          d(C.max_pending),
        ),
      ),
      max_retries: Type.Optional(
        limitField(
          0,
          'Retries of the route in flight at once, per worker, whatever retry.budget_percent allows; null: only the retry budget.',
          d(C.max_retries),
        ),
      ),
      max_requests_per_target: Type.Optional(
        limitField(
          1,
          'Requests of the route in flight to one of its targets at once, per worker; null: no limit.',
          d(C.max_requests_per_target),
        ),
      ),
      max_pending_per_target: Type.Optional(
        limitField(
          0,
          'Requests of the route waiting for a connection or stream of one of its targets that other requests hold, per worker; null: no limit.',
          d(C.max_pending_per_target),
        ),
      ),
    },
    {
      additionalProperties: false,
      ...annotate(
        defaults
          ? {
              description:
                'Circuit breaking for every route: beyond a limit a request is answered 503 (ZP_ERR_UPSTREAM_OVERLOADED) at once instead of waiting.',
              default: C,
            }
          : {
              description:
                "This route's circuit breaking; fields not given come from upstream_defaults.circuit_breaking.",
            },
      ),
    },
  );
};

/** `request_buffering`, per route or in `upstream_defaults` (defaults given only there). */
const RequestBufferingSchema = (defaults: boolean) =>
  Type.Object(
    {
      max_bytes: Type.Optional(
        integerField({
          minimum: 0,
          description:
            'A request body up to this size is read whole before an upstream connection is taken (a slow client holds no upstream, and a retry can send the body again); a larger one is read up to this size, then streamed. 0: bodies are streamed as they come.',
          ...(defaults ? { default: D.upstream_defaults.request_buffering.max_bytes } : {}),
        }),
      ),
    },
    {
      additionalProperties: false,
      ...annotate(
        defaults
          ? {
              description: 'Request buffering for every route.',
              default: D.upstream_defaults.request_buffering,
            }
          : {
              description:
                "This route's request buffering; fields not given come from upstream_defaults.request_buffering.",
            },
      ),
    },
  );

const UpstreamTlsSchema = (defaults: boolean) =>
  Type.Object(
    {
      verify: Type.Optional(
        booleanField({
          description: "Verify the upstream's certificate chain and name.",
          ...(defaults ? { default: D.upstream_defaults.tls.verify } : {}),
        }),
      ),
      ca_file: OptionalFile(
        "PEM file of the certificate authorities trusted for upstreams (null: Node's bundled roots).",
      ),
      server_name: Type.Optional(
        Type.Union([Type.String({ pattern: `^${HOSTNAME}$` }), Type.Null()], {
          ...annotate({
            description:
              'Name sent as SNI and checked against the certificate (null: the host of the upstream URL; IP addresses send no SNI).',
            default: null,
          }),
          'x-expected': 'a host name such as backend.internal, or null',
        }),
      ),
      cert_file: OptionalFile('Client certificate (PEM) presented to upstreams that ask for one (mTLS).'),
      key_file: OptionalFile('Private key (PEM) of the client certificate.'),
    },
    {
      additionalProperties: false,
      ...annotate(
        defaults
          ? {
              description: 'TLS settings for https:// and h2:// upstreams.',
              default: D.upstream_defaults.tls,
            }
          : {
              description:
                'TLS settings for the https:// and h2:// upstreams of this route; fields not given come from upstream_defaults.tls.',
            },
      ),
    },
  );

const Http2Schema = Type.Object(
  {
    max_concurrent_streams: Type.Optional(
      integerField({
        minimum: 1,
        maximum: 4294967295,
        description:
          'Most streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).',
        default: D.http2.max_concurrent_streams,
      }),
    ),
    max_header_list_bytes: Type.Optional(
      integerField({
        minimum: 1,
        maximum: 4294967295,
        description:
          'Largest decoded header list of a request, counted as RFC 9113 does (name + value + 32 per field); larger is refused (SETTINGS_MAX_HEADER_LIST_SIZE).',
        default: D.http2.max_header_list_bytes,
      }),
    ),
    stream_window_bytes: Type.Optional(
      integerField({
        minimum: 65535,
        maximum: 2147483647,
        description: 'Flow-control window of each request stream (SETTINGS_INITIAL_WINDOW_SIZE).',
        default: D.http2.stream_window_bytes,
      }),
    ),
    connection_window_bytes: Type.Optional(
      integerField({
        minimum: 65535,
        maximum: 2147483647,
        description: 'Flow-control window of the whole connection.',
        default: D.http2.connection_window_bytes,
      }),
    ),
    max_resets_per_second: Type.Optional(
      integerField({
        minimum: 1,
        description:
          'Streams a client may cancel (RST_STREAM) per second on one connection; beyond it the connection gets GOAWAY ENHANCE_YOUR_CALM (Rapid Reset, CVE-2023-44487).',
        default: D.http2.max_resets_per_second,
      }),
    ),
  },
  {
    additionalProperties: false,
    ...annotate({ description: 'Limits of downstream HTTP/2 connections.', default: D.http2 }),
  },
);

const AdminSchema = Type.Object(
  {
    host: Type.Optional(
      Type.String({
        minLength: 1,
        ...annotate({
          description: 'Address of the admin listener (keep it on loopback or a private network).',
          default: D.admin.host,
        }),
        'x-expected': 'an address such as 127.0.0.1',
      }),
    ),
    port: PortSchema({
      description: 'Port of the admin listener (required; never one of the proxy listeners).',
    }),
    token: Type.Optional(
      Type.String({
        minLength: 16,
        description: 'When set, every admin request must carry `Authorization: Bearer <token>` (else 401).',
        'x-expected': 'a secret of at least 16 characters',
      }),
    ),
    metrics: Type.Optional(
      booleanField({
        description:
          'Count the metrics that GET /metrics exposes (false: nothing is counted and /metrics answers 404).',
        default: D.admin.metrics,
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'The admin listener (docs/operations.md): /metrics, /healthz, /readyz, /status, POST /reload. Off when absent.',
    'x-expected': 'an object such as {"port": 9901}',
  },
);

const WebSocketSchema = Type.Object(
  {
    idle_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description:
          'How long a WebSocket tunnel may carry no bytes in either direction before zproxy closes it (separate from connection_timeout_ms; routes[].websocket_idle_timeout_ms overrides it per route).',
        default: D.websocket.idle_timeout_ms,
      }),
    ),
    max_tunnels: Type.Optional(
      integerField({
        minimum: 1,
        description:
          'Most WebSocket tunnels open at once in one process (handshakes in progress count); an upgrade beyond it is answered 503 and nothing is forwarded.',
        default: D.websocket.max_tunnels,
      }),
    ),
    drain_timeout_ms: Type.Optional(
      integerField({
        minimum: 0,
        description:
          'On shutdown, how long open tunnels keep running before zproxy closes them (bounded by shutdown_grace_ms).',
        default: D.websocket.drain_timeout_ms,
      }),
    ),
  },
  {
    additionalProperties: false,
    ...annotate({
      description: 'WebSocket tunnels (enabled by "websocket" in protocols).',
      default: D.websocket,
    }),
  },
);

const LimitsSchema = Type.Object(
  {
    max_header_bytes: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Largest request head (request line and headers) in bytes; larger is 431.',
        default: D.limits.max_header_bytes,
      }),
    ),
    max_header_count: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Most header fields in a request; more is 431.',
        default: D.limits.max_header_count,
      }),
    ),
    max_uri_bytes: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Longest request target in bytes; longer is 414.',
        default: D.limits.max_uri_bytes,
      }),
    ),
    max_body_bytes: Type.Optional(
      integerField({
        minimum: 0,
        description: 'Largest request body in bytes; larger is 413. 0 means unlimited.',
        default: D.limits.max_body_bytes,
      }),
    ),
  },
  {
    additionalProperties: false,
    ...annotate({ description: 'Limits on downstream requests.', default: D.limits }),
  },
);

const RouteSchema = Type.Object(
  {
    path: Type.String({
      pattern: '^/',
      description:
        'Path prefix to match. Segments are static text, `:name` parameters, or `*` as the last segment, e.g. /api/users/:id or /files/*.',
      'x-expected': 'a path starting with /, such as /api/users/:id',
    }),
    upstream: Type.Union(
      [
        UpstreamUrlSchema,
        Type.Array(UpstreamTargetSchema, {
          minItems: 1,
          'x-expected': `a non-empty list of targets such as ["http://127.0.0.1:8080", {"url": "http://127.0.0.1:8081", "weight": 2}]`,
        }),
      ],
      {
        description:
          'Where matching requests are forwarded: one URL, or a list of targets to balance across (a URL, or {url, weight, backup}).',
        'x-expected': `${UPSTREAM_URL_EXPECTED}, or a non-empty list of targets`,
      },
    ),
    methods: Type.Optional(
      Type.Array(
        Type.String({
          pattern: METHOD_PATTERN,
          'x-expected': 'an HTTP method in uppercase letters, such as GET',
        }),
        {
          minItems: 1,
          uniqueItems: true,
          description: 'Methods this route accepts (uppercase). When absent, any method matches.',
          'x-expected': 'a non-empty list of unique HTTP methods, such as ["GET", "POST"]',
        },
      ),
    ),
    host: Type.Optional(
      Type.String({
        pattern: ROUTE_HOST_PATTERN,
        description:
          'Only match requests for this host: an exact name (api.example.com) or a wildcard (*.example.com). Compared case-insensitively. When absent, any host matches.',
        'x-expected': ROUTE_HOST_EXPECTED,
      }),
    ),
    strip_prefix: Type.Optional(
      booleanField({
        description: 'Remove the matched path prefix before forwarding.',
        default: D.route.strip_prefix,
      }),
    ),
    middlewares: Type.Optional(
      MiddlewareListSchema(
        'Middlewares of this route. An entry whose type is already in the top-level list replaces that entry in place (its position in the chain is kept); the others are appended, in order.',
      ),
    ),
    inherit_middlewares: Type.Optional(
      booleanField({
        description:
          "Apply the top-level middlewares to this route (then its own middlewares replace or extend them). false: only the route's own middlewares apply.",
        default: D.route.inherit_middlewares,
      }),
    ),
    upstream_tls: Type.Optional(UpstreamTlsSchema(false)),
    retry: Type.Optional(RetrySchema(false)),
    load_balancing: Type.Optional(LoadBalancingSchema(false)),
    circuit_breaking: Type.Optional(CircuitBreakingSchema(false)),
    request_buffering: Type.Optional(RequestBufferingSchema(false)),
    health_check: Type.Optional(HealthCheckSchema(false)),
    outlier_detection: Type.Optional(OutlierDetectionSchema(false)),
    websocket_idle_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description:
          "Idle timeout of this route's WebSocket tunnels, replacing websocket.idle_timeout_ms for it.",
      }),
    ),
  },
  { additionalProperties: false, description: 'A route: which requests go to which upstream.' },
);

const UpstreamDefaultsSchema = Type.Object(
  {
    connect_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Time allowed to open a connection to an upstream.',
        default: D.upstream_defaults.connect_timeout_ms,
      }),
    ),
    response_header_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Time allowed for an upstream to send its response head after the request.',
        default: D.upstream_defaults.response_header_timeout_ms,
      }),
    ),
    idle_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description:
          "How long an idle pooled upstream connection is kept. Keep it below the upstreams' keep-alive timeout (Node's is 5 s) so zproxy closes idle connections before the upstream does.",
        default: D.upstream_defaults.idle_timeout_ms,
      }),
    ),
    max_connections_per_target: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Most open connections to one upstream target.',
        default: D.upstream_defaults.max_connections_per_target,
      }),
    ),
    max_idle_per_target: Type.Optional(
      integerField({
        minimum: 1,
        description:
          'Most idle connections kept in the pool of one upstream target. Default: max_connections_per_target (the pool keeps what recent concurrency needed; idle_timeout_ms closes what it no longer needs).',
        default: D.upstream_defaults.max_idle_per_target,
      }),
    ),
    tls: Type.Optional(UpstreamTlsSchema(true)),
    retry: Type.Optional(RetrySchema(true)),
    load_balancing: Type.Optional(LoadBalancingSchema(true)),
    circuit_breaking: Type.Optional(CircuitBreakingSchema(true)),
    request_buffering: Type.Optional(RequestBufferingSchema(true)),
    health_check: Type.Optional(HealthCheckSchema(true)),
    outlier_detection: Type.Optional(OutlierDetectionSchema(true)),
  },
  {
    additionalProperties: false,
    ...annotate({
      description: 'Connection settings for every upstream.',
      default: D.upstream_defaults,
    }),
  },
);

export const ConfigSchema = Type.Object(
  {
    $schema: Type.Optional(
      Type.String({
        description: 'Path or URL of the JSON Schema for editors (ignored by zproxy).',
      }),
    ),
    host: Type.Optional(
      Type.String({
        minLength: 1,
        ...annotate({
          description: 'Address to listen on (when `listeners` is absent).',
          default: D.host,
        }),
        'x-expected': 'an address such as 0.0.0.0 or 127.0.0.1',
      }),
    ),
    port: Type.Optional(
      PortSchema({ description: 'Port to listen on (when `listeners` is absent).', default: D.port }),
    ),
    listeners: Type.Optional(
      Type.Array(ListenerSchema, {
        minItems: 1,
        description: 'Addresses to listen on. When present, replaces `host` and `port`.',
        'x-expected': 'a non-empty list of listeners such as [{"host": "0.0.0.0", "port": 8000}]',
      }),
    ),
    thread_count: Type.Optional(
      integerField({
        minimum: 0,
        description: 'Workers sharing the listeners (see worker_mode). 0 means one per available CPU.',
        default: D.thread_count,
      }),
    ),
    worker_mode: Type.Optional(
      stringEnum(WORKER_MODES, {
        description:
          'How the workers run: threads of one process sharing the rate limiter and counters in memory (needs SO_REUSEPORT: Linux, FreeBSD), or separate processes (isolated from one another; the rate limiter answers through the supervisor). auto: threads where the platform allows, else processes.',
        default: D.worker_mode,
      }),
    ),
    backlog: Type.Optional(integerField({ minimum: 1, description: 'Listen backlog.', default: D.backlog })),
    max_connections: Type.Optional(
      integerField({
        minimum: 1,
        description:
          'Most open downstream connections of the whole instance (every accepted connection counts until it closes: HTTP/1.x, h2c, HTTP/2 over TLS, TLS handshakes in progress); with thread_count workers, each holds its share. Beyond it, plain connections get 503 and TLS ones are closed before any handshake.',
        default: D.max_connections,
      }),
    ),
    connection_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description: 'Idle (keep-alive) and request-head read timeout for downstream connections.',
        default: D.connection_timeout_ms,
      }),
    ),
    request_body_timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        description:
          "Time allowed between two reads of a request body (nginx's client_body_timeout), over HTTP/1.1 and on each HTTP/2 stream; past it the request is answered 408 (or aborted once the response started) and its upstream request is aborted. Not counted while zproxy itself holds the body back (the upstream is slow to take it). Default: connection_timeout_ms.",
      }),
    ),
    protocols: Type.Optional(
      Type.Array(stringEnum(PROTOCOLS), {
        minItems: 1,
        uniqueItems: true,
        ...annotate({
          description: 'Protocols enabled on every listener.',
          default: D.protocols,
          expected: `a non-empty list of unique protocols from ${PROTOCOLS.join(', ')}`,
        }),
      }),
    ),
    tls: Type.Optional(TlsSchema),
    http2: Type.Optional(Http2Schema),
    websocket: Type.Optional(WebSocketSchema),
    routes: Type.Array(RouteSchema, {
      minItems: 1,
      description: 'Routes, at least one (required). The most specific matching route wins.',
      'x-expected': 'a non-empty list of routes such as [{"path": "/", "upstream": "http://127.0.0.1:8080"}]',
    }),
    middlewares: Type.Optional(MiddlewareListSchema('Middlewares applied to every route, in order.')),
    limits: Type.Optional(LimitsSchema),
    upstream_defaults: Type.Optional(UpstreamDefaultsSchema),
    preserve_host: Type.Optional(
      booleanField({
        description: 'Forward the downstream Host header to the upstream (false: use the upstream host).',
        default: D.preserve_host,
      }),
    ),
    trusted_proxies: Type.Optional(
      Type.Array(
        Type.String({
          minLength: 1,
          'x-expected': 'an IPv4 or IPv6 address or CIDR range, such as 10.0.0.0/8 or ::1',
        }),
        annotate({
          description:
            'Addresses or CIDR ranges of proxies in front of zproxy whose X-Forwarded-For / Forwarded headers are trusted.',
          default: D.trusted_proxies,
          expected: 'a list of IP addresses or CIDR ranges such as ["10.0.0.0/8"]',
        }),
      ),
    ),
    access_log: Type.Optional(
      Type.Object(
        {
          enabled: Type.Optional(
            booleanField({ description: 'Write one log line per exchange.', default: D.access_log.enabled }),
          ),
          file: Type.Optional(
            Type.Union([Type.String({ minLength: 1 }), Type.Null()], {
              ...annotate({
                description:
                  "Append the access log to this file (relative paths are the config file's), reopened on SIGUSR1; null writes it to stdout with the process log.",
                default: D.access_log.file,
              }),
              'x-expected': 'a file path or null',
            }),
          ),
        },
        {
          additionalProperties: false,
          ...annotate({ description: 'Access log settings.', default: D.access_log }),
        },
      ),
    ),
    tracing: Type.Optional(
      Type.Object(
        {
          traceparent: Type.Optional(
            booleanField({
              description:
                'Pass a W3C `traceparent` on to the upstream with zproxy as a new span (started when absent or invalid) and log its trace id.',
              default: D.tracing.traceparent,
            }),
          ),
        },
        {
          additionalProperties: false,
          ...annotate({ description: 'Trace context settings.', default: D.tracing }),
        },
      ),
    ),
    shutdown_grace_ms: Type.Optional(
      integerField({
        minimum: 0,
        description: 'On shutdown, how long in-flight exchanges may finish before connections are closed.',
        default: D.shutdown_grace_ms,
      }),
    ),
    shutdown_delay_ms: Type.Optional(
      integerField({
        minimum: 0,
        description:
          'On SIGTERM, how long the listeners keep serving while /readyz already answers 503 (so that load balancers stop sending first), before the graceful stop begins.',
        default: D.shutdown_delay_ms,
      }),
    ),
    admin: Type.Optional(AdminSchema),
    accept_risks: Type.Optional(
      Type.Array(stringEnum(WARNING_CODES), {
        uniqueItems: true,
        ...annotate({
          description:
            'Codes of warnings about risky settings that are accepted on purpose: `zproxy check` and `zproxy run` no longer report them (docs/configuration.md, "Warnings").',
          default: D.accept_risks,
          expected: 'a list of unique warning codes such as ["ZP_WARN_CORS_CREDENTIALS_WILDCARD"]',
        }),
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'zproxy configuration.',
    'x-expected': 'an object with at least "routes"',
  },
);

/** The configuration as written in a file (after schema validation, before normalisation). */
export type ConfigInput = Static<typeof ConfigSchema>;
export type RouteInput = Static<typeof RouteSchema>;
export type MiddlewareInput = Static<typeof MiddlewareSchema>;

// ---------------------------------------------------------------------------------------------
// The normalised configuration: every default filled, every shorthand expanded, deep-frozen.
// ---------------------------------------------------------------------------------------------

export interface ListenerConfig {
  readonly host: string;
  readonly port: number;
  /** The listener's own `tls` block, else the top-level one. */
  readonly tls: TlsConfig;
  readonly redirect_https: boolean;
}

export interface MiddlewareConfig {
  readonly type: MiddlewareType;
  readonly config: Readonly<Record<string, unknown>>;
  /** The user filter module (type `module` only), as written. */
  readonly path?: string;
}

/** A target of a route, normalised. */
export interface UpstreamTargetConfig {
  /** `scheme://host:port` (http, https, h2c or h2) with the port spelled out. */
  readonly url: string;
  readonly weight: number;
  readonly backup: boolean;
}

export interface LoadBalancingConfig {
  readonly policy: BalancingPolicy;
  /** `client_ip`, `path`, `header:<name>` or `cookie:<name>` (names as written). */
  readonly hash_key: string;
  readonly panic_threshold_percent: number;
}

export interface HealthCheckConfig {
  readonly path: string;
  readonly method: HealthCheckMethod;
  readonly host: string | null;
  readonly interval_ms: number;
  readonly timeout_ms: number;
  readonly jitter_ms: number;
  readonly healthy_threshold: number;
  readonly unhealthy_threshold: number;
  readonly expected_statuses: readonly (number | string)[];
  readonly slow_start_ms: number;
}

export interface OutlierDetectionConfig {
  readonly consecutive_failures: number;
  readonly statuses: readonly number[];
  readonly base_ejection_ms: number;
  readonly max_ejection_ms: number;
  readonly max_ejection_percent: number;
}

export interface RouteConfig {
  readonly path: string;
  /** Always a list of targets, in config order. */
  readonly upstream: readonly UpstreamTargetConfig[];
  /** `upstream_defaults.load_balancing` with the route's fields laid over it. */
  readonly load_balancing: LoadBalancingConfig;
  /** `upstream_defaults.health_check` with the route's fields laid over it; null: no active checks. */
  readonly health_check: HealthCheckConfig | null;
  /** `upstream_defaults.outlier_detection` with the route's fields laid over it; null: off. */
  readonly outlier_detection: OutlierDetectionConfig | null;
  /** null = any method. */
  readonly methods: readonly string[] | null;
  /** Lowercase exact host or `*.suffix` wildcard; null = any host. */
  readonly host: string | null;
  readonly strip_prefix: boolean;
  readonly middlewares: readonly MiddlewareConfig[];
  readonly inherit_middlewares: boolean;
  /** `upstream_defaults.tls` with the route's `upstream_tls` fields laid over it. */
  readonly upstream_tls: UpstreamTlsConfig;
  /** `upstream_defaults.retry` with the route's `retry` fields laid over it. */
  readonly retry: RetryConfig;
  /** `upstream_defaults.circuit_breaking` with the route's `circuit_breaking` fields laid over it. */
  readonly circuit_breaking: CircuitBreakingConfig;
  /** `upstream_defaults.request_buffering` with the route's `request_buffering` fields laid over it. */
  readonly request_buffering: RequestBufferingConfig;
  /** The route's own value, else `websocket.idle_timeout_ms`. */
  readonly websocket_idle_timeout_ms: number;
}

export interface LimitsConfig {
  readonly max_header_bytes: number;
  readonly max_header_count: number;
  readonly max_uri_bytes: number;
  /** 0 = unlimited. */
  readonly max_body_bytes: number;
}

export interface UpstreamDefaultsConfig {
  readonly connect_timeout_ms: number;
  readonly response_header_timeout_ms: number;
  readonly idle_timeout_ms: number;
  readonly max_connections_per_target: number;
  readonly max_idle_per_target: number;
  readonly tls: UpstreamTlsConfig;
  readonly retry: RetryConfig;
  readonly load_balancing: LoadBalancingConfig;
  /** The fields given in `upstream_defaults.health_check` (null: none given, no route checks by default). */
  readonly health_check: HealthCheckInput | null;
  readonly outlier_detection: OutlierDetectionInput;
  readonly circuit_breaking: CircuitBreakingConfig;
  readonly request_buffering: RequestBufferingConfig;
}

export interface RequestBufferingConfig {
  /** 0 = off (bodies are streamed). */
  readonly max_bytes: number;
}

/** Circuit-breaking limits (per worker); null = no limit. */
export interface CircuitBreakingConfig {
  readonly max_requests: number | null;
  readonly max_pending: number | null;
  readonly max_retries: number | null;
  readonly max_requests_per_target: number | null;
  readonly max_pending_per_target: number | null;
}

/** `health_check` as written (fields absent where not given). */
export type HealthCheckInput = Partial<HealthCheckConfig & { readonly enabled: boolean }>;
/** `outlier_detection` as written. */
export type OutlierDetectionInput = Partial<OutlierDetectionConfig & { readonly enabled: boolean }>;

export interface RetryConfig {
  readonly attempts: number;
  readonly on: readonly RetryCondition[];
  readonly statuses: readonly number[];
  /** 0 = none. */
  readonly per_try_timeout_ms: number;
  readonly budget_percent: number;
  readonly min_concurrent: number;
  readonly buffer_bytes: number;
}

export interface UpstreamTlsConfig {
  readonly verify: boolean;
  readonly ca_file: string | null;
  readonly server_name: string | null;
  readonly cert_file: string | null;
  readonly key_file: string | null;
}

export interface Http2Config {
  readonly max_concurrent_streams: number;
  readonly max_header_list_bytes: number;
  readonly stream_window_bytes: number;
  readonly connection_window_bytes: number;
  readonly max_resets_per_second: number;
}

export interface WebSocketConfig {
  readonly idle_timeout_ms: number;
  readonly max_tunnels: number;
  readonly drain_timeout_ms: number;
}

export interface HstsConfig {
  readonly enabled: boolean;
  readonly max_age_seconds: number;
  readonly include_subdomains: boolean;
  readonly preload: boolean;
}

export interface TlsCertificateConfig {
  readonly server_names: readonly string[];
  readonly cert_file: string;
  readonly key_file: string;
}

export interface TlsConfig {
  readonly enabled: boolean;
  readonly cert_file: string | null;
  readonly key_file: string | null;
  readonly certificates: readonly TlsCertificateConfig[];
  readonly min_version: 'TLSv1.2' | 'TLSv1.3';
  readonly ciphers: string | null;
  readonly hsts: HstsConfig;
  /** Plain-HTTP connections on a TLS listener: refused (400 / GOAWAY), redirected to https, or served. */
  readonly plain_http: PlainHttpMode;
}

export interface AdminConfig {
  readonly host: string;
  readonly port: number;
  /** null = no token required. */
  readonly token: string | null;
  /** Metrics are counted (and /metrics served). */
  readonly metrics: boolean;
}

export interface Config {
  /** Resolved: `listeners` if given, else `[{ host, port }]`. */
  readonly listeners: readonly ListenerConfig[];
  /** Resolved, >= 1 (0 in the file means one per available CPU). */
  readonly thread_count: number;
  /** As written (`auto` is resolved when the instance starts: src/server/run.ts). */
  readonly worker_mode: WorkerMode;
  readonly backlog: number;
  readonly max_connections: number;
  readonly connection_timeout_ms: number;
  /** Resolved: connection_timeout_ms when not given. */
  readonly request_body_timeout_ms: number;
  readonly protocols: readonly Protocol[];
  /** The top-level block (each listener has its resolved own in `listeners[].tls`). */
  readonly tls: TlsConfig;
  readonly http2: Http2Config;
  readonly websocket: WebSocketConfig;
  readonly routes: readonly RouteConfig[];
  readonly middlewares: readonly MiddlewareConfig[];
  readonly limits: LimitsConfig;
  readonly upstream_defaults: UpstreamDefaultsConfig;
  readonly preserve_host: boolean;
  readonly trusted_proxies: readonly string[];
  readonly access_log: { readonly enabled: boolean; readonly file: string | null };
  readonly tracing: { readonly traceparent: boolean };
  readonly shutdown_grace_ms: number;
  /** On SIGTERM, how long /readyz answers 503 while the listeners still serve. */
  readonly shutdown_delay_ms: number;
  /** The admin listener, null when off. */
  readonly admin: AdminConfig | null;
}
