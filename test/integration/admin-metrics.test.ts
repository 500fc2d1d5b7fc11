/**
 * The admin listener and the metrics (docs/operations.md), through the real CLI: one process, two worker
 * threads and two worker processes each answer /healthz, /readyz, /status and /metrics on the admin
 * address, refuse requests without the bearer token, and count exactly the requests sent, summed over the
 * workers (and kept when a worker thread crashes and is replaced). `promtool check metrics` finds no problem
 * in the exposition, and a real Prometheus server scrapes it and answers a query with the request count.
 * On SIGTERM, /readyz answers 503 while the listeners still serve for `shutdown_delay_ms`.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { errorCodeOf, type SimpleResponse, sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';
import { closed, openWs, startWsUpstream, type WsUpstream } from '../helpers/websocket.ts';

const TOKEN = 'test-admin-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';

/** Ends a worker thread on demand: /crash throws outside any request. */
const CRASH_FILTER = `export default {
  create() {
    return {
      onRequest(ctx) {
        if (ctx.request.path === '/crash') setImmediate(() => { throw new Error('crash test'); });
        return undefined;
      },
    };
  },
};
`;

let upstream: HttpUpstream;
let dir: string;

before(async () => {
  upstream = await startHttpUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
  });
  dir = mkdtempSync(join(tmpdir(), 'zproxy-admin-'));
  writeFileSync(join(dir, 'crash.mjs'), CRASH_FILTER);
});

after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Started {
  readonly cli: CliProcess;
  readonly port: number;
  readonly admin: number;
}

async function start(extra: Record<string, unknown>, routes?: unknown[]): Promise<Started> {
  const port = await freePort();
  const admin = await freePort();
  const cli = startCli({
    host: '127.0.0.1',
    port,
    protocols: ['http1', 'http2', 'websocket'],
    access_log: { enabled: true },
    shutdown_grace_ms: 2000,
    admin: { port: admin, token: TOKEN },
    routes: routes ?? [
      { path: '/api', upstream: upstream.url },
      { path: '/', upstream: upstream.url },
    ],
    ...extra,
  });
  await cli.waitForLog((l) => l.msg === 'ready' || (l.msg === 'listening' && l.worker === undefined), 20_000);
  return { cli, port, admin };
}

function adminGet(
  admin: number,
  path: string,
  headers: Record<string, string> = AUTH,
): Promise<SimpleResponse> {
  return sendRequest(admin, path, { headers });
}

/** The value of one series in an exposition (`name{labels}`), summed over matching lines; 0 when absent. */
function seriesSum(text: string, name: string, labelMatch: (labels: string) => boolean = () => true): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`not an exposition line: ${line}`);
    if (m[1] === name && labelMatch(m[2] ?? '')) sum += Number(m[3]);
  }
  return sum;
}

async function metricsText(admin: number): Promise<string> {
  const res = await adminGet(admin, '/metrics');
  assert.equal(res.status, 200, res.text);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return res.text;
}

/** Requests on new connections (spread over the workers by the kernel); asserts each is answered 200. */
async function sendMany(port: number, path: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await sendRequest(port, `${path}/${i}`);
    assert.equal(res.status, 200);
  }
}

function promtoolCheck(text: string): void {
  if (!existsSync('/usr/bin/promtool')) {
    if (inCi) assert.fail('promtool is not installed (Debian package prometheus)');
    return;
  }
  // Exit status 0 and nothing said: no problem found (a lint problem exits 3 and names it).
  const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(out.trim(), '');
}

interface StatusBody {
  version: string;
  uptime_seconds: number;
  config: { file: string; hash: string; loaded_at: string };
  reloads: { succeeded: number; failed: number };
  workers: { mode: string; configured: number; running: number; messages_received: number };
  connections: { http1: number };
  routes: { path: string; upstream: { url: string }[] }[];
}

