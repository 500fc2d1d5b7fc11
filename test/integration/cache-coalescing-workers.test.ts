/**
 * Coalescing of concurrent misses across the worker threads of an instance (the claims' table in the
 * cache's shared memory, src/filters/cache/claims-shared.ts), run by the real CLI with 2 and 4 workers:
 * many identical cacheable GETs at once, on as many connections (so the kernel spreads them over the
 * workers), make exactly one upstream request; when the leader's response cannot be stored, the others go
 * upstream as soon as it is known; a leader that stalls past coalesce_timeout_ms holds the others no
 * longer than that; a worker that dies holding a claim blocks the key only until the claim's deadline; one
 * background revalidation (stale-while-revalidate) runs for the instance; and the store's CLOCK eviction
 * keeps an entry read on any worker.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

/** A user filter after the cache: a request carrying x-crash ends its worker (outside any request). */
const CRASH_FILTER = `export default {
  create() {
    return {
      onRequest(ctx) {
        if (ctx.request.headers.get('x-crash') !== undefined) setImmediate(() => { throw new Error('crash test'); });
        return undefined;
      },
    };
  },
};
`;

let upstream: HttpUpstream;
let dir: string;
/** When (Date.now()) the upstream received each request, by URL. */
const arrivals = new Map<string, number[]>();

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const seen = arrivals.get(req.url) ?? [];
    seen.push(Date.now());
    arrivals.set(req.url, seen);
    // /ev/*: bodies of 4000 bytes, for a store of 64 KiB.
    const body = JSON.stringify({
      url: req.url,
      n: seen.length,
      pad: req.url.startsWith('/ev/') || req.url.startsWith('/bound/') ? 'x'.repeat(4000) : '',
    });
    // /co/slow-*: cacheable after 500 ms; /co/nostore-*: not storable, after 300 ms; /stall/*: the first
    // request of a URL answered after 2500 ms, the others at once; anything else: cacheable at once.
    let delay = 0;
    let cacheControl = 'public, max-age=300';
    if (req.url.startsWith('/co/slow-')) delay = 500;
    if (req.url.startsWith('/co/nostore-')) {
      delay = 300;
      cacheControl = 'no-store';
    }
    if (req.url.startsWith('/stall/') && seen.length === 1) delay = 2500;
    // /swr/*: stale after 1 s, served stale for 30 s more while revalidated (the revalidations take 1.5 s).
    if (req.url.startsWith('/swr/')) {
      cacheControl = 'public, max-age=1, stale-while-revalidate=30';
      if (seen.length > 1) delay = 1500;
    }
    setTimeout(() => {
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'cache-control': cacheControl,
      });
      res.end(body);
    }, delay);
  });
  dir = mkdtempSync(join(tmpdir(), 'zproxy-coalesce-'));
  writeFileSync(join(dir, 'crash.mjs'), CRASH_FILTER);
});

after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(port: number, threads: number): Record<string, unknown> {
  const cache = (coalesce: number) => ({
    type: 'cache',
    config: { ttl_seconds: 60, coalesce_timeout_ms: coalesce },
  });
  return {
    host: '127.0.0.1',
    port,
    thread_count: threads,
    protocols: ['http1'],
    access_log: { enabled: true },
    routes: [
      // A long timeout: a follower that waited for it would fail the test (sendRequest gives up at 5 s).
      { path: '/co', upstream: upstream.url, middlewares: [cache(20_000)] },
      { path: '/stall', upstream: upstream.url, middlewares: [cache(400)] },
      { path: '/swr', upstream: upstream.url, middlewares: [cache(5000)] },
      {
        path: '/ev',
        upstream: upstream.url,
        middlewares: [{ type: 'cache', config: { ttl_seconds: 60, max_bytes: 65536 } }],
      },
      // A store of its own (another max_bytes, another identity), for the instance's bound.
      {
        path: '/bound',
        upstream: upstream.url,
        middlewares: [{ type: 'cache', config: { ttl_seconds: 60, max_bytes: 65544 } }],
      },
      {
        path: '/crash',
        upstream: upstream.url,
        middlewares: [cache(1500), { type: 'module', path: join(dir, 'crash.mjs') }],
      },
    ],
  };
}

