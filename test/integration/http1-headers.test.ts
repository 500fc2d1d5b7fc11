/**
 * What the proxy changes in heads, both ways, as seen on the wire by the upstream and by the client:
 * hop-by-hop removal, X-Forwarded-* and Via, Host handling, request-target handling (strip_prefix,
 * absolute-form, query, escapes, dot segments) and routing answers (host routes, 404, 405, keep-alive).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ScriptedUpstream, startScriptedUpstream, WireClient } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, type RecordedRequest, startHttpUpstream } from '../helpers/upstream.ts';

let upA: HttpUpstream;
let upB: HttpUpstream;
let upApi: HttpUpstream;
let upAdmin: HttpUpstream;
let scripted: ScriptedUpstream;
let proxy: StartedProxy;
let trustedProxy: StartedProxy;
let rewritingProxy: StartedProxy;

const RESPONSES: Record<string, string> = {
  '/raw/hop':
    'HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop, keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\nX-Resp-Hop: secret\r\nX-Resp-Kept: yes\r\nContent-Length: 2\r\n\r\nok',
  '/raw/connection-cl': 'HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello',
  '/raw/via': 'HTTP/1.1 200 OK\r\nVia: 1.1 origin-cache\r\nContent-Length: 3\r\n\r\nvia',
  '/raw/upstream-close': 'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 6\r\n\r\nclosed',
  '/raw/http10': 'HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!',
};

before(async () => {
  upA = await startHttpUpstream();
  upB = await startHttpUpstream();
  upApi = await startHttpUpstream();
  upAdmin = await startHttpUpstream();
  scripted = await startScriptedUpstream(
    (req) => RESPONSES[req.target] ?? 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n',
  );
  proxy = await startProxy({
    routes: [
      { host: 'a.test', path: '/', upstream: upA.url },
      { host: 'b.test', path: '/', upstream: upB.url },
      { path: '/admin', upstream: upAdmin.url },
      { path: '/api', upstream: upApi.url },
      { path: '/strip', upstream: upApi.url, strip_prefix: true },
      { path: '/only', methods: ['GET', 'POST'], upstream: upApi.url },
      { path: '/raw', upstream: scripted.url },
    ],
  });
  trustedProxy = await startProxy({
    trusted_proxies: ['127.0.0.1'],
    routes: [{ path: '/', upstream: upApi.url }],
  });
  rewritingProxy = await startProxy({
    preserve_host: false,
    routes: [{ path: '/', upstream: upApi.url }],
  });
});
after(async () => {
  await proxy.close();
  await trustedProxy.close();
  await rewritingProxy.close();
  for (const u of [upA, upB, upApi, upAdmin, scripted]) await u.close();
});

/** Lowercased field names as the upstream received them. */
function names(r: RecordedRequest): string[] {
  return r.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
}

/** Every raw value of one field at the upstream. */
function values(r: RecordedRequest, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < r.rawHeaders.length; i += 2) {
    if (r.rawHeaders[i]!.toLowerCase() === name) out.push(r.rawHeaders[i + 1]!);
  }
  return out;
}

/** Sends one request on a fresh connection and returns the response and what `up` recorded for it. */
async function exchange(port: number, bytes: string, up: HttpUpstream) {
  const before = up.requests.length;
  const c = await WireClient.connect(port);
  try {
    c.write(bytes);
    const res = await c.next();
    assert.equal(up.requests.length, before + 1, `the upstream got one request (status ${res.status})`);
    return { res, seen: up.requests.at(-1)! };
  } finally {
    c.close();
  }
}

