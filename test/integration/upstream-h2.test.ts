import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { CertDir, type CertFiles } from '../helpers/certs.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort } from '../helpers/upstream.ts';

/** node:http2 resets a stream destroyed with its own AbortError class with CANCEL (8), not INTERNAL_ERROR. */
const abortError: Error = await once(new EventEmitter(), 'never', { signal: AbortSignal.abort() }).then(
  () => new Error('unreachable'),
  (err: Error) => err,
);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SeenStream {
  readonly headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | null;
  rstCode: number | null;
}

interface H2Upstream {
  readonly port: number;
  readonly server: http2.Http2Server | http2.Http2SecureServer;
  readonly sessions: Set<http2.ServerHttp2Session>;
  /** Sessions accepted over the upstream's life. */
  sessionCount: number;
  readonly seen: SeenStream[];
  close(): Promise<void>;
}

/**
 * A node:http2 upstream. Paths: /echo (body back, request trailers echoed as x-seen-trailer-* trailers,
 * plus a trailer of its own), /slow (never answers; records the reset), /reset-after-head (responds, then
 * resets it with CANCEL before the end), anything else: 200 "h2 ok <path>".
 */
async function startH2Upstream(
  options: { maxConcurrentStreams?: number; tls?: CertFiles } = {},
): Promise<H2Upstream> {
  const settings = { maxConcurrentStreams: options.maxConcurrentStreams ?? 100 };
  const server =
    options.tls === undefined
      ? http2.createServer({ settings })
      : http2.createSecureServer({
          settings,
          cert: readFileSync(options.tls.cert),
          key: readFileSync(options.tls.key),
        });
  const up: H2Upstream = {
    port: 0,
    server,
    sessions: new Set(),
    sessionCount: 0,
    seen: [],
    close: async () => {
      for (const s of up.sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('session', (session: http2.ServerHttp2Session) => {
    up.sessions.add(session);
    up.sessionCount++;
    session.on('close', () => up.sessions.delete(session));
    session.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    const seen: SeenStream = { headers, trailers: null, rstCode: null };
    up.seen.push(seen);
    stream.on('error', () => {});
    stream.on('trailers', (t) => {
      seen.trailers = t;
    });
    stream.on('close', () => {
      seen.rstCode = stream.rstCode ?? null;
    });
    const path = String(headers[':path']);
    if (path === '/slow') return;
    if (path === '/reset-after-head') {
      stream.respond({ ':status': 200 });
      stream.write('partial');
      // close(code) would end the response first; destroy with an AbortError resets it mid-body (CANCEL).
      setTimeout(() => stream.destroy(abortError), 50);
      return;
    }
    if (path.startsWith('/echo')) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        stream.respond({ ':status': 200, 'x-seen-te': String(headers.te) }, { waitForTrailers: true });
        stream.on('wantTrailers', () => {
          const out: http2.OutgoingHttpHeaders = { 'x-upstream-trailer': 'done' };
          for (const [k, v] of Object.entries(seen.trailers ?? {})) {
            if (!k.startsWith(':')) out[`x-seen-trailer-${k}`] = v;
          }
          stream.sendTrailers(out);
        });
        stream.end(Buffer.concat(chunks));
      });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    // Hold each answer briefly so concurrent streams overlap on the upstream.
    setTimeout(() => stream.end(`h2 ok ${path}`), 20);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (up as { port: number }).port = (server.address() as AddressInfo).port;
  return up;
}

describe('h2c:// upstreams', () => {
  let upstream: H2Upstream;
  let h1upstream: http.Server;
  let h1port: number;
  let h1seenTrailers: Record<string, string> | null = null;
  let proxy: StartedProxy;
  let client: http2.ClientHttp2Session;
  let deadPort: number;

  before(async () => {
    upstream = await startH2Upstream({ maxConcurrentStreams: 40 });
    // An HTTP/1.1 upstream for trailers across protocols: /chunked-trailers answers chunked with trailers,
    // /read-trailers records the request's trailers.
    h1upstream = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/read-trailers') {
          h1seenTrailers = { ...req.trailers } as Record<string, string>;
          res.end(`te=${req.headers['transfer-encoding']} body=${Buffer.concat(chunks).toString()}`);
          return;
        }
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum, x-count' });
        res.write('part one, ');
        res.write('part two');
        res.addTrailers({ 'x-checksum': 'abc123', 'x-count': '2' });
        res.end();
      });
    });
    await new Promise<void>((resolve) => h1upstream.listen(0, '127.0.0.1', resolve));
    h1port = (h1upstream.address() as AddressInfo).port;
    deadPort = await freePort();
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      upstream_defaults: { idle_timeout_ms: 1000, response_header_timeout_ms: 3000 },
      routes: [
        { path: '/h1', upstream: `http://127.0.0.1:${h1port}`, strip_prefix: true, methods: ['GET', 'POST'] },
        { path: '/down', upstream: `h2c://127.0.0.1:${deadPort}` },
        { path: '/http1-only', upstream: `h2c://127.0.0.1:${h1port}`, strip_prefix: true },
        { path: '/', upstream: `h2c://127.0.0.1:${upstream.port}`, methods: ['GET', 'POST'] },
      ],
    });
    client = http2.connect(proxy.url);
  });
  after(async () => {
    client.close();
    await proxy.close();
    await upstream.close();
    h1upstream.closeAllConnections();
    await new Promise<void>((resolve) => h1upstream.close(() => resolve()));
  });

  test('a GET is forwarded over HTTP/2 with forwarding headers and mapped back', async () => {
    const res = await h2Request(client, {
      ':path': '/hello?q=1',
      ':authority': 'front.test',
      te: 'trailers',
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'h2 ok /hello?q=1');
    assert.equal(res.headers.via, '2 zproxy');
    const seen = upstream.seen.at(-1)!.headers;
    assert.equal(seen[':path'], '/hello?q=1');
    assert.equal(seen[':authority'], 'front.test', 'preserve_host keeps the client authority');
    assert.equal(seen[':scheme'], 'http');
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'front.test');
    assert.equal(seen.via, '2 zproxy');
    assert.equal(seen.te, 'trailers', 'te: trailers is forwarded');
  });

  test('100 concurrent streams are multiplexed on few sessions (the peer allows 40 streams each)', async () => {
    const before = upstream.sessionCount;
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => h2Request(client, { ':path': `/c/${i}` })),
    );
    results.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), `h2 ok /c/${i}`);
    });
    const opened = upstream.sessionCount - before;
    // 100 streams at 40 per session: three sessions are needed (an idle one may be reused from before).
    assert.ok(opened <= 3, `sessions opened: ${opened}`);
    assert.ok(
      upstream.sessions.size >= 3 && upstream.sessions.size <= 4,
      `sessions: ${upstream.sessions.size}`,
    );
  });

  test('10 MB bodies in both directions arrive intact (sha256), with trailers both ways', async () => {
    const body = randomBytes(10 * 1024 * 1024);
    const res = await h2Request(client, { ':method': 'POST', ':path': '/echo/big', te: 'trailers' }, body, {
      'x-request-trailer': 'from-client',
    });
    assert.equal(res.status, 200);
    assert.equal(res.body.length, body.length);
    assert.equal(sha256(res.body), sha256(body));
    const seen = upstream.seen.at(-1)!;
    assert.equal(seen.trailers?.['x-request-trailer'], 'from-client', 'the upstream got the request trailer');
    assert.equal(res.trailers['x-upstream-trailer'], 'done', 'the client got the response trailer');
    assert.equal(res.trailers['x-seen-trailer-x-request-trailer'], 'from-client');
  });

  test('a chunked HTTP/1.1 response with trailer fields reaches an HTTP/2 client as trailers', async () => {
    const res = await h2Request(client, { ':path': '/h1/chunked-trailers' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'part one, part two');
    assert.equal(res.trailers['x-checksum'], 'abc123');
    assert.equal(res.trailers['x-count'], '2');
  });

  test('an HTTP/2 request with trailers reaches an HTTP/1.1 upstream as a chunked body with trailers', async () => {
    h1seenTrailers = null;
    const res = await h2Request(
      client,
      { ':method': 'POST', ':path': '/h1/read-trailers', 'content-length': '5', trailer: 'x-digest' },
      Buffer.from('hello'),
      { 'x-digest': 'sha-256=xyz' },
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'te=chunked body=hello');
    assert.deepEqual(h1seenTrailers, { 'x-digest': 'sha-256=xyz' });
  });

  test('a client cancel resets the upstream stream at once (CANCEL)', async () => {
    const req = client.request({ ':path': '/slow' });
    req.on('error', () => {});
    await wait(100);
    const seen = upstream.seen.at(-1)!;
    assert.equal(seen.headers[':path'], '/slow');
    req.close(http2.constants.NGHTTP2_CANCEL);
    const start = Date.now();
    while (seen.rstCode === null && Date.now() - start < 2000) await wait(10);
    assert.equal(seen.rstCode, http2.constants.NGHTTP2_CANCEL);
    await wait(50);
    const log = proxy.accessLogs().find((l) => l.target === '/slow');
    assert.equal(log?.status, 499);
    assert.equal(log?.error, 'ZP_ERR_CLIENT_ABORTED');
  });

  test('an upstream reset after the response started resets the client stream with the same code', async () => {
    const req = client.request({ ':path': '/reset-after-head' });
    const code = await new Promise<number>((resolve) => {
      req.on('error', () => {});
      req.on('data', () => {});
      req.on('close', () => resolve(req.rstCode ?? -1));
    });
    assert.equal(code, http2.constants.NGHTTP2_CANCEL);
  });

  test('idle sessions are closed after idle_timeout_ms', async () => {
    await h2Request(client, { ':path': '/idle' });
    const pool = [...proxy.server.pools.allHttp2()].find((p) => p.port === upstream.port)!;
    assert.ok(pool.size >= 1 && upstream.sessions.size >= 1);
    const start = Date.now();
    while ((pool.size > 0 || upstream.sessions.size > 0) && Date.now() - start < 5000) await wait(50);
    assert.equal(pool.size, 0, 'no session left in the pool');
    assert.equal(upstream.sessions.size, 0, 'the upstream saw every session closed');
  });

  test('after the upstream sends GOAWAY, new requests still work on a new session', async () => {
    assert.equal((await h2Request(client, { ':path': '/before-goaway' })).status, 200);
    const before = upstream.sessionCount;
    for (const s of upstream.sessions) s.goaway(http2.constants.NGHTTP2_NO_ERROR);
    await wait(100);
    const res = await h2Request(client, { ':path': '/after-goaway' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'h2 ok /after-goaway');
    assert.ok(upstream.sessionCount > before, 'a new session was opened');
  });

  test('an upstream that is down is a 502 ZP_ERR_UPSTREAM_CONNECT', async () => {
    const res = await h2Request(client, { ':path': '/down/x' });
    assert.equal(res.status, 502);
    assert.equal(
      (JSON.parse(res.body.toString()) as { error: { code: string } }).error.code,
      'ZP_ERR_UPSTREAM_CONNECT',
    );
  });

  test('an h2c:// upstream that speaks only HTTP/1.1 is a 502 ZP_ERR_UPSTREAM_PROTOCOL', async () => {
    const res = await h2Request(client, { ':path': '/http1-only/x' });
    assert.equal(res.status, 502);
    assert.equal(
      (JSON.parse(res.body.toString()) as { error: { code: string } }).error.code,
      'ZP_ERR_UPSTREAM_PROTOCOL',
    );
  });

  test('an HTTP/1.1 client on a route with an HTTP/2 upstream is bridged (http1-to-h2.test.ts has more)', async () => {
    const res = await sendRequest(proxy.port, '/anything', { timeoutMs: 3000 });
    assert.equal(res.status, 200);
    assert.equal(res.text, 'h2 ok /anything');
  });
});

