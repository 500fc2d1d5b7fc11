/**
 * The cache's Redis store through zproxy itself (the engines' filter runner, HTTP/1.1) with a real
 * redis-server: a response stored through one zproxy instance is served by another; keys carry a TTL of
 * freshness + stale windows; Vary variants, purge and coalescing work through Redis; a Redis that goes away
 * turns lookups into misses without hanging.
 *
 * Both instances run in the test process; `clearCacheStores()` before each start gives each its own store
 * object (and so its own coalescing), as two zproxy processes have.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { type CacheConfig, clearCacheStores } from '../../src/filters/cache/filter.ts';
import { closeRedisClients } from '../../src/filters/cache/redis-store.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type RedisServer, startRedis } from '../helpers/redis.ts';
import {
  type SimpleRequestOptions,
  type SimpleResponse,
  sendRequest as send,
} from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const TOKEN = 'redis-purge-token-0123';
let redis: RedisServer;
let upstream: HttpUpstream;
let first: StartedProxy;
let second: StartedProxy;
let inspector: Redis;

/** Both instances serve one site: the same Host. */
function sendRequest(
  port: number,
  path: string,
  options: SimpleRequestOptions = {},
): Promise<SimpleResponse> {
  return send(port, path, { ...options, headers: { host: 'cache.test', ...options.headers } });
}

function countFor(path: string): number {
  return upstream.requests.filter((r) => r.url === path).length;
}

/** A zproxy with its own filter and store object (as another zproxy instance would have). */
function instance(config: CacheConfig): Promise<StartedProxy> {
  clearCacheStores();
  return startProxy({
    routes: [{ path: '/', upstream: upstream.url, middlewares: [{ type: 'cache', config }] }],
  });
}

before(async () => {
  redis = await startRedis();
  upstream = await startHttpUpstream((req, res) => {
    if (req.url.startsWith('/slow')) {
      setTimeout(() => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '4' });
        res.end('slow');
      }, 200);
      return;
    }
    const body = `body of ${req.url} for ${req.headers['accept-language'] ?? '-'}`;
    res.writeHead(200, {
      'cache-control': 'max-age=30, stale-while-revalidate=20',
      vary: 'Accept-Language',
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  const config: CacheConfig = {
    ttl_seconds: 60,
    store: 'redis',
    redis_url: redis.url,
    key_prefix: 'test:cache:',
    purge: { token: TOKEN },
  };
  first = await instance(config);
  second = await instance(config);
  inspector = new Redis(redis.url);
  inspector.on('error', () => {});
});

after(async () => {
  inspector.disconnect();
  await first.close();
  await second.close();
  await closeRedisClients();
  clearCacheStores();
  await upstream.close();
  await redis.stop();
});

test('a response cached by one instance is served by another through Redis', async () => {
  const stored = await sendRequest(first.port, '/shared', { headers: { 'accept-language': 'en' } });
  assert.equal(stored.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
  const hit = await sendRequest(second.port, '/shared', { headers: { 'accept-language': 'en' } });
  assert.match(String(hit.headers['cache-status']), /^zproxy; hit; ttl=\d+/);
  assert.equal(hit.text, 'body of /shared for en');
  assert.equal(hit.headers['content-type'], 'text/plain');
  assert.match(String(hit.headers.age), /^\d+$/);
  assert.equal(countFor('/shared'), 1);

  // Another variant is a miss on either instance, then a hit on the other.
  const fr = await sendRequest(second.port, '/shared', { headers: { 'accept-language': 'fr' } });
  assert.equal(fr.headers['cache-status'], 'zproxy; fwd=vary-miss; fwd-status=200; stored');
  const frHit = await sendRequest(first.port, '/shared', { headers: { 'accept-language': 'fr' } });
  assert.equal(frHit.text, 'body of /shared for fr');
  assert.equal(countFor('/shared'), 2);
});

test('keys: one per variant and one for the Vary names, each with TTL = freshness + stale windows', async () => {
  const keys = (await inspector.keys('test:cache:*')).filter((k) => k.includes('/shared')).sort();
  assert.deepEqual(keys, [
    'test:cache:cache.test/shared\nEen\n',
    'test:cache:cache.test/shared\nEfr\n',
    'test:cache:cache.test/shared\nV',
  ]);
  for (const key of keys) {
    const pttl = await inspector.pttl(key);
    assert.ok(pttl > 40_000 && pttl <= 50_000, `${JSON.stringify(key)} pttl ${pttl}`);
  }
});

test('PURGE through one instance removes the entries for all', async () => {
  const res = await sendRequest(second.port, '/shared', {
    method: 'PURGE',
    headers: { 'x-cache-purge-token': TOKEN },
  });
  assert.deepEqual(JSON.parse(res.text), { purged: 2 });
  const again = await sendRequest(first.port, '/shared', { headers: { 'accept-language': 'en' } });
  assert.equal(again.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; stored');
  assert.equal(countFor('/shared'), 3);
});

test('50 concurrent misses on one instance make one upstream request', async () => {
  const all = await Promise.all(Array.from({ length: 50 }, () => sendRequest(first.port, '/slow')));
  for (const res of all) assert.equal(res.text, 'slow');
  assert.equal(countFor('/slow'), 1);
  const other = await sendRequest(second.port, '/slow');
  assert.match(String(other.headers['cache-status']), /^zproxy; hit/);
});

test('when Redis goes away, lookups are misses and requests are still answered', async () => {
  await redis.stop();
  const started = Date.now();
  const res = await sendRequest(first.port, '/after-redis', { timeoutMs: 10_000 });
  assert.equal(res.status, 200);
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
  assert.equal(countFor('/after-redis'), 1);
});
