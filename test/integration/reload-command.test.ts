/**
 * `zproxy reload [CONFIG]`: the real command reaches the running instance (two worker threads) through
 * the admin listener its config names, with the bearer token: exit 0 when the new config serves, exit 1
 * with the errors (JSON paths) when it was refused and the running config keeps serving, and a clear
 * message when the config has no admin listener or no instance answers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startCli } from '../helpers/cli-process.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startNamedUpstream } from '../helpers/upstream.ts';

const CLI = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TOKEN = 'reload-command-token-0123456789';

let a: HttpUpstream;
let b: HttpUpstream;
let dir: string;

before(async () => {
  a = await startNamedUpstream('a');
  b = await startNamedUpstream('b');
  dir = mkdtempSync(join(tmpdir(), 'zproxy-reload-cmd-'));
});

after(async () => {
  await a.close();
  await b.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `zproxy reload ...args`; resolves with its exit code and output. */
function zproxyReload(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return zproxy(['reload', ...args]);
}

/** Runs `zproxy ...args`; resolves with its exit code and output. */
function zproxy(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test('zproxy reload: the new config serves, a bad one is refused with its JSON paths, exit status says which', async () => {
  const port = await freePort();
  const admin = await freePort();
  const base = {
    host: '127.0.0.1',
    port,
    thread_count: 2,
    worker_mode: 'threads',
    protocols: ['http1'],
    admin: { port: admin, token: TOKEN },
  };
  const cli = startCli({ ...base, routes: [{ path: '/', upstream: a.url }] });
  try {
    await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
    assert.match((await sendRequest(port, '/x')).text, /^a /);
    const health = await zproxy(['health', cli.configFile]);
    assert.equal(health.code, 0, health.stderr);
    assert.equal(health.stdout, `ok: 127.0.0.1:${admin}/healthz answered 200\n`);

    writeFileSync(cli.configFile, JSON.stringify({ ...base, routes: [{ path: '/', upstream: b.url }] }));
    const ok = await zproxyReload([cli.configFile]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^reloaded .* \(config [0-9a-f]{16}, 2 worker\(s\)\)$/m);
    for (let i = 0; i < 6; i++) assert.match((await sendRequest(port, '/y')).text, /^b /);

    writeFileSync(
      cli.configFile,
      JSON.stringify({
        ...base,
        routes: [
          { path: 'no-slash', upstream: a.url },
          { path: '/z', upstream: 'ftp://x' },
        ],
      }),
    );
    const refused = await zproxyReload([cli.configFile]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /reload refused; the running config keeps serving \(2 problems\)/);
    assert.match(refused.stderr, /^ {2}routes\[0\]\.path: /m);
    assert.match(refused.stderr, /^ {2}routes\[1\]\.upstream: /m);
    assert.match((await sendRequest(port, '/w')).text, /^b /);

    const asJson = await zproxyReload([cli.configFile, '--json']);
    assert.equal(asJson.code, 1);
    const answer = JSON.parse(asJson.stdout) as { ok: boolean; errors: string[] };
    assert.equal(answer.ok, false);
    assert.equal(answer.errors.length, 2);
  } finally {
    await cli.cleanup();
  }
  // Nothing runs any more: said plainly.
  const stale = join(dir, 'stopped.json');
  writeFileSync(stale, JSON.stringify({ ...base, routes: [{ path: '/', upstream: a.url }] }));
  const gone = await zproxyReload([stale]);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /no zproxy admin listener answers at 127\.0\.0\.1:\d+/);
  const unhealthy = await zproxy(['health', stale]);
  assert.equal(unhealthy.code, 1);
  assert.match(unhealthy.stderr, /not healthy: connect ECONNREFUSED/);
});

test('zproxy reload: a config without an admin listener is told to use SIGHUP; health then connects to the listener', async () => {
  const file = join(dir, 'no-admin.json');
  writeFileSync(file, JSON.stringify({ routes: [{ path: '/', upstream: a.url }] }));
  const result = await zproxyReload([file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /has no admin listener .* send SIGHUP/);
  const port = await freePort();
  const cli = startCli({ host: '127.0.0.1', port, routes: [{ path: '/', upstream: a.url }] });
  try {
    await cli.waitForLog((l) => l.msg === 'listening', 20_000, 'listening');
    const health = await zproxy(['health', cli.configFile]);
    assert.equal(health.code, 0, health.stderr);
    assert.equal(health.stdout, `ok: 127.0.0.1:${port} accepts connections (no admin listener to ask)\n`);
  } finally {
    await cli.cleanup();
  }
});
