import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream, startRawUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('HTTP/2 with prior knowledge (h2c) on the HTTP/1.1 port', () => {
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let client: http2.ClientHttp2Session;

  before(async () => {
    // Echoes the request body back; GET /big/N answers N bytes of a fixed pattern.
    upstream = await startHttpUpstream((req, res) => {
      const m = /^\/big\/(\d+)$/.exec(req.url);
      if (m !== null) {
        const body = Buffer.alloc(Number(m[1]), 'zproxy-');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        res.end(body);
        return;
      }
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'x-seen-url': req.url,
        'set-cookie': ['a=1', 'b=2'],
        connection: 'keep-alive',
      });
      res.end(req.body);
    });
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: upstream.url, methods: ['GET', 'POST'] }],
    });
    client = http2.connect(proxy.url);
  });
  after(async () => {
    client.close();
    await proxy.close();
    await upstream.close();
  });

  test('a GET is proxied to the HTTP/1.1 upstream and mapped back', async () => {
    const res = await h2Request(client, { ':path': '/h2/get?q=%2F1', ':method': 'GET' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['x-seen-url'], '/h2/get?q=%2F1');
    assert.deepEqual(res.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(res.headers.connection, undefined, 'no connection-specific field in HTTP/2');
    assert.equal(res.headers.via, '1.1 zproxy');
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.httpVersion, '1.1');
    assert.equal(seen.headers.host, `127.0.0.1:${proxy.port}`, ':authority becomes Host');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers.via, '2 zproxy');
  });

  test('split cookie fields are joined for the HTTP/1.1 upstream', async () => {
    await h2Request(client, { ':path': '/cookies', cookie: ['a=1', 'b=2'] });
    assert.equal(upstream.requests.at(-1)!.headers.cookie, 'a=1; b=2');
  });

  test('100 concurrent streams on one connection, bodies checked byte for byte', async () => {
    const bodies = Array.from({ length: 100 }, (_, i) => randomBytes(1000 + i * 37));
    const results = await Promise.all(
      bodies.map((b, i) =>
        h2Request(client, { ':path': `/echo/${i}`, ':method': 'POST', 'content-length': b.length }, b),
      ),
    );
    results.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-seen-url'], `/echo/${i}`);
      assert.equal(sha256(res.body), sha256(bodies[i]!), `stream ${i}`);
    });
  });

  test('a 10 MB request body without content-length, and a 10 MB response', async () => {
    const up = randomBytes(10 * 1024 * 1024);
    const res = await h2Request(client, { ':path': '/upload', ':method': 'POST' }, up);
    assert.equal(res.status, 200);
    assert.equal(sha256(res.body), sha256(up));
    assert.equal(upstream.requests.at(-1)!.headers['transfer-encoding'], 'chunked');
    const down = await h2Request(client, { ':path': `/big/${10 * 1024 * 1024}` });
    assert.equal(down.body.length, 10 * 1024 * 1024);
    assert.equal(sha256(down.body), sha256(Buffer.alloc(10 * 1024 * 1024, 'zproxy-')));
  });

  test('later streams on one connection: each gets its own answer and log line', async () => {
    // One connection: a local 405, a response the client cancels mid-body, then requests in a row and
    // in parallel; nothing of the earlier exchanges may show in the later ones.
    const session = http2.connect(proxy.url);
    try {
      assert.equal((await h2Request(session, { ':path': '/x', ':method': 'DELETE' })).status, 405);
      await new Promise<void>((resolve, reject) => {
        const req = session.request({ ':path': `/big/${4 * 1024 * 1024}` });
        req.on('response', () => req.close(http2.constants.NGHTTP2_CANCEL));
        req.on('close', resolve);
        req.on('error', reject);
        req.resume();
      });
      for (let round = 0; round < 3; round++) {
        const paths = Array.from({ length: 12 }, (_, i) => `/reuse/${round}/${i}?v=${i * round}`);
        const results = await Promise.all(paths.map((p) => h2Request(session, { ':path': p })));
        results.forEach((res, i) => {
          assert.equal(res.status, 200);
          assert.equal(res.headers['x-seen-url'], paths[i]);
        });
      }
      await new Promise((r) => setTimeout(r, 50));
      const logs = proxy.accessLogs().filter((l) => String(l.target).startsWith('/reuse/'));
      assert.equal(logs.length, 36, 'one log line per stream');
      for (const log of logs) {
        assert.equal(log.status, 200);
        assert.equal(log.error ?? null, null);
      }
      assert.deepEqual(
        logs.map((l) => l.target).sort(),
        Array.from(
          { length: 36 },
          (_, k) => `/reuse/${Math.floor(k / 12)}/${k % 12}?v=${(k % 12) * Math.floor(k / 12)}`,
        ).sort(),
        'each log line names its own stream target',
      );
    } finally {
      session.close();
    }
  });

  test('405 answers with the same JSON error as HTTP/1.1', async () => {
    const res = await h2Request(client, { ':path': '/x', ':method': 'DELETE' });
    assert.equal(res.status, 405);
    assert.equal(res.headers.allow, 'GET, HEAD, POST');
    assert.equal(JSON.parse(res.body.toString()).error.code, 'ZP_ERR_METHOD_NOT_ALLOWED');
  });

  test('curl --http2-prior-knowledge', async () => {
    const r = await run('curl', [
      '-s',
      '--http2-prior-knowledge',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{http_version}',
      `${proxy.url}/curl`,
    ]);
    assert.equal(r.stdout, '200 2');
  });

  test('a preface that starts like HTTP/2 but goes wrong is a connection error: GOAWAY PROTOCOL_ERROR, then close', async () => {
    for (const wrong of ['PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\n\n']) {
      const seen = upstream.requests.length;
      const r = await rawRequest(proxy.port, wrong);
      assert.equal(r.closedByServer, true);
      const bytes = Buffer.from(r.text, 'latin1');
      assert.doesNotMatch(r.text, /^HTTP\/1\.1/, 'not an HTTP/1.1 answer');
      // Frames: find the GOAWAY (type 7) and read its error code.
      let code = -1;
      for (let p = 0; p + 9 <= bytes.length; p += 9 + bytes.readUIntBE(p, 3)) {
        if (bytes[p + 3] === 0x7) code = bytes.readUInt32BE(p + 13);
      }
      assert.equal(code, 1, `GOAWAY PROTOCOL_ERROR for ${JSON.stringify(wrong)}`);
      assert.equal(upstream.requests.length, seen);
    }
  });

  test('HTTP/1.1 keeps working on the same port', async () => {
    const r = await rawRequest(proxy.port, 'GET /h1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 200 /);
  });
});

