/**
 * The container image, built and run for real with Debian's podman (runc, cgroupfs, host network: what
 * works on this machine). The Dockerfile's base image is a build argument; no registry of container
 * images can be reached here, so the base is made locally by deploy/container/make-base-image.sh (a
 * minimal Debian 12 from debootstrap plus the pinned Node 24), once per version of that script and of
 * Node: podman keeps it, and .ci/run makes it before the suite runs. The image's own layers are cached by
 * podman too (its `npm ci` layer until package-lock.json changes).
 *
 * Two containers from the image, as compose.yaml runs them: the demo origin (its entrypoint replaced) and
 * zproxy with a configuration mounted at /etc/zproxy, read-only root file system, no capabilities. A
 * request goes through zproxy to the origin; zproxy runs as uid 10001 and cannot write its file system;
 * SIGHUP reloads the mounted file; SIGTERM stops it with exit status 0 after its drain.
 *
 * Needs root, podman, runc and debootstrap (Debian packages; .ci/run installs them). Outside CI a machine
 * without them skips this file with the reason; in CI it fails.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sendRequest } from '../helpers/simple-request.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';
const PODMAN = ['--runtime', 'runc', '--cgroup-manager=cgroupfs'];
const LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
const IMAGE = 'localhost/zproxy:test';

const missingTools = ['podman', 'runc', 'debootstrap'].filter(
  (tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0,
);
const notRoot = process.getuid?.() !== 0;
const why =
  missingTools.length > 0
    ? `${missingTools.join(', ')} not installed (Debian packages podman, runc, debootstrap)`
    : notRoot
      ? 'podman here runs as root only'
      : null;
const skip = why !== null && !inCi ? why : false;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: readonly string[], timeoutMs = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { cwd: ROOT, timeout: timeoutMs, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        resolve({
          code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1,
          stdout,
          stderr,
        });
      },
    );
  });
}

const podman = (args: readonly string[], timeoutMs?: number): Promise<Run> =>
  run('podman', [...PODMAN, ...args], timeoutMs);

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForPort(port: number, timeoutMs: number, logs: () => Promise<string>): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > end) assert.fail(`nothing listens on ${port} after ${timeoutMs} ms:\n${await logs()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('the container image (Dockerfile) built and run with podman', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-container-'));
  const names = { proxy: `zproxy-test-proxy-${process.pid}`, origin: `zproxy-test-origin-${process.pid}` };
  let proxyPort: number;
  let originPort: number;
  let adminPort: number;
  /** zproxy's config: the routes given (to the origin), then `/` to the origin. */
  const configFor = (routes: Record<string, unknown>[]) => ({
    host: '127.0.0.1',
    port: proxyPort,
    shutdown_grace_ms: 3000,
    admin: { host: '127.0.0.1', port: adminPort },
    routes: [...routes, { path: '/' }].map((r) => ({ ...r, upstream: `http://127.0.0.1:${originPort}` })),
  });

  before(
    async () => {
      assert.equal(why, null, why ?? '');
      // The base image (cached by tag), then the image itself (cached by layer).
      const base = await run('deploy/container/make-base-image.sh', [], 900_000);
      assert.equal(base.code, 0, `make-base-image.sh failed:\n${base.stderr}`);
      const baseTag = base.stdout.trim();
      const started = Date.now();
      // The machine's CA bundle, for a registry reached through a proxy that re-signs TLS.
      const caFile = [process.env.NODE_EXTRA_CA_CERTS, '/etc/ssl/certs/ca-certificates.crt'].find(
        (f) => f !== undefined && f !== '' && existsSync(f),
      );
      const secret = caFile === undefined ? [] : ['--secret', `id=npm_ca,src=${caFile}`];
      const previous = (await podman(['image', 'inspect', '--format', '{{.Id}}', IMAGE])).stdout.trim();
      const build = await podman(
        [
          'build',
          '--network',
          'host',
          ...LIMITS,
          ...secret,
          '--build-arg',
          `NODE_IMAGE=${baseTag}`,
          '-t',
          IMAGE,
          '.',
        ],
        600_000,
      );
      assert.equal(build.code, 0, `podman build failed:\n${build.stdout}\n${build.stderr}`);
      process.stdout.write(`# container image built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      // The image this one replaces (untagged now) would stay on disk: remove it (its layers that the new
      // image shares, such as the npm ci layer, stay as its cache).
      const built = (await podman(['image', 'inspect', '--format', '{{.Id}}', IMAGE])).stdout.trim();
      if (previous !== '' && previous !== built) await podman(['rmi', previous]);

      originPort = await freePort();
      proxyPort = await freePort();
      adminPort = await freePort();
      writeFileSync(join(dir, 'zproxy.json'), JSON.stringify(configFor([])));
      // mkdtemp makes the folder 0700: the container's user (10001) must be able to read the config.
      chmodSync(dir, 0o755);
      const hardened = ['--network', 'host', ...LIMITS, '--read-only', '--cap-drop', 'ALL'];
      const origin = await podman([
        'run',
        '-d',
        '--name',
        names.origin,
        ...hardened,
        '-e',
        `DEMO_ORIGIN_HOST=127.0.0.1`,
        '-e',
        `DEMO_ORIGIN_PORT=${originPort}`,
        '--entrypoint',
        'node',
        IMAGE,
        '/app/dist/demo/origin-main.js',
      ]);
      assert.equal(origin.code, 0, origin.stderr);
      const proxy = await podman([
        'run',
        '-d',
        '--name',
        names.proxy,
        ...hardened,
        '--security-opt',
        'no-new-privileges',
        '--tmpfs',
        '/tmp',
        '-v',
        `${dir}:/etc/zproxy:ro`,
        IMAGE,
      ]);
      assert.equal(proxy.code, 0, proxy.stderr);
      const logs = async () => {
        const l = await podman(['logs', names.proxy]);
        return l.stdout + l.stderr;
      };
      await waitForPort(originPort, 30_000, async () => {
        const l = await podman(['logs', names.origin]);
        return l.stdout + l.stderr;
      });
      await waitForPort(proxyPort, 30_000, logs);
    },
    { timeout: 1_500_000 },
  );

  after(async () => {
    await podman(['rm', '-f', '-t', '0', names.proxy, names.origin]);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a request goes through zproxy in its container to the origin in the other', async () => {
    const res = await sendRequest(proxyPort, '/api/users/42');
    assert.equal(res.status, 200);
    assert.equal(res.headers.via, '1.1 zproxy');
    const body = JSON.parse(res.text) as { url: string; headers: Record<string, string> };
    assert.equal(body.url, '/api/users/42');
    assert.equal(body.headers['x-forwarded-for'], '127.0.0.1');
  });

  test('zproxy runs as uid 10001 with the V8 flags, on a read-only root file system', async () => {
    const id = await podman(['exec', names.proxy, 'id', '-u']);
    assert.equal(id.stdout.trim(), '10001');
    const cmdline = await podman(['exec', names.proxy, 'cat', '/proc/1/cmdline']);
    assert.deepEqual(cmdline.stdout.split('\0').filter(Boolean), [
      'node',
      '--max-semi-space-size=2',
      '--heap-growing-percent=20',
      '--no-maglev',
      '/app/dist/cli/main.js',
      'run',
      '/etc/zproxy/zproxy.json',
    ]);
    const write = await podman(['exec', names.proxy, 'sh', '-c', 'echo x > /app/x']);
    assert.notEqual(write.code, 0);
    assert.match(write.stderr, /Read-only file system/);
  });

  test('zproxy health (the image HEALTHCHECK) answers from inside the container: /healthz at the admin listener', async () => {
    const health = await podman([
      'exec',
      names.proxy,
      'node',
      '/app/dist/cli/main.js',
      'health',
      '/etc/zproxy/zproxy.json',
    ]);
    assert.equal(health.code, 0, health.stderr);
    assert.equal(health.stdout, `ok: 127.0.0.1:${adminPort}/healthz answered 200\n`);
  });

  test('the image checks its own default configuration', async () => {
    const check = await podman([
      'run',
      '--rm',
      '--network',
      'host',
      ...LIMITS,
      IMAGE,
      'check',
      '/etc/zproxy/zproxy.json',
    ]);
    assert.equal(check.code, 0, check.stderr);
    assert.equal(check.stdout, 'ok: /etc/zproxy/zproxy.json (1 route, 1 listener)\n');
  });

  test('SIGHUP reaches zproxy (PID 1): it reloads the mounted configuration and keeps serving', async () => {
    const before = await sendRequest(proxyPort, '/v2/users');
    assert.equal((JSON.parse(before.text) as { url: string }).url, '/v2/users');
    // A route added to the file on the host (the folder is mounted read-only in the container).
    writeFileSync(join(dir, 'zproxy.json'), JSON.stringify(configFor([{ path: '/v2', strip_prefix: true }])));
    const hup = await podman(['kill', '--signal', 'HUP', names.proxy]);
    assert.equal(hup.code, 0, hup.stderr);
    const end = Date.now() + 20_000;
    while (!(await podman(['logs', names.proxy])).stdout.includes('"msg":"reloaded"')) {
      assert.ok(Date.now() < end, `no reload logged:\n${(await podman(['logs', names.proxy])).stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const after = await sendRequest(proxyPort, '/v2/users');
    assert.equal(after.status, 200);
    assert.equal((JSON.parse(after.text) as { url: string }).url, '/users');
    const state = await podman(['inspect', '--format', '{{.State.Running}}', names.proxy]);
    assert.equal(state.stdout.trim(), 'true');
  });

  test('SIGTERM reaches zproxy (PID 1): it drains and exits 0', async () => {
    const started = Date.now();
    const kill = await podman(['kill', '--signal', 'TERM', names.proxy]);
    assert.equal(kill.code, 0, kill.stderr);
    const wait = await podman(['wait', names.proxy], 30_000);
    assert.equal(wait.stdout.trim(), '0', `exit status ${wait.stdout} ${wait.stderr}`);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 10_000, `stopped after ${elapsed} ms`);
    const logs = (await podman(['logs', names.proxy])).stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; signal?: string });
    assert.ok(
      logs.some((l) => l.msg === 'stopping' && l.signal === 'SIGTERM'),
      JSON.stringify(logs),
    );
    assert.equal(logs.at(-1)?.msg, 'stopped');
  });
});
