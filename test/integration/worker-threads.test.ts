/**
 * Worker threads, the default worker mode on Linux: the real CLI with thread_count 2 runs one process whose
 * main thread starts two worker threads, each binding the port with SO_REUSEPORT. A worker that ends (an
 * uncaught exception, running out of memory) is replaced while the other keeps serving, and the state
 * the workers share (the rate limiter's table) survives it; SIGTERM lets exchanges in flight complete.
 * A user filter module ends a worker on demand: /crash throws outside any request, /oom allocates until
 * the heap limit.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type CliProcess, type LogLine, startCli } from '../helpers/cli-process.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const CRASH_FILTER = `export default {
  create() {
    return {
      onRequest(ctx) {
        if (ctx.request.path === '/crash') setImmediate(() => { throw new Error('crash test'); });
        if (ctx.request.path === '/oom') { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); }
        return undefined;
      },
    };
  },
};
`;

let upstream: HttpUpstream;
let dir: string;

before(async () => {
  // Paths under /slow/ are answered after 500 ms (exchanges in flight during a stop).
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url });
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url.startsWith('/slow/')) setTimeout(answer, 500);
    else answer();
  });
  dir = mkdtempSync(join(tmpdir(), 'zproxy-threads-'));
  writeFileSync(join(dir, 'crash.mjs'), CRASH_FILTER);
});

after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(port: number): Record<string, unknown> {
  return {
    host: '127.0.0.1',
    port,
    thread_count: 2,
    protocols: ['http1'],
    shutdown_grace_ms: 2000,
    access_log: { enabled: true },
    routes: [
      // 10 requests a minute per client, no refill during the test.
      {
        path: '/limited',
        upstream: upstream.url,
        middlewares: [{ type: 'rate_limit', config: { requests_per_minute: 1, burst: 9 } }],
      },
      { path: '/', upstream: upstream.url, middlewares: [{ type: 'module', path: join(dir, 'crash.mjs') }] },
    ],
  };
}

/** Sends `count` requests on new connections; the statuses. */
async function statuses(port: number, path: string, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push((await sendRequest(port, `${path}/${i}`)).status);
  return out;
}

const accessWorkers = (cli: CliProcess, prefix: string): Set<unknown> =>
  new Set(
    cli.logs.filter((l) => l.kind === 'access' && String(l.target).startsWith(prefix)).map((l) => l.worker),
  );

