/**
 * Plain HTTP on a TLS listener (`tls.plain_http`): refused by default (400 ZP_ERR_PLAIN_HTTP_ON_TLS for
 * HTTP/1.x, GOAWAY INADEQUATE_SECURITY for an h2c preface), redirected to https (308) when asked, or served
 * when asked. Real clients: raw sockets for exact bytes, node:http2 for h2c, curl, and TLS connections to
 * show the listener itself keeps serving TLS.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CertDir } from '../helpers/certs.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { ERROR, FRAME, RawH2Client } from '../helpers/h2-frames.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

const REFUSAL_MESSAGE = 'Plain HTTP was sent to a port that speaks HTTPS only; use https://';

/** One HTTP/1.1 request over TLS (`Connection: close`); resolves with the raw response text. */
function tlsRequest(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
    socket.write(request);
  });
}

/** Checks the answer to plain HTTP/1.x on a refusing TLS listener: the whole 400, then the close. */
function assertRefused(r: { text: string; closedByServer: boolean }): void {
  assert.ok(r.closedByServer, 'the connection is closed after the answer');
  const [head, body] = r.text.split('\r\n\r\n') as [string, string];
  assert.match(head, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(head, /\r\nContent-Type: application\/json\r\n/);
  assert.match(head, /\r\nConnection: close(\r\n|$)/);
  assert.match(head, new RegExp(`\r\nContent-Length: ${Buffer.byteLength(body)}(\r\n|$)`));
  assert.doesNotMatch(head, /strict-transport-security/i);
  assert.deepEqual(JSON.parse(body), {
    error: { code: 'ZP_ERR_PLAIN_HTTP_ON_TLS', status: 400, message: REFUSAL_MESSAGE },
  });
}

/** Opens h2c with prior knowledge and checks it is refused: SETTINGS, GOAWAY INADEQUATE_SECURITY, close. */
async function assertH2cRefused(port: number): Promise<void> {
  const client = await RawH2Client.connect(port);
  try {
    const id = client.request([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/h2c'],
      [':authority', 'plain.test'],
    ]);
    await client.waitUntil(() => client.closed, 3000, 'the connection to close');
    const goaway = client.frames.find((f) => f.type === FRAME.GOAWAY);
    assert.ok(goaway, 'a GOAWAY frame was sent');
    assert.equal(client.frames[0]?.type, FRAME.SETTINGS, 'the server preface comes first');
    assert.deepEqual(client.goaway, { lastStreamId: 0, code: ERROR.INADEQUATE_SECURITY });
    assert.equal(goaway.payload.subarray(8).toString('latin1'), REFUSAL_MESSAGE);
    assert.equal(client.stream(id).status, 0, 'no stream was answered');
  } finally {
    client.close();
  }
}

describe('plain HTTP on a TLS listener (tls.plain_http)', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let rejectPort: number;
  let redirectPort: number;
  let servePort: number;
  let redirectHttpsPort: number;

  before(async () => {
    const cert = certs.make('site', ['site.test']);
    const files = { cert_file: cert.cert, key_file: cert.key };
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      tls: { enabled: true, ...files },
      listeners: [
        // The top-level block: plain_http left at its default.
        { host: '127.0.0.1', port: 0 },
        { host: '127.0.0.1', port: 0, tls: { enabled: true, ...files, plain_http: 'redirect' } },
        { host: '127.0.0.1', port: 0, tls: { enabled: true, ...files, plain_http: 'serve' } },
        // redirect_https on a listener that has TLS (the top-level block): it redirects plain requests.
        { host: '127.0.0.1', port: 0, redirect_https: true },
      ],
      routes: [{ path: '/', upstream: upstream.url, methods: ['GET', 'POST'] }],
    });
    [rejectPort, redirectPort, servePort, redirectHttpsPort] = proxy.ports as [
      number,
      number,
      number,
      number,
    ];
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('default: plain HTTP/1.x gets 400 ZP_ERR_PLAIN_HTTP_ON_TLS and the connection closes; nothing is forwarded', async () => {
    const before = upstream.requests.length;
    assertRefused(
      await rawRequest(rejectPort, 'GET /plain HTTP/1.1\r\nHost: site.test\r\n\r\n', { timeoutMs: 3000 }),
    );
    assertRefused(
      await rawRequest(
        rejectPort,
        'POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\n\r\nhello',
      ),
    );
    assertRefused(await rawRequest(rejectPort, 'GET / HTTP/1.0\r\n\r\n'));
    // A request trickled in pieces is refused on its first byte.
    assertRefused(await rawRequest(rejectPort, ['G', 'ET / HTTP/1.1\r\n', 'Host: site.test\r\n\r\n']));
    // Not even HTTP: refused the same way.
    assertRefused(await rawRequest(rejectPort, 'hello\r\n'));
    assert.equal(upstream.requests.length, before, 'no request reached the upstream');
  });

  test('default: TLS on the same listener is served, with X-Forwarded-Proto https', async () => {
    const r = await tlsRequest(
      rejectPort,
      'GET /secure HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(r, /^HTTP\/1\.1 200 /);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.url, '/secure');
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
    const client = http2.connect(`https://127.0.0.1:${rejectPort}`, { rejectUnauthorized: false });
    try {
      const res = await h2Request(client, { ':path': '/secure-h2', ':authority': 'site.test' });
      assert.equal(res.status, 200);
      assert.equal(client.alpnProtocol, 'h2');
    } finally {
      client.close();
    }
  });

  test('default: an h2c preface gets GOAWAY INADEQUATE_SECURITY and the connection closes', async () => {
    const before = upstream.requests.length;
    await assertH2cRefused(rejectPort);
    // node:http2 as a client sees the same GOAWAY.
    const client = http2.connect(`http://127.0.0.1:${rejectPort}`);
    client.on('error', () => {});
    try {
      const goaway = await new Promise<{ code: number; data: string }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no GOAWAY within 3000 ms')), 3000);
        client.once('goaway', (code: number, _last: number, data?: Buffer) => {
          clearTimeout(timer);
          resolve({ code, data: data?.toString('latin1') ?? '' });
        });
        client.request({ ':path': '/h2c' }).on('error', () => {});
      });
      assert.deepEqual(goaway, { code: ERROR.INADEQUATE_SECURITY, data: REFUSAL_MESSAGE });
    } finally {
      client.destroy();
    }
    assert.equal(upstream.requests.length, before, 'no request reached the upstream');
  });

  test('default: curl over plain HTTP sees the 400 and its JSON body', async () => {
    const r = await run('curl', [
      '-s',
      '-m',
      '10',
      '-w',
      '\n%{http_code}',
      `http://127.0.0.1:${rejectPort}/curl`,
    ]);
    const [body, status] = r.stdout.split('\n') as [string, string];
    assert.equal(status, '400');
    assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'ZP_ERR_PLAIN_HTTP_ON_TLS');
  });

  test('redirect: plain HTTP/1.x gets 308 to https on the same port; TLS is served; h2c is refused', async () => {
    const before = upstream.requests.length;
    const get = await rawRequest(
      redirectPort,
      `GET /a/b?x=1 HTTP/1.1\r\nHost: Site.test:${redirectPort}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(get.text, /^HTTP\/1\.1 308 Permanent Redirect\r\n/);
    assert.match(get.text, new RegExp(`\r\nLocation: https://Site\\.test:${redirectPort}/a/b\\?x=1\r\n`));
    const post = await rawRequest(
      redirectPort,
      'POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\n\r\nhello',
    );
    assert.match(post.text, /^HTTP\/1\.1 308 /);
    assert.match(post.text, new RegExp(`\r\nLocation: https://site\\.test:${redirectPort}/form\r\n`));
    await assertH2cRefused(redirectPort);
    assert.equal(upstream.requests.length, before, 'no plain request reached the upstream');
    const r = await tlsRequest(
      redirectPort,
      'GET /tls HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(r, /^HTTP\/1\.1 200 /);
  });

  test('redirect: curl -L follows it to TLS on the same port', async () => {
    const r = await run('curl', [
      '-sk',
      '-m',
      '10',
      '-L',
      '-D',
      '-',
      '-o',
      '/dev/null',
      '--resolve',
      `site.test:${redirectPort}:127.0.0.1`,
      `http://site.test:${redirectPort}/follow`,
    ]);
    assert.match(r.stdout, /^HTTP\/1\.1 308 /);
    assert.match(r.stdout, /\r\nHTTP\/2 200 \r\n/i);
    assert.equal(upstream.requests.at(-1)!.url, '/follow');
  });

  test('redirect_https on a TLS listener: 308 to the first TLS listener; h2c refused', async () => {
    const get = await rawRequest(
      redirectHttpsPort,
      'GET /r HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(get.text, /^HTTP\/1\.1 308 /);
    assert.match(get.text, new RegExp(`\r\nLocation: https://site\\.test:${rejectPort}/r\r\n`));
    await assertH2cRefused(redirectHttpsPort);
  });

  test('serve: plain HTTP/1.1 and h2c are served on the TLS port, with X-Forwarded-Proto http', async () => {
    const r = await rawRequest(
      servePort,
      'GET /plain HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.requests.at(-1)!.url, '/plain');
    assert.equal(upstream.requests.at(-1)!.headers['x-forwarded-proto'], 'http');
    const client = http2.connect(`http://127.0.0.1:${servePort}`);
    try {
      const res = await h2Request(client, { ':path': '/h2c', ':authority': 'site.test' });
      assert.equal(res.status, 200);
      assert.equal(upstream.requests.at(-1)!.url, '/h2c');
      assert.equal(upstream.requests.at(-1)!.headers['x-forwarded-proto'], 'http');
    } finally {
      client.close();
    }
    const secure = await tlsRequest(
      servePort,
      'GET /tls HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(secure, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.requests.at(-1)!.headers['x-forwarded-proto'], 'https');
  });
});
