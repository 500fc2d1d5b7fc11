/**
 * HTTP/1.1 clients on routes whose upstream is HTTP/2 (h2c:// and h2:// over TLS with ALPN h2): the
 * bridge maps the request onto an HTTP/2 stream and the response back onto HTTP/1.1. Real node:http2
 * upstreams, raw HTTP/1.1 client connections (exact bytes), node:http and curl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { CertDir, type CertFiles } from '../helpers/certs.ts';
import { eventually, WireClient } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { errorCodeOf, sendRequest } from '../helpers/simple-request.ts';
import { freePort } from '../helpers/upstream.ts';

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** node:http2 resets a stream destroyed with its own AbortError class with CANCEL (8). */
const abortError: Error = await once(new EventEmitter(), 'never', { signal: AbortSignal.abort() }).then(
  () => new Error('unreachable'),
  (err: Error) => err,
);

interface SeenStream {
  readonly headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | null;
  bytes: number;
  /** rstCode when the stream closed (null while open). */
  rstCode: number | null;
  closedAt: number;
}

interface H2Upstream {
  readonly port: number;
  readonly seen: SeenStream[];
  close(): Promise<void>;
}

/**
 * A node:http2 upstream. Paths:
 * - /echo: the request body back with its sha256 in `x-sha256` and a content-length;
 * - /sha: `{ bytes, sha }` of the request body, plus the request trailers as JSON in `x-trailers`;
 * - /nolength: a body in three writes, no content-length;
 * - /trailers: a body without content-length and trailers `x-checksum`, `x-count`;
 * - /empty: a head with END_STREAM (no body, no content-length);
 * - /204, /304: those statuses; /head: 'hello' with a content-length (HEAD gets the length only);
 * - /delay/<ms>: answers `delayed <ms>` after that long;
 * - /slow: never answers (records the cancel); /reset-after-head: a head and part of a body, then a reset;
 * - anything else: 200 'h2 ok <path>' with a content-length.
 */
async function startH2Upstream(tlsFiles?: CertFiles): Promise<H2Upstream> {
  const server =
    tlsFiles === undefined
      ? http2.createServer()
      : http2.createSecureServer({ cert: readFileSync(tlsFiles.cert), key: readFileSync(tlsFiles.key) });
  const sessions = new Set<http2.ServerHttp2Session>();
  const up: H2Upstream = {
    port: 0,
    seen: [],
    close: async () => {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    const seen: SeenStream = { headers, trailers: null, bytes: 0, rstCode: null, closedAt: 0 };
    up.seen.push(seen);
    stream.on('error', () => {});
    stream.on('trailers', (t) => {
      seen.trailers = t;
    });
    stream.on('close', () => {
      seen.rstCode = stream.rstCode ?? 0;
      seen.closedAt = Date.now();
    });
    const path = String(headers[':path']);
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => {
      seen.bytes += c.length;
      if (path === '/echo' || path === '/sha') chunks.push(c);
    });
    if (path === '/slow') return;
    if (path === '/reset-after-head') {
      stream.respond({ ':status': 200, 'content-length': '100000' });
      stream.write(Buffer.alloc(1000, 0x61));
      setTimeout(() => stream.destroy(abortError), 50);
      return;
    }
    stream.on('end', () => {
      if (stream.destroyed) return;
      if (path === '/echo') {
        const body = Buffer.concat(chunks);
        stream.respond({ ':status': 200, 'content-length': body.length, 'x-sha256': sha256(body) });
        stream.end(body);
      } else if (path === '/sha') {
        const body = Buffer.concat(chunks);
        stream.respond({ ':status': 200, 'x-trailers': JSON.stringify(seen.trailers ?? {}) });
        stream.end(JSON.stringify({ bytes: body.length, sha: sha256(body) }));
      } else if (path === '/nolength') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' });
        stream.write('one,');
        setTimeout(() => {
          stream.write('two,');
          stream.end('three');
        }, 10);
      } else if (path === '/trailers') {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-checksum': 'abc123', 'x-count': '2' }));
        stream.write('part one, ');
        stream.end('part two');
      } else if (path === '/empty') {
        stream.respond({ ':status': 200, 'x-empty': 'yes' }, { endStream: true });
      } else if (path === '/204' || path === '/304') {
        stream.respond({ ':status': Number(path.slice(1)), 'x-status': path.slice(1) }, { endStream: true });
      } else if (path === '/head') {
        stream.respond({ ':status': 200, 'content-length': '5' });
        stream.end(headers[':method'] === 'HEAD' ? undefined : 'hello');
      } else if (path.startsWith('/delay/')) {
        const ms = Number(path.slice(7));
        setTimeout(() => {
          if (stream.destroyed) return;
          const body = `delayed ${ms}`;
          stream.respond({ ':status': 200, 'content-length': Buffer.byteLength(body) });
          stream.end(body);
        }, ms);
      } else {
        const body = `h2 ok ${path}`;
        stream.respond({
          ':status': 200,
          'content-length': Buffer.byteLength(body),
          'set-cookie': ['a=1', 'b=2'],
        });
        stream.end(body);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (up as { port: number }).port = (server.address() as AddressInfo).port;
  return up;
}

/** A node:http request whose body is written in pieces (chunked, no content-length). */
function chunkedPost(
  port: number,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
  trailers?: Record<string, string>,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: 'POST',
      agent: false,
      headers: {
        'transfer-encoding': 'chunked',
        ...(trailers ? { trailer: Object.keys(trailers).join(', ') } : {}),
        ...headers,
      },
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
    });
    for (let off = 0; off < body.length; off += 64 * 1024) req.write(body.subarray(off, off + 64 * 1024));
    if (trailers) req.addTrailers(trailers);
    req.end();
  });
}

