/**
 * The rate_limit filter through zproxy itself (the engines' filter runner, HTTP/1.1) in front of a real
 * upstream, with the memory store and a real redis-server: exact counts, 429 with Retry-After and the
 * RateLimit fields, refill, keys (a header, the route, a JWT claim verified by auth), counters kept by a
 * new zproxy with the same limit, two instances sharing one limit through Redis, the Lua script called by
 * EVALSHA, and a Redis stopped mid-test following on_store_error (allow, deny) without hanging.
 *
 * Every zproxy here runs in the test process, so the memory store is one per process (as for one zproxy
 * process); `resetRateLimitStores()` empties it between tests. Two Redis "instances" are two zproxy servers
 * with different `timeout_ms`, which gives each its own Redis connection, as two processes would have.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import type { RateLimitConfig } from '../../src/config/rate-limit-schema.ts';
import { ratePolicy } from '../../src/filters/rate-limit/gcra.ts';
import { closeRateLimitRedisClients, RedisRateLimitStore } from '../../src/filters/rate-limit/store-redis.ts';
import { resetRateLimitStores } from '../../src/filters/rate-limit/stores.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type RedisServer, startRedis } from '../helpers/redis.ts';
import { type SimpleResponse, sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
const proxies: StartedProxy[] = [];

before(async () => {
  upstream = await startHttpUpstream();
});

after(async () => {
  for (const proxy of proxies) await proxy.close();
  await upstream.close();
  await closeRateLimitRedisClients();
  resetRateLimitStores();
});

/** zproxy with one route `route` (prefix) whose only middleware is `rate_limit` with `config`. */
async function proxyWith(config: RateLimitConfig, route = '/'): Promise<StartedProxy> {
  const proxy = await startProxy({
    routes: [{ path: route, upstream: upstream.url, middlewares: [{ type: 'rate_limit', config }] }],
  });
  proxies.push(proxy);
  return proxy;
}

async function statuses(proxy: StartedProxy, n: number, headers: Record<string, string> = {}, path = '/x') {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await sendRequest(proxy.port, path, { headers })).status);
  return out;
}

function countOf(list: number[], status: number): number {
  return list.filter((s) => s === status).length;
}

describe('memory store', () => {
  test('burst + 1 allowed with RateLimit fields, then 429 with Retry-After', async () => {
    resetRateLimitStores();
    const proxy = await proxyWith({ requests_per_minute: 60, burst: 2 });
    const before = upstream.requests.length;
    const responses: SimpleResponse[] = [];
    for (let i = 0; i < 5; i++) responses.push(await sendRequest(proxy.port, '/x'));
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 200, 200, 429, 429],
    );
    assert.equal(upstream.requests.length - before, 3, 'refused requests never reach the upstream');
    assert.equal(responses[0]!.headers['ratelimit-policy'], '"default";q=60;w=60');
    assert.equal(responses[0]!.headers.ratelimit, '"default";r=2;t=1');
    assert.equal(responses[1]!.headers.ratelimit, '"default";r=1;t=2');
    assert.equal(responses[2]!.headers.ratelimit, '"default";r=0;t=3');
    const refused = responses[3]!;
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers['ratelimit-policy'], '"default";q=60;w=60');
    assert.equal(refused.headers.ratelimit, '"default";r=0;t=1');
    assert.equal(refused.text, 'Too Many Requests\n');
  });

  test('refill over time (one request per 100 ms)', async () => {
    resetRateLimitStores();
    const proxy = await proxyWith({ requests_per_minute: 600, burst: 0 });
    assert.deepEqual(await statuses(proxy, 2), [200, 429]);
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.deepEqual(await statuses(proxy, 2), [200, 429]);
  });

  test('exact under concurrency: 40 parallel requests, burst 9 -> 10 allowed', async () => {
    resetRateLimitStores();
    const proxy = await proxyWith({ requests_per_minute: 1, burst: 9 });
    const all = await Promise.all(Array.from({ length: 40 }, () => sendRequest(proxy.port, '/x')));
    const list = all.map((r) => r.status);
    assert.equal(countOf(list, 200), 10);
    assert.equal(countOf(list, 429), 30);
  });

  test('header key: one bucket per value; route key: one bucket for all', async () => {
    resetRateLimitStores();
    const byHeader = await proxyWith({ requests_per_minute: 1, burst: 1, key: 'header:x-api-key' });
    assert.deepEqual(await statuses(byHeader, 3, { 'x-api-key': 'a' }), [200, 200, 429]);
    assert.deepEqual(await statuses(byHeader, 3, { 'x-api-key': 'b' }), [200, 200, 429]);
    const byRoute = await proxyWith({ requests_per_minute: 1, burst: 2, key: 'route' }, '/api');
    assert.deepEqual(await statuses(byRoute, 2, { 'x-api-key': 'a' }, '/api/x'), [200, 200]);
    assert.deepEqual(await statuses(byRoute, 2, { 'x-api-key': 'b' }, '/api/y'), [200, 429]);
  });

  test('the counters survive a new filter (a new zproxy with the same limit)', async () => {
    resetRateLimitStores();
    const first = await proxyWith({ requests_per_minute: 1, burst: 1 });
    assert.deepEqual(await statuses(first, 1), [200]);
    await first.close();
    const restarted = await proxyWith({ requests_per_minute: 1, burst: 1 });
    assert.deepEqual(await statuses(restarted, 2), [200, 429]);
  });
});

