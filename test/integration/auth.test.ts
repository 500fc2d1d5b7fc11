/**
 * The auth filter's api_key and basic kinds over real sockets (a real upstream; the filter run by
 * test/helpers/auth-cors-proxy.ts until the engines' runner serves filters): good, bad and missing keys in
 * a header and a query parameter, keys given as plain text, as sha256 digests and in a file; Basic with
 * bcrypt ($2a$, $2b$, $2y$) and scrypt hashes from the config and an htpasswd file; the 401 challenges; the
 * credential stripped before forwarding (or kept); no credential in any answer.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes, scryptSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import fc from 'fast-check';
import type { AuthConfig } from '../../src/config/auth-schema.ts';
import { queryParam, withoutQueryParam } from '../../src/filters/auth/api-key.ts';
import { AuthConfigError, authFactory } from '../../src/filters/auth/index.ts';
import { passwordVerifier } from '../../src/filters/auth/password-hash.ts';
import type { Filter } from '../../src/filters/contract.ts';
import { type AuthCorsProxy, startAuthCorsProxy } from '../helpers/auth-cors-proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const env = { index: 0, route: '/' };
let upstream: HttpUpstream;
let dir: string;

before(async () => {
  upstream = await startHttpUpstream();
  dir = mkdtempSync(join(tmpdir(), 'zproxy-auth-'));
});
after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

async function withAuth(config: AuthConfig, run: (proxy: AuthCorsProxy) => Promise<void>): Promise<void> {
  const filter = (await authFactory.create(config, env)) as Filter;
  const proxy = await startAuthCorsProxy([filter], upstream.url);
  try {
    await run(proxy);
  } finally {
    await proxy.close();
  }
}

function scryptHash(password: string, ln = 10, r = 8, p = 1): string {
  const salt = randomBytes(16);
  const key = scryptSync(password, salt, 32, { N: 2 ** ln, r, p });
  return `$scrypt$ln=${ln},r=${r},p=${p}$${salt.toString('base64').replace(/=+$/, '')}$${key.toString('base64').replace(/=+$/, '')}`;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

interface Case {
  readonly name: string;
  readonly path: string;
  readonly headers?: Record<string, string>;
  readonly status: number;
  /** WWW-Authenticate of a refusal. */
  readonly challenge?: string;
  /** What the upstream saw (on success). */
  readonly upstreamUrl?: string;
  readonly upstreamHeader?: [name: string, value: string | undefined];
  readonly principal?: string | null;
}

async function runCases(
  config: AuthConfig,
  cases: readonly Case[],
  secrets: readonly string[],
): Promise<void> {
  await withAuth(config, async (proxy) => {
    for (const c of cases) {
      const seen = upstream.requests.length;
      const res = await sendRequest(proxy.port, c.path, { headers: c.headers ?? {} });
      assert.equal(res.status, c.status, c.name);
      const exchange = proxy.exchanges.at(-1);
      if (c.status === 200) {
        assert.equal(upstream.requests.length, seen + 1, c.name);
        const recorded = upstream.requests.at(-1);
        if (c.upstreamUrl !== undefined) assert.equal(recorded?.url, c.upstreamUrl, c.name);
        if (c.upstreamHeader !== undefined)
          assert.equal(recorded?.headers[c.upstreamHeader[0]], c.upstreamHeader[1], c.name);
        if (c.principal !== undefined) assert.equal(exchange?.principal, c.principal, c.name);
      } else {
        assert.equal(upstream.requests.length, seen, `${c.name}: refused before the upstream`);
        assert.equal(res.headers['www-authenticate'], c.challenge, c.name);
        assert.equal(res.headers['cache-control'], 'no-store', c.name);
        assert.equal(exchange?.principal, null, c.name);
        const answer = JSON.stringify(res.headers) + res.text;
        for (const secret of secrets)
          assert.ok(!answer.includes(secret), `${c.name}: the answer holds no credential`);
      }
    }
  });
}

