/**
 * stale-while-revalidate's background revalidation (RFC 5861 §3): within the window the stale entry is
 * answered at once, and zproxy revalidates it with a request of its own (src/upstream/subrequest.ts) to an
 * HTTP/1.1 or HTTP/2 (h2c) upstream. A 304 refreshes the entry; the background request carries the
 * validators and X-Forwarded-For, and the edits of the filters before the cache (auth's stripped API key
 * never reaches the upstream). Real upstream servers.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const KEY = 'background-key-0123456789';
let h1up: HttpUpstream;
let h2up: http2.Http2Server;
const h2seen: http2.IncomingHttpHeaders[] = [];
let proxy: StartedProxy;

/** ETag "v1" until `version` changes; a matching If-None-Match gets 304. */
let version = 'v1';

before(async () => {
  h1up = await startHttpUpstream((req, res) => {
    const etag = `"${version}"`;
    const cc = 'max-age=1, stale-while-revalidate=30';
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag, 'cache-control': cc });
      res.end();
      return;
    }
    const body = `${version} ${req.url}`;
    res.writeHead(200, { etag, 'cache-control': cc, 'content-length': String(body.length) });
    res.end(body);
  });
  h2up = http2.createServer();
  h2up.on('stream', (stream, headers) => {
    h2seen.push(headers);
    stream.on('error', () => {});
    const etag = `"${version}"`;
    const cc = 'max-age=1, stale-while-revalidate=30';
    if (headers['if-none-match'] === etag) {
      stream.respond({ ':status': 304, etag, 'cache-control': cc }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, etag, 'cache-control': cc });
    stream.end(`${version} ${headers[':path']}`);
  });
  await new Promise<void>((resolve) => h2up.listen(0, '127.0.0.1', resolve));
  const h2port = (h2up.address() as net.AddressInfo).port;
  const auth = { type: 'auth', config: { api_keys: [KEY] } };
  const cache = { type: 'cache', config: { ttl_seconds: 60 } };
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [
      { path: '/h1', upstream: h1up.url, middlewares: [auth, cache] },
      { path: '/h2', upstream: `h2c://127.0.0.1:${h2port}`, middlewares: [auth, cache] },
    ],
  });
});

after(async () => {
  await proxy.close();
  await h1up.close();
  await new Promise<void>((resolve) => h2up.close(() => resolve()));
});

async function viaH1(path: string) {
  const res = await sendRequest(proxy.port, path, { headers: { 'x-api-key': KEY } });
  return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.text };
}

async function viaH2(path: string) {
  const session = http2.connect(proxy.url);
  try {
    const res = await h2Request(session, { ':path': path, 'x-api-key': KEY });
    return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.body.toString() };
  } finally {
    session.close();
  }
}

function seenBy(kind: 'h1' | 'h2', path: string): http2.IncomingHttpHeaders[] {
  return kind === 'h1'
    ? h1up.requests.filter((r) => r.url === path).map((r) => r.headers)
    : h2seen.filter((h) => h[':path'] === path);
}

for (const kind of ['h1', 'h2'] as const) {
  test(`to an ${kind === 'h1' ? 'HTTP/1.1' : 'HTTP/2'} upstream: stale at once, a 304 in the background refreshes the entry`, async () => {
    for (const send of [viaH1, viaH2]) {
      const path = `/${kind}/${send === viaH1 ? 'a' : 'b'}`;
      const stored = await send(path);
      assert.equal(stored.status, 200);
      assert.equal(stored.body, `v1 ${path}`);
      await sleep(1100);
      const stale = await send(path);
      assert.equal(stale.status, 200);
      assert.equal(stale.body, `v1 ${path}`);
      assert.match(String(stale.headers['cache-status']), /detail=stale-while-revalidate/);
      // The background request: the entry's validator, X-Forwarded-For, no API key (auth strips it).
      const until = performance.now() + 3000;
      while (seenBy(kind, path).length < 2) {
        assert.ok(performance.now() < until, 'the background revalidation reached the upstream');
        await sleep(20);
      }
      const background = seenBy(kind, path)[1]!;
      assert.equal(background['if-none-match'], '"v1"');
      assert.equal(background['x-forwarded-for'], '127.0.0.1');
      assert.match(String(background.via), /zproxy/);
      for (const h of seenBy(kind, path))
        assert.equal(h['x-api-key'], undefined, 'the key never went upstream');
      // The 304 made the entry fresh again: a hit, no further upstream request.
      await sleep(50);
      const hit = await send(path);
      assert.equal(hit.body, `v1 ${path}`);
      assert.match(String(hit.headers['cache-status']), /^zproxy; hit; ttl=\d+$/);
      assert.equal(seenBy(kind, path).length, 2);
    }
  });
}

test('a changed resource: the background revalidation stores the new response', async () => {
  const path = '/h1/changed';
  version = 'v1';
  assert.equal((await viaH1(path)).body, `v1 ${path}`);
  await sleep(1100);
  version = 'v2';
  const stale = await viaH1(path);
  assert.equal(stale.body, `v1 ${path}`);
  const until = performance.now() + 3000;
  for (;;) {
    const res = await viaH1(path);
    if (res.body === `v2 ${path}`) {
      assert.match(String(res.headers['cache-status']), /^zproxy; hit/);
      break;
    }
    assert.ok(performance.now() < until, 'the new response was stored');
    await sleep(50);
  }
  assert.equal(seenBy('h1', path).length, 2);
  version = 'v1';
});
