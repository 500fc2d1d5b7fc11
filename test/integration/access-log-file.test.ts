/**
 * `access_log.file`: the access log goes to a file, and SIGUSR1 reopens it (logrotate renames the file,
 * then `kill -USR1`), with the real CLI in its three worker modes: one process, two worker threads, two
 * worker processes (which all append to one file). Requests run while the file is rotated: every line is
 * whole JSON, none is lost or written twice, the lines before the rename stay in the old file and those
 * after the reopen go to the new one. A file that cannot be opened stops the start; one that cannot be
 * reopened is logged and the old file stays in use. A reload may move the access log to another file.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { type CliProcess, type LogLine, startCli } from '../helpers/cli-process.ts';
import { startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
let dir: string;

before(async () => {
  upstream = await startHttpUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
  });
  dir = mkdtempSync(join(tmpdir(), 'zproxy-access-log-'));
});

after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The access lines of a file: each must be a whole JSON line (the file ends with a newline). */
function readLines(path: string): LogLine[] {
  const text = readFileSync(path, 'utf8');
  if (text === '') return [];
  assert.ok(text.endsWith('\n'), `${path} ends with a whole line`);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line): LogLine => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        throw new assert.AssertionError({
          message: `${path} has a split or mixed line: ${line.slice(0, 200)}`,
        });
      }
    });
}