describe('hop-by-hop fields', () => {
  test('are removed from the request: Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade and the fields Connection names', async () => {
    const { res, seen } = await exchange(
      proxy.port,
      'GET /api/hop HTTP/1.1\r\nHost: hop.test\r\nConnection: keep-alive, X-Custom-Hop ,x-other-hop\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\nX-Custom-Hop: secret\r\nX-End-To-End: kept\r\nX-Other-Hop: 2\r\n\r\n',
      upApi,
    );
    assert.equal(res.status, 200);
    const got = names(seen);
    for (const hop of [
      'connection',
      'keep-alive',
      'proxy-connection',
      'te',
      'trailer',
      'upgrade',
      'x-custom-hop',
      'x-other-hop',
    ]) {
      assert.equal(got.includes(hop), false, `${hop} must not reach the upstream (got ${got.join(', ')})`);
    }
    assert.deepEqual(values(seen, 'x-end-to-end'), ['kept']);
    assert.deepEqual(values(seen, 'host'), ['hop.test']);
  });

  test('are removed from the response', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/hop HTTP/1.1\r\nHost: hop.test\r\n\r\n');
      const res = await c.next();
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), 'ok');
      for (const hop of ['keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'x-resp-hop']) {
        assert.equal(res.has(hop), false, `${hop} must not reach the client:\n${res.head}`);
      }
      assert.equal(res.has('connection'), false);
      assert.equal(res.header('x-resp-kept'), 'yes');
      assert.equal(res.header('content-length'), '2');
    } finally {
      c.close();
    }
  });

  test('Connection: content-length, host never strips Content-Length or Host from a request', async () => {
    const { res, seen } = await exchange(
      proxy.port,
      'POST /api/cl HTTP/1.1\r\nHost: keep.test\r\nConnection: content-length, host\r\nContent-Length: 5\r\n\r\nhello',
      upApi,
    );
    assert.equal(res.status, 200);
    assert.deepEqual(values(seen, 'host'), ['keep.test']);
    assert.deepEqual(values(seen, 'content-length'), ['5']);
    assert.equal(seen.body.toString(), 'hello');
  });

  test('Connection: transfer-encoding never strips the chunked framing of a request', async () => {
    const { seen } = await exchange(
      proxy.port,
      'POST /api/te HTTP/1.1\r\nHost: keep.test\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'transfer-encoding'), ['chunked']);
    assert.equal(seen.body.toString(), 'hello');
  });

  test('Connection: content-length never strips Content-Length from a response', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/connection-cl HTTP/1.1\r\nHost: a\r\n\r\n');
      const res = await c.next();
      assert.equal(res.header('content-length'), '5');
      assert.equal(res.body.toString(), 'hello');
      // Framing was kept, so the connection is still in sync.
      c.write('GET /raw/via HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await c.next()).body.toString(), 'via');
    } finally {
      c.close();
    }
  });

  test("the upstream's Connection: close ends only the upstream connection, not the client's", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/upstream-close HTTP/1.1\r\nHost: a\r\n\r\n');
      const r1 = await c.next();
      assert.equal(r1.body.toString(), 'closed');
      assert.equal(r1.has('connection'), false);
      c.write('GET /raw/upstream-close HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await c.next()).body.toString(), 'closed');
      assert.equal(c.closed, false);
    } finally {
      c.close();
    }
    const last = scripted.requests.slice(-2);
    assert.notEqual(
      last[0]!.connection,
      last[1]!.connection,
      'a fresh upstream connection for the second request',
    );
  });
});

describe('forwarding fields', () => {
  test('X-Forwarded-For/Proto/Host and Via are set on the request; Via is added to the response', async () => {
    const { res, seen } = await exchange(
      proxy.port,
      'GET /api/fwd HTTP/1.1\r\nHost: fwd.example:8080\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(values(seen, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(seen, 'x-forwarded-host'), ['fwd.example:8080']);
    assert.deepEqual(values(seen, 'via'), ['1.1 zproxy']);
    assert.deepEqual(values(seen, 'host'), ['fwd.example:8080']);
    assert.deepEqual(res.headerAll('via'), ['1.1 zproxy']);
  });

  test('Via is appended to existing Via fields both ways, with the sender version', async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET /api/via HTTP/1.0\r\nHost: via.test\r\nVia: 1.1 front\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'via'), ['1.1 front', '1.0 zproxy']);
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/via HTTP/1.1\r\nHost: a\r\n\r\nGET /raw/http10 HTTP/1.1\r\nHost: a\r\n\r\n');
      const r1 = await c.next();
      assert.deepEqual(r1.headerAll('via'), ['1.1 origin-cache', '1.1 zproxy']);
      const r2 = await c.next();
      assert.equal(r2.version, '1.1', 'the client always gets HTTP/1.1');
      assert.deepEqual(r2.headerAll('via'), ['1.0 zproxy']);
      assert.equal(r2.body.toString(), 'old!');
    } finally {
      c.close();
    }
  });

  test("an untrusted client's own X-Forwarded-* fields are replaced", async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET /api/spoof HTTP/1.1\r\nHost: real.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\nx-forwarded-for: 5.6.7.8\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(values(seen, 'x-forwarded-proto'), ['http']);
    assert.deepEqual(values(seen, 'x-forwarded-host'), ['real.test']);
  });

  test("a trusted peer's X-Forwarded-For is appended to, and its Proto/Host kept", async () => {
    const { seen } = await exchange(
      trustedProxy.port,
      'GET /t HTTP/1.1\r\nHost: inner.test\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: public.example\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'x-forwarded-for'), ['1.2.3.4, 10.0.0.1, 127.0.0.1']);
    assert.deepEqual(values(seen, 'x-forwarded-proto'), ['https']);
    assert.deepEqual(values(seen, 'x-forwarded-host'), ['public.example']);
  });

  test("an untrusted client's Forwarded, X-Real-IP and X-Forwarded-Port never reach the upstream", async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET /api/spoof2 HTTP/1.1\r\nHost: real.test\r\nForwarded: for=6.6.6.6;proto=https;host=evil\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Port: 443\r\nX-Kept: yes\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'forwarded'), []);
    assert.deepEqual(values(seen, 'x-real-ip'), []);
    assert.deepEqual(values(seen, 'x-forwarded-port'), []);
    assert.deepEqual(values(seen, 'x-kept'), ['yes']);
  });

  test("a trusted peer's Forwarded, X-Real-IP and X-Forwarded-Port are kept", async () => {
    const { seen } = await exchange(
      trustedProxy.port,
      'GET /t3 HTTP/1.1\r\nHost: inner.test\r\nForwarded: for=192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Port: 443\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'forwarded'), ['for=192.0.2.1']);
    assert.deepEqual(values(seen, 'x-real-ip'), ['192.0.2.1']);
    assert.deepEqual(values(seen, 'x-forwarded-port'), ['443']);
  });

  test('identical duplicate Content-Length lines are forwarded as one', async () => {
    const { res, seen } = await exchange(
      proxy.port,
      'POST /api/dup HTTP/1.1\r\nHost: real.test\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc',
      upApi,
    );
    assert.equal(res.status, 200);
    assert.deepEqual(values(seen, 'content-length'), ['3']);
    assert.equal(seen.body.toString(), 'abc');
  });

  test("a trusted peer without X-Forwarded-For gets the peer's address", async () => {
    const { seen } = await exchange(trustedProxy.port, 'GET /t2 HTTP/1.1\r\nHost: inner.test\r\n\r\n', upApi);
    assert.deepEqual(values(seen, 'x-forwarded-for'), ['127.0.0.1']);
  });
});

