/**
 * One instance, many workers, one state: the origin document's middleware configuration
 * (examples/middleware_proxy.json: rate_limit, cors, cache in memory) run by the real CLI with 2 and 4
 * worker threads. A response cached by one worker is a hit on every worker, a purge reaches every worker,
 * and a rate limit is exact across the workers, also with many connections at once.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const EXAMPLE = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../examples/middleware_proxy.json', import.meta.url)), 'utf8'),
) as {
  routes: { path: string; upstream: string; methods: string[] }[];
  middlewares: { type: string; config: Record<string, unknown> }[];
};

let upstream: HttpUpstream;

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url, n: upstream.requests.length });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'public, max-age=300',
    });
    res.end(body);
  });
});
after(async () => {
  await upstream.close();
});

/** The example with this test's address, upstream and thread count; `edit` changes its middlewares. */
function exampleConfig(port: number, threads: number, edit: (m: (typeof EXAMPLE)['middlewares']) => void) {
  const middlewares = structuredClone(EXAMPLE.middlewares);
  edit(middlewares);
  return {
    ...EXAMPLE,
    host: '127.0.0.1',
    port,
    thread_count: threads,
    access_log: { enabled: true },
    routes: EXAMPLE.routes.map((r) => ({ ...r, upstream: upstream.url })),
    middlewares,
  };
}

const upstreamCount = (path: string): number => upstream.requests.filter((r) => r.url === path).length;

for (const threads of [2, 4]) {
  describe(`the middleware example with ${threads} worker threads`, () => {
    let cli: CliProcess;
    let port: number;

    before(async () => {
      port = await freePort();
      cli = startCli(
        exampleConfig(port, threads, (m) => {
          const cache = m.find((x) => x.type === 'cache')!;
          cache.config.purge = { token: 'purge-secret-0123456789' };
        }),
      );
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
    });
    after(async () => {
      await cli.cleanup();
    });

    test('a response cached by one worker is a hit on every worker; a purge reaches them all', async () => {
      const path = `/api/doc-${threads}`;
      const first = await sendRequest(port, path);
      assert.equal(first.status, 200);
      assert.match(String(first.headers['cache-status']), /fwd=uri-miss; fwd-status=200; stored/);
      // New connections: the kernel spreads them over the workers.
      for (let i = 0; i < 40; i++) {
        const res = await sendRequest(port, path);
        assert.equal(res.status, 200);
        assert.match(String(res.headers['cache-status']), /; hit/, `request ${i}`);
        assert.equal(res.text, first.text);
      }
      assert.equal(upstreamCount(path), 1, 'the upstream saw one request');
      await waitUntil(
        () => cli.logs.filter((l) => l.kind === 'access' && l.target === path).length === 41,
        3000,
        'the access lines',
      );
      const workers = new Set(
        cli.logs.filter((l) => l.kind === 'access' && l.target === path).map((l) => l.worker),
      );
      assert.ok(workers.size >= 2, `hits were served by ${workers.size} workers`);

      const purged = await sendRequest(port, path, {
        method: 'PURGE',
        headers: { 'x-cache-purge-token': 'purge-secret-0123456789' },
      });
      assert.equal(purged.status, 200);
      for (let i = 0; i < 10; i++) await sendRequest(port, path);
      assert.equal(upstreamCount(path), 2, 'after the purge, one miss for the whole instance');
    });
  });

  test(`a limit of 20 a minute lets exactly 20 through across ${threads} workers, 60 connections at once`, async () => {
    const port = await freePort();
    const cli = startCli(
      exampleConfig(port, threads, (m) => {
        m.find((x) => x.type === 'rate_limit')!.config.requests_per_minute = 20;
        // Not cached, so that every allowed request is counted upstream too.
        m.splice(
          m.findIndex((x) => x.type === 'cache'),
          1,
        );
      }),
    );
    try {
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
      const path = `/api/limited-${threads}`;
      const results = await Promise.all(Array.from({ length: 60 }, () => sendRequest(port, path)));
      const statuses = results.map((r) => r.status);
      assert.equal(statuses.filter((s) => s === 200).length, 20, String(statuses));
      assert.equal(statuses.filter((s) => s === 429).length, 40);
      assert.equal(upstreamCount(path), 20);
    } finally {
      await cli.cleanup();
    }
  });
}