describe('HTTP/1.1 clients to an h2c:// upstream', () => {
  let upstream: H2Upstream;
  let proxy: StartedProxy;
  let deadPort: number;

  before(async () => {
    upstream = await startH2Upstream();
    deadPort = await freePort();
    proxy = await startProxy({
      upstream_defaults: { idle_timeout_ms: 2000, response_header_timeout_ms: 3000 },
      routes: [
        { path: '/down', upstream: `h2c://127.0.0.1:${deadPort}` },
        { path: '/', upstream: `h2c://127.0.0.1:${upstream.port}` },
      ],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test('a GET is forwarded over HTTP/2 with the HTTP/1 forwarding rules and mapped back', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write(
      'GET /hello?q=1 HTTP/1.1\r\nHost: front.test\r\nUser-Agent: t\r\nConnection: keep-alive, X-Hop\r\n' +
        'X-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 6.6.6.6\r\nVia: 1.1 earlier\r\n\r\n',
    );
    const res = await client.next();
    client.close();
    assert.equal(res.startLine, 'HTTP/1.1 200 OK');
    assert.equal(res.body.toString(), 'h2 ok /hello?q=1');
    assert.equal(res.header('content-length'), String(res.body.length));
    assert.deepEqual(res.headerAll('set-cookie'), ['a=1', 'b=2']);
    assert.equal(res.header('via'), '2 zproxy');
    assert.ok(!res.head.includes(':status'), 'no pseudo-header in the HTTP/1.1 head');
    const seen = upstream.seen.at(-1)!.headers;
    assert.equal(seen[':method'], 'GET');
    assert.equal(seen[':path'], '/hello?q=1');
    assert.equal(seen[':scheme'], 'http');
    assert.equal(seen[':authority'], 'front.test', 'preserve_host keeps the client Host');
    assert.equal(seen.host, undefined);
    assert.equal(seen['user-agent'], 't');
    assert.equal(seen['x-hop'], undefined, 'a field named by Connection is dropped');
    assert.equal(seen['keep-alive'], undefined);
    assert.equal(seen.connection, undefined);
    assert.equal(seen['x-forwarded-for'], '127.0.0.1', 'an untrusted X-Forwarded-For is replaced');
    assert.equal(seen['x-forwarded-proto'], 'http');
    assert.equal(seen['x-forwarded-host'], 'front.test');
    assert.equal(seen.via, '1.1 earlier, 1.1 zproxy');
    assert.equal(seen.te, undefined);
  });

  test('POST with a 10 MB body both ways (sha256), content-length request', async () => {
    const body = randomBytes(10 * 1024 * 1024);
    const res = await sendRequest(proxy.port, '/echo', { method: 'POST', body, timeoutMs: 30000 });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(body.length));
    assert.equal(res.headers['x-sha256'], sha256(body));
    assert.equal(res.body.length, body.length);
    assert.equal(sha256(res.body), sha256(body));
  });

  test('a chunked request without length reaches the upstream decoded, with its trailers', async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const res = await chunkedPost(proxy.port, '/sha', body, {}, { 'x-digest': 'sha-of-body' });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.body.toString()), { bytes: body.length, sha: sha256(body) });
    const seen = upstream.seen.at(-1)!;
    assert.equal(seen.headers['content-length'], undefined);
    assert.equal(seen.headers['transfer-encoding'], undefined);
    assert.equal(seen.headers.trailer, undefined, 'Trailer is hop-by-hop for the HTTP/1 rules');
    assert.deepEqual(JSON.parse(String(res.headers['x-trailers'])), { 'x-digest': 'sha-of-body' });
  });

  test('Expect: 100-continue gets its interim answer, then the body goes through', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write('POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
    const interim = await client.next();
    assert.equal(interim.status, 100);
    client.write('hello');
    const res = await client.next();
    client.close();
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'hello');
    assert.equal(upstream.seen.at(-1)!.headers.expect, undefined);
  });

  test('keep-alive: several requests on one client connection', async () => {
    const client = await WireClient.connect(proxy.port);
    for (let i = 0; i < 5; i++) {
      client.write(`GET /k/${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const res = await client.next();
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), `h2 ok /k/${i}`);
      assert.ok(!res.has('connection'));
    }
    client.write('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
    const posted = await client.next();
    assert.equal(posted.body.toString(), 'abc');
    assert.equal(client.closed, false);
    client.close();
  });

  test('pipelined requests are answered in order (a slow first answer holds the next)', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write(
      'GET /delay/200 HTTP/1.1\r\nHost: a\r\n\r\n' +
        'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody' +
        'GET /delay/10 HTTP/1.1\r\nHost: a\r\n\r\n' +
        'HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n' +
        'GET /p HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n',
    );
    const r1 = await client.next();
    const r2 = await client.next();
    const r3 = await client.next();
    const r4 = await client.next({ noBody: true });
    const r5 = await client.next();
    assert.deepEqual(
      [r1.body.toString(), r2.body.toString(), r3.body.toString(), r5.body.toString()],
      ['delayed 200', 'body', 'delayed 10', 'h2 ok /p'],
    );
    assert.equal(r4.status, 200);
    assert.equal(r5.header('connection'), 'close');
    assert.ok(await client.waitClosed());
    assert.equal(client.unread.length, 0, 'nothing after the last response');
  });

  test('HEAD keeps the length without a body; 204 and 304 have no body', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write(
      'HEAD /head HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const head = await client.next({ noBody: true });
    assert.equal(head.status, 200);
    assert.equal(head.header('content-length'), '5');
    const r204 = await client.next();
    assert.equal(r204.status, 204);
    assert.equal(r204.header('x-status'), '204');
    assert.ok(!r204.has('transfer-encoding') && !r204.has('content-length'));
    const r304 = await client.next();
    assert.equal(r304.status, 304);
    assert.ok(!r304.has('transfer-encoding'));
    // The next response starts right after the body-less ones (nothing stray in between).
    const next = await client.next();
    assert.equal(next.body.toString(), 'h2 ok /x');
    client.close();
  });

  test('a response without content-length is re-chunked for HTTP/1.1 and close-delimited for HTTP/1.0', async () => {
    const c11 = await WireClient.connect(proxy.port);
    c11.write('GET /nolength HTTP/1.1\r\nHost: a\r\n\r\nGET /empty HTTP/1.1\r\nHost: a\r\n\r\n');
    const r = await c11.next();
    assert.equal(r.framing, 'chunked');
    assert.equal(r.body.toString(), 'one,two,three');
    const empty = await c11.next();
    assert.equal(
      empty.header('content-length'),
      '0',
      'a head with END_STREAM is an empty body with a length',
    );
    assert.equal(empty.header('x-empty'), 'yes');
    c11.close();

    const c10 = await WireClient.connect(proxy.port);
    c10.write('GET /nolength HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n');
    assert.ok(await c10.waitClosed());
    const r10 = await c10.next();
    assert.equal(r10.framing, 'close');
    assert.equal(r10.header('connection'), 'close');
    assert.equal(r10.body.toString(), 'one,two,three');
  });

  test('response trailers become chunked trailers with TE: trailers, and are dropped without it', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write('GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\nConnection: TE\r\n\r\n');
    const withTe = await client.next();
    assert.equal(withTe.framing, 'chunked');
    assert.equal(withTe.body.toString(), 'part one, part two');
    assert.equal(withTe.trailers, 'x-checksum: abc123\r\nx-count: 2\r\n');
    assert.equal(upstream.seen.at(-1)!.headers.te, 'trailers', 'te: trailers is forwarded over HTTP/2');
    client.write('GET /trailers HTTP/1.1\r\nHost: a\r\n\r\n');
    const without = await client.next();
    assert.equal(without.body.toString(), 'part one, part two');
    assert.equal(without.trailers, '');
    assert.equal(upstream.seen.at(-1)!.headers.te, undefined);
    client.close();
  });

  test('an upstream that is down is a 502 ZP_ERR_UPSTREAM_CONNECT, and the connection stays usable', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write('GET /down/x HTTP/1.1\r\nHost: a\r\n\r\n');
    const res = await client.next();
    assert.equal(res.status, 502);
    assert.equal(
      (JSON.parse(res.body.toString()) as { error: { code: string } }).error.code,
      'ZP_ERR_UPSTREAM_CONNECT',
    );
    client.write('GET /after-down HTTP/1.1\r\nHost: a\r\n\r\n');
    const next = await client.next();
    assert.equal(next.body.toString(), 'h2 ok /after-down');
    client.close();
    const log = proxy.accessLogs().find((l) => l.target === '/down/x')!;
    assert.equal(log.status, 502);
    assert.equal(log.error, 'ZP_ERR_UPSTREAM_CONNECT');
  });

  test('an upstream reset mid-body aborts the client connection (no complete-looking body)', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write('GET /reset-after-head HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.ok(await client.waitClosed(), 'the client connection is closed');
    const text = client.received.latin1Slice(0, client.received.length);
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.match(text, /content-length: 100000/i);
    const bodyBytes = client.received.length - (text.indexOf('\r\n\r\n') + 4);
    assert.ok(bodyBytes < 100000, `only ${bodyBytes} body bytes of 100000 arrived`);
    await assert.rejects(sendRequest(proxy.port, '/reset-after-head'));
    const log = proxy.accessLogs().find((l) => l.target === '/reset-after-head')!;
    assert.equal(log.status, 200);
    assert.equal(log.error, 'ZP_ERR_UPSTREAM_RESET');
  });

  test('a client that disconnects cancels the upstream stream within 1 s', async () => {
    const client = await WireClient.connect(proxy.port);
    client.write('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.ok(await eventually(() => upstream.seen.at(-1)?.headers[':path'] === '/slow', 2000));
    const seen = upstream.seen.at(-1)!;
    const closedAt = Date.now();
    client.close();
    assert.ok(await eventually(() => seen.rstCode !== null, 1000), 'the upstream stream closed within 1 s');
    assert.equal(seen.rstCode, http2.constants.NGHTTP2_CANCEL);
    assert.ok(seen.closedAt - closedAt < 1000);
    // A client gone in the middle of a request body cancels too.
    const body = await WireClient.connect(proxy.port);
    body.write('POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\npartial');
    assert.ok(await eventually(() => upstream.seen.at(-1) !== seen && upstream.seen.at(-1)!.bytes > 0, 2000));
    const seen2 = upstream.seen.at(-1)!;
    body.close();
    assert.ok(await eventually(() => seen2.rstCode !== null, 1000));
    assert.equal(seen2.rstCode, http2.constants.NGHTTP2_CANCEL);
    const logs = proxy.accessLogs().filter((l) => l.target === '/slow');
    assert.equal(logs.length, 2);
    for (const l of logs) {
      assert.equal(l.status, 499);
      assert.equal(l.error, 'ZP_ERR_CLIENT_ABORTED');
    }
  });

  test('the access log records bridged exchanges', async () => {
    await sendRequest(proxy.port, '/logged', { method: 'POST', body: 'abc' });
    assert.ok(await eventually(() => proxy.accessLogs().some((l) => l.target === '/logged'), 2000));
    const line = proxy.accessLogs().find((l) => l.target === '/logged')!;
    assert.equal(line.status, 200);
    assert.equal(line.method, 'POST');
    assert.equal(line.version, '1.1');
    assert.equal(line.upstream, `127.0.0.1:${upstream.port}`);
    assert.equal(line.error, null);
    assert.ok((line.bytes_in as number) > 3 && (line.bytes_out as number) > 0);
  });

  test('curl against an h2c upstream route', async () => {
    const { stdout } = await run('curl', [
      '-s',
      '-i',
      '--max-time',
      '10',
      '--noproxy',
      '*',
      '--http1.1',
      '--data-binary',
      'hello from curl',
      `${proxy.url}/echo`,
    ]);
    assert.match(stdout, /^HTTP\/1\.1 200 /);
    assert.match(stdout, /\r\nvia: 2 zproxy\r\n/i);
    assert.equal(stdout.slice(stdout.indexOf('\r\n\r\n') + 4), 'hello from curl');
    assert.match(String(upstream.seen.at(-1)!.headers['user-agent']), /^curl\//);
  });
});

describe('HTTP/1.1 clients to an h2:// upstream (TLS, ALPN h2)', () => {
  let certs: CertDir;
  let upstream: H2Upstream;
  let proxy: StartedProxy;

  before(async () => {
    certs = new CertDir();
    const ca = certs.makeCa('ca', 'zproxy bridge test CA');
    const leaf = certs.makeSigned('upstream', ['h2.upstream.test'], ca);
    upstream = await startH2Upstream(leaf);
    proxy = await startProxy({
      preserve_host: false,
      upstream_defaults: { tls: { ca_file: ca.cert, server_name: 'h2.upstream.test' } },
      routes: [{ path: '/', upstream: `h2://127.0.0.1:${upstream.port}` }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('GET and a 10 MB POST both ways over TLS (sha256)', async () => {
    const get = await sendRequest(proxy.port, '/tls-get', { headers: { host: 'front.test' } });
    assert.equal(get.status, 200);
    assert.equal(get.text, 'h2 ok /tls-get');
    const seen = upstream.seen.at(-1)!.headers;
    assert.equal(seen[':scheme'], 'https');
    assert.equal(
      seen[':authority'],
      `127.0.0.1:${upstream.port}`,
      'preserve_host: false sends the upstream host',
    );
    assert.equal(seen['x-forwarded-host'], 'front.test');

    const body = randomBytes(10 * 1024 * 1024);
    const res = await sendRequest(proxy.port, '/echo', { method: 'POST', body, timeoutMs: 30000 });
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), sha256(body));
  });

  test('a chunked request and response trailers over TLS', async () => {
    const body = randomBytes(200 * 1024);
    const res = await chunkedPost(proxy.port, '/sha', body);
    assert.deepEqual(JSON.parse(res.body.toString()), { bytes: body.length, sha: sha256(body) });
    const client = await WireClient.connect(proxy.port);
    client.write('GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n');
    const t = await client.next();
    assert.equal(t.trailers, 'x-checksum: abc123\r\nx-count: 2\r\n');
    client.close();
  });
});