describe('Host and request-target', () => {
  test("preserve_host: false sends the upstream's host:port and keeps the client's in X-Forwarded-Host", async () => {
    const { seen } = await exchange(
      rewritingProxy.port,
      'GET /h?x=1 HTTP/1.1\r\nHost: client.test\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'host'), [`127.0.0.1:${upApi.port}`]);
    assert.deepEqual(values(seen, 'x-forwarded-host'), ['client.test']);
    assert.equal(seen.url, '/h?x=1');
  });

  test('preserve_host: true keeps the Host exactly as sent', async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET /api/h HTTP/1.1\r\nHost: Mixed.Case.Test:81\r\n\r\n',
      upApi,
    );
    assert.deepEqual(values(seen, 'host'), ['Mixed.Case.Test:81']);
  });

  test('strip_prefix removes the matched prefix and keeps the query', async () => {
    const cases: [string, string][] = [
      ['/strip/users/7?x=1', '/users/7?x=1'],
      ['/strip/', '/'],
      ['/strip', '/'],
      ['/strip?q=a', '/?q=a'],
      ['/strip/a%2Fb', '/a%2Fb'],
    ];
    for (const [sent, expected] of cases) {
      const { seen } = await exchange(proxy.port, `GET ${sent} HTTP/1.1\r\nHost: s.test\r\n\r\n`, upApi);
      assert.equal(seen.url, expected, `${sent} is forwarded as ${expected}`);
    }
  });

  test('an absolute-form target uses its authority as Host (also for routing)', async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET http://abs.example:9000/api/abs?q=1 HTTP/1.1\r\nHost: ignored.example\r\n\r\n',
      upApi,
    );
    assert.equal(seen.url, '/api/abs?q=1');
    assert.deepEqual(values(seen, 'host'), ['abs.example:9000']);
    const routed = await exchange(proxy.port, 'GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n', upA);
    assert.equal(routed.seen.url, '/x');
    assert.deepEqual(values(routed.seen, 'host'), ['a.test']);
  });

  test('the query string is forwarded byte for byte', async () => {
    const query = "?b=2&a=1&&x=%2F%2f&y=a+b&z=%zz&e=&w=~!$()*,;:@/?&u=%C3%A9&dots=/../&k='";
    const { seen } = await exchange(proxy.port, `GET /api/q${query} HTTP/1.1\r\nHost: q.test\r\n\r\n`, upApi);
    assert.equal(seen.url, `/api/q${query}`);
  });

  test('%2F in the path is not decoded', async () => {
    const { seen } = await exchange(
      proxy.port,
      'GET /api/files/a%2Fb%2fc HTTP/1.1\r\nHost: e.test\r\n\r\n',
      upApi,
    );
    assert.equal(seen.url, '/api/files/a%2Fb%2fc');
  });

  test('dot segments are resolved before routing: /api/../admin reaches the /admin upstream as /admin', async () => {
    const apiBefore = upApi.requests.length;
    for (const target of ['/api/../admin', '/api/%2e%2e/admin', '/api/%2E%2E/admin', '/api/./../admin']) {
      const { res, seen } = await exchange(
        proxy.port,
        `GET ${target} HTTP/1.1\r\nHost: d.test\r\n\r\n`,
        upAdmin,
      );
      assert.equal(res.status, 200, target);
      assert.equal(seen.url, '/admin', target);
    }
    const { seen } = await exchange(
      proxy.port,
      'GET /api/%2e%2e/admin/x?q=/../1 HTTP/1.1\r\nHost: d.test\r\n\r\n',
      upAdmin,
    );
    assert.equal(seen.url, '/admin/x?q=/../1');
    assert.equal(upApi.requests.length, apiBefore, 'the /api upstream received none of them');
  });

  test('a path climbing above the root is 400 and reaches no upstream', async () => {
    const counts = [upA, upB, upApi, upAdmin].map((u) => u.requests.length);
    for (const target of ['/../x', '/api/../../x', '/%2e%2e/admin']) {
      const r = await rawRequest(proxy.port, `GET ${target} HTTP/1.1\r\nHost: d.test\r\n\r\n`);
      assert.match(r.text, /^HTTP\/1\.1 400 /, target);
      assert.equal(r.closedByServer, true);
    }
    assert.deepEqual(
      [upA, upB, upApi, upAdmin].map((u) => u.requests.length),
      counts,
    );
  });
});