describe('api_key', () => {
  const good = 'k-0123456789abcdef';
  const other = 'k-second-key';
  const digestOfOther = sha256(other);
  const principal = `key:${sha256(good).slice(0, 16)}`;
  const challenge = 'ApiKey realm="zproxy"';

  test("the seed's form: plain keys in a header, stripped before forwarding", async () => {
    await runCases(
      { api_keys: [good, `sha256:${digestOfOther}`], header: 'x-api-key' },
      [
        {
          name: 'good key',
          path: '/a',
          headers: { 'x-api-key': good },
          status: 200,
          principal,
          upstreamHeader: ['x-api-key', undefined],
        },
        {
          name: 'key given as a digest',
          path: '/a',
          headers: { 'x-api-key': other },
          status: 200,
          principal: `key:${digestOfOther.slice(0, 16)}`,
        },
        { name: 'bad key', path: '/a', headers: { 'x-api-key': 'k-wrong' }, status: 401, challenge },
        {
          name: 'a digest is not a key',
          path: '/a',
          headers: { 'x-api-key': `sha256:${digestOfOther}` },
          status: 401,
          challenge,
        },
        {
          name: 'prefix of a good key',
          path: '/a',
          headers: { 'x-api-key': good.slice(0, -1) },
          status: 401,
          challenge,
        },
        { name: 'missing key', path: '/a', status: 401, challenge },
        { name: 'empty key', path: '/a', headers: { 'x-api-key': '' }, status: 401, challenge },
        { name: 'key in another header', path: '/a', headers: { 'x-other': good }, status: 401, challenge },
      ],
      [good, other, 'k-wrong'],
    );
  });

  test('keys in a query parameter (from a file), the parameter stripped', async () => {
    const file = join(dir, 'keys.txt');
    writeFileSync(file, `# service keys\n\n${good}\nsha256:${digestOfOther}\n`);
    await runCases(
      { api_keys_file: file, query_param: 'api_key', realm: 'orders' },
      [
        {
          name: 'good key',
          path: `/q?x=1&api_key=${good}&y=2`,
          status: 200,
          upstreamUrl: '/q?x=1&y=2',
          principal,
        },
        { name: 'only parameter', path: `/q?api_key=${other}`, status: 200, upstreamUrl: '/q' },
        {
          name: 'percent-encoded key',
          path: `/q?api_key=${encodeURIComponent(good).replace('-', '%2D')}`,
          status: 200,
        },
        { name: 'bad key', path: '/q?api_key=nope', status: 401, challenge: 'ApiKey realm="orders"' },
        { name: 'missing', path: '/q?x=1', status: 401, challenge: 'ApiKey realm="orders"' },
        {
          name: 'the header is not read when only query_param is set',
          path: '/q',
          headers: { 'x-api-key': good },
          status: 401,
          challenge: 'ApiKey realm="orders"',
        },
      ],
      [good, other, 'nope'],
    );
  });

  test('header first, then query; strip_credentials false forwards the key', async () => {
    await runCases(
      { api_keys: [good], header: 'x-key', query_param: 'key', strip_credentials: false },
      [
        {
          name: 'header',
          path: '/h',
          headers: { 'x-key': good },
          status: 200,
          upstreamHeader: ['x-key', good],
        },
        { name: 'query', path: `/h?key=${good}`, status: 200, upstreamUrl: `/h?key=${good}` },
        { name: 'bad header', path: '/h', headers: { 'x-key': 'bad' }, status: 401, challenge },
      ],
      [good, 'bad'],
    );
  });

  test('refused configs', async () => {
    await assert.rejects(() => Promise.resolve(authFactory.create({ api_keys: [] }, env)), AuthConfigError);
    await assert.rejects(
      () => Promise.resolve(authFactory.create({ api_keys_file: join(dir, 'absent') }, env)),
      /api_keys_file: cannot read/,
    );
    await assert.rejects(
      () => Promise.resolve(authFactory.create({ api_keys: ['k'], secret: 'x'.repeat(32) }, env)),
      /config\.secret: only for kind "jwt"/,
    );
  });
});

