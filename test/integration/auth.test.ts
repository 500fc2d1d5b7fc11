/**
 * The auth filter's api_key and basic kinds through zproxy itself (the engines' filter runner, HTTP/1.1)
 * in front of a real upstream: good, bad and missing keys in a header and a query parameter, keys given as
 * plain text, as sha256 digests and in a file; Basic with bcrypt ($2a$, $2b$, $2y$) and scrypt hashes from
 * the config and an htpasswd file; the 401 challenges; the credential stripped before forwarding (or
 * kept); no credential in any answer or log line; configs refused when zproxy starts, naming the JSON path.
 * The principal auth leaves on the exchange is shown by a user filter after it (fixtures/filters/
 * identity.ts): forwarded upstream as `x-seen-principal`, and journaled in the log phase for refusals.
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
import { IDENTITY, identityJournal } from '../fixtures/filters/identity.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

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

/** zproxy with one route: `auth` with `config`, then the identity filter. */
function proxyWith(config: AuthConfig): Promise<StartedProxy> {
  return startProxy({
    routes: [{ path: '/', upstream: upstream.url, middlewares: [{ type: 'auth', config }, IDENTITY] }],
  });
}

async function withAuth(
  config: AuthConfig,
  secrets: readonly string[],
  run: (proxy: StartedProxy) => Promise<void>,
): Promise<void> {
  const proxy = await proxyWith(config);
  try {
    await run(proxy);
  } finally {
    await proxy.close();
  }
  const logged = JSON.stringify(proxy.logs);
  for (const secret of secrets) assert.ok(!logged.includes(secret), 'no log line holds a credential');
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
  await withAuth(config, secrets, async (proxy) => {
    for (const c of cases) {
      const seen = upstream.requests.length;
      const logged = identityJournal().length;
      const res = await sendRequest(proxy.port, c.path, { headers: c.headers ?? {} });
      assert.equal(res.status, c.status, c.name);
      if (c.status === 200) {
        assert.equal(upstream.requests.length, seen + 1, c.name);
        const recorded = upstream.requests.at(-1);
        if (c.upstreamUrl !== undefined) assert.equal(recorded?.url, c.upstreamUrl, c.name);
        if (c.upstreamHeader !== undefined)
          assert.equal(recorded?.headers[c.upstreamHeader[0]], c.upstreamHeader[1], c.name);
        if (c.principal !== undefined)
          assert.equal(recorded?.headers['x-seen-principal'], JSON.stringify(c.principal), c.name);
      } else {
        assert.equal(upstream.requests.length, seen, `${c.name}: refused before the upstream`);
        assert.equal(res.headers['www-authenticate'], c.challenge, c.name);
        assert.equal(res.headers['cache-control'], 'no-store', c.name);
        await waitUntil(() => identityJournal().length > logged, 2000, `${c.name}: the log phase`);
        assert.equal(identityJournal().at(-1)?.principal, null, `${c.name}: no principal`);
        const answer = JSON.stringify(res.headers) + res.text;
        for (const secret of secrets)
          assert.ok(!answer.includes(secret), `${c.name}: the answer holds no credential`);
      }
    }
  });
}

/** zproxy must refuse to start with `config`: a config error whose message matches `message`. */
async function refused(config: AuthConfig, message: RegExp): Promise<void> {
  let started: StartedProxy | null = null;
  try {
    await assert.rejects(
      async () => {
        started = await proxyWith(config);
      },
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'ZP_ERR_CONFIG', error.message);
        assert.match(error.message, message);
        return true;
      },
    );
  } finally {
    // A proxy that started anyway (the test fails) is stopped, so that the failure is reported.
    await (started as StartedProxy | null)?.close(100);
  }
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
        // Not hex ('bad' was): the access log's trace and span ids are hex and could hold it by chance.
        { name: 'bad header', path: '/h', headers: { 'x-key': 'wrong-key' }, status: 401, challenge },
      ],
      [good, 'wrong-key'],
    );
  });

  test('refused configs: zproxy does not start, and the error names the JSON path', async () => {
    await refused({ api_keys: [] }, /^routes\[0\]\.middlewares\[0\]\.config\.api_keys: at least one key/);
    await refused(
      { api_keys_file: join(dir, 'absent') },
      /^routes\[0\]\.middlewares\[0\]\.config\.api_keys_file: cannot read/,
    );
    await refused(
      { api_keys: ['k'], secret: 'x'.repeat(32) },
      /^routes\[0\]\.middlewares\[0\]\.config\.secret: only for kind "jwt"/,
    );
    // Fields zproxy manages cannot be edited by filters (docs/filters.md, "Edits").
    await refused(
      { api_keys: ['k'], header: 'Host' },
      /^routes\[0\]\.middlewares\[0\]\.config\.header: host is a hop-by-hop or framing field/,
    );
    await refused(
      { kind: 'jwt', secret: 'x'.repeat(32), forward_claims: { sub: 'x-user', size: 'Content-Length' } },
      /^routes\[0\]\.middlewares\[0\]\.config\.forward_claims\.size: content-length is a hop-by-hop/,
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
    const at = /^routes\[0\]\.middlewares\[0\]\.config\.users\.dave: expected/;
    await refused({ kind: 'basic', users: { dave: '$apr1$abc$def' } }, at);
    await refused(
      { kind: 'basic', users: { dave: '$scrypt$ln=30,r=8,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5' } },
      /config\.users\.dave: expected scrypt parameters out of range/,
    );
    await refused({ kind: 'basic', users: { dave: 'plain-text' } }, /config\.users\.dave: expected a bcrypt/);
  });
});

describe('query parameter handling (properties)', () => {
  const good = 'k-property-key-42';
  const name = fc.stringMatching(/^[a-z_]{1,6}$/);
  const value = fc.stringMatching(/^[A-Za-z0-9._~-]{0,8}$/);
  const pairs = fc.array(fc.tuple(name, value), { maxLength: 6 });

  test('the key parameter is found and stripped; every other parameter is kept, in order', async () => {
    await withAuth({ api_keys: [good], query_param: 'api_key' }, [good], async (proxy) => {
      await fc.assert(
        fc.asyncProperty(pairs, fc.oneof(fc.constant(good), value), fc.nat(6), async (others, key, at) => {
          const rest = others.filter(([n]) => n !== 'api_key');
          const all = [...rest.slice(0, at), ['api_key', key] as const, ...rest.slice(at)];
          const query = `?${all.map(([n, v]) => `${n}=${v}`).join('&')}`;
          const seen = upstream.requests.length;
          const res = await sendRequest(proxy.port, `/p${query}`);
          if (key !== good) {
            // Only the key parameter is read: another value is not a key, wherever it stands.
            assert.equal(res.status, 401, query);
            assert.equal(upstream.requests.length, seen, query);
            return;
          }
          assert.equal(res.status, 200, query);
          assert.equal(upstream.requests.length, seen + 1, query);
          const expected = rest.map(([n, v]) => `${n}=${v}`).join('&');
          assert.equal(upstream.requests.at(-1)?.url, expected === '' ? '/p' : `/p?${expected}`, query);
        }),
        { numRuns: 150 },
      );
    });
  });
});
