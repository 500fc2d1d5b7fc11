/**
 * The auth filter's jwt kind through zproxy itself (the engines' filter runner, HTTP/1.1) in front of a
 * real upstream, with a real JWKS server: valid, expired, not yet valid, within the clock skew, wrong
 * audience, wrong issuer, bad signature, algorithm not allowed, malformed, missing; required scopes (403);
 * claims forwarded as headers and left on the exchange for later filters (shown by the user filter
 * fixtures/filters/identity.ts after auth: `x-seen-principal` / `x-seen-claims` upstream, a journal in the
 * log phase); the token stripped; keys from a secret, a PEM file, a JWK file and a JWKS URL with rotation
 * (refetch on an unknown kid, rate limited by the cooldown) and an unreachable JWKS (503).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';
import type { AuthConfig } from '../../src/config/auth-schema.ts';
import { IDENTITY, identityJournal } from '../fixtures/filters/identity.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const SECRET = 'an-hmac-secret-of-at-least-32-characters!';
const now = () => Math.floor(Date.now() / 1000);

let upstream: HttpUpstream;
let dir: string;
before(async () => {
  upstream = await startHttpUpstream();
  dir = mkdtempSync(join(tmpdir(), 'zproxy-jwt-'));
});
after(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

/** zproxy with one route: `auth` with `config`, then the identity filter. No log line holds a token. */
async function withAuth(config: AuthConfig, run: (proxy: StartedProxy) => Promise<void>): Promise<void> {
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url, middlewares: [{ type: 'auth', config }, IDENTITY] }],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.close();
  }
  assert.ok(!JSON.stringify(proxy.logs).includes('eyJ'), 'no log line holds a token');
}

/** What the identity filter forwarded upstream on the last request. */
function seenUpstream(): { principal: unknown; claims: Record<string, unknown> | null } {
  const headers = upstream.requests.at(-1)?.headers ?? {};
  return {
    principal: JSON.parse(String(headers['x-seen-principal'])),
    claims: JSON.parse(String(headers['x-seen-claims'])) as Record<string, unknown> | null,
  };
}