describe('basic', () => {
  const basic = (user: string, password: string) => ({
    authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
  });
  const challenge = 'Basic realm="staff", charset="UTF-8"';

  test('bcrypt and scrypt hashes from the config and an htpasswd file', async () => {
    const htpasswd = join(dir, 'htpasswd');
    const y = bcrypt.hashSync('yolanda-pw', 4).replace(/^\$2b\$/, '$2y$');
    writeFileSync(htpasswd, `# team\ncarol:${scryptHash('carol pw: with colon')}\nyolanda:${y}\n`);
    await runCases(
      {
        kind: 'basic',
        realm: 'staff',
        users: { alice: bcrypt.hashSync('alice-pw', 4), bob: scryptHash('bob-pw', 11, 8, 2) },
        htpasswd_file: htpasswd,
      },
      [
        {
          name: 'bcrypt good',
          path: '/b',
          headers: basic('alice', 'alice-pw'),
          status: 200,
          principal: 'alice',
          upstreamHeader: ['authorization', undefined],
        },
        {
          name: 'bcrypt good again (remembered)',
          path: '/b',
          headers: basic('alice', 'alice-pw'),
          status: 200,
          principal: 'alice',
        },
        { name: 'bcrypt bad', path: '/b', headers: basic('alice', 'alice-pw2'), status: 401, challenge },
        { name: 'scrypt good', path: '/b', headers: basic('bob', 'bob-pw'), status: 200, principal: 'bob' },
        { name: 'scrypt bad', path: '/b', headers: basic('bob', 'Bob-pw'), status: 401, challenge },
        {
          name: 'htpasswd scrypt with a colon in the password',
          path: '/b',
          headers: basic('carol', 'carol pw: with colon'),
          status: 200,
          principal: 'carol',
        },
        {
          name: 'htpasswd $2y$ bcrypt',
          path: '/b',
          headers: basic('yolanda', 'yolanda-pw'),
          status: 200,
          principal: 'yolanda',
        },
        { name: 'unknown user', path: '/b', headers: basic('mallory', 'alice-pw'), status: 401, challenge },
        {
          name: "another user's password",
          path: '/b',
          headers: basic('bob', 'alice-pw'),
          status: 401,
          challenge,
        },
        { name: 'missing', path: '/b', status: 401, challenge },
        {
          name: 'bearer instead of basic',
          path: '/b',
          headers: { authorization: 'Bearer abc' },
          status: 401,
          challenge,
        },
        {
          name: 'no colon',
          path: '/b',
          headers: { authorization: `Basic ${Buffer.from('alice').toString('base64')}` },
          status: 401,
          challenge,
        },
        {
          name: 'lowercase scheme',
          path: '/b',
          headers: { authorization: `basic ${Buffer.from('alice:alice-pw').toString('base64')}` },
          status: 200,
        },
      ],
      ['alice-pw', 'alice-pw2', 'bob-pw', 'Bob-pw', Buffer.from('alice:alice-pw').toString('base64')],
    );
  });

  test('hash formats refused at load name the user', async () => {
    assert.equal(typeof passwordVerifier('$apr1$abc$def'), 'string');
    assert.equal(typeof passwordVerifier('$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5'), 'string');
    await assert.rejects(
      () => Promise.resolve(authFactory.create({ kind: 'basic', users: { dave: 'plain-text' } }, env)),
      /config\.users\.dave: expected a bcrypt/,
    );
  });
});

describe('query parameter handling (properties)', () => {
  const name = fc.stringMatching(/^[a-z_]{1,6}$/);
  const value = fc.stringMatching(/^[A-Za-z0-9._~-]{0,8}$/);
  const pairs = fc.array(fc.tuple(name, value), { maxLength: 6 });

  test('the key parameter is found and stripped; every other parameter is kept, in order', () => {
    fc.assert(
      fc.property(pairs, value, fc.nat(6), (others, key, at) => {
        const rest = others.filter(([n]) => n !== 'api_key');
        const all = [...rest.slice(0, at), ['api_key', key] as const, ...rest.slice(at)];
        const query = `?${all.map(([n, v]) => `${n}=${v}`).join('&')}`;
        assert.equal(queryParam(query, 'api_key'), key);
        const stripped = withoutQueryParam(`/p${query}`, 'api_key');
        const expected = rest.map(([n, v]) => `${n}=${v}`).join('&');
        assert.equal(stripped, expected === '' ? '/p' : `/p?${expected}`);
        assert.equal(queryParam(stripped.slice(2), 'api_key'), undefined);
      }),
    );
  });
});
