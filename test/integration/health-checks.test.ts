/**
 * Upstream health through the proxy, with real upstreams (docs/upstreams.md, "Health"):
 * - active checks: a target whose check fails (or that is stopped, or hangs) is out of rotation within
 *   one interval and gets traffic again once it passes healthy_threshold checks; a backup takes the
 *   requests while no primary is up; below the panic threshold requests spread over every target;
 * - outlier detection: consecutive 5xx answers or refused connections eject a target, for a time that
 *   grows with each ejection; no client request fails when retries can go elsewhere;
 * - with worker threads and with worker processes, one checker for the instance (the target is asked
 *   once per interval, not once per worker) and every worker skips the target it marked down; /status
 *   shows the state.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CertDir } from '../helpers/certs.ts';
import { startCli } from '../helpers/cli-process.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream, startRawUpstream } from '../helpers/upstream.ts';

const INTERVAL = 200;
const TIMEOUT = 150;

/** The tests' active checks: quick, and one failed check takes a target out. */
function check(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    path: '/healthz',
    interval_ms: INTERVAL,
    timeout_ms: TIMEOUT,
    unhealthy_threshold: 1,
    ...overrides,
  };
}

interface Target {
  readonly name: string;
  upstream: HttpUpstream;
  /** The check path answers 503 while set. */
  sick: boolean;
  /** Every path but the check answers 503 while set. */
  failing: boolean;
  /** Requests that were not checks. */
  served: number;
  checks: number;
}

async function startTarget(name: string, port = 0): Promise<Target> {
  const t: Target = {
    name,
    upstream: undefined as unknown as HttpUpstream,
    sick: false,
    failing: false,
    served: 0,
    checks: 0,
  };
  t.upstream = await startHttpUpstream((req, res) => {
    if (req.url === '/healthz') {
      t.checks++;
      res.writeHead(t.sick ? 503 : 200, { 'content-length': '2' });
      res.end('ok');
      return;
    }
    t.served++;
    const body = t.name;
    res.writeHead(t.failing ? 503 : 200, { 'content-length': Buffer.byteLength(body) });
    res.end(body);
  }, port);
  return t;
}

/** Which target served each of `n` requests (new connections), and the statuses the client saw. */
async function spread(
  proxy: number,
  n: number,
  path = '/',
): Promise<{ by: Record<string, number>; statuses: number[] }> {
  const by: Record<string, number> = {};
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await sendRequest(proxy, path);
    statuses.push(res.status);
    if (res.status === 200) by[res.text] = (by[res.text] ?? 0) + 1;
  }
  return { by, statuses };
}

async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 3000,
): Promise<number> {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
  return Date.now() - t0;
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function started(targets: Target[], route: Record<string, unknown>): Promise<StartedProxy> {
  cleanups.push(async () => {
    for (const t of targets) await t.upstream.close();
  });
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: targets.map((t) => t.upstream.url), ...route }],
  });
  cleanups.push(() => proxy.close());
  return proxy;
}

function status(proxy: StartedProxy, t: Target) {
  return proxy.server.healthChecker!.targetStatus(
    proxy.config.routes[0]!,
    t.upstream.url.replace(/\/$/, ''),
  ) as {
    state: string;
    ejections: number;
  } | null;
}