function sign(claims: JWTPayload, key: CryptoKey | Uint8Array, alg: string, kid?: string): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader(kid === undefined ? { alg } : { alg, kid });
  return jwt.sign(key);
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('jwt with a secret', () => {
  const key = new TextEncoder().encode(SECRET);
  const config: AuthConfig = {
    kind: 'jwt',
    secret: SECRET,
    algorithms: ['HS256'],
    issuer: 'https://issuer.test',
    audience: ['orders', 'billing'],
    clock_skew_seconds: 30,
    forward_claims: { sub: 'x-user-id', roles: 'x-user-roles', tenant: 'x-tenant' },
  };
  const base = { iss: 'https://issuer.test', aud: 'orders', sub: 'user-7', roles: ['admin', 'ops'] };

  const cases: [name: string, claims: JWTPayload, status: number, description?: string, alg?: string][] = [
    ['valid', { ...base, exp: now() + 300, iat: now() }, 200],
    ['valid, audience in a list', { ...base, aud: ['other', 'billing'], exp: now() + 300 }, 200],
    ['expired long ago', { ...base, exp: now() - 120 }, 401, 'The token has expired'],
    ['expired within the clock skew', { ...base, exp: now() - 10 }, 200],
    ['not valid yet', { ...base, nbf: now() + 120, exp: now() + 300 }, 401, 'The token is not valid yet'],
    ['nbf within the clock skew', { ...base, nbf: now() + 10, exp: now() + 300 }, 200],
    [
      'wrong audience',
      { ...base, aud: 'shipping', exp: now() + 300 },
      401,
      "The token's aud claim is not accepted",
    ],
    [
      'wrong issuer',
      { ...base, iss: 'https://evil.test', exp: now() + 300 },
      401,
      "The token's iss claim is not accepted",
    ],
    [
      'algorithm not allowed',
      { ...base, exp: now() + 300 },
      401,
      'The token algorithm is not accepted',
      'HS384',
    ],
  ];

  test('claims checked, answers and forwarded headers', async () => {
    await withAuth(config, async (proxy) => {
      for (const [name, claims, status, description, alg] of cases) {
        const token = await sign(claims, key, alg ?? 'HS256');
        const seen = upstream.requests.length;
        const logged = identityJournal().length;
        const res = await sendRequest(proxy.port, '/j', {
          headers: { ...bearer(token), 'x-tenant': 'spoofed' },
        });
        assert.equal(res.status, status, name);
        if (status === 200) {
          const recorded = upstream.requests.at(-1);
          assert.equal(upstream.requests.length, seen + 1, name);
          assert.equal(recorded?.headers.authorization, undefined, `${name}: token stripped`);
          assert.equal(recorded?.headers['x-user-id'], 'user-7', name);
          assert.equal(recorded?.headers['x-user-roles'], '["admin","ops"]', name);
          assert.equal(
            recorded?.headers['x-tenant'],
            undefined,
            `${name}: a forwarded claim header cannot be spoofed`,
          );
          const exchange = seenUpstream();
          assert.equal(exchange.principal, 'user-7', name);
          assert.equal(exchange.claims?.sub, 'user-7', name);
          assert.deepEqual(exchange.claims?.roles, ['admin', 'ops'], name);
        } else {
          assert.equal(upstream.requests.length, seen, name);
          assert.equal(
            res.headers['www-authenticate'],
            `Bearer realm="zproxy", error="invalid_token", error_description="${description}"`,
            name,
          );
          assert.ok(!res.text.includes(token) && !JSON.stringify(res.headers).includes(token), name);
          await waitUntil(() => identityJournal().length > logged, 2000, `${name}: the log phase`);
          const refused = identityJournal().at(-1);
          assert.equal(refused?.principal, null, `${name}: no principal`);
          assert.equal(refused?.claims, null, `${name}: no claims`);
        }
      }
    });
  });

  test('bad signature, malformed, missing, other schemes', async () => {
    await withAuth(config, async (proxy) => {
      const forged = await sign(
        { ...base, exp: now() + 300 },
        new TextEncoder().encode(`${SECRET}-other`),
        'HS256',
      );
      const valid = await sign({ ...base, exp: now() + 300 }, key, 'HS256');
      const tampered = `${valid.slice(0, valid.lastIndexOf('.') + 1)}${'A'.repeat(43)}`;
      const invalid = (d: string) => `Bearer realm="zproxy", error="invalid_token", error_description="${d}"`;
      const table: [string, Record<string, string>, string][] = [
        ['other key', bearer(forged), invalid('The token signature is invalid')],
        ['tampered signature', bearer(tampered), invalid('The token signature is invalid')],
        ['not a JWT', bearer('abc.def'), invalid('The token is malformed')],
        ['not token68', bearer('a b'), invalid('The token is malformed')],
        ['missing', {}, 'Bearer realm="zproxy"'],
        ['basic scheme', { authorization: 'Basic YTpi' }, 'Bearer realm="zproxy"'],
      ];
      for (const [name, headers, challenge] of table) {
        const res = await sendRequest(proxy.port, '/j', { headers });
        assert.equal(res.status, 401, name);
        assert.equal(res.headers['www-authenticate'], challenge, name);
      }
    });
  });

  test('required scopes: 403 insufficient_scope for a valid token without them', async () => {
    await withAuth(
      { kind: 'jwt', secret: SECRET, required_scopes: ['orders:write'], strip_credentials: false },
      async (proxy) => {
        const without = await sign({ scope: 'orders:read', exp: now() + 60 }, key, 'HS256');
        const withScope = await sign({ scope: 'orders:read orders:write', exp: now() + 60 }, key, 'HS256');
        const withScp = await sign({ scp: ['orders:write'], exp: now() + 60 }, key, 'HS256');
        const denied = await sendRequest(proxy.port, '/s', { headers: bearer(without) });
        assert.equal(denied.status, 403);
        assert.equal(
          denied.headers['www-authenticate'],
          'Bearer realm="zproxy", error="insufficient_scope", scope="orders:write"',
        );
        const ok = await sendRequest(proxy.port, '/s', { headers: bearer(withScope) });
        assert.equal(ok.status, 200);
        assert.equal(
          upstream.requests.at(-1)?.headers.authorization,
          `Bearer ${withScope}`,
          'kept when not stripped',
        );
        assert.equal((await sendRequest(proxy.port, '/s', { headers: bearer(withScp) })).status, 200);
      },
    );
  });
});

test('a token verified before is refused once it expires', async () => {
  await withAuth({ kind: 'jwt', secret: SECRET, clock_skew_seconds: 0 }, async (proxy) => {
    const token = await sign({ sub: 'short', exp: now() + 1 }, new TextEncoder().encode(SECRET), 'HS256');
    assert.equal((await sendRequest(proxy.port, '/t', { headers: bearer(token) })).status, 200);
    assert.equal((await sendRequest(proxy.port, '/t', { headers: bearer(token) })).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    const res = await sendRequest(proxy.port, '/t', { headers: bearer(token) });
    assert.equal(res.status, 401);
    assert.match(String(res.headers['www-authenticate']), /The token has expired/);
  });
});

describe('jwt with local public keys', () => {
  test('RS256 from a PEM file, EdDSA from a JWK file', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
    const pem = join(dir, 'rsa.pem');
    const jwk = join(dir, 'ed.jwk');
    writeFileSync(pem, await exportSPKI(rsa.publicKey));
    writeFileSync(jwk, JSON.stringify(await exportJWK(ed.publicKey)));
    await withAuth({ kind: 'jwt', key_file: pem }, async (proxy) => {
      const good = await sign({ sub: 'r', exp: now() + 60 }, rsa.privateKey, 'RS256');
      const hs = await sign({ sub: 'r', exp: now() + 60 }, new TextEncoder().encode(SECRET), 'HS256');
      assert.equal((await sendRequest(proxy.port, '/r', { headers: bearer(good) })).status, 200);
      assert.equal(
        (await sendRequest(proxy.port, '/r', { headers: bearer(hs) })).status,
        401,
        'HS* refused with a public key',
      );
    });
    await withAuth({ kind: 'jwt', key_file: jwk, algorithms: ['EdDSA'] }, async (proxy) => {
      const good = await sign({ sub: 'e', exp: now() + 60 }, ed.privateKey, 'EdDSA');
      const other = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
      const bad = await sign({ sub: 'e', exp: now() + 60 }, other.privateKey, 'EdDSA');
      assert.equal((await sendRequest(proxy.port, '/e', { headers: bearer(good) })).status, 200);
      assert.equal((await sendRequest(proxy.port, '/e', { headers: bearer(bad) })).status, 401);
    });
  });
});