describe('h2:// upstreams (TLS, ALPN h2)', () => {
  let certs: CertDir;
  let upstream: H2Upstream;
  let h1tls: https.Server;
  let noAlpn: tls.Server;
  let proxy: StartedProxy;
  let client: http2.ClientHttp2Session;

  before(async () => {
    certs = new CertDir();
    const ca = certs.makeCa('ca', 'zproxy h2 test CA');
    const leaf = certs.makeSigned('upstream', ['h2.upstream.test'], ca);
    upstream = await startH2Upstream({ tls: leaf });
    // A TLS upstream that offers only http/1.1 by ALPN (it refuses h2 with an alert), and one without
    // ALPN at all (the handshake succeeds with no protocol chosen).
    h1tls = https.createServer(
      { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), ALPNProtocols: ['http/1.1'] },
      (_req, res) => res.end('h1'),
    );
    await new Promise<void>((resolve) => h1tls.listen(0, '127.0.0.1', resolve));
    noAlpn = tls.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) }, (s) => s.end());
    await new Promise<void>((resolve) => noAlpn.listen(0, '127.0.0.1', resolve));
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      upstream_defaults: { tls: { ca_file: ca.cert, server_name: 'h2.upstream.test' } },
      routes: [
        { path: '/no-h2', upstream: `h2://127.0.0.1:${(h1tls.address() as AddressInfo).port}` },
        { path: '/no-alpn', upstream: `h2://127.0.0.1:${(noAlpn.address() as AddressInfo).port}` },
        { path: '/', upstream: `h2://127.0.0.1:${upstream.port}`, methods: ['GET', 'POST'] },
      ],
    });
    client = http2.connect(proxy.url);
  });
  after(async () => {
    client.close();
    await proxy.close();
    await upstream.close();
    h1tls.closeAllConnections();
    await new Promise<void>((resolve) => h1tls.close(() => resolve()));
    await new Promise<void>((resolve) => noAlpn.close(() => resolve()));
    certs.remove();
  });

  test('streams are forwarded over TLS with ALPN h2 and the CA file, trailers included', async () => {
    const body = randomBytes(256 * 1024);
    const res = await h2Request(client, { ':method': 'POST', ':path': '/echo/tls' }, body, { 'x-t': '1' });
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), sha256(body));
    assert.equal(res.trailers['x-upstream-trailer'], 'done');
    assert.equal(res.trailers['x-seen-trailer-x-t'], '1');
    const seen = upstream.seen.at(-1)!.headers;
    assert.equal(seen[':scheme'], 'https');
    const session = [...upstream.sessions][0]!;
    assert.equal((session.socket as unknown as { servername: string }).servername, 'h2.upstream.test');
  });

  test('an h2:// upstream that does not negotiate h2 is a 502 ZP_ERR_UPSTREAM_PROTOCOL', async () => {
    const res = await h2Request(client, { ':path': '/no-h2/x' });
    assert.equal(res.status, 502);
    const body = JSON.parse(res.body.toString()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'ZP_ERR_UPSTREAM_PROTOCOL');
    assert.match(body.error.message, /did not negotiate HTTP\/2 by ALPN \(it refused h2\)/);
  });

  test('an h2:// upstream without ALPN is a 502 ZP_ERR_UPSTREAM_PROTOCOL', async () => {
    const res = await h2Request(client, { ':path': '/no-alpn/x' });
    assert.equal(res.status, 502);
    const body = JSON.parse(res.body.toString()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'ZP_ERR_UPSTREAM_PROTOCOL');
    assert.match(body.error.message, /did not negotiate HTTP\/2 by ALPN \(got no protocol\)/);
  });
});
