import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { CONFIG_DEFAULTS, type Config } from '../../src/config/schema.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

const DEFAULT_LIMITS = {
  max_header_bytes: 16384,
  max_header_count: 100,
  max_uri_bytes: 8192,
  max_body_bytes: 104857600,
};
const DEFAULT_TLS = {
  enabled: false,
  cert_file: null,
  key_file: null,
  certificates: [],
  min_version: 'TLSv1.2',
  ciphers: null,
  hsts: { enabled: false, max_age_seconds: 31536000, include_subdomains: false, preload: false },
  plain_http: 'reject',
};
const DEFAULT_UPSTREAM_TLS = {
  verify: true,
  ca_file: null,
  server_name: null,
  cert_file: null,
  key_file: null,
};
const DEFAULT_HTTP2 = {
  max_concurrent_streams: 128,
  max_header_list_bytes: 16384,
  stream_window_bytes: 1048576,
  connection_window_bytes: 4194304,
  max_resets_per_second: 100,
};
const listener = (host: string, port: number) => ({ host, port, tls: DEFAULT_TLS, redirect_https: false });
const DEFAULT_RETRY = {
  attempts: 2,
  on: ['connect-failure', 'refused-stream', 'reset'],
  statuses: [],
  per_try_timeout_ms: 0,
  budget_percent: 20,
  min_concurrent: 3,
  buffer_bytes: 65536,
};
const DEFAULT_BALANCING = { policy: 'round_robin', hash_key: 'client_ip', panic_threshold_percent: 50 };
const DEFAULT_OUTLIER = {
  consecutive_failures: 5,
  statuses: [502, 503, 504],
  base_ejection_ms: 30000,
  max_ejection_ms: 300000,
  max_ejection_percent: 50,
};
const DEFAULT_BREAKING = {
  max_requests: null,
  max_pending: 1024,
  max_retries: null,
  max_requests_per_target: null,
  max_pending_per_target: null,
};
/** A normalised target of weight 1, not a backup. */
const target = (url: string) => ({ url, weight: 1, backup: false });
const DEFAULT_UPSTREAM = {
  connect_timeout_ms: 5000,
  response_header_timeout_ms: 60000,
  idle_timeout_ms: 4000,
  max_connections_per_target: 1024,
  max_idle_per_target: 1024,
  tls: DEFAULT_UPSTREAM_TLS,
  retry: DEFAULT_RETRY,
  load_balancing: DEFAULT_BALANCING,
  circuit_breaking: DEFAULT_BREAKING,
  request_buffering: { max_bytes: 0 },
  health_check: null,
  outlier_detection: {},
};
const SEED_API_ROUTE = {
  path: '/api',
  upstream: [target('http://localhost:8080')],
  methods: ['GET', 'POST', 'PUT', 'DELETE'],
  host: null,
  strip_prefix: false,
  middlewares: [],
  inherit_middlewares: true,
  upstream_tls: DEFAULT_UPSTREAM_TLS,
  retry: DEFAULT_RETRY,
  load_balancing: DEFAULT_BALANCING,
  circuit_breaking: DEFAULT_BREAKING,
  request_buffering: { max_bytes: 0 },
  health_check: null,
  outlier_detection: DEFAULT_OUTLIER,
  websocket_idle_timeout_ms: 300000,
};
/** The fields the seed files do not set, with their defaults. */
const EXTENSION_DEFAULTS = {
  http2: DEFAULT_HTTP2,
  websocket: { idle_timeout_ms: 300000, max_tunnels: 10000, drain_timeout_ms: 5000 },
  limits: DEFAULT_LIMITS,
  upstream_defaults: DEFAULT_UPSTREAM,
  preserve_host: true,
  trusted_proxies: [],
  access_log: { enabled: true, file: null },
  tracing: { traceparent: true },
  shutdown_grace_ms: 10000,
  shutdown_delay_ms: 0,
  admin: null,
};

/** Strips the frozen/readonly-ness so deepStrictEqual compares plain shapes. */
// biome-ignore lint/suspicious/noExplicitAny: a plain copy of a config, read by shape
const plain = (config: Config): any => JSON.parse(JSON.stringify(config));