describe('HTTP/2 disabled', () => {
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    upstream = await startHttpUpstream();
    proxy = await startProxy({ protocols: ['http1'], routes: [{ path: '/', upstream: upstream.url }] });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test('the preface is refused and the connection closed; nothing is forwarded', async () => {
    const r = await rawRequest(proxy.port, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 (400|505) /);
    assert.equal(r.closedByServer, true);
    assert.equal(upstream.requests.length, 0);
    const logged = proxy.accessLogs().at(-1);
    assert.ok(logged !== undefined && (logged.status === 400 || logged.status === 505), 'an access log line');
  });
});

describe('HTTP/2 stream cancelled by the client', () => {
  test('the upstream request is aborted and its connection closed at once', async () => {
    const closed: number[] = [];
    const silent = await startRawUpstream((socket) => {
      socket.on('close', () => closed.push(Date.now()));
    });
    const proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: silent.url }],
    });
    const client = http2.connect(proxy.url);
    try {
      const req = client.request({ ':path': '/hang' });
      req.on('error', () => {});
      const deadline = Date.now() + 3000;
      while (silent.received.length === 0 || silent.received[0]!.length === 0) {
        assert.ok(Date.now() < deadline, 'the request reached the upstream');
        await new Promise((r) => setTimeout(r, 20));
      }
      const cancelledAt = Date.now();
      req.close(http2.constants.NGHTTP2_CANCEL);
      while (closed.length === 0) {
        assert.ok(Date.now() - cancelledAt < 1000, 'the upstream connection closed within a second');
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 50));
      const log = proxy.accessLogs().at(-1)!;
      assert.equal(log.status, 499);
      assert.equal(log.error, 'ZP_ERR_CLIENT_ABORTED');
      assert.equal(log.version, '2');
    } finally {
      client.close();
      await proxy.close();
      await silent.close();
    }
  });
});
