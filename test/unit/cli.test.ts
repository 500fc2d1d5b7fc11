import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCommandLine } from '../../src/cli/args.ts';
import { resolveRunConfig } from '../../src/cli/commands.ts';
import { demoConfigPath } from '../../src/cli/package-files.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
const INVALID = join(ROOT, 'test/fixtures/configs/invalid');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Runs the CLI with this process's Node (24, which runs the TypeScript source directly). */
function zproxy(args: string[], cwd = ROOT) {
  const result = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const lines = (text: string) => text.trimEnd().split('\n');

describe('zproxy check', () => {
  const examples = readdirSync(join(ROOT, 'examples')).filter((name) => name.endsWith('.json'));

  for (const name of examples) {
    test(`examples/${name} is ok`, () => {
      const result = zproxy(['check', `examples/${name}`]);
      assert.equal(result.status, 0, result.stderr);
      assert.match(
        result.stdout,
        new RegExp(`^ok: examples/${name} \\(\\d+ routes?, \\d+ listeners?\\)\\n$`),
      );
      assert.equal(result.stderr, '');
    });
  }

  test('the counts are right', () => {
    assert.equal(
      zproxy(['check', 'examples/basic_proxy.json']).stdout,
      'ok: examples/basic_proxy.json (3 routes, 1 listener)\n',
    );
  });

  test('an invalid file prints every issue on stderr and exits 1', () => {
    const file = join(INVALID, 'multiple-errors.json');
    const result = zproxy(['check', file]);
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.deepStrictEqual(
      lines(result.stderr),
      lines(readFileSync(join(INVALID, 'multiple-errors.expected.txt'), 'utf8')),
    );
  });

  test('broken JSON names the line and column', () => {
    const result = zproxy(['check', join(INVALID, 'broken-json.badjson')]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /line 4, column 57/);
  });

  test('--json prints the result as JSON on stdout', () => {
    const bad = zproxy(['check', '--json', join(INVALID, 'duplicate-route.json')]);
    assert.equal(bad.status, 1);
    const report = JSON.parse(bad.stdout) as { ok: boolean; issues: { path: string; message: string }[] };
    assert.equal(report.ok, false);
    assert.deepStrictEqual(
      report.issues.map((issue) => issue.path),
      ['routes[3].path', 'routes[5].path'],
    );

    const good = zproxy(['check', 'examples/demo.json', '--json']);
    assert.equal(good.status, 0);
    assert.deepStrictEqual(JSON.parse(good.stdout), {
      ok: true,
      file: 'examples/demo.json',
      routes: 3,
      listeners: 1,
      issues: [],
    });
  });

  test('a missing file exits 1', () => {
    const result = zproxy(['check', 'nope/zproxy.json']);
    assert.equal(result.status, 1);
    assert.equal(result.stderr, '(root): expected a readable JSON file, found no such file\n');
  });

  test('without CONFIG it is a usage error', () => {
    const result = zproxy(['check']);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /^zproxy: check needs a CONFIG file\n/);
    assert.match(result.stderr, /Usage: zproxy/);
  });
});

describe('zproxy run', () => {
  test('an invalid config prints every issue and exits 1 before starting anything', () => {
    const result = zproxy(['run', join(INVALID, 'tls-null-files.json')]);
    assert.equal(result.status, 1);
    assert.deepStrictEqual(lines(result.stderr), [
      `zproxy: invalid configuration in ${join(INVALID, 'tls-null-files.json')} (2 issues)`,
      '  tls.cert_file: expected a certificate file path (tls.enabled is true), found null',
      '  tls.key_file: expected a private key file path (tls.enabled is true), found null',
    ]);
  });

  test('a bad --log-level is a usage error', () => {
    const result = zproxy(['run', '--log-level', 'loud']);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--log-level must be one of fatal, error, warn, info, debug, trace, silent/);
  });

  describe('which config run uses', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zproxy-cli-'));
    after(() => rmSync(dir, { recursive: true, force: true }));

    test('the built-in demo when there is no ./zproxy.json', () => {
      assert.deepStrictEqual(resolveRunConfig(null, dir), { path: demoConfigPath(), demo: true });
      assert.ok(existsSync(demoConfigPath()));
      assert.equal(demoConfigPath(), join(ROOT, 'examples/demo.json'));
    });

    test('./zproxy.json when it exists', () => {
      writeFileSync(join(dir, 'zproxy.json'), '{"routes":[{"path":"/","upstream":"http://127.0.0.1:1"}]}');
      assert.deepStrictEqual(resolveRunConfig(null, dir), { path: join(dir, 'zproxy.json'), demo: false });
    });

    test('the given file, relative to the working directory', () => {
      assert.deepStrictEqual(resolveRunConfig('conf/x.json', dir), {
        path: join(dir, 'conf/x.json'),
        demo: false,
      });
    });

    test('an invalid ./zproxy.json is reported, not replaced by the demo', () => {
      writeFileSync(join(dir, 'zproxy.json'), '{"routes":[]}');
      const result = zproxy(['run'], dir);
      assert.equal(result.status, 1);
      assert.match(
        result.stderr,
        /zproxy\.json \(1 issue\)\n {2}routes: expected a non-empty list of routes/,
      );
    });
  });
});