describe('HTTP/1.1 clients to an h2c:// upstream: errors before the response head', () => {
  test('no response head in time is a 504 ZP_ERR_UPSTREAM_TIMEOUT, and the upstream stream is cancelled', async () => {
    const upstream = await startH2Upstream();
    const proxy = await startProxy({
      upstream_defaults: { response_header_timeout_ms: 300 },
      routes: [{ path: '/', upstream: `h2c://127.0.0.1:${upstream.port}` }],
    });
    try {
      const res = await sendRequest(proxy.port, '/slow');
      assert.equal(res.status, 504);
      assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_TIMEOUT');
      const seen = upstream.seen.at(-1)!;
      assert.ok(await eventually(() => seen.rstCode !== null, 1000));
      assert.equal(seen.rstCode, http2.constants.NGHTTP2_CANCEL);
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });

  test('a GOAWAY that refuses the stream before the head is a 502 JSON error, never a hang', async () => {
    const server = http2.createServer();
    server.on('session', (s) => s.on('error', () => {}));
    server.on('stream', (stream) => {
      stream.on('error', () => {});
      // The stream is not processed: GOAWAY with last-stream-id 0, then the connection goes.
      stream.session?.goaway(http2.constants.NGHTTP2_NO_ERROR, 0);
      setTimeout(() => stream.session?.destroy(), 20);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const proxy = await startProxy({ routes: [{ path: '/', upstream: `h2c://127.0.0.1:${port}` }] });
    try {
      const res = await sendRequest(proxy.port, '/x', { timeoutMs: 3000 });
      assert.ok(res.status === 502 || res.status === 503, `status ${res.status}`);
      assert.match(errorCodeOf(res), /^ZP_ERR_UPSTREAM_/);
    } finally {
      await proxy.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  test('a down upstream answers 502 with zproxy JSON (node:http client)', async () => {
    const dead = await freePort();
    const proxy = await startProxy({ routes: [{ path: '/', upstream: `h2c://127.0.0.1:${dead}` }] });
    try {
      const res = await sendRequest(proxy.port, '/x');
      assert.equal(res.status, 502);
      assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_CONNECT');
    } finally {
      await proxy.close();
    }
  });
});