/** Sends `paths` on new connections, `concurrency` at a time; every one must succeed. */
async function sendAll(port: number, paths: readonly string[], concurrency = 8): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < paths.length) {
      const path = paths[next++]!;
      const res = await sendRequest(port, path);
      assert.equal(res.status, 200, path);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

const paths = (tag: string, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `/${tag}/${i}?${'p'.repeat(i % 50)}`);

const MODES = [
  { name: 'one process', thread_count: 1, worker_mode: 'auto', workers: 1 },
  { name: 'two worker threads', thread_count: 2, worker_mode: 'threads', workers: 2 },
  { name: 'two worker processes', thread_count: 2, worker_mode: 'processes', workers: 2 },
] as const;

for (const mode of MODES) {
  describe(`access_log.file with ${mode.name}`, () => {
    let cli: CliProcess;
    let port: number;
    let file: string;

    before(async () => {
      port = await freePort();
      file = join(dir, `${mode.worker_mode}-${mode.thread_count}.log`);
      cli = startCli({
        host: '127.0.0.1',
        port,
        thread_count: mode.thread_count,
        worker_mode: mode.worker_mode,
        protocols: ['http1'],
        access_log: { enabled: true, file },
        routes: [{ path: '/', upstream: upstream.url }],
      });
      const listening = (): number => cli.logs.filter((l) => l.msg === 'listening').length;
      await waitUntil(() => listening() >= mode.workers, 20_000, 'every worker listening');
    });

    after(async () => {
      await cli.cleanup();
    });

    test('the lines go to the file; rename + SIGUSR1 moves the next ones to a new file, none lost or split', async () => {
      const before = paths('before', 60);
      const during = paths('during', 240);
      const afterReopen = paths('after', 60);
      await sendAll(port, before);
      // Requests keep coming while the file is renamed and zproxy is told to reopen it.
      const load = sendAll(port, during, 6);
      await new Promise((r) => setTimeout(r, 50));
      const rotated = `${file}.1`;
      renameSync(file, rotated);
      const reopenedBefore = cli.logs.filter((l) => l.msg === 'access log reopened').length;
      process.kill(cli.pid, 'SIGUSR1');
      await waitUntil(
        () =>
          cli.logs.filter((l) => l.msg === 'access log reopened').length === reopenedBefore + mode.workers,
        5000,
        'every worker reopened the file',
      );
      await load;
      await sendAll(port, afterReopen);
      cli.child.kill('SIGTERM');
      const { code } = await cli.exited;
      assert.equal(code, 0);

      const old = readLines(rotated);
      const fresh = readLines(file);
      for (const line of [...old, ...fresh]) assert.equal(line.kind, 'access');
      const oldTargets = old.map((l) => String(l.target));
      const newTargets = fresh.map((l) => String(l.target));
      const all = [...oldTargets, ...newTargets].sort();
      assert.deepEqual(
        all,
        [...before, ...during, ...afterReopen].sort(),
        'every line once, in one file or the other',
      );
      const oldSet = new Set(oldTargets);
      const newSet = new Set(newTargets);
      for (const p of before) assert.ok(oldSet.has(p), `${p} (before the rename) is in the old file`);
      for (const p of afterReopen) assert.ok(newSet.has(p), `${p} (after the reopen) is in the new file`);
      if (mode.workers > 1) {
        // Both workers wrote to each file (new connections spread over them).
        assert.equal(new Set(fresh.map((l) => l.worker)).size, 2, 'both workers write to the new file');
        assert.equal(new Set(old.map((l) => l.worker)).size, 2, 'both workers wrote to the old file');
      }
      // The process log stays on stdout; the access log does not go there.
      assert.ok(cli.logs.some((l) => l.msg === 'listening'));
      assert.equal(cli.logs.filter((l) => l.kind === 'access').length, 0, 'no access line on stdout');
    });
  });
}

test('a file that cannot be opened stops the start with the path and the reason', async () => {
  const port = await freePort();
  const missing = join(dir, 'no-such-dir', 'access.log');
  const cli = startCli({
    host: '127.0.0.1',
    port,
    thread_count: 1,
    access_log: { enabled: true, file: missing },
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    const { code } = await cli.exited;
    assert.equal(code, 1);
    const output = cli.otherOutput.join('\n');
    assert.match(output, /access_log\.file: cannot open .*no-such-dir\/access\.log: ENOENT/);
  } finally {
    await cli.cleanup();
  }
});

test('a reopen that fails is logged and the old file stays in use', async () => {
  const logDir = join(dir, 'reopen');
  mkdirSync(logDir);
  const file = join(logDir, 'access.log');
  const proxy = await startProxy({
    access_log: { enabled: true, file },
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    assert.equal((await sendRequest(proxy.port, '/one')).status, 200);
    // The directory moves away: the path cannot be opened again, the open file lives on under the new name.
    const moved = join(dir, 'reopen-moved');
    renameSync(logDir, moved);
    proxy.server.reopenLogs();
    const failed = proxy.logs.find((l) => l.msg === 'access log not reopened: the old file stays in use');
    assert.ok(failed, 'the failure is logged');
    assert.equal(failed.file, file);
    assert.equal((await sendRequest(proxy.port, '/two')).status, 200);
    await proxy.close();
    assert.ok(!existsSync(file));
    assert.deepEqual(
      readLines(join(moved, 'access.log')).map((l) => l.target),
      ['/one', '/two'],
    );
    assert.equal(proxy.accessLogs().length, 0, 'the access log went to the file only');
  } finally {
    await proxy.close();
  }
});

test('a reload that changes access_log.file moves the next lines to the new file; one that cannot open it changes nothing', async () => {
  const first = join(dir, 'reload-first.log');
  const second = join(dir, 'reload-second.log');
  const base = {
    host: '127.0.0.1',
    port: 0,
    thread_count: 1,
    routes: [{ path: '/', upstream: upstream.url }],
  };
  const proxy = await startProxy({ ...base, access_log: { enabled: true, file: first } });
  try {
    assert.equal((await sendRequest(proxy.port, '/before')).status, 200);
    await proxy.server.reload(parseConfig({ ...base, access_log: { enabled: true, file: second } }));
    assert.equal((await sendRequest(proxy.port, '/after')).status, 200);
    await assert.rejects(
      proxy.server.reload(
        parseConfig({ ...base, access_log: { enabled: true, file: join(dir, 'gone', 'x.log') } }),
      ),
      /access_log\.file: cannot open .*gone\/x\.log/,
    );
    assert.equal((await sendRequest(proxy.port, '/still')).status, 200);
    await proxy.close();
    assert.deepEqual(
      readLines(first).map((l) => l.target),
      ['/before'],
    );
    assert.deepEqual(
      readLines(second).map((l) => l.target),
      ['/after', '/still'],
    );
  } finally {
    await proxy.close();
  }
});