interface JwksServer {
  readonly url: string;
  keys: JWK[];
  fetches: number;
  close(): Promise<void>;
}

async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = { keys, fetches: 0 };
  const server = http.createServer((_req, res) => {
    state.fetches++;
    const body = JSON.stringify({ keys: state.keys });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
}

async function keyPair(alg: 'ES256' | 'RS256', kid: string) {
  const pair = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' };
  return { privateKey: pair.privateKey, jwk, kid, alg };
}

describe('jwt with a JWKS URL', () => {
  test('fetched at start, refetched on an unknown kid after a rotation', async () => {
    const a = await keyPair('ES256', 'key-a');
    const b = await keyPair('RS256', 'key-b');
    const jwks = await startJwksServer([a.jwk]);
    try {
      await withAuth(
        { kind: 'jwt', jwks_url: jwks.url, jwks_cooldown_seconds: 0, audience: 'api' },
        async (proxy) => {
          assert.equal(jwks.fetches, 1, 'fetched when the filter is built');
          const tokenA = await sign({ aud: 'api', sub: 'a', exp: now() + 60 }, a.privateKey, a.alg, a.kid);
          for (let i = 0; i < 3; i++)
            assert.equal((await sendRequest(proxy.port, '/k', { headers: bearer(tokenA) })).status, 200);
          assert.equal(jwks.fetches, 1, 'cached');
          // Rotation: the server now publishes key-b only.
          jwks.keys = [b.jwk];
          const tokenB = await sign({ aud: 'api', sub: 'b', exp: now() + 60 }, b.privateKey, b.alg, b.kid);
          assert.equal((await sendRequest(proxy.port, '/k', { headers: bearer(tokenB) })).status, 200);
          assert.equal(jwks.fetches, 2, 'refetched for the unknown kid');
          assert.equal(seenUpstream().principal, 'b');
          const unknown = await sign({ aud: 'api', exp: now() + 60 }, b.privateKey, b.alg, 'key-zzz');
          const res = await sendRequest(proxy.port, '/k', { headers: bearer(unknown) });
          assert.equal(res.status, 401);
          assert.match(
            String(res.headers['www-authenticate']),
            /error="invalid_token", error_description="No key matches the token"/,
          );
        },
      );
    } finally {
      await jwks.close();
    }
  });

  test('refetches on unknown kids are rate limited by the cooldown', async () => {
    const a = await keyPair('ES256', 'key-a');
    const b = await keyPair('ES256', 'key-b');
    const jwks = await startJwksServer([a.jwk]);
    try {
      await withAuth({ kind: 'jwt', jwks_url: jwks.url, jwks_cooldown_seconds: 1 }, async (proxy) => {
        assert.equal(jwks.fetches, 1);
        jwks.keys = [a.jwk, b.jwk];
        const tokenB = await sign({ sub: 'b', exp: now() + 60 }, b.privateKey, b.alg, b.kid);
        const unknown = await sign({ exp: now() + 60 }, b.privateKey, b.alg, 'key-unknown');
        for (let i = 0; i < 5; i++)
          assert.equal((await sendRequest(proxy.port, '/k', { headers: bearer(unknown) })).status, 401);
        assert.ok(jwks.fetches <= 2, `at most one refetch within the cooldown (${jwks.fetches} fetches)`);
        await new Promise((resolve) => setTimeout(resolve, 1100));
        assert.equal((await sendRequest(proxy.port, '/k', { headers: bearer(tokenB) })).status, 200);
        const afterRotation = jwks.fetches;
        for (let i = 0; i < 5; i++)
          assert.equal((await sendRequest(proxy.port, '/k', { headers: bearer(unknown) })).status, 401);
        assert.ok(jwks.fetches <= afterRotation + 1, `still rate limited (${jwks.fetches} fetches)`);
      });
    } finally {
      await jwks.close();
    }
  });

  test('an unreachable JWKS answers 503, not 401', async () => {
    const port = await freePort();
    const a = await keyPair('ES256', 'key-a');
    await withAuth(
      { kind: 'jwt', jwks_url: `http://127.0.0.1:${port}/jwks.json`, jwks_timeout_ms: 500 },
      async (proxy) => {
        const token = await sign({ exp: now() + 60 }, a.privateKey, a.alg, a.kid);
        const res = await sendRequest(proxy.port, '/k', { headers: bearer(token) });
        assert.equal(res.status, 503);
        assert.match(res.text, /ZP_ERR_AUTH_UNAVAILABLE/);
      },
    );
  });
});
