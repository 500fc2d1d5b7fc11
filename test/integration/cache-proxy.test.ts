/**
 * The cache filter in the real proxy (the engines' filter runner), over HTTP/1.1 and HTTP/2 (h2c): a
 * miss stored then served to both protocols with Cache-Status and Age, 50 concurrent misses coalesced into
 * one upstream request, a large body streamed while stored, PURGE, and two zproxy instances sharing
 * entries through a real redis-server.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import { closeRedisClients } from '../../src/filters/cache/redis-store.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type RedisServer, startRedis } from '../helpers/redis.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const HOST = 'cache.test';
const TOKEN = 'proxy-purge-token-0123';
const HALF = 512 * 1024;

let upstream: HttpUpstream;
let redis: RedisServer;
let proxy: StartedProxy;
let sharedA: StartedProxy;
let sharedB: StartedProxy;
let releaseStream: () => void = () => {};

function countFor(path: string): number {
  return upstream.requests.filter((r) => r.url === path).length;
}

before(async () => {
  redis = await startRedis();
  upstream = await startHttpUpstream((req, res) => {
    if (req.url === '/stream') {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(HALF, 'a'));
      new Promise<void>((resolve) => {
        releaseStream = resolve;
      }).then(() => res.end(Buffer.alloc(HALF, 'b')));
      return;
    }
    const delay = req.url.startsWith('/slow') ? 200 : 0;
    setTimeout(() => {
      const body = `body of ${req.url}`;
      res.writeHead(200, {
        'cache-control': 'max-age=60',
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    }, delay);
  });
  const middlewares = [{ type: 'cache', config: { ttl_seconds: 60, purge: { token: TOKEN } } }];
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [{ path: '/', upstream: upstream.url }],
    middlewares,
  });
  const shared = [
    {
      type: 'cache',
      config: { ttl_seconds: 60, store: 'redis', redis_url: redis.url, key_prefix: 'proxy-test:' },
    },
  ];
  sharedA = await startProxy({ routes: [{ path: '/', upstream: upstream.url }], middlewares: shared });
  sharedB = await startProxy({ routes: [{ path: '/', upstream: upstream.url }], middlewares: shared });
});

after(async () => {
  await proxy.close();
  await sharedA.close();
  await sharedB.close();
  await closeRedisClients();
  await upstream.close();
  await redis.stop();
});

function h1(port: number, path: string, method = 'GET', headers: Record<string, string> = {}) {
  return sendRequest(port, path, { method, headers: { host: HOST, ...headers } });
}

test('a miss is stored and served to HTTP/1.1 and HTTP/2 clients', async () => {
  const miss = await h1(proxy.port, '/page');
  assert.equal(miss.status, 200);
  assert.equal(miss.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
  const hit = await h1(proxy.port, '/page');
  assert.match(String(hit.headers['cache-status']), /^zproxy; hit; ttl=\d+$/);
  assert.match(String(hit.headers.age), /^\d+$/);
  assert.equal(hit.text, 'body of /page');
  assert.equal(hit.headers['content-type'], 'text/plain');

  const client = http2.connect(proxy.url);
  try {
    const h2 = await h2Request(client, { ':path': '/page', ':authority': HOST });
    assert.equal(h2.status, 200);
    assert.match(String(h2.headers['cache-status']), /^zproxy; hit/);
    assert.equal(h2.body.toString(), 'body of /page');
    const h2miss = await h2Request(client, { ':path': '/page-h2', ':authority': HOST });
    assert.equal(h2miss.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
    const h2hit = await h2Request(client, { ':path': '/page-h2', ':authority': HOST });
    assert.match(String(h2hit.headers['cache-status']), /^zproxy; hit/);
    assert.equal(h2hit.body.toString(), 'body of /page-h2');
  } finally {
    client.close();
  }
  assert.equal(countFor('/page'), 1);
  assert.equal(countFor('/page-h2'), 1);
});

test('50 concurrent misses through zproxy make one upstream request', async () => {
  const all = await Promise.all(Array.from({ length: 50 }, () => h1(proxy.port, '/slow')));
  for (const res of all) assert.equal(res.text, 'body of /slow');
  assert.equal(countFor('/slow'), 1);
});

test('a large body reaches the client before the upstream has finished it, and is stored whole', async () => {
  const received = await new Promise<{ bytes: number; done: Promise<Buffer> }>((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxy.port,
      path: '/stream',
      headers: { host: HOST },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      let told = false;
      const done = new Promise<Buffer>((r) => res.on('end', () => r(Buffer.concat(chunks))));
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        bytes += chunk.length;
        if (!told && bytes >= HALF) {
          told = true;
          resolve({ bytes, done });
        }
      });
    });
    req.end();
  });
  assert.equal(received.bytes, HALF);
  releaseStream();
  const body = await received.done;
  assert.equal(body.length, 2 * HALF);
  const hit = await h1(proxy.port, '/stream');
  assert.match(String(hit.headers['cache-status']), /^zproxy; hit/);
  assert.ok(hit.body.equals(body));
  assert.equal(countFor('/stream'), 1);
});

test('PURGE with the token through zproxy', async () => {
  await h1(proxy.port, '/purge-me');
  assert.equal((await h1(proxy.port, '/purge-me', 'PURGE')).status, 403);
  const purged = await h1(proxy.port, '/purge-me', 'PURGE', { 'x-cache-purge-token': TOKEN });
  assert.deepEqual(JSON.parse(purged.text), { purged: 1 });
  const again = await h1(proxy.port, '/purge-me');
  assert.equal(again.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
  assert.equal(countFor('/purge-me'), 2);
});

test('a response cached by one zproxy instance is served by another through Redis', async () => {
  const miss = await h1(sharedA.port, '/shared');
  assert.equal(miss.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
  const hit = await h1(sharedB.port, '/shared');
  assert.match(String(hit.headers['cache-status']), /^zproxy; hit/);
  assert.equal(hit.text, 'body of /shared');
  assert.equal(countFor('/shared'), 1);
});
