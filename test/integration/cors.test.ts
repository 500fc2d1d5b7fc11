/**
 * The cors filter through zproxy itself (the engines' filter runner, HTTP/1.1) in front of a real
 * upstream: origin matching (exact, case-insensitive, patterns, "null", "*"), preflights answered without
 * reaching the upstream, simple and credentialed requests, Vary: Origin merged with the upstream's,
 * disallowed origins without any CORS header, requests without Origin untouched apart from Vary.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { CorsConfig } from '../../src/config/cors-schema.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
];

/** The upstream's own Vary, by path. */
const UPSTREAM_VARY: Record<string, string> = {
  '/vary': 'Accept-Encoding',
  '/vary-star': '*',
  '/vary-origin': 'accept-encoding, origin',
};

let upstream: HttpUpstream;
before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const headers: Record<string, string> = { 'content-type': 'text/plain' };
    const vary = UPSTREAM_VARY[req.url];
    if (vary !== undefined) headers.vary = vary;
    if (req.url === '/own-cors') headers['access-control-allow-origin'] = 'https://upstream-choice.test';
    res.writeHead(200, headers);
    res.end('ok');
  });
});
after(() => upstream.close());

/** zproxy with one route for every path whose only middleware is `cors` with `config`. */
async function withProxy(config: CorsConfig, run: (proxy: StartedProxy) => Promise<void>): Promise<void> {
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url, middlewares: [{ type: 'cors', config }] }],
  });
  try {
    await run(proxy);
  } finally {
    await proxy.close();
  }
}

function corsHeaders(headers: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of CORS_HEADERS) if (headers[name] !== undefined) out[name] = headers[name];
  return out;
}

describe('origin matching', () => {
  const cases: [origins: string[], origin: string, matches: boolean][] = [
    [['https://app.example.com'], 'https://app.example.com', true],
    [['https://app.example.com'], 'https://APP.example.com', true],
    [['https://app.example.com'], 'http://app.example.com', false],
    [['https://app.example.com'], 'https://app.example.com:8443', false],
    [['https://app.example.com'], 'https://app.example.com.evil.test', false],
    [['https://*.example.com'], 'https://a.example.com', true],
    [['https://*.example.com'], 'https://a.b.example.com', true],
    [['https://*.example.com'], 'https://example.com', false],
    [['https://*.example.com'], 'https://aexample.com', false],
    [['https://*.example.com'], 'https://a.example.com.evil.test', false],
    [['https://*.example.com'], 'http://a.example.com', false],
    [['https://*.example.com:8443'], 'https://a.example.com:8443', true],
    [['https://*.example.com:8443'], 'https://a.example.com', false],
    [['*'], 'null', true],
    [['null'], 'null', true],
  ];
  // One zproxy, one route (/m<i>) per list of origins.
  const lists = [...new Set(cases.map(([origins]) => JSON.stringify(origins)))];
  let proxy: StartedProxy;
  before(async () => {
    proxy = await startProxy({
      routes: lists.map((list, i) => ({
        path: `/m${i}`,
        upstream: upstream.url,
        middlewares: [{ type: 'cors', config: { allowed_origins: JSON.parse(list) as string[] } }],
      })),
    });
  });
  after(() => proxy.close());

  for (const [origins, origin, matches] of cases) {
    test(`${JSON.stringify(origins)} ${matches ? 'allows' : 'refuses'} ${origin}`, async () => {
      const route = `/m${lists.indexOf(JSON.stringify(origins))}`;
      const res = await sendRequest(proxy.port, `${route}/x`, { headers: { origin } });
      assert.equal(res.status, 200);
      const allowed = origins.includes('*') ? '*' : origin;
      assert.equal(res.headers['access-control-allow-origin'], matches ? allowed : undefined);
      // The preflight agrees: 204 with the origin allowed, else 403.
      const preflight = await sendRequest(proxy.port, `${route}/x`, {
        method: 'OPTIONS',
        headers: { origin, 'access-control-request-method': 'GET' },
      });
      assert.equal(preflight.status, matches ? 204 : 403);
      assert.equal(preflight.headers['access-control-allow-origin'], matches ? allowed : undefined);
    });
  }
});

