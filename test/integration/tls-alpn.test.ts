import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CertDir, type CertFiles } from '../helpers/certs.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The protocol ALPN chose for a handshake offering `offer`. */
function negotiated(port: number, offer: string[]): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: offer });
    socket.once('secureConnect', () => {
      resolve(socket.alpnProtocol ?? false);
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/** What curl negotiated and got: '<http_version> <status>', e.g. '2 200'. https is fetched with -k. */
async function curlVersion(option: string | null, url: string): Promise<string> {
  const args = ['-sk', '-m', '10', '-o', '/dev/null', '-w', '%{http_version} %{http_code}', url];
  if (option !== null) args.unshift(option);
  return (await run('curl', args)).stdout;
}

describe('ALPN over TLS: h2 and http/1.1 on the same port as plain HTTP', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let cert: CertFiles;

  before(async () => {
    cert = certs.make('alpn', ['alpn.test']);
    upstream = await startHttpUpstream((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-sha256': sha256(req.body) });
      res.end(req.method === 'POST' ? req.body : `${req.method} ${req.url}`);
    });
    proxy = await startProxy({
      // Plain HTTP/1.1 and h2c on the TLS port too, asked for explicitly.
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key, plain_http: 'serve' },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('ALPN prefers h2, falls back to http/1.1, and a client without ALPN gets HTTP/1.1', async () => {
    assert.equal(await negotiated(proxy.port, ['h2', 'http/1.1']), 'h2');
    assert.equal(await negotiated(proxy.port, ['http/1.1', 'h2']), 'h2');
    assert.equal(await negotiated(proxy.port, ['http/1.1']), 'http/1.1');
    assert.equal(await negotiated(proxy.port, []), false);
  });

  test('a Node http2 client over TLS: streams proxied with X-Forwarded-Proto https, bodies intact', async () => {
    const client = http2.connect(`https://127.0.0.1:${proxy.port}`, { rejectUnauthorized: false });
    try {
      const get = await h2Request(client, {
        ':method': 'GET',
        ':path': '/over/h2?q=1',
        ':authority': 'alpn.test',
      });
      assert.equal(get.status, 200);
      assert.equal(get.body.toString(), 'GET /over/h2?q=1');
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
      assert.equal(seen.headers.host, 'alpn.test');
      const payload = randomBytes(3 * 1024 * 1024);
      const post = await h2Request(
        client,
        { ':method': 'POST', ':path': '/up', ':authority': 'alpn.test' },
        payload,
      );
      assert.equal(post.status, 200);
      assert.equal(post.headers['x-sha256'], sha256(payload));
      assert.equal(sha256(post.body), sha256(payload));
      const parallel = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          h2Request(client, { ':method': 'GET', ':path': `/p/${i}`, ':authority': 'alpn.test' }),
        ),
      );
      for (const [i, r] of parallel.entries()) assert.equal(r.body.toString(), `GET /p/${i}`);
      const log = proxy.accessLogs().at(-1)!;
      assert.equal(log.version, '2');
    } finally {
      client.close();
    }
  });

  test('curl --http2 negotiates h2 over TLS; curl --http1.1 gets HTTP/1.1; both from the same port', async () => {
    const url = `https://127.0.0.1:${proxy.port}/curl`;
    assert.equal(await curlVersion('--http2', url), '2 200');
    assert.equal(await curlVersion('--http1.1', url), '1.1 200');
    assert.equal(await curlVersion(null, `http://127.0.0.1:${proxy.port}/curl`), '1.1 200');
    assert.equal(
      await curlVersion('--http2-prior-knowledge', `http://127.0.0.1:${proxy.port}/curl`),
      '2 200',
    );
  });

  test('openssl s_client reports ALPN h2 and the certificate', async () => {
    const s = await run('sh', [
      '-c',
      `echo | openssl s_client -connect 127.0.0.1:${proxy.port} -servername alpn.test -alpn h2,http/1.1 2>/dev/null`,
    ]);
    assert.match(s.stdout, /ALPN protocol: h2/);
    assert.match(s.stdout, /subject=\s*CN\s*=\s*alpn\.test/);
  });

  test('a client that stalls in the handshake does not hold the stop', async () => {
    const { connect } = await import('node:net');
    const other = await startProxy({
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key },
      routes: [{ path: '/', upstream: upstream.url }],
    });
    const stalled = connect(other.port, '127.0.0.1');
    stalled.on('error', () => {});
    const closed = new Promise((r) => stalled.once('close', r));
    await new Promise((r) => stalled.once('connect', r));
    // The start of a TLS record, then nothing: the proxy waits in the handshake.
    stalled.write(Buffer.from([0x16, 0x03, 0x01]));
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await other.close(500);
    assert.ok(Date.now() - t0 < 2000, 'stop is not held by a connection in its handshake');
    await closed;
  });
});

describe('ALPN when http2 is not enabled', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    const cert = certs.make('h1only', ['h1.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      protocols: ['http1'],
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('h2 is not offered: a client offering both gets http/1.1, curl --http2 falls back to HTTP/1.1', async () => {
    assert.equal(await negotiated(proxy.port, ['h2', 'http/1.1']), 'http/1.1');
    assert.equal(await curlVersion('--http2', `https://127.0.0.1:${proxy.port}/x`), '1.1 200');
  });
});

describe('per-listener TLS', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    const top = certs.make('top', ['top.test']);
    const own = certs.make('own', ['own.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      listeners: [
        { host: '127.0.0.1', port: 0 },
        {
          host: '127.0.0.1',
          port: 0,
          tls: { enabled: true, cert_file: own.cert, key_file: own.key, plain_http: 'serve' },
        },
        { host: '127.0.0.1', port: 0, tls: { enabled: false } },
      ],
      tls: { enabled: true, cert_file: top.cert, key_file: top.key },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  const commonName = (port: number) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
      socket.once('secureConnect', () => {
        resolve(String(socket.getPeerCertificate().subject.CN));
        socket.destroy();
      });
      socket.once('error', reject);
    });

  test('each listener uses its own tls block, else the top-level one; tls.enabled false means plain only', async () => {
    const [first, second, third] = proxy.ports as [number, number, number];
    assert.equal(await commonName(first), 'top.test');
    assert.equal(await commonName(second), 'own.test');
    await assert.rejects(commonName(third));
    // Plain HTTP: refused by the top-level block (the default), served where the listener's block asks.
    const expected = [
      [first, /^HTTP\/1\.1 400 [\s\S]*ZP_ERR_PLAIN_HTTP_ON_TLS/],
      [second, /^HTTP\/1\.1 200 /],
      [third, /^HTTP\/1\.1 200 /],
    ] as const;
    for (const [port, answer] of expected) {
      const r = await rawRequest(port, 'GET / HTTP/1.1\r\nHost: l.test\r\nConnection: close\r\n\r\n');
      assert.match(r.text, answer, `plain HTTP on listener port ${port}`);
    }
  });
});

describe('protocols without http1', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    const cert = certs.make('h2only', ['h2.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      protocols: ['http2'],
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key, plain_http: 'serve' },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('HTTP/1.1 is answered 505 and not forwarded; ALPN offers only h2; h2 and h2c are served', async () => {
    const r = await rawRequest(proxy.port, 'GET / HTTP/1.1\r\nHost: h.test\r\n\r\n');
    assert.match(r.text, /^HTTP\/1\.1 505 /);
    assert.match(r.text, /Connection: close\r\n/);
    assert.equal(upstream.requests.length, 0);
    assert.equal(await negotiated(proxy.port, ['h2', 'http/1.1']), 'h2');
    await assert.rejects(
      negotiated(proxy.port, ['http/1.1']),
      'a client that cannot speak h2 is refused in the handshake',
    );
    assert.equal(await curlVersion('--http2', `https://127.0.0.1:${proxy.port}/x`), '2 200');
    assert.equal(await curlVersion('--http2-prior-knowledge', `http://127.0.0.1:${proxy.port}/x`), '2 200');
    assert.equal(upstream.requests.length, 2);
  });
});
