/**
 * The npm package as a user gets it: `npm pack` of this checkout, then `npm install --global` of the
 * tarball into an empty prefix with the pinned Node 24 (the one running this test) and nothing else on
 * PATH but the system's tools. The installed `zproxy` prints its version, checks every example config
 * and runs the demo (every curl line of docs/getting-started.md answers), with its V8 flags although its
 * shebang is a plain `#!/usr/bin/env node` (no `env -S`).
 *
 * The tarball is packed with --ignore-scripts from the dist/ that `npm test` has just built (a real
 * `npm pack` cleans and rebuilds dist/, which the other test files running meanwhile use); the test
 * checks that dist/ holds exactly what src/ compiles to, so a stale build cannot pass. Dependencies are
 * installed --prefer-offline: from npm's cache, which `npm ci` filled with the packages, and from the
 * registry for what the cache lacks (`npm ci` keeps no registry documents, which an install of a tarball
 * may need to resolve its dependencies' ranges).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { V8_FLAGS } from '../../src/cli/v8-flags.ts';
import { type CliProcess, startCommand } from '../helpers/cli-process.ts';
import { TINY } from '../helpers/compare-cli.ts';
import { checkGettingStartedLines, lockDemoPorts, waitForDemo } from '../helpers/demo.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { ...options, timeout: 180_000, maxBuffer: 16 << 20 },
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

function filesUnder(dir: string, keep: (file: string) => boolean): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter(keep)
    .map((f) => f.split('\\').join('/'))
    .sort();
}

/** The npm on this test's PATH (the one `npm test` runs with); it runs on whichever `node` PATH has first. */
function findNpm(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = join(dir, 'npm');
    if (dir !== '' && existsSync(candidate)) return candidate;
  }
  assert.fail('npm is not on PATH');
}

