/**
 * `zproxy explain` as a test oracle: for every case of the table, explain predicts what zproxy does with a
 * request, then the test sends that very request (the head explain parsed, byte for byte) through a real
 * zproxy with the same config to real upstreams, and checks that the prediction is what happened: the
 * status the client got (404, 405 with its Allow, 400) or, for a forwarded request, which upstream got it
 * and the method, path and every field line it received, in order (Host, X-Forwarded-*, Via, what was
 * dropped).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Explanation, explainConfig, formatExplanation } from '../../src/cli/explain.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Answer {
  status: number;
  fields: [string, string][];
}

/** Sends a raw request head from `localAddress` and reads one response (framed by Content-Length). */
function send(port: number, head: string, localAddress: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    let data = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return;
      const lines = data.subarray(0, end).toString('latin1').split('\r\n');
      const fields = lines.slice(1).map((line): [string, string] => {
        const colon = line.indexOf(':');
        return [line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim()];
      });
      const length = Number(fields.find(([name]) => name === 'content-length')?.[1] ?? 0);
      if (data.length < end + 4 + length) return;
      socket.destroy();
      resolve({ status: Number(lines[0]!.split(' ')[1]), fields });
    });
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer in 5 s')));
    socket.write(head, 'latin1');
  });
}

/** A recorded request's fields as [name, value] pairs, names as they arrived. */
function pairs(raw: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

/**
 * The fields a real upstream got, with the ids of the trace zproxy started written as explain names them
 * (each request gets new random ids; their shape is checked here).
 */
function randomIdsOut(fields: readonly (readonly [string, string])[]): [string, string][] {
  return fields.map(([name, value]): [string, string] => {
    if (name.toLowerCase() !== 'traceparent') return [name, value];
    assert.match(value, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    return [name, '00-{new trace id}-{new span id}-01'];
  });
}

interface Case {
  readonly name: string;
  readonly method: string;
  /** Path and query; the URL's authority is the proxy's 127.0.0.1:port. */
  readonly target: string;
  readonly fields?: [string, string][];
  readonly from?: string;
  /** What explain must say (the real request then has to agree with it). */
  readonly expect: { status: number | null; route?: number; upstream?: 'a' | 'b' | 'c'; path?: string };
}

const CASES: Case[] = [
  {
    name: 'a route with a param',
    method: 'GET',
    target: '/api/users/42?full=1',
    expect: { status: null, route: 0, upstream: 'a', path: '/api/users/42?full=1' },
  },
  { name: 'no route: 404', method: 'GET', target: '/nothing', expect: { status: 404 } },
  {
    name: 'a method the route does not allow: 405 with Allow',
    method: 'DELETE',
    target: '/api/users/42',
    expect: { status: 405 },
  },
  {
    name: 'a host wildcard matches a subdomain',
    method: 'GET',
    target: '/shop/cart',
    fields: [['Host', 'shop.example.test']],
    expect: { status: null, route: 2, upstream: 'a', path: '/shop/cart' },
  },
  {
    name: 'a host wildcard does not match the bare domain: 404',
    method: 'GET',
    target: '/shop/cart',
    fields: [['Host', 'example.test']],
    expect: { status: 404 },
  },
  {
    name: 'an exact host and a method list',
    method: 'POST',
    target: '/orders',
    fields: [
      ['Host', 'API.example.test:8443'],
      ['Content-Length', '0'],
    ],
    expect: { status: null, route: 3, upstream: 'b', path: '/orders' },
  },
  {
    name: 'the exact host route does not allow GET: the wildcard host route takes it',
    method: 'GET',
    target: '/orders',
    fields: [['Host', 'api.example.test']],
    expect: { status: null, route: 2, upstream: 'a', path: '/orders' },
  },
  {
    name: 'an exact host whose only route does not allow the method: 405',
    method: 'GET',
    target: '/pay',
    fields: [['Host', 'pay.other.test']],
    expect: { status: 405 },
  },
  {
    name: 'strip_prefix, and the first of two round-robin targets',
    method: 'GET',
    target: '/static/css/site.css?v=3',
    expect: { status: null, route: 1, upstream: 'b', path: '/css/site.css?v=3' },
  },
  {
    name: 'dot segments are resolved before routing',
    method: 'GET',
    target: '/static/../api/users/7',
    expect: { status: null, route: 0, upstream: 'a', path: '/api/users/7' },
  },
  { name: 'a malformed escape: 400', method: 'GET', target: '/api/%zz', expect: { status: 400 } },
  {
    name: 'forwarding fields from an untrusted client are replaced or dropped, hop-by-hop fields dropped',
    method: 'GET',
    target: '/api/users/1',
    fields: [
      ['X-Forwarded-For', '203.0.113.9'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', 'evil.test'],
      ['Forwarded', 'for=203.0.113.9'],
      ['X-Real-IP', '203.0.113.9'],
      ['Via', '1.1 edge'],
      ['Connection', 'keep-alive, X-Secret'],
      ['X-Secret', 'hop'],
      ['Keep-Alive', 'timeout=5'],
      ['Accept', 'application/json'],
    ],
    expect: { status: null, route: 0, upstream: 'a', path: '/api/users/1' },
  },
  {
    name: 'a client in trusted_proxies: its X-Forwarded-* are appended to and kept, Forwarded passes',
    method: 'GET',
    target: '/api/users/1',
    from: '127.0.0.2',
    fields: [
      ['X-Forwarded-For', '203.0.113.9'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', 'www.example.test'],
      ['Forwarded', 'for=203.0.113.9;proto=https'],
    ],
    expect: { status: null, route: 0, upstream: 'a', path: '/api/users/1' },
  },
];

for (const preserveHost of [true, false])
  describe(`zproxy explain agrees with a real zproxy (preserve_host ${preserveHost})`, () => {
    let a: HttpUpstream;
    let b: HttpUpstream;
    let c: HttpUpstream;
    let proxy: StartedProxy;
    let config: Record<string, unknown>;
    let dir: string;
    let configFile: string;

    before(async () => {
      [a, b, c] = await Promise.all([startHttpUpstream(), startHttpUpstream(), startHttpUpstream()]);
      const port = await freePort();
      config = {
        host: '127.0.0.1',
        port,
        thread_count: 1,
        preserve_host: preserveHost,
        trusted_proxies: ['127.0.0.2/32'],
        middlewares: [{ type: 'cors', config: { allowed_origins: ['https://app.example.test'] } }],
        routes: [
          { path: '/api/users/:id', upstream: a.url, methods: ['GET'] },
          { path: '/static', upstream: [b.url, c.url], strip_prefix: true },
          { path: '/', host: '*.example.test', upstream: a.url },
          { path: '/orders', host: 'api.example.test', upstream: b.url, methods: ['POST'] },
          { path: '/pay', host: 'pay.other.test', upstream: b.url, methods: ['POST'] },
        ],
      };
      proxy = await startProxy(config);
      dir = mkdtempSync(join(tmpdir(), 'zproxy-explain-'));
      configFile = join(dir, 'zproxy.json');
      writeFileSync(configFile, JSON.stringify(config));
    });

    after(async () => {
      await proxy?.close();
      await Promise.all([a?.close(), b?.close(), c?.close()]);
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    const upstreams = () => ({ a, b, c });

    for (const k of CASES) {
      test(k.name, async () => {
        const from = k.from ?? '127.0.0.1';
        const e = await explainConfig(parseConfig(config), configFile, {
          method: k.method,
          url: `http://127.0.0.1:${proxy.port}${k.target}`,
          fields: k.fields ?? [],
          clientAddress: from,
        });
        // The prediction is what the case expects...
        assert.equal(e.status, k.expect.status, e.reason);
        assert.equal(e.listener?.index, 0);
        if (k.expect.route !== undefined) assert.equal(e.route?.index, k.expect.route);
        if (k.expect.upstream !== undefined)
          assert.equal(e.upstream?.first, upstreams()[k.expect.upstream].url);
        if (k.expect.path !== undefined) assert.equal(e.upstream_request?.path, k.expect.path);

        // ...and what a real zproxy does with the same bytes.
        const before = { a: a.requests.length, b: b.requests.length, c: c.requests.length };
        const answer = await send(proxy.port, e.request.head, from);
        const arrived = (Object.keys(before) as ('a' | 'b' | 'c')[]).filter(
          (name) => upstreams()[name].requests.length > before[name],
        );
        if (e.status !== null) {
          assert.equal(answer.status, e.status);
          assert.deepEqual(arrived, [], 'no upstream got the request');
          const allow = answer.fields.find(([name]) => name === 'allow')?.[1] ?? null;
          assert.equal(allow, e.allow);
          return;
        }
        assert.equal(answer.status, 200);
        const name = (['a', 'b', 'c'] as const).find((n) => upstreams()[n].url === e.upstream!.first)!;
        assert.deepEqual(arrived, [name]);
        const got = upstreams()[name].requests.at(-1)!;
        const predicted = e.upstream_request!;
        assert.equal(got.method, predicted.method);
        assert.equal(got.url, predicted.path);
        assert.deepEqual(randomIdsOut(pairs(got.rawHeaders)), predicted.fields);
      });
    }

    test('the forwarding fields and dropped fields are spelled out', async () => {
      const untrusted = CASES.find((k) => k.name.startsWith('forwarding fields'))!;
      const e = await explainConfig(parseConfig(config), configFile, {
        method: untrusted.method,
        url: `http://127.0.0.1:${proxy.port}${untrusted.target}`,
        fields: untrusted.fields!,
        clientAddress: '127.0.0.1',
      });
      const field = (n: string) => e.upstream_request!.fields.filter(([name]) => name.toLowerCase() === n);
      assert.deepEqual(field('x-forwarded-for'), [['X-Forwarded-For', '127.0.0.1']]);
      assert.deepEqual(field('x-forwarded-proto'), [['X-Forwarded-Proto', 'http']]);
      assert.deepEqual(field('x-forwarded-host'), [['X-Forwarded-Host', `127.0.0.1:${proxy.port}`]]);
      // With preserve_host (the default) the client's Host line is forwarded as it came, else the target's.
      assert.deepEqual(field('host'), [
        ['Host', preserveHost ? `127.0.0.1:${proxy.port}` : `127.0.0.1:${a.port}`],
      ]);
      assert.deepEqual(field('via'), [
        ['Via', '1.1 edge'],
        ['Via', '1.1 zproxy'],
      ]);
      assert.deepEqual(
        e.upstream_request!.dropped.map((d) => d.name).sort(),
        [
          'Connection',
          'Forwarded',
          ...(preserveHost ? [] : ['Host']),
          'Keep-Alive',
          'X-Forwarded-For',
          'X-Forwarded-Host',
          'X-Forwarded-Proto',
          'X-Real-IP',
          'X-Secret',
        ].sort(),
      );
      assert.equal(e.request.client_trusted, false);
      assert.deepEqual(
        e.filters.map((f) => [f.type, f.where]),
        [['cors', 'middlewares[0]']],
      );
    });

    test('round_robin: the next request of the route goes to the second target', async () => {
      const e = await explainConfig(parseConfig(config), configFile, {
        method: 'GET',
        url: `http://127.0.0.1:${proxy.port}/static/x`,
        fields: [],
        clientAddress: '127.0.0.1',
      });
      assert.equal(e.upstream!.selection, 'round_robin');
      assert.deepEqual(
        e.upstream!.targets.map((t) => t.url),
        [b.url, c.url],
      );
      // The table's strip_prefix case sent the route's first request (to b); this one goes to c.
      const before = c.requests.length;
      assert.equal((await send(proxy.port, e.request.head, '127.0.0.1')).status, 200);
      assert.equal(c.requests.length, before + 1);
    });

    test('the command line prints the explanation as JSON', () => {
      const r = spawnSync(
        process.execPath,
        [
          join(ROOT, 'src/cli/main.ts'),
          'explain',
          configFile,
          'GET',
          `http://127.0.0.1:${proxy.port}/static/../api/users/7`,
          '-H',
          'Accept: text/plain',
          '--json',
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      const e = JSON.parse(r.stdout) as Explanation;
      assert.equal(e.route?.index, 0);
      assert.equal(e.upstream_request?.path, '/api/users/7');
      const host = preserveHost ? `127.0.0.1:${proxy.port}` : `127.0.0.1:${a.port}`;
      assert.deepEqual(e.upstream_request!.fields, [
        ...(preserveHost ? [['Host', host]] : []),
        ['Accept', 'text/plain'],
        ['X-Forwarded-For', '127.0.0.1'],
        ['X-Forwarded-Proto', 'http'],
        ['X-Forwarded-Host', `127.0.0.1:${proxy.port}`],
        ['Via', '1.1 zproxy'],
        ['traceparent', '00-{new trace id}-{new span id}-01'],
        ...(preserveHost ? [] : [['Host', host]]),
      ]);
    });
  });

test('explain names the route health checks, outlier detection, circuit-breaking limits and request buffering', async () => {
  const config = parseConfig({
    upstream_defaults: { circuit_breaking: { max_requests: 100 } },
    routes: [
      {
        path: '/',
        upstream: [
          'http://127.0.0.1:8081',
          'http://127.0.0.1:8082',
          { url: 'http://127.0.0.1:8083', backup: true },
        ],
        health_check: { path: '/healthz', interval_ms: 2000 },
        outlier_detection: { consecutive_failures: 3 },
        request_buffering: { max_bytes: 65536 },
      },
    ],
  });
  const e = await explainConfig(config, join(tmpdir(), 'zproxy.json'), {
    method: 'GET',
    url: 'http://example.test/x',
    fields: [],
    clientAddress: '127.0.0.1',
  });
  const u = e.upstream!;
  assert.deepEqual(u.health_check, { method: 'GET', path: '/healthz', interval_ms: 2000 });
  assert.deepEqual(u.outlier_detection, { consecutive_failures: 3 });
  assert.equal(u.circuit_breaking.max_requests, 100);
  assert.equal(u.request_buffering_max_bytes, 65536);
  const text = formatExplanation(e);
  assert.match(text, /health checks: GET \/healthz every 2000 ms/);
  assert.match(text, /outlier detection: 3 failures in a row eject a target/);
  assert.match(text, /circuit breaking \(per worker\): max_requests 100, max_pending 1024/);
  assert.match(text, /request buffering: bodies up to 65536 bytes/);
  assert.ok(e.notes.some((n) => n.includes('while no primary target is up')));
});
