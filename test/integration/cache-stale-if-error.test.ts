/**
 * stale-if-error (RFC 5861 §4) when the upstream fails without answering: connection refused (zproxy's
 * own 502) and no response head in time (504), to HTTP/1.1 and HTTP/2 (h2c) upstreams, over HTTP/1.1 and
 * HTTP/2 clients. Within the window the stale entry is served with `Cache-Status: ...; fwd=stale;
 * fwd-status=502; detail=stale-if-error`; without the directive, or past the window, zproxy's error goes
 * out. Real upstream servers, stopped or silenced by the test.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort } from '../helpers/upstream.ts';

type Mode = 'ok' | 'hang';

let mode: Mode = 'ok';
let h1port: number;
let h2port: number;
let h1server: http.Server | null = null;
let h2server: http2.Http2Server | null = null;
let proxy: StartedProxy;
const hanging: (() => void)[] = [];

function cacheControl(path: string): string {
  if (path.includes('/none')) return 'max-age=1';
  if (path.includes('/short')) return 'max-age=1, stale-if-error=1';
  return 'max-age=1, stale-if-error=600';
}

async function startH1(): Promise<void> {
  h1server = http.createServer((req, res) => {
    if (mode === 'hang') {
      hanging.push(() => res.destroy());
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/plain',
      'cache-control': cacheControl(req.url ?? ''),
      etag: '"v1"',
    });
    res.end(`body of ${req.url}\n`);
  });
  await new Promise<void>((resolve) => h1server!.listen(h1port, '127.0.0.1', resolve));
}

async function startH2(): Promise<void> {
  h2server = http2.createServer();
  h2server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    if (mode === 'hang') {
      hanging.push(() => stream.close());
      return;
    }
    const path = String(headers[':path']);
    stream.respond({ ':status': 200, 'cache-control': cacheControl(path), etag: '"v1"' });
    stream.end(`body of ${path}\n`);
  });
  await new Promise<void>((resolve) => h2server!.listen(h2port, '127.0.0.1', resolve));
}

async function stopUpstreams(): Promise<void> {
  const h1 = h1server;
  const h2 = h2server;
  h1server = null;
  h2server = null;
  if (h1 !== null) {
    h1.closeAllConnections();
    await new Promise<void>((resolve) => h1.close(() => resolve()));
  }
  if (h2 !== null) {
    await new Promise<void>((resolve) => {
      h2.close(() => resolve());
      // Sessions zproxy keeps open would hold close() back.
      for (const s of sessions) s.destroy();
    });
  }
}

const sessions = new Set<http2.ServerHttp2Session>();

before(async () => {
  h1port = await freePort();
  h2port = await freePort();
  await startH1();
  await startH2();
  h2server!.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  const cache = { type: 'cache', config: { ttl_seconds: 60 } };
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    upstream_defaults: { connect_timeout_ms: 500, response_header_timeout_ms: 300 },
    routes: [
      { path: '/h1', upstream: `http://127.0.0.1:${h1port}`, middlewares: [cache] },
      { path: '/h2', upstream: `h2c://127.0.0.1:${h2port}`, middlewares: [cache] },
    ],
  });
});

after(async () => {
  for (const end of hanging.splice(0)) end();
  await proxy.close();
  await stopUpstreams();
});

async function viaH1(path: string) {
  const res = await sendRequest(proxy.port, path);
  return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.text };
}

async function viaH2(path: string) {
  const session = http2.connect(proxy.url);
  try {
    const res = await h2Request(session, { ':path': path });
    return { status: res.status, headers: res.headers as Record<string, unknown>, body: res.body.toString() };
  } finally {
    session.close();
  }
}

const PATHS = ['/h1/a', '/h2/a', '/h1/none', '/h2/none', '/h1/short', '/h2/short'];

test("an upstream that is down or silent: the stale entry within stale-if-error, zproxy's error otherwise", async () => {
  // Store every entry (fresh for 1 s), through both clients.
  for (const path of PATHS) {
    const first = await viaH1(path);
    assert.equal(first.status, 200, path);
    const second = await viaH2(path);
    assert.equal(second.status, 200, path);
    assert.match(String(second.headers['cache-status']), /hit/, path);
  }
  await new Promise((resolve) => setTimeout(resolve, 1200));

  // The upstreams accept but never answer: 504 from zproxy, or the stale entry.
  mode = 'hang';
  for (const send of [viaH1, viaH2]) {
    for (const kind of ['h1', 'h2']) {
      const stale = await send(`/${kind}/a`);
      assert.equal(stale.status, 200, `${kind} hang`);
      assert.equal(stale.body, `body of /${kind}/a\n`);
      assert.match(String(stale.headers['cache-status']), /fwd=stale; fwd-status=504; detail=stale-if-error/);
      const none = await send(`/${kind}/none`);
      assert.equal(none.status, 504, `${kind} hang, no stale-if-error`);
      assert.equal(JSON.parse(none.body).error.code, 'ZP_ERR_UPSTREAM_TIMEOUT');
    }
  }
  for (const end of hanging.splice(0)) end();

  // The upstreams are gone: connection refused is zproxy's 502, or the stale entry.
  await stopUpstreams();
  for (const send of [viaH1, viaH2]) {
    for (const kind of ['h1', 'h2']) {
      const stale = await send(`/${kind}/a`);
      assert.equal(stale.status, 200, `${kind} down`);
      assert.equal(stale.body, `body of /${kind}/a\n`);
      assert.match(String(stale.headers['cache-status']), /fwd=stale; fwd-status=502; detail=stale-if-error/);
      const none = await send(`/${kind}/none`);
      assert.equal(none.status, 502, `${kind} down, no stale-if-error`);
      assert.equal(JSON.parse(none.body).error.code, 'ZP_ERR_UPSTREAM_CONNECT');
    }
  }
  // stale-if-error=1 on a response stale for more than 1 s: the window is over.
  await new Promise((resolve) => setTimeout(resolve, 1100));
  for (const kind of ['h1', 'h2']) {
    const over = await viaH1(`/${kind}/short`);
    assert.equal(over.status, 502, `${kind} past the window`);
  }
  // The access log keeps the upstream's failure on the stale answers.
  const stale = proxy
    .accessLogs()
    .filter((l) => String(l.target).endsWith('/a') && l.status === 200 && l.error !== undefined);
  assert.ok(stale.length >= 8, `stale answers logged with their upstream error (${stale.length})`);
});