describe('two worker threads', () => {
  let cli: CliProcess;
  let port: number;

  before(async () => {
    port = await freePort();
    // A small heap, so that /oom ends its worker quickly (each worker thread takes the process's limit).
    cli = startCli(config(port), [], ['--max-old-space-size=160']);
    await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
  });
  after(async () => {
    await cli.cleanup();
  });

  test('one process, two workers, both answer', async () => {
    const ready = cli.logs.find((l) => l.msg === 'ready')!;
    assert.equal(ready.mode, 'threads');
    assert.equal(ready.workers, 2);
    const started = cli.logs.filter((l) => l.msg === 'worker started');
    assert.deepEqual(started.map((l) => l.worker).sort(), [1, 2]);
    assert.ok(started.every((l) => l.pid === cli.pid && typeof l.thread_id === 'number'));
    assert.deepEqual(
      await statuses(port, '/both', 40),
      Array.from({ length: 40 }, () => 200),
    );
    await waitUntil(() => accessWorkers(cli, '/both').size === 2, 3000, 'both workers in the access log');
  });

  test('an uncaught exception ends one worker only: replaced, and the shared rate limit survives', async () => {
    // The client's 10 requests a minute are used up, whichever worker takes them.
    assert.deepEqual(await statuses(port, '/limited/a', 12), [...Array(10).fill(200), 429, 429]);
    const before = cli.logs.length;
    // The worker that takes /crash throws outside any request (its connection is lost with it); the
    // other one keeps serving.
    await sendRequest(port, '/crash').catch(() => null);
    const exited = await cli.waitForLog(
      (l) => l.msg === 'worker exited' && cli.logs.indexOf(l) >= before,
      5000,
      'worker exited',
    );
    assert.equal(exited.code, 1);
    const started = cli.logs.filter((l) => l.msg === 'worker started' && l.worker === exited.worker);
    assert.equal(exited.thread_id, started[0]!.thread_id, 'the line names the thread that ended');
    const fatal = cli.logs.find((l) => l.msg === 'uncaught exception' && cli.logs.indexOf(l) >= before);
    assert.equal(fatal?.worker, exited.worker);
    assert.equal((fatal?.err as LogLine | undefined)?.message, 'crash test');
    assert.deepEqual(await statuses(port, '/during', 10), Array(10).fill(200));
    await cli.waitForLog(
      (l) => l.msg === 'listening' && l.worker === exited.worker && cli.logs.indexOf(l) >= before,
      10_000,
      'the replacement listening',
    );
    assert.equal(cli.logs.filter((l) => l.msg === 'worker started').length, 3);
    // The replacement knows the client's state: still limited.
    assert.deepEqual(await statuses(port, '/limited/b', 20), Array(20).fill(429));
    assert.deepEqual(await statuses(port, '/after', 40), Array(40).fill(200));
    await waitUntil(() => accessWorkers(cli, '/after').size === 2, 3000, 'both workers answer again');
  });

  test('a worker out of memory ends alone and is replaced', async () => {
    const before = cli.logs.length;
    // The connection of /oom is lost with its worker; the other worker answers meanwhile.
    await sendRequest(port, '/oom').catch(() => null);
    const failed = await cli.waitForLog(
      (l) => l.msg === 'worker failed' && cli.logs.indexOf(l) >= before,
      20_000,
      'worker failed',
    );
    assert.equal(failed.code, 'ERR_WORKER_OUT_OF_MEMORY');
    await cli.waitForLog(
      (l) => l.msg === 'listening' && l.worker === failed.worker && cli.logs.indexOf(l) >= before,
      10_000,
      'the replacement listening',
    );
    assert.deepEqual(await statuses(port, '/after-oom', 40), Array(40).fill(200));
    await waitUntil(() => accessWorkers(cli, '/after-oom').size === 2, 3000, 'both workers answer again');
  });

  test('SIGTERM: exchanges in flight complete, every worker stops, exit 0', async () => {
    const seen = upstream.requests.length;
    const inFlight = Array.from({ length: 6 }, (_, i) => sendRequest(port, `/slow/${i}`));
    await waitUntil(() => upstream.requests.length === seen + 6, 3000, 'the slow requests upstream');
    process.kill(cli.pid, 'SIGTERM');
    const results = await Promise.all(inFlight);
    results.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text).url, `/slow/${i}`);
    });
    assert.deepEqual(await cli.exited, { code: 0, signal: null });
    assert.equal(cli.logs.filter((l) => l.msg === 'stopped' && typeof l.worker === 'number').length, 2);
    await assert.rejects(sendRequest(port, '/gone'), { code: 'ECONNREFUSED' });
  });
});

test('a worker thread that cannot listen fails the run: exit 1', async () => {
  // The port is held by a socket without SO_REUSEPORT, so no worker can bind it.
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const busyPort = (blocker.address() as net.AddressInfo).port;
  const failing = startCli(config(busyPort));
  try {
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      failing.exited,
      new Promise<'running'>((r) => {
        timer = setTimeout(() => r('running'), 10_000);
      }),
    ]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 1, signal: null });
    assert.ok(failing.logs.some((l) => l.msg === 'worker failed to start'));
    assert.ok(!failing.logs.some((l) => l.msg === 'ready'));
    assert.match(failing.otherOutput.join(''), /EADDRINUSE/);
  } finally {
    await failing.cleanup();
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