/** Checks the endpoints every mode answers the same way. */
async function checkEndpoints(s: Started, mode: string, workers: number): Promise<void> {
  const health = await adminGet(s.admin, '/healthz');
  assert.equal(health.status, 200);
  assert.deepEqual(JSON.parse(health.text), { status: 'ok' });
  const ready = await adminGet(s.admin, '/readyz');
  assert.equal(ready.status, 200);

  const status = JSON.parse((await adminGet(s.admin, '/status')).text) as StatusBody;
  assert.match(status.version, /^\d+\.\d+\.\d+/);
  assert.equal(typeof status.uptime_seconds, 'number');
  assert.match(status.config.file, /zproxy\.json$/);
  assert.match(status.config.hash, /^[0-9a-f]{16}$/);
  assert.ok(!Number.isNaN(Date.parse(status.config.loaded_at)));
  const { messages_received: messages, ...running } = status.workers;
  assert.deepEqual(running, { mode, configured: workers, running: workers });
  // One process receives no message; the workers' own are a few each (listening, metric announcements,
  // snapshots for the scrapes of the tests before): test/integration/shared-state.test.ts counts them.
  if (mode === 'single') assert.equal(messages, 0);
  else assert.ok(messages >= workers, `messages received: ${messages}`);
  assert.deepEqual(
    status.routes.map((r) => [r.path, r.upstream[0]!.url]),
    [
      ['/api', upstream.url],
      ['/', upstream.url],
    ],
  );
  assert.equal(typeof status.connections.http1, 'number');

  // Without the token, or with another one: 401, whatever the endpoint.
  for (const path of ['/metrics', '/healthz', '/status', '/readyz']) {
    const none = await sendRequest(s.admin, path);
    assert.equal(none.status, 401);
    assert.equal(errorCodeOf(none), 'ZP_ERR_UNAUTHORIZED');
    assert.match(String(none.headers['www-authenticate']), /^Bearer/);
    const wrong = await adminGet(s.admin, path, { authorization: `Bearer ${TOKEN}x` });
    assert.equal(wrong.status, 401);
  }
  assert.equal((await sendRequest(s.admin, '/reload', { method: 'POST' })).status, 401);
  assert.equal((await adminGet(s.admin, '/reload')).status, 405);
  assert.equal((await adminGet(s.admin, '/nothing')).status, 404);
  // The admin endpoints are not served on the proxy's listener: /metrics there is routed like any path.
  const onProxy = await sendRequest(s.port, '/metrics', { headers: AUTH });
  assert.equal(onProxy.status, 200);
  assert.equal(onProxy.text, 'ok');
}

/** Sends 30 + 12 requests and checks the summed counts. */
async function checkCounts(s: Started): Promise<void> {
  const before = seriesSum(await metricsText(s.admin), 'zproxy_requests_total');
  await sendMany(s.port, '/api/x', 30);
  await sendMany(s.port, '/y', 12);
  const text = await metricsText(s.admin);
  promtoolCheck(text);
  const api = seriesSum(
    text,
    'zproxy_requests_total',
    (l) => l.includes('route="/api"') && l.includes('method="GET"') && l.includes('status="2xx"'),
  );
  assert.equal(api, 30);
  assert.equal(seriesSum(text, 'zproxy_requests_total') - before, 42);
  assert.equal(
    seriesSum(text, 'zproxy_request_duration_seconds_count', (l) => l === 'route="/api"'),
    30,
  );
  assert.equal(
    seriesSum(text, 'zproxy_request_duration_seconds_bucket', (l) => l === 'route="/api",le="+Inf"'),
    30,
  );
  // Every exchange went to the upstream once (the /metrics request on the proxy listener included).
  assert.equal(seriesSum(text, 'zproxy_upstream_requests_total'), seriesSum(text, 'zproxy_requests_total'));
  assert.equal(
    seriesSum(text, 'zproxy_upstream_response_seconds_count'),
    seriesSum(text, 'zproxy_requests_total'),
  );
  assert.ok(seriesSum(text, 'zproxy_upstream_connect_seconds_count') >= 1);
}

/**
 * POST /reload: the unchanged file reloads (200), a broken one is refused with its JSON path (422) and
 * changes nothing, so is a changed `admin` block; all are counted in /metrics and /status.
 */