test('jwt_claim key: one bucket per verified claim, one shared bucket without it', async () => {
  resetRateLimitStores();
  const secret = 'a-jwt-secret-for-the-rate-limit-test-0123';
  const limit = { type: 'rate_limit', config: { requests_per_minute: 1, burst: 1, key: 'jwt_claim:sub' } };
  const proxy = await startProxy({
    routes: [
      {
        path: '/jwt',
        upstream: upstream.url,
        // auth first: rate_limit reads the claims auth verified.
        middlewares: [{ type: 'auth', config: { kind: 'jwt', secret } }, limit],
      },
      // No auth on this route: no verified token, so no claim.
      { path: '/anonymous', upstream: upstream.url, middlewares: [limit] },
    ],
  });
  proxies.push(proxy);
  const key = new TextEncoder().encode(secret);
  const token = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('2m').sign(key);
  const alice = { authorization: `Bearer ${await token({ sub: 'alice' })}` };
  const bob = { authorization: `Bearer ${await token({ sub: 'bob' })}` };
  const nobody = { authorization: `Bearer ${await token({ role: 'none' })}` };
  // The same client address for all: the buckets are the claims'.
  assert.deepEqual(await statuses(proxy, 3, alice, '/jwt/a'), [200, 200, 429]);
  assert.deepEqual(await statuses(proxy, 3, bob, '/jwt/a'), [200, 200, 429]);
  // A verified token without the claim and a request without a verified token share the '' bucket.
  assert.deepEqual(await statuses(proxy, 1, nobody, '/jwt/a'), [200]);
  assert.deepEqual(await statuses(proxy, 2, alice, '/anonymous/a'), [200, 429]);
  assert.deepEqual(await statuses(proxy, 1, nobody, '/jwt/a'), [429]);
});