describe('help, version and usage errors', () => {
  for (const flag of ['--version', '-v']) {
    test(`${flag} prints the package version`, () => {
      const result = zproxy([flag]);
      assert.equal(result.status, 0);
      assert.equal(result.stdout, `${VERSION}\n`);
    });
  }

  for (const args of [['--help'], ['-h'], ['help'], ['check', '--help'], ['run', '-h']]) {
    test(`${args.join(' ')} prints the usage of every command`, () => {
      const result = zproxy(args);
      assert.equal(result.status, 0);
      assert.match(result.stdout, /^Usage: zproxy <command> \[options\]/);
      for (const word of ['run [CONFIG]', '--log-level', 'check CONFIG', '--json', '--help', '--version']) {
        assert.ok(result.stdout.includes(word), word);
      }
      assert.equal(result.stderr, '');
    });
  }

  const usageErrors: [args: string[], message: string][] = [
    [['serve'], 'unknown command serve'],
    [[], 'missing command'],
    [['--verbose'], 'unknown option --verbose'],
    [['check', '--yaml', 'x.json'], "Unknown option '--yaml'"],
    [['check', 'a.json', 'b.json'], 'check takes one CONFIG, got 2'],
    [['run', 'a.json', 'b.json'], 'run takes one CONFIG, got 2'],
    [['--version', 'x'], 'unexpected x'],
  ];
  for (const [args, message] of usageErrors) {
    test(`\`zproxy ${args.join(' ')}\` exits 2`, () => {
      const result = zproxy(args);
      assert.equal(result.status, 2);
      assert.equal(result.stdout, '');
      assert.ok(result.stderr.startsWith(`zproxy: ${message}`), result.stderr);
      assert.match(result.stderr, /Usage: zproxy/);
    });
  }
});

describe('parseCommandLine', () => {
  test('run defaults', () => {
    assert.deepStrictEqual(parseCommandLine(['run']), { kind: 'run', config: null, logLevel: 'info' });
  });

  test('run with a config and a level, in any order', () => {
    const expected = { kind: 'run', config: 'a.json', logLevel: 'debug' };
    assert.deepStrictEqual(parseCommandLine(['run', 'a.json', '--log-level', 'debug']), expected);
    assert.deepStrictEqual(parseCommandLine(['run', '--log-level=debug', 'a.json']), expected);
  });

  test('check', () => {
    assert.deepStrictEqual(parseCommandLine(['check', 'a.json']), {
      kind: 'check',
      config: 'a.json',
      json: false,
    });
    assert.deepStrictEqual(parseCommandLine(['check', '--json', 'a.json']), {
      kind: 'check',
      config: 'a.json',
      json: true,
    });
  });

  test('a missing option value is a usage error', () => {
    assert.equal(parseCommandLine(['run', '--log-level']).kind, 'usage-error');
  });
});

test('npm start runs the bin with the Node flags named in its shebang', () => {
  const root = new URL('../../', import.meta.url);
  const shebang = readFileSync(new URL('src/cli/main.ts', root), 'utf8').split('\n', 1)[0]!;
  const flags = /^#!\/usr\/bin\/env -S node(.*)$/.exec(shebang)?.[1]?.trim();
  assert.ok(flags, `unexpected shebang: ${shebang}`);
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    scripts: Record<string, string>;
  };
  assert.equal(pkg.scripts.start, `node ${flags} dist/cli/main.js run`);
});

describe('run refuses to start rather than serve without what the config asks for', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-refuse-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a TLS listener whose certificate files cannot be read', () => {
    const file = join(dir, 'tls.json');
    writeFileSync(
      file,
      JSON.stringify({
        port: 0,
        tls: { enabled: true, cert_file: join(dir, 'missing.crt'), key_file: join(dir, 'missing.key') },
        routes: [{ path: '/', upstream: 'http://127.0.0.1:9' }],
      }),
    );
    const result = zproxy(['run', file]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /tls: cannot use certificate .*missing\.crt with key .*missing\.key: ENOENT/);
  });

  test('a user filter module that does not exist', () => {
    const file = join(dir, 'module.json');
    writeFileSync(
      file,
      JSON.stringify({
        port: 0,
        thread_count: 1,
        routes: [{ path: '/', upstream: 'http://127.0.0.1:9' }],
        middlewares: [{ type: 'module', path: './no-such-filter.ts' }],
      }),
    );
    const result = zproxy(['run', file]);
    assert.equal(result.status, 1);
    assert.match(
      result.stderr,
      /middlewares\[0\] \(module\): user filter module .*no-such-filter\.ts does not exist/,
    );
  });
});