describe('active health checks', () => {
  test('a target whose check fails is out within one interval, and back after healthy_threshold checks', async () => {
    const targets = [await startTarget('a'), await startTarget('b'), await startTarget('c')];
    const [, b] = targets as [Target, Target, Target];
    const proxy = await started(targets, {
      health_check: check({ healthy_threshold: 2 }),
      outlier_detection: { enabled: false },
    });
    await until('every target checked', () => targets.every((t) => t.checks >= 1));
    assert.deepEqual((await spread(proxy.port, 30)).by, { a: 10, b: 10, c: 10 });

    b.sick = true;
    const checksBefore = b.checks;
    const outAfter = await until('b marked down', () => status(proxy, b)?.state === 'down');
    assert.ok(outAfter <= INTERVAL + TIMEOUT, `down after ${outAfter} ms (interval ${INTERVAL} ms)`);
    assert.equal(b.checks, checksBefore + 1, 'one failed check was enough (unhealthy_threshold 1)');
    const servedBefore = b.served;
    const during = await spread(proxy.port, 30);
    assert.equal(b.served, servedBefore, 'no request reached the target that is down');
    assert.deepEqual(during.by, { a: 15, c: 15 });
    assert.ok(during.statuses.every((s) => s === 200));

    b.sick = false;
    const t0 = Date.now();
    await until('b up again', () => status(proxy, b)?.state === 'up');
    // Two good checks in a row: at least one interval after the first.
    assert.ok(Date.now() - t0 >= INTERVAL - 20, `up after ${Date.now() - t0} ms, before a second check`);
    const back = await spread(proxy.port, 30);
    assert.deepEqual(back.by, { a: 10, b: 10, c: 10 });
  });

  test('a target stopped mid-load: no client request fails, it is out within one interval, and comes back when it listens again', async () => {
    const targets = [await startTarget('a'), await startTarget('b')];
    const [, b] = targets as [Target, Target];
    const proxy = await started(targets, {
      health_check: check({ healthy_threshold: 1 }),
      outlier_detection: { enabled: false },
    });
    await until('every target checked', () => targets.every((t) => t.checks >= 1));
    const port = b.upstream.port;
    // Load while b stops: the connections refused meanwhile are retried on a.
    let stop = false;
    const statuses: number[] = [];
    const load = (async () => {
      while (!stop) statuses.push((await sendRequest(proxy.port, '/')).status);
    })();
    await sleep(100);
    await b.upstream.close();
    const outAfter = await until('b marked down', () => status(proxy, b)?.state === 'down');
    assert.ok(outAfter <= INTERVAL + TIMEOUT, `down after ${outAfter} ms`);
    await sleep(100);
    stop = true;
    await load;
    assert.ok(statuses.length > 20, `load ran (${statuses.length} requests)`);
    assert.deepEqual([...new Set(statuses)], [200], 'no client request failed');

    const again = await startTarget('b', port);
    targets[1] = again;
    await until('b up again', () => status(proxy, again)?.state === 'up', 2000);
    const back = await spread(proxy.port, 20);
    assert.deepEqual(back.by, { a: 10, b: 10 });
  });

  test('backup targets take the requests while no primary is up, and only then', async () => {
    const targets = [await startTarget('a'), await startTarget('b'), await startTarget('spare')];
    const [a, b] = targets as [Target, Target, Target];
    const checks = check({ healthy_threshold: 1 });
    cleanups.push(async () => {
      for (const t of targets) await t.upstream.close();
    });
    const proxy = await startProxy({
      routes: [
        {
          path: '/',
          upstream: [a.upstream.url, b.upstream.url, { url: targets[2]!.upstream.url, backup: true }],
          health_check: checks,
        },
      ],
    });
    cleanups.push(() => proxy.close());
    await until('every target checked', () => targets.every((t) => t.checks >= 1));
    assert.deepEqual((await spread(proxy.port, 20)).by, { a: 10, b: 10 });
    a.sick = true;
    await until('a down', () => status(proxy, a)?.state === 'down');
    assert.deepEqual((await spread(proxy.port, 20)).by, { b: 20 });
    b.sick = true;
    await until('b down', () => status(proxy, b)?.state === 'down');
    assert.deepEqual((await spread(proxy.port, 20)).by, { spare: 20 });
    a.sick = false;
    await until('a up', () => status(proxy, a)?.state === 'up');
    assert.deepEqual((await spread(proxy.port, 20)).by, { a: 20 });
  });
});