describe('redis store', () => {
  let redis: RedisServer;
  let inspector: Redis;

  before(async () => {
    redis = await startRedis();
    inspector = new Redis(redis.url);
    // The last test stops the server: the inspector's reconnect attempts fail, quietly.
    inspector.on('error', () => {});
  });

  after(async () => {
    inspector.disconnect();
    await redis.stop();
  });

  test('through zproxy: exact decisions from one Lua script called by EVALSHA', async () => {
    const proxy = await proxyWith({
      requests_per_minute: 60,
      burst: 4,
      key: 'header:x-e',
      store: 'redis',
      redis_url: redis.url,
      timeout_ms: 505,
    });
    // The first decision opens the connection (and may load the script): not counted.
    assert.equal((await sendRequest(proxy.port, '/x', { headers: { 'x-e': 'warm-up' } })).status, 200);
    await inspector.config('RESETSTAT');
    const responses: SimpleResponse[] = [];
    for (let i = 0; i < 6; i++)
      responses.push(await sendRequest(proxy.port, '/x', { headers: { 'x-e': 'e' } }));
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 200, 200, 200, 200, 429],
    );
    assert.deepEqual(
      responses.slice(0, 5).map((r) => r.headers.ratelimit),
      [1, 2, 3, 4, 5].map((n) => `"default";r=${5 - n};t=${n}`),
    );
    assert.equal(responses[5]!.headers['retry-after'], '1');
    assert.equal(responses[5]!.headers.ratelimit, '"default";r=0;t=1');
    const stats = await inspector.info('commandstats');
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    // One script call per decision, by its SHA (ioredis sends EVAL at most once on a new connection).
    assert.equal(calls('evalsha') + calls('eval'), 6, stats);
    assert.ok(calls('eval') <= 1, stats);
  });

  // Kept as a test of the store on its own: the milliseconds of reset and retry-after are computed by
  // the script on Redis's clock, and zproxy's fields only show them rounded up to seconds.
  test('the store on its own: reset and retry-after to the millisecond', async () => {
    await inspector.config('RESETSTAT');
    const store = new RedisRateLimitStore(redis.url, 504);
    const policy = ratePolicy(60, 4);
    const decisions = [];
    for (let i = 0; i < 6; i++) decisions.push(await store.take(policy, 'store-test'));
    assert.deepEqual(
      decisions.map((d) => d.allowed),
      [true, true, true, true, true, false],
    );
    assert.deepEqual(
      decisions.map((d) => d.remaining),
      [4, 3, 2, 1, 0, 0],
    );
    assert.ok(Math.abs(decisions[4]!.resetMs - 5000) < 50, `reset ${decisions[4]!.resetMs}`);
    assert.ok(Math.abs(decisions[5]!.retryAfterMs - 1000) < 50, `retry after ${decisions[5]!.retryAfterMs}`);
    const stats = await inspector.info('commandstats');
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
    assert.equal(calls('evalsha') + calls('eval'), 6, stats);
    assert.ok(calls('eval') <= 1, stats);
  });

  test('two instances share one limit; keys carry a TTL', async () => {
    // Different timeouts give each instance its own Redis connection, as two zproxy processes have.
    const config = { requests_per_minute: 60, burst: 4, store: 'redis', redis_url: redis.url } as const;
    const a = await proxyWith({ ...config, timeout_ms: 500 });
    const b = await proxyWith({ ...config, timeout_ms: 501 });
    const list: number[] = [];
    for (let i = 0; i < 6; i++) {
      list.push((await sendRequest(a.port, '/x')).status);
      list.push((await sendRequest(b.port, '/x')).status);
    }
    assert.equal(countOf(list, 200), 5, `one limit for both: ${list}`);
    assert.equal(countOf(list, 429), 7);
    const keys = await inspector.keys('zproxy:rl:60:4:ip:*');
    assert.equal(keys.length, 1, String(keys));
    const ttl = await inspector.pttl(keys[0]!);
    assert.ok(ttl > 0 && ttl <= 5000, `TTL ${ttl} ms`);
    const refused = await sendRequest(a.port, '/x');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers['ratelimit-policy'], '"default";q=60;w=60');
  });

  test('exact under concurrency across two instances', async () => {
    const config = { requests_per_minute: 1, burst: 19, store: 'redis', redis_url: redis.url } as const;
    const a = await proxyWith({ ...config, key: 'header:x-c', timeout_ms: 500 });
    const b = await proxyWith({ ...config, key: 'header:x-c', timeout_ms: 501 });
    const all = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        sendRequest((i % 2 === 0 ? a : b).port, '/x', { headers: { 'x-c': 'c' } }),
      ),
    );
    assert.equal(
      countOf(
        all.map((r) => r.status),
        200,
      ),
      20,
    );
  });

  test('refill over time', async () => {
    const proxy = await proxyWith({
      requests_per_minute: 600,
      burst: 0,
      key: 'header:x-r',
      store: 'redis',
      redis_url: redis.url,
      timeout_ms: 500,
    });
    assert.deepEqual(await statuses(proxy, 2, { 'x-r': '1' }), [200, 429]);
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.deepEqual(await statuses(proxy, 2, { 'x-r': '1' }), [200, 429]);
  });

  test('Redis stopped: allow lets requests through, deny answers 503, neither hangs; one warn line', async () => {
    const base = { requests_per_minute: 60, burst: 0, store: 'redis', redis_url: redis.url } as const;
    const allow = await proxyWith({ ...base, key: 'header:x-p', timeout_ms: 502 });
    const deny = await proxyWith({ ...base, key: 'header:x-p', on_store_error: 'deny', timeout_ms: 503 });
    assert.deepEqual(await statuses(allow, 1, { 'x-p': 'allow' }), [200]);
    assert.deepEqual(await statuses(deny, 1, { 'x-p': 'deny' }), [200]);
    await redis.stop();
    const started = Date.now();
    const allowed: SimpleResponse[] = [];
    for (let i = 0; i < 5; i++)
      allowed.push(await sendRequest(allow.port, '/x', { headers: { 'x-p': 'allow' } }));
    const denied: SimpleResponse[] = [];
    for (let i = 0; i < 5; i++)
      denied.push(await sendRequest(deny.port, '/x', { headers: { 'x-p': 'deny' } }));
    const elapsed = Date.now() - started;
    assert.deepEqual(
      allowed.map((r) => r.status),
      [200, 200, 200, 200, 200],
      'fail-open',
    );
    assert.equal(allowed[0]!.headers.ratelimit, undefined, 'let through without rate-limit fields');
    assert.deepEqual(
      denied.map((r) => r.status),
      [503, 503, 503, 503, 503],
      'fail-closed',
    );
    assert.equal(denied[0]!.headers['retry-after'], '1');
    assert.ok(elapsed < 1000, `10 decisions took ${elapsed} ms`);
    const warned = (proxy: StartedProxy) =>
      proxy.logs.filter((line) => line.msg === 'rate_limit store unavailable');
    assert.equal(warned(allow).length, 1, 'one warn line, not one per request');
    assert.equal(warned(allow)[0]!.on_store_error, 'allow');
    assert.equal(warned(deny).length, 1);
    assert.equal(warned(deny)[0]!.on_store_error, 'deny');
  });
});
