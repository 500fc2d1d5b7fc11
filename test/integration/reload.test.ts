/**
 * A reload of one ProxyServer (ProxyServer.prepareReload / commitReload / reload): new routes for the
 * next request on connections already open (HTTP/1.1 keep-alive, HTTP/2), exchanges in progress finish on
 * the runtime they began with, WebSocket tunnels stay open, unchanged filters keep their state, an edited
 * user module is loaded anew, pools of unchanged targets are kept and removed ones closed, listeners are
 * added and removed, and a reload that cannot be prepared changes nothing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import tls from 'node:tls';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { CertDir } from '../helpers/certs.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { startProxy } from '../helpers/proxy.ts';
import { startRedis } from '../helpers/redis.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { startNamedUpstream } from '../helpers/upstream.ts';
import { nextMessage, openWs, startWsUpstream } from '../helpers/websocket.ts';

/** A config as the test proxies start with (127.0.0.1, port 0, one thread) with `changes`. */
function configOf(changes: Record<string, unknown>): Config {
  return parseConfig({ host: '127.0.0.1', port: 0, thread_count: 1, ...changes });
}

const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

describe('reload of one server', () => {
  test('keep-alive connections get the new routes on their next request; removed routes answer 404', async () => {
    const a = await startNamedUpstream('a');
    const b = await startNamedUpstream('b');
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const proxy = await startProxy({ routes: [{ path: '/a', upstream: [a.url] }] });
    closers.push(() => proxy.close());
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(async () => agent.destroy());
    assert.equal((await sendRequest(proxy.port, '/a/1', { agent })).text, 'a /a/1');
    await proxy.server.reload(configOf({ routes: [{ path: '/b', upstream: [b.url] }] }));
    const onSame = await sendRequest(proxy.port, '/b/2', { agent });
    assert.equal(onSame.text, 'b /b/2');
    assert.equal((await sendRequest(proxy.port, '/a/3', { agent })).status, 404);
    // One connection served all three requests: the reload closed nothing.
    assert.equal(proxy.accessLogs().length, 3);
    assert.equal(
      Object.values(agent.sockets).flat().length + Object.values(agent.freeSockets).flat().length,
      1,
    );
  });

  test('an exchange in progress finishes on the runtime it began with', async () => {
    const slow = await startNamedUpstream('slow', 300);
    const fast = await startNamedUpstream('fast');
    closers.push(
      () => slow.close(),
      () => fast.close(),
    );
    const proxy = await startProxy({ routes: [{ path: '/', upstream: [slow.url] }] });
    closers.push(() => proxy.close());
    const inFlight = sendRequest(proxy.port, '/x');
    await waitUntil(() => slow.requests.length === 1, 2000, 'the slow request at its upstream');
    const old = proxy.server.runtime;
    await proxy.server.reload(configOf({ routes: [{ path: '/', upstream: [fast.url] }] }));
    assert.notEqual(proxy.server.runtime, old);
    assert.equal(old.use.exchanges, 1, 'the old runtime still has its exchange');
    assert.equal((await sendRequest(proxy.port, '/y')).text, 'fast /y');
    assert.equal((await inFlight).text, 'slow /x');
    assert.equal(old.use.exchanges, 0);
  });

  test('an HTTP/2 connection stays open and its next stream uses the new routes', async () => {
    const a = await startNamedUpstream('a');
    const b = await startNamedUpstream('b');
    closers.push(
      () => a.close(),
      () => b.close(),
    );
    const proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: [a.url] }],
    });
    closers.push(() => proxy.close());
    const client = http2.connect(proxy.url);
    closers.push(async () => client.close());
    const first = await h2Request(client, { ':path': '/one' });
    assert.equal(first.body.toString(), 'a /one');
    await proxy.server.reload(
      configOf({ protocols: ['http1', 'http2'], routes: [{ path: '/', upstream: [b.url] }] }),
    );
    const second = await h2Request(client, { ':path': '/two' });
    assert.equal(second.body.toString(), 'b /two');
    assert.equal(client.closed, false);
  });

  test('a WebSocket tunnel stays open across reloads and keeps carrying messages', async () => {
    const ws = await startWsUpstream();
    const other = await startNamedUpstream('other');
    closers.push(
      () => ws.close(),
      () => other.close(),
    );
    const proxy = await startProxy({
      protocols: ['http1', 'websocket'],
      routes: [{ path: '/ws', upstream: [ws.url] }],
    });
    closers.push(() => proxy.close());
    const client = await openWs(`ws://127.0.0.1:${proxy.port}/ws`);
    closers.push(async () => client.terminate());
    let closedEarly = false;
    client.on('close', () => {
      closedEarly = true;
    });
    for (let i = 0; i < 3; i++) {
      await proxy.server.reload(
        configOf({
          protocols: ['http1', 'websocket'],
          routes: [
            { path: '/ws', upstream: [ws.url] },
            { path: `/r${i}`, upstream: [other.url] },
          ],
        }),
      );
      const echoed = nextMessage(client);
      client.send(`m${i}`);
      assert.equal((await echoed).data.toString(), `m${i}`);
    }
    assert.equal(closedEarly, false);
    assert.equal((await sendRequest(proxy.port, '/r2/z')).text, 'other /r2/z');
  });

  test('an unchanged filter is taken over with its state; a changed one is built anew', async () => {
    const up = await startNamedUpstream('up');
    closers.push(() => up.close());
    const limit = { type: 'rate_limit', config: { requests_per_minute: 3, burst: 2, key: 'route' } };
    const routes = (extra: Record<string, unknown>[]) => [
      { path: '/limited', upstream: [up.url], middlewares: [limit] },
      ...extra,
    ];
    const proxy = await startProxy({ routes: routes([]) });
    closers.push(() => proxy.close());
    const filter = proxy.server.runtime.chains[0]!.filters[0];
    for (let i = 0; i < 2; i++) assert.equal((await sendRequest(proxy.port, '/limited')).status, 200);
    await proxy.server.reload(configOf({ routes: routes([{ path: '/other', upstream: [up.url] }]) }));
    assert.equal(proxy.server.runtime.chains[0]!.filters[0], filter, 'the same filter object');
    assert.equal((await sendRequest(proxy.port, '/limited')).status, 200);
    assert.equal(
      (await sendRequest(proxy.port, '/limited')).status,
      429,
      'the count went on across the reload',
    );
    const changed = { type: 'rate_limit', config: { requests_per_minute: 100, burst: 99, key: 'route' } };
    await proxy.server.reload(
      configOf({ routes: [{ path: '/limited', upstream: [up.url], middlewares: [changed] }] }),
    );
    assert.notEqual(proxy.server.runtime.chains[0]!.filters[0], filter);
    assert.equal((await sendRequest(proxy.port, '/limited')).status, 200);
  });

  test('an edited user filter module is loaded anew and its old filter closed', async () => {
    const up = await startNamedUpstream('up');
    closers.push(() => up.close());
    const dir = mkdtempSync(join(tmpdir(), 'zproxy-reload-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'stamp.ts');
    const source = (version: string) => `
      export default {
        create() {
          return {
            onRequest(ctx) { ctx.responseHeaders.set('x-filter-version', '${version}'); },
            close() { globalThis.__zproxyClosed = [...(globalThis.__zproxyClosed ?? []), '${version}']; },
          };
        },
      };
    `;
    writeFileSync(file, source('one'));
    const routes = [{ path: '/', upstream: [up.url], middlewares: [{ type: 'module', path: file }] }];
    const proxy = await startProxy({ routes });
    closers.push(() => proxy.close());
    assert.equal((await sendRequest(proxy.port, '/')).headers['x-filter-version'], 'one');
    await proxy.server.reload(configOf({ routes }));
    assert.equal((await sendRequest(proxy.port, '/')).headers['x-filter-version'], 'one');
    writeFileSync(file, source('two'));
    await proxy.server.reload(configOf({ routes }));
    assert.equal((await sendRequest(proxy.port, '/')).headers['x-filter-version'], 'two');
    const closedVersions = () => (globalThis as { __zproxyClosed?: string[] }).__zproxyClosed ?? [];
    await waitUntil(() => closedVersions().includes('one'), 2000, 'the old filter closed');
    assert.equal(closedVersions().includes('two'), false);
  });

  test('Redis stores: an unchanged one keeps its connection and counters; a removed one is closed', async () => {
    const up = await startNamedUpstream('up');
    const redis = await startRedis();
    const admin = new Redis(redis.url);
    closers.push(
      () => up.close(),
      () => redis.stop(),
      async () => admin.disconnect(),
    );
    const clients = async () =>
      String(await admin.client('LIST'))
        .trim()
        .split('\n').length - 1; // the admin connection itself is not counted
    const limited = {
      path: '/limited',
      upstream: [up.url],
      middlewares: [
        {
          type: 'rate_limit',
          config: { requests_per_minute: 3, burst: 2, key: 'route', store: 'redis', redis_url: redis.url },
        },
      ],
    };
    const proxy = await startProxy({ routes: [limited] });
    closers.push(() => proxy.close());
    for (let i = 0; i < 2; i++) assert.equal((await sendRequest(proxy.port, '/limited')).status, 200);
    assert.equal(await clients(), 1);
    await proxy.server.reload(configOf({ routes: [limited, { path: '/plain', upstream: [up.url] }] }));
    assert.equal((await sendRequest(proxy.port, '/limited')).status, 200);
    assert.equal((await sendRequest(proxy.port, '/limited')).status, 429, 'the counter went on');
    assert.equal(await clients(), 1, 'the same Redis connection');
    await proxy.server.reload(configOf({ routes: [{ path: '/plain', upstream: [up.url] }] }));
    const end = Date.now() + 3000;
    while ((await clients()) > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    assert.equal(await clients(), 0, 'the removed store closed its Redis connection');
  });

  test('the pool of an unchanged target is kept; a removed target is closed once idle', async () => {
    const kept = await startNamedUpstream('kept');
    const removed = await startNamedUpstream('removed');
    closers.push(
      () => kept.close(),
      () => removed.close(),
    );
    const proxy = await startProxy({
      routes: [
        { path: '/kept', upstream: [kept.url] },
        { path: '/removed', upstream: [removed.url] },
      ],
    });
    closers.push(() => proxy.close());
    await sendRequest(proxy.port, '/kept');
    await sendRequest(proxy.port, '/removed');
    const open = (server: http.Server) =>
      new Promise<number>((resolve) => server.getConnections((_e, count) => resolve(count)));
    assert.equal(await open(removed.server), 1, 'the pooled connection to the target to remove');
    await proxy.server.reload(configOf({ routes: [{ path: '/kept', upstream: [kept.url] }] }));
    const end = Date.now() + 2000;
    while ((await open(removed.server)) > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await open(removed.server), 0, "the removed target's connection was closed");
    await sendRequest(proxy.port, '/kept');
    assert.equal(kept.connections, 1, 'the kept target was reached over its pooled connection');
  });

  test('listeners are added and removed; a removed listener accepts no more', async () => {
    const up = await startNamedUpstream('up');
    closers.push(() => up.close());
    const proxy = await startProxy({
      listeners: [{ host: '127.0.0.1', port: 0 }],
      routes: [{ path: '/', upstream: [up.url] }],
    });
    closers.push(() => proxy.close());
    const first = proxy.port;
    // A fixed free port for the listener to add: bind one, read it, let it go.
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const second = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    await proxy.server.reload(
      configOf({
        listeners: [
          { host: '127.0.0.1', port: 0 },
          { host: '127.0.0.1', port: second },
        ],
        routes: [{ path: '/', upstream: [up.url] }],
      }),
    );
    assert.deepEqual(
      proxy.server.addresses.map((a) => a.port),
      [first, second],
    );
    assert.equal((await sendRequest(second, '/new')).text, 'up /new');
    assert.equal((await sendRequest(first, '/old')).text, 'up /old');
    await proxy.server.reload(
      configOf({
        listeners: [{ host: '127.0.0.1', port: second }],
        routes: [{ path: '/', upstream: [up.url] }],
      }),
    );
    await assert.rejects(sendRequest(first, '/gone'), { code: 'ECONNREFUSED' });
    assert.equal((await sendRequest(second, '/still')).text, 'up /still');
  });

  test('new TLS settings and certificates serve new handshakes; a connection already open keeps its own', async () => {
    const up = await startNamedUpstream('up');
    const certs = new CertDir();
    closers.push(
      () => up.close(),
      async () => certs.remove(),
    );
    const one = certs.make('one', ['one.test']);
    const two = certs.make('two', ['two.test']);
    const tlsBlock = (c: { cert: string; key: string }) => ({
      enabled: true,
      cert_file: c.cert,
      key_file: c.key,
    });
    const proxy = await startProxy({ tls: tlsBlock(one), routes: [{ path: '/', upstream: [up.url] }] });
    closers.push(() => proxy.close());
    const handshake = () =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: proxy.port, rejectUnauthorized: false }, () =>
          resolve(socket),
        );
        socket.once('error', reject);
      });
    const cn = (socket: tls.TLSSocket) => String(socket.getPeerCertificate().subject.CN);
    const before = await handshake();
    closers.push(async () => before.destroy());
    assert.equal(cn(before), 'one.test');
    await proxy.server.reload(configOf({ tls: tlsBlock(two), routes: [{ path: '/', upstream: [up.url] }] }));
    const after = await handshake();
    assert.equal(cn(after), 'two.test');
    after.destroy();
    assert.equal(before.destroyed, false, 'the connection set up before the reload is still open');
    // A certificate file that cannot be read fails the reload and changes nothing.
    const broken = { enabled: true, cert_file: `${certs.dir}/missing.crt`, key_file: two.key };
    await assert.rejects(
      proxy.server.reload(configOf({ tls: broken, routes: [{ path: '/', upstream: [up.url] }] })),
    );
    const still = await handshake();
    assert.equal(cn(still), 'two.test');
    still.destroy();
  });

  test('a reload that cannot be prepared changes nothing', async () => {
    const a = await startNamedUpstream('a');
    closers.push(() => a.close());
    const proxy = await startProxy({ routes: [{ path: '/', upstream: [a.url] }] });
    closers.push(() => proxy.close());
    const runtime = proxy.server.runtime;
    const broken = configOf({
      listeners: [
        { host: '127.0.0.1', port: 0 },
        { host: '127.0.0.1', port: 1 },
      ],
      routes: [
        { path: '/', upstream: [a.url] },
        { path: '/m', upstream: [a.url], middlewares: [{ type: 'module', path: '/nonexistent/filter.ts' }] },
      ],
    });
    await assert.rejects(proxy.server.reload(broken), /routes\[1\]\.middlewares\[0\].*does not exist/);
    assert.equal(proxy.server.runtime, runtime);
    assert.equal(proxy.server.addresses.length, 1);
    assert.equal((await sendRequest(proxy.port, '/ok')).text, 'a /ok');
    // A second attempt is not refused as "in progress".
    await proxy.server.reload(configOf({ routes: [{ path: '/', upstream: [a.url] }] }));
  });
});
