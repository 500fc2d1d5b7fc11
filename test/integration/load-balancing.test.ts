/**
 * `load_balancing` through the proxy, with real upstreams (docs/upstreams.md): weighted round robin
 * gives each target its share exactly; `hash` on a header keeps a tenant on one target over HTTP/1.1
 * and HTTP/2 alike; a backup target answers only when the primary one cannot (a retry after its
 * connection was refused), and `zproxy check` names bad balancing settings by their JSON path.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startNamedUpstream } from '../helpers/upstream.ts';

const upstreams: HttpUpstream[] = [];
let proxy: StartedProxy;
let dead: number;

before(async () => {
  for (const name of ['a', 'b', 'c']) upstreams.push(await startNamedUpstream(name));
  dead = await freePort();
  const [a, b, c] = upstreams.map((u) => u.url);
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [
      { path: '/weighted', upstream: [a, { url: b!, weight: 2 }, c] },
      {
        path: '/tenant',
        upstream: [a, b, c],
        load_balancing: { policy: 'hash', hash_key: 'header:x-tenant' },
      },
      // The dead primary stays in rotation (outlier detection off): each request meets it, then the backup.
      {
        path: '/spare',
        upstream: [`http://127.0.0.1:${dead}`, { url: c!, backup: true }],
        outlier_detection: { enabled: false },
      },
      { path: '/least', upstream: [a, b, c], load_balancing: { policy: 'least_request' } },
    ],
  });
});

after(async () => {
  await proxy.close();
  for (const u of upstreams) await u.close();
});

async function counts(
  path: string,
  n: number,
  headers: Record<string, string> = {},
): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const res = await sendRequest(proxy.port, path, { headers });
    assert.equal(res.status, 200);
    const name = res.text.split(' ')[0]!;
    seen[name] = (seen[name] ?? 0) + 1;
  }
  return seen;
}

describe('load balancing through the proxy', () => {
  test('round_robin with weights 1, 2, 1: exact shares', async () => {
    assert.deepEqual(await counts('/weighted', 200), { a: 50, b: 100, c: 50 });
  });

  test('hash on a header: each tenant stays on one target, over HTTP/1.1 and HTTP/2', async () => {
    const tenants = ['acme', 'globex', 'initech', 'umbrella', 'hooli', 'stark'];
    const where: Record<string, string> = {};
    for (const tenant of tenants) {
      const seen = await counts('/tenant', 10, { 'x-tenant': tenant });
      assert.equal(Object.keys(seen).length, 1, `${tenant} went to ${JSON.stringify(seen)}`);
      where[tenant] = Object.keys(seen)[0]!;
    }
    assert.ok(new Set(Object.values(where)).size > 1, 'tenants spread over several targets');
    const session = http2.connect(proxy.url);
    try {
      for (const tenant of tenants) {
        const res = await h2Request(session, { ':path': '/tenant', 'x-tenant': tenant });
        assert.equal(res.body.toString().split(' ')[0], where[tenant], `${tenant} over HTTP/2`);
      }
    } finally {
      session.close();
    }
  });

  test('a backup answers when the primary target refuses connections, and only then', async () => {
    const before = upstreams[2]!.requests.length;
    const seen = await counts('/spare', 6);
    assert.deepEqual(seen, { c: 6 });
    assert.equal(upstreams[2]!.requests.length - before, 6);
    const log = proxy.accessLogs().at(-1)!;
    assert.equal(log.attempts, 2, 'the primary was tried first');
  });

  test('least_request spreads idle requests over every target', async () => {
    const seen = await counts('/least', 60);
    assert.deepEqual(Object.keys(seen).sort(), ['a', 'b', 'c']);
  });
});

describe('configuration', () => {
  const route = (extra: Record<string, unknown>) => ({ routes: [{ path: '/', ...extra }] });

  test('bad balancing settings are named by their JSON path', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        route({ upstream: ['http://a:1'], load_balancing: { policy: 'fastest' } }),
        /routes\[0\]\.load_balancing\.policy: expected one of round_robin, least_request, random, hash/,
      ],
      [
        route({ upstream: ['http://a:1'], load_balancing: { policy: 'hash', hash_key: 'query' } }),
        /routes\[0\]\.load_balancing\.hash_key: expected client_ip, path, header:<name> or cookie:<name>/,
      ],
      [
        route({ upstream: [{ url: 'http://a:1', weight: 0 }] }),
        /routes\[0\]\.upstream\[0\]\.weight: expected an integer from 1 to 1000, found 0/,
      ],
      [
        route({ upstream: [{ url: 'http://a:1', backup: true }] }),
        /routes\[0\]\.upstream: expected at least one target that is not a backup, found only backup targets/,
      ],
      [route({ upstream: [{ url: 'ftp://a:1' }] }), /routes\[0\]\.upstream\[0\]\.url: expected an http/],
      [
        {
          ...route({ upstream: 'http://a:1' }),
          upstream_defaults: { load_balancing: { hash_key: 'header:' } },
        },
        /upstream_defaults\.load_balancing\.hash_key/,
      ],
    ];
    for (const [config, message] of cases) assert.throws(() => parseConfig(config), message);
  });

  test('upstream_defaults.load_balancing applies to routes that do not set their own', () => {
    const config = parseConfig({
      upstream_defaults: { load_balancing: { policy: 'least_request' } },
      routes: [
        { path: '/a', upstream: 'http://a:1' },
        { path: '/b', upstream: 'http://a:1', load_balancing: { policy: 'hash' } },
      ],
    });
    assert.deepEqual(
      config.routes.map((r) => r.load_balancing),
      [
        { policy: 'least_request', hash_key: 'client_ip', panic_threshold_percent: 50 },
        { policy: 'hash', hash_key: 'client_ip', panic_threshold_percent: 50 },
      ],
    );
  });
});