describe('the packed npm package installs into an empty prefix and runs', () => {
  const work = mkdtempSync(join(tmpdir(), 'zproxy-pack-'));
  const prefix = join(work, 'prefix');
  const empty = join(work, 'empty');
  // The pinned Node first, then the system's tools (curl, sh); no node_modules/.bin of the checkout.
  const npm = findNpm();
  const env: NodeJS.ProcessEnv = {
    HOME: process.env.HOME,
    PATH: [
      join(prefix, 'bin'),
      dirname(process.execPath),
      dirname(npm),
      '/usr/local/bin',
      '/usr/bin',
      '/bin',
    ].join(':'),
    npm_config_cache: process.env.npm_config_cache ?? join(process.env.HOME ?? '/root', '.npm'),
  };
  let tarball: string;
  let files: string[];
  let installed: string;

  before(async () => {
    const packed = await run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], {
      cwd: ROOT,
      env,
    });
    assert.equal(packed.code, 0, packed.stderr);
    const [report] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    tarball = join(work, report!.filename);
    files = report!.files.map((f) => f.path).sort();
    await run('mkdir', ['-p', prefix, empty], { cwd: work, env });
    const install = await run(
      npm,
      ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball],
      { cwd: empty, env },
    );
    assert.equal(install.code, 0, `npm install of the tarball failed:\n${install.stdout}\n${install.stderr}`);
    installed = join(prefix, 'lib', 'node_modules', PKG.name);
  });

  after(() => rmSync(work, { recursive: true, force: true }));

  test('the tarball holds the built code, the docs a user needs and nothing else', () => {
    const dist = files.filter((f) => f.startsWith('dist/'));
    const others = files.filter((f) => !f.startsWith('dist/'));
    assert.deepEqual(others, [
      'CHANGELOG.md',
      'LICENSE',
      'README.md',
      'SECURITY.md',
      'deploy/systemd/zproxy.service',
      'examples/basic_proxy.json',
      'examples/demo.json',
      'examples/filters/tenant.ts',
      'examples/high_performance.json',
      'examples/middleware_proxy.json',
      'examples/user_filter.json',
      'package.json',
      'schema/zproxy.schema.json',
    ]);
    // Exactly what src/ compiles to: a .js and a .d.ts per source, no source maps (they would point at
    // src/, which is not shipped), no tests, no stale file of a source that is gone.
    const sources = filesUnder(join(ROOT, 'src'), (f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) =>
      f.slice(0, -3),
    );
    // JavaScript in src/ (the generated config validator) is copied as it is.
    const copied = filesUnder(join(ROOT, 'src'), (f) => f.endsWith('.js')).map((f) => `dist/${f}`);
    const expected = [...sources.flatMap((s) => [`dist/${s}.d.ts`, `dist/${s}.js`]), ...copied].sort();
    assert.deepEqual(
      dist,
      expected,
      'dist/ is not what src/ builds to: run `npm run build` on a clean dist/',
    );
  });

  test('zproxy --version, with a plain `#!/usr/bin/env node` shebang', async () => {
    const bin = readFileSync(join(installed, 'dist/cli/main.js'), 'utf8');
    assert.equal(bin.split('\n', 1)[0], '#!/usr/bin/env node');
    const version = await run('zproxy', ['--version'], { cwd: empty, env });
    assert.equal(version.code, 0, version.stderr);
    assert.equal(version.stdout, `${PKG.version}\n`);
  });

  test('zproxy bench --help and zproxy compare --help', async () => {
    const bench = await run('zproxy', ['bench', '--help'], { cwd: empty, env });
    assert.equal(bench.code, 0, bench.stderr);
    assert.match(bench.stdout, /^ {2}bench URL {2,}Load a URL/m);
    const compare = await run('zproxy', ['compare', '--help'], { cwd: empty, env });
    assert.equal(compare.code, 0, compare.stderr);
    assert.match(compare.stdout, /^Usage: zproxy compare \[options\]/);
    assert.match(compare.stdout, /--report DIR/);
  });

  test('zproxy compare runs from the package alone (its generator, its origin) and writes its report', async () => {
    // No nginx on this PATH (/usr/sbin is not on it): the origin is the package's own; only zproxy is asked.
    const report = join(work, 'compare-report');
    const compare = await run('zproxy', ['compare', '--proxies', 'zproxy', ...TINY, '--report', report], {
      cwd: empty,
      env,
    });
    assert.equal(compare.code, 0, `${compare.stdout}\n${compare.stderr}`);
    const json = JSON.parse(readFileSync(join(report, 'report.json'), 'utf8')) as {
      method: { origin: string };
      results: { proxy: string; requests_per_second: number }[];
    };
    assert.match(json.method.origin, /Node origin server/);
    assert.equal(json.results.length, 1);
    assert.ok(json.results[0]!.requests_per_second > 0);
    assert.match(readFileSync(join(report, 'report.html'), 'utf8'), /<svg[^>]*class="marks"/);
  });

  test('zproxy check accepts every example config of the package, copied out of node_modules', async () => {
    // Copied, as a user starts from them: Node does not strip the types of a .ts file under node_modules,
    // so examples/user_filter.json's TypeScript filter loads from a copy only (docs/filters.md).
    const copy = join(work, 'examples');
    cpSync(join(installed, 'examples'), copy, { recursive: true });
    const examples = filesUnder(copy, (f) => f.endsWith('.json'));
    assert.deepEqual(examples, [
      'basic_proxy.json',
      'demo.json',
      'high_performance.json',
      'middleware_proxy.json',
      'user_filter.json',
    ]);
    for (const example of examples) {
      const result = await run('zproxy', ['check', example], { cwd: copy, env });
      assert.equal(result.code, 0, `${example}: ${result.stdout}${result.stderr}`);
      assert.match(result.stdout, /^ok: /, example);
    }
    const inPlace = await run('zproxy', ['check', 'examples/user_filter.json'], { cwd: installed, env });
    assert.equal(inPlace.code, 1);
    assert.match(inPlace.stderr, /Stripping types is currently unsupported for files under node_modules/);
  });

  describe('zproxy run without a config runs the demo', () => {
    let unlock: () => void;
    let demo: CliProcess;

    before(async () => {
      unlock = await lockDemoPorts();
      demo = startCommand(
        join(prefix, 'bin', 'zproxy'),
        ['run'],
        empty,
        () => {},
        env as Record<string, string>,
      );
      await waitForDemo(demo);
    });

    after(async () => {
      await demo?.cleanup();
      unlock?.();
    });

    test('with its V8 flags, in the process that was started', () => {
      const cmdline = readFileSync(`/proc/${demo.pid}/cmdline`, 'utf8').split('\0');
      assert.equal(cmdline[0], process.execPath, 'the pinned Node runs it');
      for (const flag of V8_FLAGS) assert.ok(cmdline.includes(flag), `${flag} in ${cmdline.join(' ')}`);
      assert.equal(
        realpathSync(cmdline[V8_FLAGS.length + 1]!),
        realpathSync(join(installed, 'dist/cli/main.js')),
      );
    });

    test('every curl line of docs/getting-started.md answers', async () => {
      await checkGettingStartedLines();
    });

    test('SIGTERM stops it', async () => {
      demo.child.kill('SIGTERM');
      assert.equal((await demo.exited).code, 0);
    });
  });
});
