/**
 * deploy/systemd/zproxy.service: verified by systemd's own checker (`systemd-analyze verify`, which
 * prints a line for every unknown key, unparsable value or missing command and nothing otherwise), scored
 * by `systemd-analyze security --offline`, and checked for what docs/deployment.md promises: a reload
 * on SIGHUP, the open-file limit, the sandbox, a dedicated user, a stop
 * timeout longer than zproxy's default shutdown grace.
 *
 * Outside CI a machine without systemd-analyze skips this file with the reason; in CI it fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONFIG_DEFAULTS } from '../../src/config/schema.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNIT = readFileSync(join(ROOT, 'deploy/systemd/zproxy.service'), 'utf8');
/** The bin as the unit names it: the package installed globally under /usr/local. */
const BIN = '/usr/local/bin/zproxy';

const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';
const found = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const missing = found.error !== undefined || found.status !== 0;
const skip = missing && !inCi ? 'systemd-analyze is not installed (Debian package systemd)' : false;

/** The [Service] section's settings, every value of a key in order. */
function serviceSettings(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      section = line;
      continue;
    }
    if (section !== '[Service]') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function seconds(value: string): number {
  const m = /^(\d+)(ms|s|min)?$/.exec(value);
  assert.ok(m, `a time span systemd reads: ${value}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'min' ? n * 60 : n;
}

describe('deploy/systemd/zproxy.service', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-systemd-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // verify checks that every command exists and is executable: the bin is not installed on this machine,
  // so the copy names a stand-in at another path; every other line is verified as it is.
  const stub = join(dir, 'zproxy');
  writeFileSync(stub, '#!/bin/sh\nexit 0\n');
  chmodSync(stub, 0o755);

  function verify(name: string, text: string): { status: number | null; output: string } {
    const file = join(dir, name);
    writeFileSync(file, text);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.error !== undefined) throw r.error;
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  }

  test('systemd-analyze is installed (Debian package systemd; .ci/run installs it)', () => {
    assert.equal(missing, false, 'systemd-analyze not found');
  });

  test('systemd-analyze verify finds nothing to say', () => {
    assert.ok(UNIT.includes(BIN), `the unit runs ${BIN}`);
    const r = verify('zproxy.service', UNIT.replaceAll(BIN, stub));
    assert.equal(r.output, '');
    assert.equal(r.status, 0);
  });

  test('the check can fail: a misspelt key, a bad value and a missing command are reported', () => {
    const good = UNIT.replaceAll(BIN, stub);
    const cases: [string, string, RegExp][] = [
      ['NoNewPrivileges=yes', 'NoNewPrivilege=yes', /Unknown key/],
      ['ProtectSystem=strict', 'ProtectSystem=strictest', /Failed to parse/],
      [`ExecStart=${stub}`, `ExecStart=${join(dir, 'absent')}`, /not executable/],
    ];
    for (const [from, to, expected] of cases) {
      assert.ok(good.includes(from), from);
      const r = verify('broken.service', good.replace(from, to));
      assert.match(r.output, expected, `${to}: ${r.output}`);
    }
  });

  test('the sandbox scores as systemd rates it OK or better (exposure ≤ 2.0 of 10)', () => {
    const file = join(dir, 'scored.service');
    writeFileSync(file, UNIT.replaceAll(BIN, stub));
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', file], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const m = /Overall exposure level for scored\.service: (\d+\.\d+)/.exec(r.stdout);
    assert.ok(m, r.stdout + r.stderr);
    assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
  });

  test('reload, limits, user and sandbox are the ones docs/deployment.md describes', () => {
    const s = serviceSettings(UNIT);
    const one = (key: string) => {
      const values = s.get(key);
      assert.ok(values !== undefined && values.length === 1, `${key} set once`);
      return values[0]!;
    };
    assert.equal(one('ExecStart'), `${BIN} run /etc/zproxy/zproxy.json`);
    assert.equal(one('ConfigurationDirectory'), 'zproxy');
    // Where access_log.file goes under ProtectSystem=strict (docs/operations.md).
    assert.equal(one('LogsDirectory'), 'zproxy');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    // SIGHUP reloads (test/integration/reload-signal.test.ts); the unit says so where ExecReload is.
    assert.match(UNIT, /SIGHUP reloads \/etc\/zproxy\/zproxy\.json/);
    assert.ok(Number(one('LimitNOFILE')) >= 65536);
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('DynamicUser'), 'yes');
    assert.equal(one('KillSignal'), 'SIGTERM');
    // SIGTERM drains for shutdown_grace_ms; systemd must not SIGKILL before.
    assert.ok(seconds(one('TimeoutStopSec')) * 1000 > CONFIG_DEFAULTS.shutdown_grace_ms);
    for (const key of [
      'PrivateTmp',
      'PrivateDevices',
      'ProtectHome',
      'ProtectKernelTunables',
      'RestrictSUIDSGID',
    ])
      assert.equal(one(key), 'yes', key);
  });
});
