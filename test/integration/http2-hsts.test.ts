import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CertDir } from '../helpers/certs.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const HSTS = 'max-age=600; includeSubDomains; preload';

/** Every value of `name` in a response's raw field list (so that a field sent twice is seen twice). */
function rawValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i] === name) out.push(raw[i + 1]!);
  return out;
}

/** One GET; resolves with the status, the raw response fields, the body and the trailers. */
function get(
  client: http2.ClientHttp2Session,
  path: string,
  method = 'GET',
): Promise<{ status: number; raw: string[]; body: string; trailers: http2.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = client.request({ ':method': method, ':path': path });
    let status = 0;
    let raw: string[] = [];
    let trailers: http2.IncomingHttpHeaders = {};
    let body = '';
    req.on('response', (headers, _flags, rawHeaders: string[]) => {
      status = Number(headers[':status']);
      raw = rawHeaders;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => resolve({ status, raw, body, trailers }));
    req.on('error', reject);
    req.end();
  });
}

describe('HSTS on HTTP/2 responses over TLS', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let h2upstream: http2.Http2Server;
  let proxy: StartedProxy;
  let tlsClient: http2.ClientHttp2Session;
  let h2cClient: http2.ClientHttp2Session;

  before(async () => {
    const cert = certs.make('site', ['site.test']);
    upstream = await startHttpUpstream((req, res) => {
      if (req.url === '/h1/own-hsts') res.setHeader('strict-transport-security', 'max-age=1');
      if (req.url === '/h1/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-done' });
        res.write('part one, ');
        res.addTrailers({ 'x-done': 'yes' });
        res.end('part two');
        return;
      }
      // Two Content-Type lines (an array makes node:http send the field twice).
      const type = req.url === '/h1/two-types' ? ['text/plain', 'text/html'] : 'text/plain';
      res.setHeader('content-type', type);
      res.writeHead(200);
      res.end('ok');
    });
    h2upstream = http2.createServer();
    h2upstream.on('stream', (stream, headers) => {
      const fields: http2.OutgoingHttpHeaders = { ':status': 200, 'content-type': 'text/plain' };
      if (headers[':path'] === '/h2/own-hsts') fields['strict-transport-security'] = 'max-age=1';
      stream.respond(fields);
      stream.end('h2 ok');
    });
    await new Promise<void>((resolve) => h2upstream.listen(0, '127.0.0.1', resolve));
    const h2port = (h2upstream.address() as AddressInfo).port;
    proxy = await startProxy({
      listeners: [
        {
          host: '127.0.0.1',
          port: 0,
          tls: {
            enabled: true,
            cert_file: cert.cert,
            key_file: cert.key,
            hsts: { enabled: true, max_age_seconds: 600, include_subdomains: true, preload: true },
            // h2c on this TLS port, asked for explicitly (a TLS listener refuses plain HTTP by default).
            plain_http: 'serve',
          },
        },
      ],
      protocols: ['http1', 'http2'],
      routes: [
        { path: '/h1', upstream: upstream.url, methods: ['GET'] },
        { path: '/h2', upstream: `h2c://127.0.0.1:${h2port}`, methods: ['GET'] },
      ],
    });
    tlsClient = http2.connect(`https://127.0.0.1:${proxy.port}`, {
      rejectUnauthorized: false,
      servername: 'site.test',
    });
    // The same listener also serves h2c (prior knowledge) on plain connections.
    h2cClient = http2.connect(`http://127.0.0.1:${proxy.port}`);
    tlsClient.on('error', () => {});
    h2cClient.on('error', () => {});
  });
  after(async () => {
    tlsClient.close();
    h2cClient.close();
    await proxy.close();
    await upstream.close();
    await new Promise<void>((resolve) => h2upstream.close(() => resolve()));
    certs.remove();
  });

  test('a proxied response (HTTP/1.1 upstream) carries it once', async () => {
    const res = await get(tlsClient, '/h1/plain');
    assert.equal(res.status, 200);
    assert.equal(res.body, 'ok');
    assert.deepEqual(rawValues(res.raw, 'strict-transport-security'), [HSTS]);
    assert.equal(tlsClient.alpnProtocol, 'h2');
  });

  test("the upstream's own field is replaced (HTTP/1.1 and HTTP/2 upstreams)", async () => {
    const h1 = await get(tlsClient, '/h1/own-hsts');
    assert.equal(h1.status, 200);
    assert.deepEqual(rawValues(h1.raw, 'strict-transport-security'), [HSTS]);
    const h2 = await get(tlsClient, '/h2/own-hsts');
    assert.equal(h2.status, 200);
    assert.equal(h2.body, 'h2 ok');
    assert.deepEqual(rawValues(h2.raw, 'strict-transport-security'), [HSTS]);
    const h2plain = await get(tlsClient, '/h2/plain');
    assert.deepEqual(rawValues(h2plain.raw, 'strict-transport-security'), [HSTS]);
  });

  test('a chunked response with trailers, and a head with a Content-Type repeated', async () => {
    const chunked = await get(tlsClient, '/h1/chunked');
    assert.equal(chunked.body, 'part one, part two');
    assert.equal(chunked.trailers['x-done'], 'yes');
    assert.deepEqual(rawValues(chunked.raw, 'strict-transport-security'), [HSTS]);
    // Two Content-Type lines go out as two HTTP/2 fields, as they came (as HTTP/1.1 forwards them), HSTS
    // still there.
    const two = await get(tlsClient, '/h1/two-types');
    assert.equal(two.status, 200);
    assert.deepEqual(rawValues(two.raw, 'content-type'), ['text/plain', 'text/html']);
    assert.deepEqual(rawValues(two.raw, 'strict-transport-security'), [HSTS]);
  });

  test("zproxy's own answers (404, 405) carry it", async () => {
    const notFound = await get(tlsClient, '/nowhere');
    assert.equal(notFound.status, 404);
    assert.deepEqual(rawValues(notFound.raw, 'strict-transport-security'), [HSTS]);
    const notAllowed = await get(tlsClient, '/h1/x', 'DELETE');
    assert.equal(notAllowed.status, 405);
    assert.deepEqual(rawValues(notAllowed.raw, 'strict-transport-security'), [HSTS]);
  });

  test('h2c on the same listener never carries it', async () => {
    const proxied = await get(h2cClient, '/h1/own-hsts');
    assert.equal(proxied.status, 200);
    // The upstream's own value passes through unchanged; zproxy adds none.
    assert.deepEqual(rawValues(proxied.raw, 'strict-transport-security'), ['max-age=1']);
    const plain = await get(h2cClient, '/h2/plain');
    assert.equal(plain.status, 200);
    assert.deepEqual(rawValues(plain.raw, 'strict-transport-security'), []);
    const notFound = await get(h2cClient, '/nowhere');
    assert.equal(notFound.status, 404);
    assert.deepEqual(rawValues(notFound.raw, 'strict-transport-security'), []);
  });
});

describe('HTTP/2 over TLS without HSTS', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    const cert = certs.make('site', ['site.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      listeners: [
        { host: '127.0.0.1', port: 0, tls: { enabled: true, cert_file: cert.cert, key_file: cert.key } },
      ],
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('responses carry no Strict-Transport-Security', async () => {
    const client = http2.connect(`https://127.0.0.1:${proxy.port}`, { rejectUnauthorized: false });
    try {
      const res = await h2Request(client, { ':path': '/x' });
      assert.equal(res.status, 200);
      assert.equal(res.headers['strict-transport-security'], undefined);
    } finally {
      client.close();
    }
  });
});