async function checkReload(s: Started): Promise<void> {
  const status = JSON.parse((await adminGet(s.admin, '/status')).text) as StatusBody;
  const ok = await sendRequest(s.admin, '/reload', { method: 'POST', headers: AUTH, timeoutMs: 20_000 });
  assert.equal(ok.status, 200, ok.text);
  const body = JSON.parse(ok.text) as { ok: boolean; config_hash: string };
  assert.equal(body.ok, true);
  assert.equal(body.config_hash, status.config.hash);
  const file = status.config.file;
  const original = readFileSync(file, 'utf8');
  const broken = JSON.parse(original) as { routes: { path: string }[] };
  broken.routes[0]!.path = 'no-slash';
  writeFileSync(file, JSON.stringify(broken));
  try {
    const refused = await sendRequest(s.admin, '/reload', {
      method: 'POST',
      headers: AUTH,
      timeoutMs: 20_000,
    });
    assert.equal(refused.status, 422, refused.text);
    assert.equal(errorCodeOf(refused), 'ZP_ERR_CONFIG');
    const errors = (JSON.parse(refused.text) as { errors: string[] }).errors;
    assert.ok(
      errors.some((e) => e.startsWith('routes[0].path:')),
      errors.join('; '),
    );
    // The admin block cannot change while zproxy runs.
    const otherAdmin = JSON.parse(original) as { admin: { token: string } };
    otherAdmin.admin.token = `${TOKEN}-changed`;
    writeFileSync(file, JSON.stringify(otherAdmin));
    const fixed = await sendRequest(s.admin, '/reload', { method: 'POST', headers: AUTH, timeoutMs: 20_000 });
    assert.equal(fixed.status, 422, fixed.text);
    assert.match((JSON.parse(fixed.text) as { errors: string[] }).errors[0]!, /^admin: cannot change/);
  } finally {
    writeFileSync(file, original);
  }
  // The running config still serves.
  assert.equal((await sendRequest(s.port, '/after-reload')).status, 200);
  const text = await metricsText(s.admin);
  assert.equal(
    seriesSum(text, 'zproxy_reloads_total', (l) => l === 'result="success"'),
    1,
  );
  assert.equal(
    seriesSum(text, 'zproxy_reloads_total', (l) => l === 'result="failure"'),
    2,
  );
  const after = JSON.parse((await adminGet(s.admin, '/status')).text) as StatusBody;
  assert.deepEqual([after.reloads.succeeded, after.reloads.failed], [1, 2]);
}

describe('admin listener, one process (thread_count 1)', () => {
  let s: Started;
  before(async () => {
    s = await start({ thread_count: 1 });
  });
  after(() => s.cli.cleanup());

  test('endpoints, token and status', () => checkEndpoints(s, 'single', 1));
  test('/metrics counts the requests sent; promtool finds no problem', () => checkCounts(s));
  test('POST /reload reloads, refuses a broken file, and counts both', () => checkReload(s));

  test('HTTP/2 requests and the open HTTP/2 connection are counted', async () => {
    const client = http2.connect(`http://127.0.0.1:${s.port}`);
    try {
      for (let i = 0; i < 7; i++) {
        const res = await h2Request(client, { ':method': 'POST', ':path': `/api/h2/${i}` }, Buffer.from('x'));
        assert.equal(res.status, 200);
      }
      // The gauges are sampled once a second: the open HTTP/2 connection shows within two.
      let text = '';
      for (let i = 0; i < 30; i++) {
        text = await metricsText(s.admin);
        if (seriesSum(text, 'zproxy_downstream_connections', (l) => l === 'protocol="http2"') === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(
        seriesSum(text, 'zproxy_downstream_connections', (l) => l === 'protocol="http2"'),
        1,
      );
      assert.equal(
        seriesSum(
          text,
          'zproxy_requests_total',
          (l) => l === 'route="/api",method="POST",status="2xx",protocol="http2"',
        ),
        7,
      );
    } finally {
      client.close();
    }
  });
});

describe('filter outcomes and WebSocket tunnels', () => {
  let s: Started;
  let ws: WsUpstream;
  before(async () => {
    ws = await startWsUpstream();
    s = await start({ thread_count: 1 }, [
      { path: '/ws', upstream: ws.url },
      {
        path: '/auth',
        upstream: upstream.url,
        middlewares: [{ type: 'auth', config: { api_keys: [TOKEN] } }],
      },
      {
        path: '/limited',
        upstream: upstream.url,
        middlewares: [{ type: 'rate_limit', config: { requests_per_minute: 1, burst: 1 } }],
      },
      {
        path: '/cors',
        upstream: upstream.url,
        middlewares: [{ type: 'cors', config: { allowed_origins: ['https://app.example'] } }],
      },
      {
        path: '/cached',
        upstream: upstream.url,
        middlewares: [{ type: 'cache', config: { ttl_seconds: 60 } }],
      },
    ]);
  });
  after(async () => {
    await s.cli.cleanup();
    await ws.close();
  });

  test('a WebSocket handshake counts as a 1xx exchange; the open tunnel shows in the gauge', async () => {
    const client = await openWs(`ws://127.0.0.1:${s.port}/ws`);
    try {
      let text = '';
      for (let i = 0; i < 30; i++) {
        text = await metricsText(s.admin);
        if (seriesSum(text, 'zproxy_websocket_tunnels') === 1) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(seriesSum(text, 'zproxy_websocket_tunnels'), 1);
      assert.equal(
        seriesSum(
          text,
          'zproxy_requests_total',
          (l) => l === 'route="/ws",method="GET",status="1xx",protocol="http1"',
        ),
        1,
      );
    } finally {
      client.close();
      await closed(client);
    }
  });

  test('auth refusals, rate limiting, CORS refusals, cache hits and misses are counted by route', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await sendRequest(s.port, '/auth')).status, 401);
    assert.equal((await sendRequest(s.port, '/auth', { headers: { 'x-api-key': TOKEN } })).status, 200);
    const limited = [];
    for (let i = 0; i < 4; i++) limited.push((await sendRequest(s.port, '/limited')).status);
    const preflight = await sendRequest(s.port, '/cors', {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' },
    });
    assert.equal(preflight.status, 403);
    const cached = [];
    for (let i = 0; i < 3; i++) cached.push((await sendRequest(s.port, '/cached')).headers['cache-status']);
    const text = await metricsText(s.admin);
    promtoolCheck(text);
    const outcome = (route: string, name: string) =>
      seriesSum(text, 'zproxy_filter_outcomes_total', (l) => l === `route="${route}",outcome="${name}"`);
    assert.equal(outcome('/auth', 'auth_refused'), 3);
    assert.equal(outcome('/limited', 'rate_limited'), limited.filter((x) => x === 429).length);
    assert.ok(outcome('/limited', 'rate_limited') >= 2, `statuses ${limited.join(' ')}`);
    assert.equal(outcome('/cors', 'cors_refused'), 1);
    assert.equal(outcome('/cached', 'cache_miss'), 1, `Cache-Status ${cached.join(' | ')}`);
    assert.equal(outcome('/cached', 'cache_hit'), 2, `Cache-Status ${cached.join(' | ')}`);
    assert.equal(outcome('/cached', 'cache_stale'), 0);
    assert.equal(outcome('/auth', 'cache_hit') + outcome('/cached', 'auth_refused'), 0);
  });
});