describe('targets that hang, and the panic threshold', () => {
  test('a target that accepts and never answers: its checks time out, it is out, and timeouts eject it too', async () => {
    const a = await startTarget('a');
    const silent = await startRawUpstream(() => {});
    cleanups.push(async () => {
      await a.upstream.close();
      await silent.close();
    });
    const proxy = await startProxy({
      upstream_defaults: { response_header_timeout_ms: 300 },
      routes: [
        {
          path: '/checked',
          upstream: [a.upstream.url, silent.url],
          health_check: check(),
          outlier_detection: { enabled: false },
        },
        {
          path: '/passive',
          upstream: [a.upstream.url, silent.url],
          outlier_detection: { consecutive_failures: 1 },
          retry: { on: ['connect-failure', 'timeout'] },
        },
      ],
    });
    cleanups.push(() => proxy.close());
    const checked = proxy.config.routes[0]!;
    const st = () =>
      proxy.server.healthChecker!.targetStatus(checked, silent.url) as {
        state: string;
        last_check_error: string;
      };
    await until('the silent target marked down', () => st().state === 'down', 2000);
    assert.match(st().last_check_error, new RegExp(`no answer within ${TIMEOUT} ms`));
    const { statuses } = await spread(proxy.port, 10, '/checked');
    assert.deepEqual([...new Set(statuses)], [200], 'no request waited on the silent target');
    // Passive: the first request that times out there ejects it (and is retried on a); then none waits.
    const t0 = Date.now();
    const first = await spread(proxy.port, 10, '/passive');
    assert.deepEqual([...new Set(first.statuses)], [200]);
    assert.ok(Date.now() - t0 < 300 * 2 + 500, 'at most one request waited for the header timeout');
    const passive = proxy.server.healthChecker!.targetStatus(proxy.config.routes[1]!, silent.url) as {
      state: string;
    };
    assert.equal(passive.state, 'ejected');
  });

  test('panic: with 3 of 4 targets failing their checks, requests spread over all 4 again', async () => {
    const targets = [
      await startTarget('a'),
      await startTarget('b'),
      await startTarget('c'),
      await startTarget('d'),
    ];
    const proxy = await started(targets, {
      health_check: check(),
      outlier_detection: { enabled: false },
      load_balancing: { panic_threshold_percent: 50 },
    });
    await until('every target checked', () => targets.every((t) => t.checks >= 1));
    targets[0]!.sick = true;
    targets[1]!.sick = true;
    await until(
      'a and b down',
      () => status(proxy, targets[0]!)?.state === 'down' && status(proxy, targets[1]!)?.state === 'down',
    );
    // 2 of 4 up is not below 50 %: c and d take everything.
    assert.deepEqual((await spread(proxy.port, 20)).by, { c: 10, d: 10 });
    targets[2]!.sick = true;
    await until('c down', () => status(proxy, targets[2]!)?.state === 'down');
    // 1 of 4 up: panic, every target gets its turn (their checks fail; they still serve).
    assert.deepEqual((await spread(proxy.port, 20)).by, { a: 5, b: 5, c: 5, d: 5 });
  });
});