describe('seed examples load unchanged', () => {
  test('basic_proxy.json', () => {
    const config = loadConfigFile(root('examples/basic_proxy.json'));
    assert.deepStrictEqual(plain(config), {
      listeners: [listener('0.0.0.0', 8000)],
      thread_count: 4,
      worker_mode: 'auto',
      backlog: 128,
      max_connections: 1000,
      connection_timeout_ms: 30000,
      request_body_timeout_ms: 30000,
      protocols: ['http1', 'http2', 'websocket'],
      tls: DEFAULT_TLS,
      routes: [
        SEED_API_ROUTE,
        { ...SEED_API_ROUTE, path: '/static', upstream: [target('http://localhost:8081')], methods: ['GET'] },
        {
          ...SEED_API_ROUTE,
          path: '/',
          upstream: [target('http://localhost:8082')],
          methods: ['GET', 'POST'],
        },
      ],
      middlewares: [],
      ...EXTENSION_DEFAULTS,
    });
  });

  test('middleware_proxy.json', () => {
    const config = loadConfigFile(root('examples/middleware_proxy.json'));
    assert.deepStrictEqual(plain(config), {
      listeners: [listener('0.0.0.0', 8000)],
      thread_count: 4,
      worker_mode: 'auto',
      backlog: 128,
      max_connections: 1000,
      connection_timeout_ms: 30000,
      request_body_timeout_ms: 30000,
      protocols: ['http1', 'http2', 'websocket'],
      tls: DEFAULT_TLS,
      routes: [SEED_API_ROUTE],
      middlewares: [
        { type: 'rate_limit', config: { requests_per_minute: 100 } },
        { type: 'cors', config: { allowed_origins: ['*'], allow_credentials: true } },
        { type: 'cache', config: { ttl_seconds: 300 } },
      ],
      ...EXTENSION_DEFAULTS,
    });
  });

  test('high_performance.json', () => {
    const config = loadConfigFile(root('examples/high_performance.json'));
    assert.deepStrictEqual(plain(config), {
      listeners: [listener('0.0.0.0', 8000)],
      thread_count: 16,
      worker_mode: 'auto',
      backlog: 1024,
      max_connections: 10000,
      connection_timeout_ms: 30000,
      request_body_timeout_ms: 30000,
      protocols: ['http1', 'http2'],
      tls: DEFAULT_TLS,
      routes: [SEED_API_ROUTE],
      middlewares: [],
      ...EXTENSION_DEFAULTS,
    });
  });
});

test('the demo config', () => {
  const config = loadConfigFile(root('examples/demo.json'));
  const origin = [target('http://127.0.0.1:8001')];
  // The TLS listener names the files the demo writes (src/demo/prepare.ts replaces them).
  assert.deepStrictEqual(plain(config).listeners, [
    listener('127.0.0.1', 8000),
    {
      ...listener('127.0.0.1', 8443),
      tls: { ...DEFAULT_TLS, enabled: true, cert_file: 'demo-localhost.crt', key_file: 'demo-localhost.key' },
    },
  ]);
  assert.equal(config.thread_count, 1);
  assert.deepStrictEqual(plain(config).protocols, ['http1', 'http2', 'websocket']);
  assert.deepStrictEqual(plain(config).middlewares, []);
  assert.deepStrictEqual(
    config.routes.map((r) => [r.path, r.methods, r.strip_prefix, r.middlewares.map((m) => m.type)]),
    [
      ['/api/users/:id', ['GET'], false, []],
      ['/static', ['GET'], true, []],
      ['/ws', ['GET'], false, []],
      ['/cors', null, false, ['cors']],
      ['/limited', ['GET'], false, ['rate_limit']],
      ['/cached', ['GET'], false, ['cache']],
      ['/', null, false, []],
    ],
  );
  for (const route of plain(config).routes) assert.deepStrictEqual(route.upstream, origin);
});

test('a minimal config gets every default', () => {
  const config = parseConfig({ routes: [{ path: '/', upstream: 'http://127.0.0.1:8080' }] });
  assert.deepStrictEqual(plain(config), {
    listeners: [listener('0.0.0.0', 8000)],
    thread_count: 1,
    worker_mode: 'auto',
    backlog: 511,
    max_connections: 10000,
    connection_timeout_ms: 30000,
    request_body_timeout_ms: 30000,
    protocols: ['http1', 'http2', 'websocket'],
    tls: DEFAULT_TLS,
    routes: [
      {
        path: '/',
        upstream: [target('http://127.0.0.1:8080')],
        methods: null,
        host: null,
        strip_prefix: false,
        middlewares: [],
        inherit_middlewares: true,
        upstream_tls: DEFAULT_UPSTREAM_TLS,
        retry: DEFAULT_RETRY,
        load_balancing: DEFAULT_BALANCING,
        circuit_breaking: DEFAULT_BREAKING,
        request_buffering: { max_bytes: 0 },
        health_check: null,
        outlier_detection: DEFAULT_OUTLIER,
        websocket_idle_timeout_ms: 300000,
      },
    ],
    middlewares: [],
    ...EXTENSION_DEFAULTS,
  });
  assert.deepStrictEqual(
    plain(config),
    plain(loadConfigFile(root('test/fixtures/configs/valid/minimal.json'))),
  );
});