describe('admin listener, two worker threads', () => {
  let s: Started;
  before(async () => {
    s = await start({ thread_count: 2, worker_mode: 'threads' }, [
      { path: '/api', upstream: upstream.url },
      { path: '/', upstream: upstream.url, middlewares: [{ type: 'module', path: join(dir, 'crash.mjs') }] },
    ]);
  });
  after(() => s.cli.cleanup());

  test('endpoints, token and status', () => checkEndpoints(s, 'threads', 2));

  test('POST /reload reloads, refuses a broken file, and counts both', () => checkReload(s));

  test('/metrics sums both workers: the counts equal the requests sent', async () => {
    await checkCounts(s);
    // Both workers served some of them (else the sum would prove nothing).
    const workers = new Set(s.cli.logs.filter((l) => l.msg === 'access').map((l) => l.worker));
    assert.deepEqual([...workers].sort(), [1, 2]);
  });

  test('a worker that crashes and is replaced leaves its counts in the sum', async () => {
    const before = seriesSum(await metricsText(s.admin), 'zproxy_requests_total');
    const exitsBefore = s.cli.logs.filter((l) => l.msg === 'worker exited').length;
    const logsBefore = s.cli.logs.length;
    await sendRequest(s.port, '/crash').catch(() => undefined);
    await waitUntil(
      () => s.cli.logs.filter((l) => l.msg === 'worker exited').length > exitsBefore,
      10_000,
      'a worker to exit',
    );
    await waitUntil(
      () => s.cli.logs.filter((l) => l.msg === 'worker started').length >= 3,
      10_000,
      'the worker to be replaced',
    );
    const afterCrash = seriesSum(await metricsText(s.admin), 'zproxy_requests_total');
    assert.ok(afterCrash >= before, `the count went back from ${before} to ${afterCrash}`);
    // Once the new worker listens, both serve again and the count goes on from there.
    await s.cli.waitForLog((l) => l.msg === 'listening' && s.cli.logs.indexOf(l) >= logsBefore, 10_000);
    await sendMany(s.port, '/after', 10);
    // The new worker's counters are announced to the main thread by message; the scrape waits for those
    // still on their way: one scrape counts every request the workers answered before it.
    const end = seriesSum(await metricsText(s.admin), 'zproxy_requests_total');
    assert.equal(end - afterCrash, 10);
    const status = JSON.parse((await adminGet(s.admin, '/status')).text) as { workers: { running: number } };
    assert.equal(status.workers.running, 2);
  });

  test('a real Prometheus server scrapes /metrics and a query returns the request count', async (t) => {
    if (!existsSync('/usr/bin/prometheus')) {
      if (inCi) assert.fail('prometheus is not installed (Debian package prometheus)');
      t.skip('prometheus is not installed');
      return;
    }
    await sendMany(s.port, '/prom', 25);
    const expected = seriesSum(await metricsText(s.admin), 'zproxy_requests_total', (l) =>
      l.startsWith('route="/"'),
    );
    const promDir = mkdtempSync(join(tmpdir(), 'zproxy-prometheus-'));
    const promPort = await freePort();
    writeFileSync(
      join(promDir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        'scrape_configs:',
        '  - job_name: zproxy',
        '    scrape_interval: 1s',
        '    scrape_timeout: 900ms',
        '    authorization:',
        '      type: Bearer',
        `      credentials: ${TOKEN}`,
        '    static_configs:',
        `      - targets: ['127.0.0.1:${s.admin}']`,
        '',
      ].join('\n'),
    );
    const prom: ChildProcess = spawn(
      '/usr/bin/prometheus',
      [
        `--config.file=${join(promDir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let promLog = '';
    prom.stderr!.on('data', (c: Buffer) => {
      promLog += c.toString();
    });
    const exited = new Promise<void>((resolve) => prom.once('exit', () => resolve()));
    try {
      const query = `sum(zproxy_requests_total{job="zproxy",route="/"})`;
      let value: number | null = null;
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        value = await promQuery(promPort, query).catch(() => null);
        if (value === expected) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      assert.equal(value, expected, `Prometheus answered ${value}; its log: ${promLog}`);
      // Prometheus saw the target up (the scrape succeeded with the token).
      assert.equal(await promQuery(promPort, 'up{job="zproxy"}'), 1);
    } finally {
      prom.kill('SIGTERM');
      await exited;
      rmSync(promDir, { recursive: true, force: true });
    }
  });
});

/** One instant query on Prometheus's HTTP API: the single sample's value, or null when there is none. */
function promQuery(port: number, query: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: `/api/v1/query?query=${encodeURIComponent(query)}` }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => {
          try {
            const parsed = JSON.parse(body) as { data?: { result?: { value: [number, string] }[] } };
            const result = parsed.data?.result ?? [];
            resolve(result.length === 0 ? null : Number(result[0]!.value[1]));
          } catch (error) {
            reject(error);
          }
        });
      })
      .on('error', reject);
  });
}

describe('admin listener, two worker processes', () => {
  let s: Started;
  before(async () => {
    s = await start({ thread_count: 2, worker_mode: 'processes' });
  });
  after(() => s.cli.cleanup());

  test('endpoints, token and status', () => checkEndpoints(s, 'processes', 2));

  test('POST /reload reloads, refuses a broken file, and counts both', () => checkReload(s));

  test('/metrics sums both worker processes: the counts equal the requests sent', async () => {
    await checkCounts(s);
    const workers = new Set(s.cli.logs.filter((l) => l.msg === 'access').map((l) => l.worker));
    assert.deepEqual([...workers].sort(), [1, 2]);
  });
});

describe('readiness on a graceful stop', () => {
  for (const mode of ['single', 'threads'] as const) {
    test(`${mode}: /readyz answers 503 at once on SIGTERM while the listeners still serve for shutdown_delay_ms`, async () => {
      const s = await start({ thread_count: mode === 'single' ? 1 : 2, shutdown_delay_ms: 1500 });
      try {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        assert.equal((await sendRequest(s.port, '/a', { agent })).status, 200);
        assert.equal((await adminGet(s.admin, '/readyz')).status, 200);
        s.cli.child.kill('SIGTERM');
        // The signal is delivered at once; the first /readyz after it may still race it.
        let ready = await adminGet(s.admin, '/readyz');
        for (let i = 0; i < 50 && ready.status !== 503; i++) ready = await adminGet(s.admin, '/readyz');
        assert.equal(ready.status, 503);
        assert.deepEqual(JSON.parse(ready.text), { status: 'draining' });
        // The graceful stop has not begun: the kept-alive connection and new ones are still served.
        assert.equal(
          s.cli.logs.some((l) => l.msg === 'stopping' || l.msg === 'stopping workers'),
          false,
        );
        assert.equal((await sendRequest(s.port, '/b', { agent })).status, 200);
        assert.equal((await sendRequest(s.port, '/c')).status, 200);
        agent.destroy();
        const { code } = await s.cli.exited;
        assert.equal(code, 0);
      } finally {
        await s.cli.cleanup();
      }
    });
  }
});
