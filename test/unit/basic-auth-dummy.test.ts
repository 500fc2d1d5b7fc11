/**
 * Basic auth checks an unknown user's password against a dummy hash so that the answer takes as long as a
 * known user's (docs/filters.md, "basic"). The dummy must therefore cost what the configured hashes cost:
 * the same algorithm and parameters as the first user's hash. Checked by the parameters, not by timing.
 */
import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import bcrypt from 'bcryptjs';
import { BasicFilter } from '../../src/filters/auth/index.ts';
import { dummyHashLike, hashParameters, passwordVerifier } from '../../src/filters/auth/password-hash.ts';

function scryptHash(
  password: string,
  ln: number,
  r: number,
  p: number,
  keyBytes = 32,
  saltBytes = 16,
): string {
  const salt = randomBytes(saltBytes);
  const key = scryptSync(password, salt, keyBytes, { N: 2 ** ln, r, p, maxmem: 256 * 2 ** ln * r + 2 ** 20 });
  return `$scrypt$ln=${ln},r=${r},p=${p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

const bcrypt4 = bcrypt.hashSync('four', 4);
const bcrypt6 = bcrypt.hashSync('six', 6);
const scrypt11 = scryptHash('eleven', 11, 8, 2, 48, 24);
const scrypt12 = scryptHash('twelve', 12, 4, 1);

test('hashParameters reads the algorithm and cost of an accepted hash', () => {
  assert.equal(hashParameters(bcrypt4), 'bcrypt cost=4');
  assert.equal(hashParameters(bcrypt6.replace(/^\$2b\$/, '$2y$')), 'bcrypt cost=6');
  assert.equal(hashParameters(scrypt11), 'scrypt ln=11,r=8,p=2 key=48 salt=24');
  assert.equal(hashParameters('plain text'), null);
});

test('the dummy has the algorithm and parameters of the configured users: the first one when they differ', () => {
  const cases: [users: Record<string, string>, first: string][] = [
    [{ a: bcrypt4 }, bcrypt4],
    [{ a: bcrypt6, b: bcrypt4 }, bcrypt6],
    [{ a: bcrypt4.replace(/^\$2b\$/, '$2y$') }, bcrypt4],
    [{ a: scrypt11, b: bcrypt4 }, scrypt11],
    [{ a: scrypt12 }, scrypt12],
  ];
  for (const [users, first] of cases) {
    const filter = new BasicFilter({ kind: 'basic', users });
    assert.equal(hashParameters(filter.dummyHash), hashParameters(first), JSON.stringify(Object.keys(users)));
    assert.notEqual(filter.dummyHash, first, 'the dummy is not a user hash');
    assert.equal(typeof passwordVerifier(filter.dummyHash), 'object', 'the dummy is an accepted hash');
  }
  // A dummy per filter: another filter with the same users gets another random dummy.
  assert.notEqual(
    new BasicFilter({ kind: 'basic', users: { a: bcrypt4 } }).dummyHash,
    new BasicFilter({ kind: 'basic', users: { a: bcrypt4 } }).dummyHash,
  );
});

test('users from an htpasswd file only: the first line decides', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-dummy-'));
  try {
    const file = join(dir, 'htpasswd');
    writeFileSync(file, `# staff\ncarol:${scrypt12}\ndave:${bcrypt6}\n`);
    const filter = new BasicFilter({ kind: 'basic', htpasswd_file: file });
    assert.equal(hashParameters(filter.dummyHash), hashParameters(scrypt12));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('no password matches a dummy, not even the one of the hash it was built like', async () => {
  for (const [hash, password] of [
    [bcrypt4, 'four'],
    [scrypt11, 'eleven'],
  ] as const) {
    const dummy = passwordVerifier(dummyHashLike(hash));
    assert.equal(typeof dummy, 'object');
    if (typeof dummy === 'string') return;
    for (const attempt of [password, '', 'x'.repeat(72)]) assert.equal(await dummy.verify(attempt), false);
  }
});