test('a config using every field', () => {
  const config = loadConfigFile(root('test/fixtures/configs/valid/full.json'));
  const topTls = {
    enabled: true,
    cert_file: 'certs/proxy.pem',
    key_file: 'certs/proxy-key.pem',
    certificates: [
      {
        server_names: ['api.example.com', '*.example.org'],
        cert_file: 'certs/api.pem',
        key_file: 'certs/api-key.pem',
      },
    ],
    min_version: 'TLSv1.3',
    ciphers: 'ECDHE+AESGCM',
    hsts: { enabled: true, max_age_seconds: 600, include_subdomains: true, preload: false },
    plain_http: 'redirect',
  };
  assert.deepStrictEqual((plain(config) as { tls: unknown }).tls, topTls);
  assert.equal(config.worker_mode, 'processes');
  assert.deepStrictEqual(JSON.parse(JSON.stringify(config.listeners)), [
    { host: '0.0.0.0', port: 8080, redirect_https: true, tls: { ...DEFAULT_TLS, enabled: false } },
    { host: '::', port: 8443, redirect_https: false, tls: topTls },
  ]);
  assert.deepStrictEqual(config.http2, {
    max_concurrent_streams: 64,
    max_header_list_bytes: 32768,
    stream_window_bytes: 262144,
    connection_window_bytes: 1048576,
    max_resets_per_second: 50,
  });
  assert.deepStrictEqual(config.websocket, {
    idle_timeout_ms: 120000,
    max_tunnels: 500,
    drain_timeout_ms: 0,
  });
  const [api, files, web] = config.routes;
  assert.equal(
    api!.websocket_idle_timeout_ms,
    120000,
    'a route without its own gets websocket.idle_timeout_ms',
  );
  assert.equal(files!.websocket_idle_timeout_ms, 15000);
  assert.deepStrictEqual(
    api!.upstream.map((t) => t.url),
    ['http://10.0.0.1:9000', 'http://10.0.0.2:80', 'http://[::1]:9001'],
  );
  assert.equal(api!.host, 'api.example.com', 'host is lowercased');
  assert.deepStrictEqual(api!.middlewares, [
    { type: 'auth', config: { api_keys: ['k1', 'k2'], header: 'x-api-key' } },
  ]);
  assert.equal(files!.host, '*.example.com');
  assert.equal(files!.strip_prefix, true);
  assert.deepStrictEqual(
    files!.upstream.map((t) => t.url),
    ['https://files.internal:443', 'h2://files2.internal:8443', 'h2c://files3.internal:80'],
  );
  const defaultsTls = { ...DEFAULT_UPSTREAM_TLS, verify: false, ca_file: 'certs/ca.pem' };
  assert.deepStrictEqual(config.upstream_defaults.tls, defaultsTls);
  assert.deepStrictEqual(api!.upstream_tls, defaultsTls, 'a route without upstream_tls gets the defaults');
  assert.deepStrictEqual(files!.upstream_tls, {
    ...defaultsTls,
    server_name: 'files.example.com',
    cert_file: 'certs/client.pem',
    key_file: 'certs/client-key.pem',
  });
  assert.deepStrictEqual(
    web!.upstream.map((t) => t.url),
    ['http://web_1:3000'],
  );
  assert.deepStrictEqual(
    config.middlewares.map((m) => m.type),
    ['rate_limit', 'cors', 'cache', 'auth'],
  );
  assert.deepStrictEqual(config.middlewares[3]!.config, {}, 'a missing config is {}');
  assert.equal(config.limits.max_body_bytes, 0);
  assert.equal(config.upstream_defaults.idle_timeout_ms, 3000);
  assert.equal(config.preserve_host, false);
  assert.deepStrictEqual(config.trusted_proxies, ['10.0.0.0/8', '192.168.1.10', '::1', 'fd00::/8']);
  assert.deepStrictEqual(config.access_log, { enabled: false, file: 'logs/access.log' });
  assert.deepStrictEqual(config.tracing, { traceparent: false });
  assert.equal(config.shutdown_grace_ms, 0);
});

test('listeners replace host and port', () => {
  const config = parseConfig({
    host: '127.0.0.1',
    port: 9000,
    listeners: [
      { host: '::1', port: 0 },
      { host: '127.0.0.1', port: 8443 },
    ],
    routes: [{ path: '/', upstream: 'http://localhost:8080' }],
  });
  assert.deepStrictEqual(JSON.parse(JSON.stringify(config.listeners)), [
    listener('::1', 0),
    listener('127.0.0.1', 8443),
  ]);
});