describe('checks over every upstream protocol', () => {
  test('https (with the route CA), h2 and h2c targets are checked over their own protocol', async () => {
    const certs = new CertDir();
    const ca = certs.makeCa('ca', 'zproxy health CA');
    const leaf = certs.makeSigned('upstream', ['127.0.0.1', 'upstream.test'], ca);
    const key = readFileSync(leaf.key);
    const cert = readFileSync(leaf.cert);
    // One flag per server: its check answers 503 while set; every check is recorded with its protocol.
    const sick = { https: false, h2: false, h2c: false };
    const seen: string[] = [];
    // biome-ignore lint/suspicious/noExplicitAny: node:http and node:http2 compatibility requests alike
    const handler = (name: keyof typeof sick) => (req: any, res: any) => {
      if (req.url === '/healthz') seen.push(`${name} ${req.httpVersion} ${req.headers['user-agent']}`);
      res.writeHead(req.url === '/healthz' && sick[name] ? 503 : 200, { 'content-length': '2' });
      res.end(name.slice(0, 2));
    };
    const servers = {
      https: https.createServer({ key, cert }, handler('https')),
      h2: http2.createSecureServer({ key, cert }, handler('h2')),
      h2c: http2.createServer(handler('h2c')),
    };
    const ports: Record<string, number> = {};
    for (const [name, server] of Object.entries(servers)) {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      ports[name] = (server.address() as AddressInfo).port;
    }
    cleanups.push(async () => {
      for (const server of Object.values(servers)) {
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
      rmSync(certs.dir, { recursive: true, force: true });
    });
    const urls = {
      https: `https://127.0.0.1:${ports.https}`,
      h2: `h2://127.0.0.1:${ports.h2}`,
      h2c: `h2c://127.0.0.1:${ports.h2c}`,
    };
    const proxy = await startProxy({
      upstream_defaults: { tls: { ca_file: ca.cert } },
      routes: [
        {
          path: '/',
          upstream: Object.values(urls),
          health_check: check({ healthy_threshold: 1 }),
        },
      ],
    });
    cleanups.push(() => proxy.close());
    const route = proxy.config.routes[0]!;
    const state = (name: keyof typeof urls) =>
      (proxy.server.healthChecker!.targetStatus(route, urls[name]) as { state: string }).state;
    await until(
      'every target up',
      () => state('https') === 'up' && state('h2') === 'up' && state('h2c') === 'up',
    );
    assert.ok(
      seen.some((l) => l === 'https 1.1 zproxy-health-check'),
      seen.join('; '),
    );
    assert.ok(
      seen.some((l) => l === 'h2 2.0 zproxy-health-check'),
      seen.join('; '),
    );
    assert.ok(
      seen.some((l) => l === 'h2c 2.0 zproxy-health-check'),
      seen.join('; '),
    );
    for (const name of ['https', 'h2', 'h2c'] as const) {
      sick[name] = true;
      await until(`${name} down`, () => state(name) === 'down');
      sick[name] = false;
      await until(`${name} up again`, () => state(name) === 'up');
    }
  });
});

describe('outlier detection', () => {
  test('consecutive 5xx answers eject a target; the ejection ends, and the next one lasts longer', async () => {
    const targets = [await startTarget('a'), await startTarget('b')];
    const [, b] = targets as [Target, Target];
    b.failing = true;
    const proxy = await started(targets, {
      outlier_detection: { consecutive_failures: 3, base_ejection_ms: 400, max_ejection_ms: 5000 },
    });
    const first = await spread(proxy.port, 30);
    assert.equal(b.served, 3, 'b got requests until its third failure in a row');
    assert.equal(first.statuses.filter((s) => s === 503).length, 3);
    assert.equal(first.by.a, 27);
    const ejected = status(proxy, b)!;
    assert.equal(ejected.state, 'ejected');
    assert.equal(ejected.ejections, 1);
    const log = proxy.logs.find((l) => l.msg === 'upstream target ejected (outlier detection)');
    assert.equal(log?.ejection_ms, 400);

    await until('the ejection ends', () => status(proxy, b)?.state === 'up', 1000);
    await spread(proxy.port, 10);
    assert.equal(b.served, 6, 'back in rotation, it failed three times more');
    assert.equal(status(proxy, b)!.ejections, 2);
    const second = proxy.logs.filter((l) => l.msg === 'upstream target ejected (outlier detection)')[1];
    assert.equal(second?.ejection_ms, 800, 'the second ejection lasts twice the base');

    // Healthy again: once back, it serves and its run of failures is forgotten.
    b.failing = false;
    await until('the second ejection ends', () => status(proxy, b)?.state === 'up', 2000);
    const after = await spread(proxy.port, 20);
    assert.deepEqual(after.by, { a: 10, b: 10 });
  });

  test('refused connections eject a target; the client never sees them (retried on the other target)', async () => {
    const a = await startTarget('a');
    const dead = await freePort();
    cleanups.push(() => a.upstream.close());
    const proxy = await startProxy({
      routes: [
        {
          path: '/',
          upstream: [a.upstream.url, `http://127.0.0.1:${dead}`],
          outlier_detection: { consecutive_failures: 2 },
        },
      ],
    });
    cleanups.push(() => proxy.close());
    const { statuses } = await spread(proxy.port, 20);
    assert.deepEqual([...new Set(statuses)], [200]);
    const st = proxy.server.healthChecker!.targetStatus(
      proxy.config.routes[0]!,
      `http://127.0.0.1:${dead}`,
    ) as {
      state: string;
    };
    assert.equal(st.state, 'ejected');
    // Ejected after 2 refused connections: the rest went straight to a (no connection attempted).
    const retried = proxy.logs.filter((l) => l.kind === 'access' && Number(l.attempts ?? 1) > 1).length;
    assert.equal(retried, 2, 'two requests were retried, then the dead target was skipped');
  });
});

test('defaults: one of 4 targets killed under 64 concurrent keep-alive clients: no client request fails', async () => {
  const targets = [
    await startTarget('a'),
    await startTarget('b'),
    await startTarget('c'),
    await startTarget('d'),
  ];
  const proxy = await started(targets, {});
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let stop = false;
  const statuses = new Map<number, number>();
  const client = async () => {
    while (!stop) {
      const s = await new Promise<number>((resolve) => {
        http
          .get({ host: '127.0.0.1', port: proxy.port, path: '/x', agent }, (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          })
          .on('error', () => resolve(-1));
      });
      statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
  };
  const clients = Array.from({ length: 64 }, client);
  const b = targets[1]!;
  // Progress, not time, decides the phases (a loaded machine serves fewer requests per second): b has
  // served its share under the load, then it is killed while the load goes on for at least 700 ms and
  // 300 more answers.
  await until('b serving its share', () => b.served > 50, 20_000);
  b.upstream.server.closeAllConnections();
  b.upstream.server.close();
  const servedAtKill = b.served;
  const answeredAtKill = [...statuses.values()].reduce((a, n) => a + n, 0);
  await sleep(700);
  await until(
    '300 answers after the kill',
    () => [...statuses.values()].reduce((a, n) => a + n, 0) - answeredAtKill >= 300,
    20_000,
  );
  stop = true;
  await Promise.all(clients);
  agent.destroy();
  assert.deepEqual([...statuses.keys()], [200], `statuses: ${[...statuses].join(' ')}`);
  assert.ok(statuses.get(200)! > 350, `load ran (${statuses.get(200)} requests)`);
  assert.ok(servedAtKill > 50, 'b served its share before');
  assert.equal(status(proxy, b)?.state, 'ejected', 'outlier detection took b out');
  const failedOver = proxy.accessLogs().filter((l) => Number(l.attempts) > 1).length;
  assert.ok(failedOver >= 1, 'requests that met b were sent to another target');
});

describe('with workers', () => {
  for (const mode of ['threads', 'processes'] as const)
    test(`${mode}: one checker for the instance; every worker skips the target it marked down; /status shows it`, async () => {
      const targets = [await startTarget('a'), await startTarget('b')];
      const [, b] = targets as [Target, Target];
      cleanups.push(async () => {
        for (const t of targets) await t.upstream.close();
      });
      const port = await freePort();
      const admin = await freePort();
      const cli = startCli({
        host: '127.0.0.1',
        port,
        thread_count: 2,
        worker_mode: mode,
        access_log: { enabled: false },
        admin: { port: admin },
        routes: [
          {
            path: '/',
            upstream: targets.map((t) => t.upstream.url),
            health_check: check(),
          },
        ],
      });
      cleanups.push(() => cli.cleanup());
      await cli.waitForLog((l) => l.msg === 'ready', 15_000, 'ready');
      const c0 = b.checks;
      await sleep(1000);
      const perSecond = b.checks - c0;
      // One checker: about 1000 / 200 = 5 checks a second (two checkers would make about 10).
      assert.ok(perSecond >= 3 && perSecond <= 6, `${perSecond} checks of b in one second`);

      b.sick = true;
      await until('b down in /status', async () => {
        const s = JSON.parse(await get(admin, '/status')) as {
          routes: { upstream: { url: string; health: { state: string } | null }[] }[];
        };
        return s.routes[0]!.upstream.find((u) => u.url === b.upstream.url)?.health?.state === 'down';
      });
      const servedBefore = b.served;
      // New connections: the kernel spreads them over both workers.
      const { by, statuses } = await spread(port, 40);
      assert.deepEqual([...new Set(statuses)], [200]);
      assert.equal(b.served, servedBefore, 'no worker sent a request to b');
      assert.equal(by.a, 40);
    });
});

function get(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve(text));
      })
      .on('error', reject);
  });
}
