/**
 * auth and cors in the real proxy (the engines' filter runner), over HTTP/1.1 and HTTP/2 (h2c): a chain
 * `cors` then `auth` (api_key) on every route, and a jwt route; preflights answered without reaching the
 * upstream, CORS headers on the proxied answer and on auth's 401, the key stripped, claims forwarded, and
 * no credential in any log line.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { SignJWT } from 'jose';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const KEY = 'live-key-5b1f0c7e2d9a4c83';
const SECRET = 'a-jwt-secret-for-the-proxy-test-0123456789';
const ORIGIN = 'https://app.example.com';

let upstream: HttpUpstream;
let proxy: StartedProxy;

before(async () => {
  upstream = await startHttpUpstream();
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [
      {
        path: '/jwt',
        upstream: upstream.url,
        methods: ['GET', 'OPTIONS'],
        middlewares: [
          {
            type: 'auth',
            config: { kind: 'jwt', secret: SECRET, audience: 'api', forward_claims: { sub: 'x-user-id' } },
          },
        ],
      },
      { path: '/api', upstream: upstream.url, methods: ['GET', 'POST', 'OPTIONS'] },
      {
        // The route's auth replaces the top-level one where it stands (after cors).
        path: '/q',
        upstream: upstream.url,
        middlewares: [{ type: 'auth', config: { api_keys: [KEY], query_param: 'key' } }],
      },
      { path: '/open', upstream: upstream.url, inherit_middlewares: false },
      // OPTIONS is not among the methods: only cors's preflight answer reaches it.
      { path: '/strict', upstream: upstream.url, methods: ['GET'] },
    ],
    middlewares: [
      {
        type: 'cors',
        config: { allowed_origins: [ORIGIN], allow_credentials: true, max_age_seconds: 60 },
      },
      { type: 'auth', config: { api_keys: [KEY], header: 'x-api-key' } },
    ],
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
  const text = JSON.stringify(proxy.logs);
  assert.ok(!text.includes(KEY), 'no log line holds the API key');
  assert.ok(!text.includes('eyJ'), 'no log line holds a token');
});

interface Answer {
  readonly status: number;
  readonly headers: Record<string, unknown>;
}

type Client = (method: string, path: string, headers: Record<string, string>) => Promise<Answer>;

const h1: Client = async (method, path, headers) => {
  const res = await sendRequest(proxy.port, path, { method, headers });
  return { status: res.status, headers: res.headers };
};

const h2: Client = async (method, path, headers) => {
  const session = http2.connect(proxy.url);
  try {
    const res = await h2Request(session, { ':method': method, ':path': path, ...headers });
    return { status: res.status, headers: res.headers };
  } finally {
    session.close();
  }
};

for (const [name, client] of [
  ['HTTP/1.1', h1],
  ['HTTP/2', h2],
] as const) {
  describe(name, () => {
    test('a preflight is answered by cors, before auth, without reaching the upstream', async () => {
      const seen = upstream.requests.length;
      const res = await client('OPTIONS', '/api/items', {
        origin: ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-api-key, content-type',
      });
      assert.equal(res.status, 204);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
      assert.equal(res.headers['access-control-allow-credentials'], 'true');
      assert.equal(res.headers['access-control-allow-headers'], 'x-api-key, content-type');
      assert.equal(res.headers['access-control-max-age'], '60');
      assert.equal(upstream.requests.length, seen);
    });

    test('a good key is forwarded without the key, with CORS headers and Vary', async () => {
      const seen = upstream.requests.length;
      const res = await client('GET', '/api/items', { origin: ORIGIN, 'x-api-key': KEY });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
      assert.match(String(res.headers.vary), /Origin/);
      assert.equal(upstream.requests.length, seen + 1);
      assert.equal(upstream.requests.at(-1)?.headers['x-api-key'], undefined);
    });

    test("a bad key gets 401 with the challenge and cors's headers", async () => {
      const seen = upstream.requests.length;
      const res = await client('GET', '/api/items', { origin: ORIGIN, 'x-api-key': `${KEY}x` });
      assert.equal(res.status, 401);
      assert.equal(res.headers['www-authenticate'], 'ApiKey realm="zproxy"');
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN);
      assert.equal(upstream.requests.length, seen);
    });

    test('a disallowed origin gets no CORS header', async () => {
      const res = await client('GET', '/api/items', { origin: 'https://evil.test', 'x-api-key': KEY });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], undefined);
    });

    test("a route's auth replaces the top-level one: a key in the query, stripped, and not logged", async () => {
      const seen = upstream.requests.length;
      const res = await client('GET', `/q/items?a=1&key=${KEY}&b=2`, { origin: ORIGIN });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN, 'cors still runs first');
      assert.equal(upstream.requests.length, seen + 1);
      assert.equal(upstream.requests.at(-1)?.url, '/q/items?a=1&b=2');
      const line = proxy.accessLogs().at(-1)!;
      assert.equal(line.target, '/q/items?a=1&b=2');
      const header = await client('GET', '/q/items', { 'x-api-key': KEY });
      assert.equal(header.status, 401, 'the top-level header key does not apply to this route');
    });

    test('inherit_middlewares false: none of the top-level filters apply', async () => {
      const res = await client('GET', '/open/x', { origin: ORIGIN });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-origin'], undefined);
    });

    test('a route without OPTIONS: the preflight is answered, another OPTIONS gets 405', async () => {
      const seen = upstream.requests.length;
      const preflight = await client('OPTIONS', '/strict/x', {
        origin: ORIGIN,
        'access-control-request-method': 'GET',
      });
      assert.equal(preflight.status, 204);
      assert.equal(preflight.headers['access-control-allow-origin'], ORIGIN);
      const plain = await client('OPTIONS', '/strict/x', { 'x-api-key': KEY });
      assert.equal(plain.status, 405);
      assert.equal(plain.headers.allow, 'GET, HEAD');
      const get = await client('GET', '/strict/x', { 'x-api-key': KEY });
      assert.equal(get.status, 200);
      const post = await client('POST', '/strict/x', { 'x-api-key': KEY });
      assert.equal(post.status, 405);
      assert.equal(upstream.requests.length, seen + 1);
    });

    test('jwt route: the key and a valid token, the claim forwarded', async () => {
      const token = await new SignJWT({ sub: 'user-42', aud: 'api' })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('2m')
        .sign(new TextEncoder().encode(SECRET));
      const ok = await client('GET', '/jwt/me', { 'x-api-key': KEY, authorization: `Bearer ${token}` });
      assert.equal(ok.status, 200);
      const recorded = upstream.requests.at(-1);
      assert.equal(recorded?.headers['x-user-id'], 'user-42');
      assert.equal(recorded?.headers.authorization, undefined);
      const bad = await client('GET', '/jwt/me', { 'x-api-key': KEY, authorization: `Bearer ${token}x` });
      assert.equal(bad.status, 401);
      assert.match(String(bad.headers['www-authenticate']), /^Bearer realm="zproxy", error="invalid_token"/);
    });
  });
}