test('Vary: Origin merged into an upstream Vary', async () => {
  await withProxy({ allowed_origins: ['https://app.example.com'] }, async (proxy) => {
    const varyOf = async (path: string) =>
      (await sendRequest(proxy.port, path, { headers: { origin: 'https://app.example.com' } })).headers.vary;
    assert.equal(await varyOf('/vary'), 'Accept-Encoding, Origin');
    assert.equal(await varyOf('/vary-origin'), 'accept-encoding, origin');
    assert.equal(await varyOf('/vary-star'), '*');
    assert.equal(await varyOf('/none'), 'Origin');
  });
});

interface PreflightCase {
  readonly name: string;
  readonly config: CorsConfig;
  readonly headers: Record<string, string>;
  readonly status: number;
  readonly cors: Record<string, string>;
  readonly vary?: string;
}

const preflights: PreflightCase[] = [
  {
    name: 'allowed origin, list policy: origin echoed, methods, requested headers echoed, max-age',
    config: { allowed_origins: ['https://app.example.com'], max_age_seconds: 600 },
    headers: {
      origin: 'https://app.example.com',
      'access-control-request-method': 'PUT',
      'access-control-request-headers': 'content-type, x-trace',
    },
    status: 204,
    cors: {
      'access-control-allow-origin': 'https://app.example.com',
      'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
      'access-control-allow-headers': 'content-type, x-trace',
      'access-control-max-age': '600',
    },
    vary: 'Origin, Access-Control-Request-Headers',
  },
  {
    name: 'any origin without credentials: *, no Vary: Origin',
    config: { allowed_origins: ['*'], allowed_methods: ['GET', 'POST'], allowed_headers: ['content-type'] },
    headers: { origin: 'https://x.test', 'access-control-request-method': 'POST' },
    status: 204,
    cors: {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, POST',
      'access-control-allow-headers': 'content-type',
    },
  },
  {
    name: 'any origin with credentials: the origin echoed, never *',
    config: { allowed_origins: ['*'], allow_credentials: true, allowed_headers: ['*'] },
    headers: {
      origin: 'https://x.test',
      'access-control-request-method': 'DELETE',
      'access-control-request-headers': 'authorization',
    },
    status: 204,
    cors: {
      'access-control-allow-origin': 'https://x.test',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
      'access-control-allow-headers': 'authorization',
    },
    vary: 'Origin, Access-Control-Request-Headers',
  },
  {
    name: 'wildcard header list without credentials is *',
    config: { allowed_origins: ['*'], allowed_headers: ['*'] },
    headers: {
      origin: 'https://x.test',
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'x-a',
    },
    status: 204,
    cors: {
      'access-control-allow-origin': '*',
      'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
      'access-control-allow-headers': '*',
    },
  },
  {
    name: 'pattern origin allowed',
    config: { allowed_origins: ['https://*.example.com'], allowed_headers: [] },
    headers: { origin: 'https://a.b.example.com', 'access-control-request-method': 'GET' },
    status: 204,
    cors: {
      'access-control-allow-origin': 'https://a.b.example.com',
      'access-control-allow-methods': 'GET, HEAD, POST, PUT, PATCH, DELETE',
    },
    vary: 'Origin',
  },
  {
    name: 'disallowed origin: 403 without any CORS header',
    config: { allowed_origins: ['https://*.example.com'], allow_credentials: true },
    headers: { origin: 'https://example.com.evil.test', 'access-control-request-method': 'GET' },
    status: 403,
    cors: {},
    vary: 'Origin',
  },
];

