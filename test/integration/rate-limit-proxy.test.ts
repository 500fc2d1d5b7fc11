/**
 * rate_limit through zproxy itself (the engines' filter runner): 429 with Retry-After and the RateLimit
 * fields over HTTP/1.1 and HTTP/2; the memory store exact with thread_count 2 (`zproxy run` in a child
 * process, connections spread over both workers); two zproxy instances sharing one limit through a real
 * redis-server; Redis stopped mid-test following on_store_error (allow, deny) without hanging.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type RedisServer, startRedis } from '../helpers/redis.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;

before(async () => {
  upstream = await startHttpUpstream();
});

after(async () => {
  await upstream.close();
});

function countOf(list: number[], status: number): number {
  return list.filter((s) => s === status).length;
}

describe('one process', () => {
  let proxy: StartedProxy;
  before(async () => {
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [
        {
          path: '/h1',
          upstream: upstream.url,
          middlewares: [{ type: 'rate_limit', config: { requests_per_minute: 60, burst: 1 } }],
        },
        {
          path: '/h2',
          upstream: upstream.url,
          middlewares: [{ type: 'rate_limit', config: { requests_per_minute: 30, burst: 1 } }],
        },
      ],
    });
  });
  after(async () => {
    await proxy.close();
  });

  test('HTTP/1.1: burst + 1 allowed with RateLimit fields, then 429 with Retry-After', async () => {
    const first = await sendRequest(proxy.port, '/h1/a');
    assert.equal(first.status, 200);
    assert.equal(first.headers['ratelimit-policy'], '"default";q=60;w=60');
    assert.equal(first.headers.ratelimit, '"default";r=1;t=1');
    assert.equal((await sendRequest(proxy.port, '/h1/a')).status, 200);
    const refused = await sendRequest(proxy.port, '/h1/a');
    assert.equal(refused.status, 429);
    assert.equal(refused.headers['retry-after'], '1');
    assert.equal(refused.headers['ratelimit-policy'], '"default";q=60;w=60');
    assert.equal(refused.headers.ratelimit, '"default";r=0;t=1');
    assert.equal(refused.text, 'Too Many Requests\n');
  });

  test('HTTP/2: the same answers on streams', async () => {
    const client = http2.connect(proxy.url);
    try {
      const statuses: number[] = [];
      let last: Awaited<ReturnType<typeof h2Request>> | null = null;
      for (let i = 0; i < 3; i++) {
        last = await h2Request(client, { ':method': 'GET', ':path': '/h2/b' });
        statuses.push(last.status);
      }
      assert.deepEqual(statuses, [200, 200, 429]);
      assert.equal(last!.headers['retry-after'], '2');
      assert.equal(last!.headers['ratelimit-policy'], '"default";q=30;w=60');
    } finally {
      client.close();
    }
  });
});

for (const mode of ['threads', 'processes'] as const) {
  test(`memory store with thread_count 2 (${mode}): exact across the workers`, {
    timeout: 60_000,
  }, async () => {
    const port = await freePort();
    const cli = startCli({
      host: '127.0.0.1',
      port,
      thread_count: 2,
      worker_mode: mode,
      protocols: ['http1'],
      access_log: { enabled: true },
      routes: [{ path: '/', upstream: upstream.url }],
      middlewares: [{ type: 'rate_limit', config: { requests_per_minute: 1, burst: 29 } }],
    });
    try {
      await cli.waitForLog((line) => line.msg === 'ready', 20_000, 'ready');
      // 90 requests on new connections (the kernel spreads them over both workers) against 30 at once.
      const statuses: number[] = [];
      const batches = 9;
      for (let b = 0; b < batches; b++) {
        const batch = await Promise.all(
          Array.from({ length: 10 }, (_, i) => sendRequest(port, `/w/${b}/${i}`)),
        );
        statuses.push(...batch.map((r) => r.status));
      }
      assert.equal(countOf(statuses, 200), 30, `200s: ${countOf(statuses, 200)}`);
      assert.equal(countOf(statuses, 429), 60);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const workers = new Set(cli.logs.filter((l) => l.kind === 'access').map((l) => l.worker));
      assert.equal(workers.size, 2, 'both workers answered requests');
      assert.equal(cli.logs.find((l) => l.msg === 'ready')?.mode, mode);
    } finally {
      await cli.cleanup();
    }
  });
}

describe('redis store', () => {
  let redis: RedisServer;
  const instances: CliProcess[] = [];

  before(async () => {
    redis = await startRedis();
  });
  after(async () => {
    for (const cli of instances) await cli.cleanup();
    await redis.stop();
  });

  async function instance(): Promise<number> {
    const port = await freePort();
    const limit = { requests_per_minute: 60, store: 'redis', redis_url: redis.url, timeout_ms: 200 };
    const cli = startCli({
      host: '127.0.0.1',
      port,
      protocols: ['http1'],
      routes: [
        {
          path: '/shared',
          upstream: upstream.url,
          middlewares: [{ type: 'rate_limit', config: { ...limit, burst: 4, key: 'route' } }],
        },
        {
          path: '/allow',
          upstream: upstream.url,
          middlewares: [{ type: 'rate_limit', config: { ...limit, burst: 100, key: 'header:x-a' } }],
        },
        {
          path: '/deny',
          upstream: upstream.url,
          middlewares: [
            {
              type: 'rate_limit',
              config: { ...limit, burst: 100, key: 'header:x-d', on_store_error: 'deny' },
            },
          ],
        },
      ],
    });
    instances.push(cli);
    await cli.waitForLog((line) => line.msg === 'listening' || line.msg === 'ready', 20_000, 'listening');
    return port;
  }

  test('two instances share one limit; Redis stopped follows allow and deny without hanging', async () => {
    const [a, b] = [await instance(), await instance()];
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      statuses.push((await sendRequest(a, '/shared')).status);
      statuses.push((await sendRequest(b, '/shared')).status);
    }
    assert.equal(countOf(statuses, 200), 5, String(statuses));
    assert.equal(countOf(statuses, 429), 7);
    assert.equal((await sendRequest(a, '/allow')).status, 200);
    assert.equal((await sendRequest(b, '/deny')).status, 200);

    await redis.stop();
    const started = Date.now();
    for (const port of [a, b]) {
      assert.equal((await sendRequest(port, '/allow', { timeoutMs: 3000 })).status, 200, 'fail-open');
      const denied = await sendRequest(port, '/deny', { timeoutMs: 3000 });
      assert.equal(denied.status, 503, 'fail-closed');
    }
    assert.ok(Date.now() - started < 4 * 1000, `took ${Date.now() - started} ms`);
  });
});