describe('routing answers', () => {
  test('host-based routes pick the upstream by Host (port and case ignored)', async () => {
    assert.equal((await exchange(proxy.port, 'GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n', upA)).seen.url, '/x');
    assert.equal(
      (await exchange(proxy.port, 'GET /y HTTP/1.1\r\nHost: B.Test:8080\r\n\r\n', upB)).seen.url,
      '/y',
    );
    assert.equal(
      (await exchange(proxy.port, 'GET /api/z HTTP/1.1\r\nHost: c.test\r\n\r\n', upApi)).seen.url,
      '/api/z',
    );
  });

  test('no route: 404 with a JSON body carrying ZP_ERR_NOT_FOUND, and keep-alive survives', async () => {
    const counts = [upA, upB, upApi, upAdmin].map((u) => u.requests.length);
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /nothing-here HTTP/1.1\r\nHost: c.test\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 404);
      assert.match(r.header('content-type') ?? '', /^application\/json/);
      const body = JSON.parse(r.body.toString());
      assert.equal(body.error.code, 'ZP_ERR_NOT_FOUND');
      assert.equal(body.error.status, 404);
      assert.notEqual(r.header('connection')?.toLowerCase(), 'close');
      assert.deepEqual(
        [upA, upB, upApi, upAdmin].map((u) => u.requests.length),
        counts,
      );
      c.write('GET /api/after-404 HTTP/1.1\r\nHost: c.test\r\n\r\n');
      const r2 = await c.next();
      assert.equal(r2.status, 200);
      assert.equal(upApi.requests.at(-1)!.url, '/api/after-404');
    } finally {
      c.close();
    }
  });

  test('404 for a request with a body: the body is not taken as the next request', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write(
        'POST /nothing HTTP/1.1\r\nHost: c.test\r\nContent-Length: 38\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: x\r\n\r\n',
      );
      const r = await c.next();
      assert.equal(r.status, 404);
      // Either the body is skipped and the connection kept, or the connection is closed; never a 2nd request.
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(
        upApi.requests.some((q) => q.url === '/api/smuggled'),
        false,
      );
      assert.equal(c.unread.length, 0);
    } finally {
      c.close();
    }
  });

  test('wrong method: 405 with Allow, and keep-alive survives', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('DELETE /only/thing HTTP/1.1\r\nHost: c.test\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 405);
      assert.equal(r.header('allow'), 'GET, HEAD, POST');
      assert.equal(JSON.parse(r.body.toString()).error.code, 'ZP_ERR_METHOD_NOT_ALLOWED');
      c.write('GET /only/thing HTTP/1.1\r\nHost: c.test\r\n\r\n');
      assert.equal((await c.next()).status, 200);
      assert.equal(upApi.requests.at(-1)!.url, '/only/thing');
    } finally {
      c.close();
    }
  });
});
