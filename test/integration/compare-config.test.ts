/**
 * `zproxy compare` with a proxy missing (a PATH without Caddy: reported and skipped, in the output and in
 * the report) and with a user's configuration from examples/ (zproxy runs it; nginx gets its plain routes).
 * Tiny runs. In CI a missing nginx or HAProxy fails the test; elsewhere the test is skipped, saying why.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CompareResult } from '../../src/bench/compare/results.ts';
import { compare, inCi, missingProxies, TINY } from '../helpers/compare-cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const missing = missingProxies();
const skip = !inCi && missing.length > 0 ? `not installed: ${missing.join(', ')} (CI installs them)` : false;

/** The absolute path of a command on this process's PATH. */
function which(command: string): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const file = join(dir, command);
    try {
      readFileSync(file, { flag: 'r' }).length;
      return file;
    } catch {
      // not here
    }
  }
  throw new Error(`${command} is not on the PATH`);
}

describe('zproxy compare with a proxy missing and with a user config', { skip }, () => {
  let dir: string;

  before(() => {
    assert.deepEqual(missing, [], `compare needs ${missing.join(', ')} (.ci/run installs them)`);
    dir = mkdtempSync(join(tmpdir(), 'zproxy-compare-config-'));
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('a PATH without Caddy: caddy is reported missing and skipped, the others are measured (WebSocket too)', async () => {
    // A PATH with what compare needs (taskset, getconf) and nginx and HAProxy, but not Caddy.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const command of ['taskset', 'getconf', 'nginx', 'haproxy'])
      symlinkSync(which(command), join(bin, command));
    const result = await compare(
      [
        ...TINY,
        '--scenarios',
        'small,ws',
        '--proxies',
        'zproxy,caddy,haproxy',
        '--report',
        join(dir, 'missing'),
      ],
      { ...process.env, PATH: bin },
    );
    assert.equal(result.status, 0, `exit ${result.status}\n${result.stderr}`);
    assert.match(result.stderr, /caddy: MISSING \(caddy not found on the PATH\): skipped/);
    assert.match(result.stdout, /caddy: MISSING: caddy not found on the PATH/);
    const report = JSON.parse(readFileSync(join(dir, 'missing', 'report.json'), 'utf8')) as CompareResult;
    assert.deepEqual(
      report.proxies.map((p) => [p.name, p.status, p.reason]),
      [
        ['zproxy', 'measured', null],
        ['haproxy', 'measured', null],
        ['caddy', 'missing', 'caddy not found on the PATH'],
      ],
    );
    assert.deepEqual(
      report.results.map((r) => [r.scenario, r.proxy]),
      [
        ['small', 'zproxy'],
        ['small', 'haproxy'],
        ['ws', 'zproxy'],
        ['ws', 'haproxy'],
      ],
    );
    for (const r of report.results) assert.equal(r.errors + r.non_2xx, 0, `${r.scenario} on ${r.proxy}`);
    const html = readFileSync(join(dir, 'missing', 'report.html'), 'utf8');
    assert.match(html, /<span class="status-missing" data-path="proxies\.2\.status">missing<\/span>/);
    assert.match(readFileSync(join(dir, 'missing', 'report.md'), 'utf8'), /\| caddy \| \*\*missing\*\* \|/);
  });

  test('--config examples/basic_proxy.json: zproxy runs it, nginx its plain routes', async () => {
    const config = join(ROOT, 'examples', 'basic_proxy.json');
    const result = await compare([
      ...TINY,
      '--scenarios',
      'small,h2c,ws',
      '--proxies',
      'zproxy,nginx',
      '--config',
      config,
      '--json',
    ]);
    assert.equal(result.status, 0, `exit ${result.status}\n${result.stderr}`);
    const report = JSON.parse(result.stdout) as CompareResult;
    assert.match(report.method.plan, /^--config .*basic_proxy\.json: its 3 plain route\(s\)/);
    // The WebSocket scenario needs the generated set-up: skipped, and said so.
    assert.deepEqual(
      report.skipped.map((s) => [s.scenario, s.proxy]),
      [['ws', null]],
    );
    for (const scenario of ['small', 'h2c'])
      for (const proxy of ['zproxy', 'nginx']) {
        const row = report.results.find((r) => r.scenario === scenario && r.proxy === proxy);
        assert.ok(row !== undefined && row.requests_per_second > 0, `${scenario} on ${proxy}`);
        assert.equal(row.errors + row.non_2xx, 0);
      }
  });
});