describe('preflight answered by the proxy', () => {
  for (const c of preflights) {
    test(c.name, async () => {
      await withProxy(c.config, async (proxy) => {
        const before = upstream.requests.length;
        const res = await sendRequest(proxy.port, '/api/items', { method: 'OPTIONS', headers: c.headers });
        assert.equal(res.status, c.status);
        assert.deepEqual(corsHeaders(res.headers), c.cors);
        assert.equal(res.headers.vary, c.vary);
        assert.equal(res.body.length, 0);
        assert.equal(upstream.requests.length, before, 'the preflight never reaches the upstream');
      });
    });
  }

  test('an OPTIONS without Access-Control-Request-Method is not a preflight: forwarded', async () => {
    await withProxy({ allowed_origins: ['https://app.example.com'] }, async (proxy) => {
      const before = upstream.requests.length;
      const res = await sendRequest(proxy.port, '/x', {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example.com' },
      });
      assert.equal(res.status, 200);
      assert.equal(upstream.requests.length, before + 1);
      assert.equal(res.headers['access-control-allow-origin'], 'https://app.example.com');
    });
  });
});

interface SimpleCase {
  readonly name: string;
  readonly config: CorsConfig;
  readonly path: string;
  readonly origin: string | null;
  readonly cors: Record<string, string>;
  readonly vary: string | undefined;
}

const simple: SimpleCase[] = [
  {
    name: 'allowed origin: echoed, exposed headers, Vary: Origin',
    config: { allowed_origins: ['https://app.example.com'], exposed_headers: ['x-request-id', 'etag'] },
    path: '/a',
    origin: 'https://app.example.com',
    cors: {
      'access-control-allow-origin': 'https://app.example.com',
      'access-control-expose-headers': 'x-request-id, etag',
    },
    vary: 'Origin',
  },
  {
    name: 'credentialed: origin echoed with Allow-Credentials',
    config: { allowed_origins: ['*'], allow_credentials: true },
    path: '/a',
    origin: 'https://any.test',
    cors: { 'access-control-allow-origin': 'https://any.test', 'access-control-allow-credentials': 'true' },
    vary: 'Origin',
  },
  {
    name: 'any origin without credentials: *, no Vary',
    config: { allowed_origins: ['*'] },
    path: '/a',
    origin: 'https://any.test',
    cors: { 'access-control-allow-origin': '*' },
    vary: undefined,
  },
  {
    name: 'Vary merged with the upstream Vary',
    config: { allowed_origins: ['https://app.example.com'] },
    path: '/vary',
    origin: 'https://app.example.com',
    cors: { 'access-control-allow-origin': 'https://app.example.com' },
    vary: 'Accept-Encoding, Origin',
  },
  {
    name: 'upstream Vary: * kept as is',
    config: { allowed_origins: ['https://app.example.com'] },
    path: '/vary-star',
    origin: 'https://app.example.com',
    cors: { 'access-control-allow-origin': 'https://app.example.com' },
    vary: '*',
  },
  {
    name: "disallowed origin: no CORS header, the upstream's removed, Vary: Origin",
    config: { allowed_origins: ['https://app.example.com'] },
    path: '/own-cors',
    origin: 'https://evil.test',
    cors: {},
    vary: 'Origin',
  },
  {
    name: 'no Origin: untouched apart from Vary: Origin (the answer depends on Origin)',
    config: { allowed_origins: ['https://app.example.com'] },
    path: '/vary',
    origin: null,
    cors: {},
    vary: 'Accept-Encoding, Origin',
  },
  {
    name: 'no Origin with an any-origin policy: untouched',
    config: { allowed_origins: ['*'] },
    path: '/own-cors',
    origin: null,
    cors: { 'access-control-allow-origin': 'https://upstream-choice.test' },
    vary: undefined,
  },
];

describe('CORS and non-CORS requests', () => {
  for (const c of simple) {
    test(c.name, async () => {
      await withProxy(c.config, async (proxy) => {
        const headers: Record<string, string> = c.origin === null ? {} : { origin: c.origin };
        const res = await sendRequest(proxy.port, c.path, { headers });
        assert.equal(res.status, 200);
        assert.equal(res.text, 'ok');
        assert.deepEqual(corsHeaders(res.headers), c.cors);
        assert.equal(res.headers.vary, c.vary);
      });
    });
  }
});