const upstreamCount = (path: string): number => arrivals.get(path)?.length ?? 0;

/** Sends `count` GETs of `path` at once, each on its own connection. */
function burst(port: number, path: string, count: number) {
  return Promise.all(Array.from({ length: count }, () => sendRequest(port, path)));
}

for (const threads of [2, 4]) {
  describe(`coalescing across ${threads} worker threads`, () => {
    let cli: CliProcess;
    let port: number;

    before(async () => {
      port = await freePort();
      cli = startCli(config(port, threads));
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
    });
    after(async () => {
      await cli.cleanup();
    });

    test('40 identical cacheable GETs at once on 40 connections: one upstream request', async () => {
      const path = `/co/slow-${threads}`;
      const results = await burst(port, path, 40);
      assert.equal(upstreamCount(path), 1, 'the upstream saw one request');
      const statuses = results.map((r) => String(r.headers['cache-status']));
      assert.equal(statuses.filter((s) => /fwd=uri-miss; fwd-status=200; stored/.test(s)).length, 1);
      assert.equal(statuses.filter((s) => /; hit/.test(s)).length, 39, statuses.join('\n'));
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.equal(r.text, results[0]!.text);
      }
      await waitUntil(
        () => cli.logs.filter((l) => l.kind === 'access' && l.target === path).length === 40,
        3000,
        'the access lines',
      );
      const workers = new Set(
        cli.logs.filter((l) => l.kind === 'access' && l.target === path).map((l) => l.worker),
      );
      assert.ok(workers.size >= 2, `the requests were served by ${workers.size} workers`);
    });

    if (threads !== 2) return;

    test('the leader’s response cannot be stored: the others go upstream as soon as it is known', async () => {
      const path = `/co/nostore-${threads}`;
      const started = Date.now();
      const results = await burst(port, path, 12);
      const elapsed = Date.now() - started;
      for (const r of results) assert.equal(r.status, 200);
      assert.equal(upstreamCount(path), 12, 'every request went upstream');
      // They waited for the leader (one upstream request first, the rest after its answer), and not for
      // the 20 s timeout.
      const times = arrivals.get(path)!;
      assert.equal(times.filter((t) => t - times[0]! < 250).length, 1, 'the leader went alone');
      assert.ok(elapsed < 3000, `done in ${elapsed} ms`);
    });

    test('a leader that stalls past coalesce_timeout_ms holds the others no longer than that', async () => {
      const path = `/stall/a-${threads}`;
      const sent = Date.now();
      const leader = sendRequest(port, path);
      await waitUntil(() => upstreamCount(path) === 1, 2000, 'the leader upstream');
      const followers = await Promise.all(
        Array.from({ length: 8 }, () =>
          sendRequest(port, path).then((r) => ({ status: r.status, ms: Date.now() - sent })),
        ),
      );
      for (const f of followers) {
        assert.equal(f.status, 200);
        // They waited until the leader's claim ended (400 ms after it was made, after `sent`), then went
        // upstream, long before the leader's answer (2.5 s after its request reached the upstream).
        assert.ok(f.ms >= 350 && f.ms < 2300, `a follower answered ${f.ms} ms after the leader was sent`);
      }
      assert.ok(upstreamCount(path) >= 2, 'the followers went upstream');
      assert.equal((await leader).status, 200);
    });

    test('stale-while-revalidate: one background revalidation for the instance, whichever workers serve the stale entry', async () => {
      const path = `/swr/a-${threads}`;
      assert.match(String((await sendRequest(port, path)).headers['cache-status']), /stored/);
      await new Promise((r) => setTimeout(r, 1300));
      const results = await burst(port, path, 20);
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.match(String(r.headers['cache-status']), /detail=stale-while-revalidate/);
      }
      await waitUntil(() => upstreamCount(path) === 2, 3000, 'the revalidation');
      await new Promise((r) => setTimeout(r, 700));
      assert.equal(upstreamCount(path), 2, 'one revalidation went upstream');
    });

    test('eviction: an entry read on any worker stays while entries read once pass through the store', async () => {
      await sendRequest(port, '/ev/hot');
      for (let i = 0; i < 60; i++) {
        assert.equal((await sendRequest(port, `/ev/k${i}`)).status, 200);
        if (i % 4 === 0)
          assert.match(
            String((await sendRequest(port, '/ev/hot')).headers['cache-status']),
            /; hit/,
            `after ${i}`,
          );
      }
      assert.equal(upstreamCount('/ev/hot'), 1, 'the hot entry was never fetched again');
      // The store holds about 15 of them: the first ones read once went.
      assert.match(String((await sendRequest(port, '/ev/k0')).headers['cache-status']), /fwd=uri-miss/);
    });

    test('max_bytes bounds the instance: what all the workers store together stays within it', async () => {
      // 24 entries of about 4.3 KiB (about 103 KiB) stored by the workers the kernel picks: more than
      // max_bytes (64 KiB), less than max_bytes per worker.
      for (let i = 0; i < 24; i++) {
        const res = await sendRequest(port, `/bound/k${i}`);
        assert.match(String(res.headers['cache-status']), /stored/, `k${i}`);
      }
      await waitUntil(
        () =>
          cli.logs.filter((l) => l.kind === 'access' && /^\/bound\//.test(String(l.target))).length === 24,
        3000,
        'the access lines',
      );
      const storers = new Set(
        cli.logs
          .filter((l) => l.kind === 'access' && /^\/bound\//.test(String(l.target)))
          .map((l) => l.worker),
      );
      assert.ok(storers.size >= 2, `stored by ${storers.size} workers`);
      // The newest are hits on any worker; the oldest went, whichever worker stored them.
      for (let i = 23; i >= 18; i--) {
        assert.match(
          String((await sendRequest(port, `/bound/k${i}`)).headers['cache-status']),
          /; hit/,
          `k${i}`,
        );
      }
      for (let i = 0; i < 6; i++) {
        assert.match(
          String((await sendRequest(port, `/bound/k${i}`)).headers['cache-status']),
          /fwd=uri-miss/,
          `k${i}`,
        );
        assert.equal(upstreamCount(`/bound/k${i}`), 2);
      }
    });

    test('a worker that dies holding a claim blocks the key only until the claim’s deadline', async () => {
      const path = `/crash/k-${threads}`;
      const before = cli.logs.length;
      const claimed = Date.now();
      // Its worker claims the key (the cache runs first), then ends before going upstream.
      await sendRequest(port, path, { headers: { 'x-crash': '1' } }).catch(() => null);
      await cli.waitForLog(
        (l) => l.msg === 'worker exited' && cli.logs.indexOf(l) >= before,
        5000,
        'worker exited',
      );
      const results = await Promise.all(
        Array.from({ length: 6 }, () =>
          sendRequest(port, path).then((r) => ({ status: r.status, ms: Date.now() - claimed })),
        ),
      );
      for (const r of results) {
        assert.equal(r.status, 200);
        // Held by the dead worker's claim until its deadline (1.5 s after it), not for ever.
        assert.ok(r.ms >= 1300 && r.ms < 4000, `answered ${r.ms} ms after the claim`);
      }
      assert.ok(upstreamCount(path) >= 1);
      // The key is usable again: stored, then a hit.
      const next = await sendRequest(port, path);
      assert.match(String(next.headers['cache-status']), /; hit/);
    });
  });
}
