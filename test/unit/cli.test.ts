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
import { missingV8Flags, V8_FLAGS } from '../../src/cli/v8-flags.ts';
import { startCli } from '../helpers/cli-process.ts';

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

  // The seed's middleware example is valid but warned about (see 'warnings' below).
  for (const name of examples.filter((file) => file !== 'middleware_proxy.json')) {
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
      routes: 7,
      listeners: 2,
      issues: [],
      warnings: [],
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

const CORS_WARNING = {
  code: 'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
  path: 'middlewares[1].config.allowed_origins',
  message:
    'allow_credentials is true and allowed_origins admits any web site ("*"), so any page a user visits can send requests with the user\'s cookies and read the answers; list only trusted origins, or set allow_credentials to false',
};
const CORS_WARNING_LINE = `warning: ${CORS_WARNING.path}: ${CORS_WARNING.message} (${CORS_WARNING.code})`;

describe('zproxy check: warnings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-warn-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, json: unknown): string => {
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify(json));
    return file;
  };
  const SEED_MIDDLEWARE = JSON.parse(
    readFileSync(join(ROOT, 'examples/middleware_proxy.json'), 'utf8'),
  ) as Record<string, unknown>;

  test('the seed middleware example is valid, with the CORS warning on stderr', () => {
    const result = zproxy(['check', 'examples/middleware_proxy.json']);
    assert.equal(result.status, 0);
    assert.equal(result.stdout, 'ok: examples/middleware_proxy.json (1 route, 1 listener, 1 warning)\n');
    assert.equal(result.stderr, `${CORS_WARNING_LINE}\n`);
  });

  test('--json lists the warnings', () => {
    const result = zproxy(['check', '--json', 'examples/middleware_proxy.json']);
    assert.equal(result.status, 0);
    assert.equal(result.stderr, '');
    assert.deepStrictEqual(JSON.parse(result.stdout), {
      ok: true,
      file: 'examples/middleware_proxy.json',
      routes: 1,
      listeners: 1,
      issues: [],
      warnings: [CORS_WARNING],
    });
  });

  test('several warnings, one line each, in document order', () => {
    const file = write('several.json', {
      trusted_proxies: ['::/0'],
      routes: [{ path: '/', upstream: 'https://127.0.0.1:8443', upstream_tls: { verify: false } }],
    });
    const result = zproxy(['check', file]);
    assert.equal(result.status, 0);
    assert.equal(result.stdout, `ok: ${file} (1 route, 1 listener, 2 warnings)\n`);
    assert.deepStrictEqual(lines(result.stderr), [
      'warning: trusted_proxies[0]: "::/0" covers every address, so clients there can forge X-Forwarded-For and Forwarded and pass for any address in rate limits and upstream headers (logs show the TCP peer); list only the proxies in front of zproxy (ZP_WARN_TRUSTED_PROXIES_TOO_WIDE)',
      'warning: routes[0].upstream_tls.verify: the certificates of https:// and h2:// upstreams are not verified, so anyone able to intercept those connections can pose as the upstream and read or change the traffic; remove verify: false (give ca_file for a private CA) (ZP_WARN_UPSTREAM_TLS_UNVERIFIED)',
    ]);
  });

  test('accept_risks silences the warning', () => {
    const file = write('accepted.json', {
      ...SEED_MIDDLEWARE,
      accept_risks: ['ZP_WARN_CORS_CREDENTIALS_WILDCARD'],
    });
    const result = zproxy(['check', file]);
    assert.equal(result.status, 0);
    assert.equal(result.stdout, `ok: ${file} (1 route, 1 listener)\n`);
    assert.equal(result.stderr, '');
    const json = zproxy(['check', '--json', file]);
    assert.deepStrictEqual((JSON.parse(json.stdout) as { warnings: unknown[] }).warnings, []);
  });

  test('an unknown code in accept_risks is an error, with no warnings', () => {
    const file = write('unknown-code.json', { ...SEED_MIDDLEWARE, accept_risks: ['ZP_WARN_CORS_WILDCARD'] });
    const result = zproxy(['check', file]);
    assert.equal(result.status, 1);
    assert.equal(result.stdout, '');
    assert.equal(
      result.stderr,
      'accept_risks[0]: expected one of ZP_WARN_CORS_CREDENTIALS_WILDCARD, ZP_WARN_UPSTREAM_TLS_UNVERIFIED, ZP_WARN_TRUSTED_PROXIES_TOO_WIDE, ZP_WARN_BASIC_AUTH_WITHOUT_TLS, ZP_WARN_CACHE_NOT_SHARED, found "ZP_WARN_CORS_WILDCARD"\n',
    );
    const json = JSON.parse(zproxy(['check', '--json', file]).stdout) as Record<string, unknown>;
    assert.equal(json.ok, false);
    assert.deepStrictEqual(json.warnings, []);
  });

  test('a misspelt key gets its hint on the command line too', () => {
    const file = write('misspelt.json', {
      routes: [{ path: '/', upstream: 'http://127.0.0.1:1', method: ['GET'] }],
    });
    const result = zproxy(['check', file]);
    assert.equal(result.status, 1);
    assert.match(
      result.stderr,
      /^routes\[0\]\.method: unknown key \(allowed keys: .*\); did you mean "methods"\?\n$/,
    );
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

  for (const threads of [1, 2]) {
    test(`logs each config warning once at start (thread_count ${threads})`, async () => {
      const cli = startCli({
        host: '127.0.0.1',
        port: 0,
        thread_count: threads,
        protocols: ['http1'],
        routes: [{ path: '/', upstream: 'http://127.0.0.1:9' }],
        middlewares: [
          { type: 'rate_limit', config: { requests_per_minute: 100 } },
          { type: 'cors', config: { allowed_origins: ['*'], allow_credentials: true } },
        ],
      });
      try {
        // Every process has logged its listener (a worker flushes its log before it reports listening).
        await cli.waitForLog((l) => l.msg === (threads === 1 ? 'listening' : 'ready'), 20_000, 'started');
        if (threads > 1) {
          for (const wpid of cli.workerPids()) {
            await cli.waitForLog((l) => l.msg === 'listening' && l.pid === wpid, 5000, 'worker listening');
          }
        }
        const warnings = cli.logs.filter((l) => l.level === 40);
        assert.deepStrictEqual(
          warnings.map((l) => ({ pid: l.pid, code: l.code, path: l.path, msg: l.msg })),
          [{ pid: cli.pid, code: CORS_WARNING.code, path: CORS_WARNING.path, msg: CORS_WARNING.message }],
        );
        // Lines of one process keep their order (other processes' lines may come in between).
        const own = cli.logs.filter((l) => l.pid === cli.pid);
        const started = own.findIndex((l) => l.msg === 'listening' || l.msg === 'worker started');
        assert.ok(own.indexOf(warnings[0]!) < started, 'logged before the proxy starts');
      } finally {
        await cli.cleanup();
      }
    });
  }

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
    assert.deepStrictEqual(parseCommandLine(['run']), {
      kind: 'run',
      config: null,
      logLevel: 'info',
      watch: false,
    });
  });

  test('run --watch', () => {
    assert.deepStrictEqual(parseCommandLine(['run', 'a.json', '--watch']), {
      kind: 'run',
      config: 'a.json',
      logLevel: 'info',
      watch: true,
    });
  });

  test('reload, with a config or the default one', () => {
    assert.deepStrictEqual(parseCommandLine(['reload']), { kind: 'reload', config: null, json: false });
    assert.deepStrictEqual(parseCommandLine(['reload', 'a.json', '--json']), {
      kind: 'reload',
      config: 'a.json',
      json: true,
    });
  });

  test('run with a config and a level, in any order', () => {
    const expected = { kind: 'run', config: 'a.json', logLevel: 'debug', watch: false };
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

test('npm start runs the bin with its V8 flags; the bin needs no `env -S`', () => {
  const root = new URL('../../', import.meta.url);
  const shebang = readFileSync(new URL('src/cli/main.ts', root), 'utf8').split('\n', 1)[0]!;
  assert.equal(shebang, '#!/usr/bin/env node');
  const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    scripts: Record<string, string>;
  };
  assert.equal(pkg.scripts.start, `node ${V8_FLAGS.join(' ')} dist/cli/main.js run`);
});

test('missingV8Flags: the flags not given already, by name', () => {
  assert.deepEqual(missingV8Flags([]), [...V8_FLAGS]);
  assert.deepEqual(missingV8Flags(['--max-old-space-size=512']), [...V8_FLAGS]);
  assert.deepEqual(missingV8Flags(['--max-semi-space-size=16']), [
    '--heap-growing-percent=20',
    '--no-maglev',
  ]);
  assert.deepEqual(
    missingV8Flags(['--heap-growing-percent=50', '--max-semi-space-size=2', '--no-maglev']),
    [],
  );
  // V8's spellings: underscores, and a boolean flag turned back on.
  assert.deepEqual(missingV8Flags(['--max_semi_space_size=4', '--heap-growing-percent=50', '--maglev']), []);
  assert.deepEqual(missingV8Flags(['--maglev-inlining']), [...V8_FLAGS]);
});

test('a process started without the V8 flags replaces itself with one that has them (same PID)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-flags-'));
  try {
    const script = join(dir, 'show.ts');
    const module = JSON.stringify(new URL('../../src/cli/v8-flags.ts', import.meta.url).href);
    writeFileSync(
      script,
      `import { ensureV8Flags } from ${module};\nensureV8Flags();\n` +
        'process.stdout.write(JSON.stringify({ pid: process.pid, execArgv: process.execArgv, args: process.argv.slice(2) }));\n',
    );
    const run = (env: Record<string, string>) => {
      const result = spawnSync(process.execPath, ['--max-old-space-size=300', script, 'run', 'x y'], {
        encoding: 'utf8',
        env: { ...process.env, ...env },
      });
      assert.equal(result.status, 0, result.stderr);
      return {
        pid: result.pid,
        seen: JSON.parse(result.stdout) as { pid: number; execArgv: string[]; args: string[] },
      };
    };
    const { pid, seen } = run({});
    assert.equal(seen.pid, pid);
    assert.deepEqual(seen.execArgv, [...V8_FLAGS, '--max-old-space-size=300']);
    assert.deepEqual(seen.args, ['run', 'x y']);
    // The way out, for a platform where it would misbehave.
    assert.deepEqual(run({ ZPROXY_V8_FLAGS: 'off' }).seen.execArgv, ['--max-old-space-size=300']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