test('thread_count 0 means one worker per available CPU', () => {
  const config = parseConfig({ thread_count: 0, routes: [{ path: '/', upstream: 'http://localhost:8080' }] });
  assert.equal(config.thread_count, availableParallelism());
  assert.ok(config.thread_count >= 1);
});

test('upstream URLs are normalised to http://host:port', () => {
  const config = parseConfig({
    routes: [
      { path: '/a', upstream: 'http://LocalHost' },
      { path: '/b', upstream: 'http://127.0.0.1:80/' },
      { path: '/c', upstream: ['http://[::1]:8080', 'http://example.com:8080'] },
      { path: '/d', upstream: ['https://api.example.com', 'https://api.example.com:80', 'h2://[::1]'] },
      { path: '/e', upstream: ['h2c://backend', 'h2c://backend:8080/', 'h2://10.0.0.1:8443'] },
    ],
  });
  assert.deepStrictEqual(
    config.routes.map((route) => route.upstream.map((t) => t.url)),
    [
      ['http://localhost:80'],
      ['http://127.0.0.1:80'],
      ['http://[::1]:8080', 'http://example.com:8080'],
      ['https://api.example.com:443', 'https://api.example.com:80', 'h2://[::1]:443'],
      ['h2c://backend:80', 'h2c://backend:8080', 'h2://10.0.0.1:8443'],
    ],
  );
});

test('the loaded config is deep-frozen', () => {
  const config = loadConfigFile(root('examples/middleware_proxy.json'));
  const frozen: unknown[] = [
    config,
    config.listeners,
    config.listeners[0],
    config.protocols,
    config.tls,
    config.routes,
    config.routes[0],
    config.routes[0]!.upstream,
    config.routes[0]!.methods,
    config.routes[0]!.middlewares,
    config.middlewares,
    config.middlewares[1],
    config.middlewares[1]!.config,
    (config.middlewares[1]!.config as { allowed_origins: string[] }).allowed_origins,
    config.limits,
    config.upstream_defaults,
    config.trusted_proxies,
    config.access_log,
    config.tracing,
  ];
  for (const value of frozen) assert.ok(Object.isFrozen(value));
  assert.throws(() => {
    (config as { backlog: number }).backlog = 1;
  }, TypeError);
  assert.throws(() => {
    (config.routes as RouteList).push(config.routes[0]!);
  }, TypeError);
});

type RouteList = Config['routes'][number][];

test('parsing does not share or change the input', () => {
  const input = {
    routes: [{ path: '/', upstream: 'http://localhost:8080', methods: ['GET'] }],
    middlewares: [{ type: 'cors', config: { allowed_origins: ['*'] } }],
  };
  const snapshot = structuredClone(input);
  const config = parseConfig(input);
  assert.deepStrictEqual(input, snapshot);
  assert.ok(!Object.isFrozen(input.middlewares[0]!.config));
  input.middlewares[0]!.config.allowed_origins.push('https://evil.example');
  input.routes[0]!.methods.push('POST');
  assert.deepStrictEqual(config.middlewares[0]!.config, { allowed_origins: ['*'] });
  assert.deepStrictEqual(config.routes[0]!.methods, ['GET']);
});

test('CONFIG_DEFAULTS match the documented defaults', () => {
  assert.equal(CONFIG_DEFAULTS.backlog, 511);
  assert.equal(CONFIG_DEFAULTS.upstream_defaults.idle_timeout_ms, 4000);
  assert.ok(CONFIG_DEFAULTS.upstream_defaults.idle_timeout_ms < 5000, "below Node's 5 s keep-alive");
});

