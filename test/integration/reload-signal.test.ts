/**
 * Reload of a running instance on SIGHUP (the real CLI), in each worker model: one process
 * (thread_count 1), worker threads and worker processes (thread_count 2). The new routes serve on every
 * worker at once; a bad file changes nothing and the reason, with its JSON path, is logged; SIGHUP never
 * stops zproxy; with workers, thread_count changes start or stop workers.
 */
import assert from 'node:assert/strict';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type CliRun, startCli } from '../helpers/cli-process.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startNamedUpstream } from '../helpers/upstream.ts';

let a: HttpUpstream;
let b: HttpUpstream;

before(async () => {
  a = await startNamedUpstream('a');
  b = await startNamedUpstream('b');
});

after(async () => {
  await a.close();
  await b.close();
});

/** `count` requests, each on a new connection (so the kernel spreads them over the workers). */
async function answers(port: number, path: string, count = 12): Promise<string[]> {
  const texts: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await sendRequest(port, path);
    texts.push(`${res.status} ${res.status === 200 ? res.text : ''}`.trim());
  }
  return [...new Set(texts)];
}

/** Rewrites the running config file, sends SIGHUP and waits for the outcome's log line (the `nth` one). */
async function hup(
  cli: CliRun,
  config: Record<string, unknown>,
  outcome: 'reloaded' | 'reload failed',
  nth: number,
) {
  writeFileSync(cli.configFile, JSON.stringify(config, null, 2));
  process.kill(cli.pid, 'SIGHUP');
  const msg = outcome === 'reloaded' ? 'reloaded' : 'reload failed; the running config keeps serving';
  await cli.waitForLog(
    () => cli.logs.filter((l) => l.msg === msg).length >= nth,
    20_000,
    `${outcome} #${nth}`,
  );
}

const MODES = [
  { name: 'one process', extra: { thread_count: 1 } },
  { name: 'worker threads', extra: { thread_count: 2, worker_mode: 'threads' } },
  { name: 'worker processes', extra: { thread_count: 2, worker_mode: 'processes' } },
] as const;

for (const mode of MODES) {
  describe(`SIGHUP reload: ${mode.name}`, () => {
    test('new routes on every worker; a bad file changes nothing; zproxy keeps running', async () => {
      const port = await freePort();
      const base = { host: '127.0.0.1', port, protocols: ['http1'], ...mode.extra };
      const cli = startCli({ ...base, routes: [{ path: '/a', upstream: [a.url] }] });
      try {
        await cli.waitForLog(
          (l) => l.msg === 'ready' || (l.msg === 'listening' && mode.extra.thread_count === 1),
          20_000,
          'ready',
        );
        assert.deepEqual(await answers(port, '/a/x'), ['200 a /a/x']);

        await hup(cli, { ...base, routes: [{ path: '/b', upstream: [b.url] }] }, 'reloaded', 1);
        assert.deepEqual(await answers(port, '/b/y'), ['200 b /b/y']);
        assert.deepEqual(await answers(port, '/a/x'), ['404']);

        // A file with a schema error: the errors are logged with their JSON path; /b keeps serving.
        await hup(cli, { ...base, routes: [{ path: 'no-slash', upstream: [b.url] }] }, 'reload failed', 1);
        const failed = cli.logs.find((l) => l.msg === 'reload failed; the running config keeps serving')!;
        assert.match(JSON.stringify(failed.errors), /routes\[0\]\.path/);
        assert.deepEqual(await answers(port, '/b/z'), ['200 b /b/z']);

        // A filter that cannot be built (a user module that does not exist) fails in the workers.
        await hup(
          cli,
          {
            ...base,
            routes: [
              { path: '/b', upstream: [b.url], middlewares: [{ type: 'module', path: './missing.ts' }] },
            ],
          },
          'reload failed',
          2,
        );
        const second = cli.logs.filter(
          (l) => l.msg === 'reload failed; the running config keeps serving',
        )[1]!;
        assert.match(JSON.stringify(second.errors), /routes\[0\]\.middlewares\[0\].*does not exist/);
        assert.deepEqual(await answers(port, '/b/w'), ['200 b /b/w']);
        assert.equal(cli.child.exitCode, null, 'zproxy is still running');
      } finally {
        await cli.cleanup();
      }
    });
  });
}

describe('zproxy run --watch', () => {
  test('a change of the config file is reloaded without a signal (worker threads); the same bytes reload nothing', async () => {
    const port = await freePort();
    const base = { host: '127.0.0.1', port, protocols: ['http1'], thread_count: 2, worker_mode: 'threads' };
    const cli = startCli({ ...base, routes: [{ path: '/a', upstream: [a.url] }] }, ['--watch']);
    try {
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
      // Written elsewhere and renamed over it, as editors and Kubernetes ConfigMaps do.
      const next = `${cli.configFile}.new`;
      writeFileSync(next, JSON.stringify({ ...base, routes: [{ path: '/b', upstream: [b.url] }] }));
      renameSync(next, cli.configFile);
      await cli.waitForLog(
        (l) => l.msg === 'reload requested' && l.reason === 'config file changed',
        5000,
        'the change noticed',
      );
      await cli.waitForLog((l) => l.msg === 'reloaded', 5000, 'reloaded');
      assert.deepEqual(await answers(port, '/b/y'), ['200 b /b/y']);
      // Touched but unchanged: no reload.
      const same = readFileSync(cli.configFile);
      writeFileSync(cli.configFile, same);
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(cli.logs.filter((l) => l.msg === 'reload requested').length, 1);
    } finally {
      await cli.cleanup();
    }
  });
});

describe('SIGHUP reload: thread_count', () => {
  test('worker threads: raising thread_count starts workers, lowering it stops them', async () => {
    const port = await freePort();
    const base = {
      host: '127.0.0.1',
      port,
      protocols: ['http1'],
      worker_mode: 'threads',
      routes: [{ path: '/', upstream: [a.url] }],
    };
    const cli = startCli({ ...base, thread_count: 2 });
    try {
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
      await hup(cli, { ...base, thread_count: 3 }, 'reloaded', 1);
      await cli.waitForLog((l) => l.msg === 'worker started' && l.worker === 3, 10_000, 'worker 3 started');
      await cli.waitForLog((l) => l.msg === 'listening' && l.worker === 3, 10_000, 'worker 3 listening');
      assert.deepEqual(await answers(port, '/t'), ['200 a /t']);
      await hup(cli, { ...base, thread_count: 1 }, 'reloaded', 2);
      await cli.waitForLog(
        (l) => l.msg === 'stopped' && (l.worker === 2 || l.worker === 3),
        10_000,
        'a worker stopped',
      );
      assert.deepEqual(await answers(port, '/u'), ['200 a /u']);
    } finally {
      await cli.cleanup();
    }
  });

  test('one process: a new thread_count is refused with the reason; the running config keeps serving', async () => {
    const port = await freePort();
    const base = {
      host: '127.0.0.1',
      port,
      protocols: ['http1'],
      routes: [{ path: '/', upstream: [a.url] }],
    };
    const cli = startCli({ ...base, thread_count: 1 });
    try {
      await cli.waitForLog((l) => l.msg === 'listening', 20_000, 'listening');
      await hup(cli, { ...base, thread_count: 2 }, 'reload failed', 1);
      const failed = cli.logs.find((l) => l.msg === 'reload failed; the running config keeps serving')!;
      assert.match(JSON.stringify(failed.errors), /thread_count: .*restart zproxy/);
      assert.deepEqual(await answers(port, '/v', 3), ['200 a /v']);
    } finally {
      await cli.cleanup();
    }
  });
});