describe('retry', () => {
  test("upstream_defaults.retry lies under each route's retry, field by field", () => {
    const config = parseConfig({
      upstream_defaults: { retry: { attempts: 3, statuses: [502, 503] } },
      routes: [
        { path: '/a', upstream: 'http://127.0.0.1:8080' },
        { path: '/b', upstream: 'http://127.0.0.1:8080', retry: { attempts: 1, per_try_timeout_ms: 250 } },
      ],
    });
    assert.deepStrictEqual(plain(config).routes[0].retry, {
      ...DEFAULT_RETRY,
      attempts: 3,
      statuses: [502, 503],
    });
    assert.deepStrictEqual(plain(config).routes[1].retry, {
      ...DEFAULT_RETRY,
      attempts: 1,
      statuses: [502, 503],
      per_try_timeout_ms: 250,
    });
  });

  test('bad retry settings name their JSON path', () => {
    assert.throws(
      () =>
        parseConfig({
          routes: [
            {
              path: '/',
              upstream: 'http://127.0.0.1:8080',
              retry: { attempts: 0, on: ['conect-failure'], statuses: [404], budget_percent: 120 },
            },
          ],
        }),
      (error: Error & { issues?: { message: string }[] }) => {
        assert.deepStrictEqual(
          error.issues?.map((i) => i.message),
          [
            'routes[0].retry.attempts: expected an integer from 1 to 10, found 0',
            'routes[0].retry.on[0]: expected one of connect-failure, refused-stream, reset, timeout, found "conect-failure"; did you mean "connect-failure"?',
            'routes[0].retry.statuses[0]: expected an integer from 500 to 599, found 404',
            'routes[0].retry.budget_percent: expected an integer from 0 to 100, found 120',
          ],
        );
        return true;
      },
    );
  });
});

describe('circuit_breaking', () => {
  test("upstream_defaults.circuit_breaking lies under each route's, field by field; null lifts a limit", () => {
    const config = parseConfig({
      upstream_defaults: { circuit_breaking: { max_requests: 100, max_retries: 2 } },
      routes: [
        { path: '/a', upstream: 'http://127.0.0.1:8080' },
        {
          path: '/b',
          upstream: 'http://127.0.0.1:8080',
          circuit_breaking: { max_requests: null, max_pending: 0, max_pending_per_target: 5 },
        },
      ],
    });
    assert.deepStrictEqual(plain(config).routes[0].circuit_breaking, {
      ...DEFAULT_BREAKING,
      max_requests: 100,
      max_retries: 2,
    });
    assert.deepStrictEqual(plain(config).routes[1].circuit_breaking, {
      ...DEFAULT_BREAKING,
      max_requests: null,
      max_pending: 0,
      max_retries: 2,
      max_pending_per_target: 5,
    });
  });
});

describe('health_check and outlier_detection', () => {
  const two = ['http://127.0.0.1:8081', 'http://127.0.0.1:8082'];

  test('no health_check anywhere: no active checks; outlier detection on with its defaults', () => {
    const route = parseConfig({ routes: [{ path: '/', upstream: two }] }).routes[0]!;
    assert.equal(route.health_check, null);
    assert.deepStrictEqual(
      plain(parseConfig({ routes: [{ path: '/', upstream: two }] })).routes[0].outlier_detection,
      DEFAULT_OUTLIER,
    );
  });

  test("upstream_defaults.health_check turns checks on for every route; a route's fields lay over it, false turns them off", () => {
    const config = parseConfig({
      upstream_defaults: {
        health_check: { path: '/healthz', interval_ms: 1000 },
        outlier_detection: { consecutive_failures: 2 },
      },
      routes: [
        { path: '/a', upstream: two },
        { path: '/b', upstream: two, health_check: { unhealthy_threshold: 1, expected_statuses: [204] } },
        {
          path: '/c',
          upstream: two,
          health_check: { enabled: false },
          outlier_detection: { enabled: false },
        },
      ],
    });
    const [a, b, c] = plain(config).routes;
    assert.deepStrictEqual(a.health_check, {
      path: '/healthz',
      method: 'GET',
      host: null,
      interval_ms: 1000,
      timeout_ms: 2000,
      jitter_ms: 0,
      healthy_threshold: 2,
      unhealthy_threshold: 3,
      expected_statuses: ['2xx', '3xx'],
      slow_start_ms: 0,
    });
    assert.equal(b.health_check.path, '/healthz');
    assert.equal(b.health_check.unhealthy_threshold, 1);
    assert.deepStrictEqual(b.health_check.expected_statuses, [204]);
    assert.equal(a.outlier_detection.consecutive_failures, 2);
    assert.equal(c.health_check, null);
    assert.equal(c.outlier_detection, null);
  });

  test('a route may check without upstream_defaults; panic_threshold_percent lays over like the other balancing fields', () => {
    const config = parseConfig({
      upstream_defaults: { load_balancing: { panic_threshold_percent: 20 } },
      routes: [
        {
          path: '/',
          upstream: two,
          health_check: { path: '/up' },
          load_balancing: { policy: 'least_request' },
        },
      ],
    });
    const route = config.routes[0]!;
    assert.equal(route.health_check?.path, '/up');
    assert.deepStrictEqual(
      { ...route.load_balancing },
      {
        policy: 'least_request',
        hash_key: 'client_ip',
        panic_threshold_percent: 20,
      },
    );
  });
});
