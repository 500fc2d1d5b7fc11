import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CertDir } from '../helpers/certs.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

/** One HTTP/1.1 request over TLS; resolves with the raw response text once the server closes. */
function tlsRequest(port: number, request: string, options: tls.ConnectionOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    socket.once('end', () => resolve(text));
    socket.once('error', reject);
    socket.write(request);
  });
}

describe('HTTP to HTTPS redirect listener and HSTS', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let plainPort: number;
  let tlsPort: number;

  before(async () => {
    const cert = certs.make('site', ['site.test']);
    upstream = await startHttpUpstream((req, res) => {
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (req.url === '/own-hsts') headers['strict-transport-security'] = 'max-age=1';
      res.writeHead(200, headers);
      res.end('ok');
    });
    proxy = await startProxy({
      listeners: [
        { host: '127.0.0.1', port: 0, redirect_https: true },
        {
          host: '127.0.0.1',
          port: 0,
          tls: {
            enabled: true,
            cert_file: cert.cert,
            key_file: cert.key,
            hsts: { enabled: true, max_age_seconds: 600, include_subdomains: true },
            // Plain HTTP on the TLS port too, asked for explicitly (the last test).
            plain_http: 'serve',
          },
        },
      ],
      routes: [{ path: '/', upstream: upstream.url, methods: ['GET', 'POST'] }],
    });
    [plainPort, tlsPort] = proxy.ports as [number, number];
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('plain requests get 308 to the same host and target on the TLS listener; nothing is forwarded', async () => {
    const before = upstream.requests.length;
    const get = await rawRequest(
      plainPort,
      `GET /a/b?x=1&y=%2F HTTP/1.1\r\nHost: Site.test:${plainPort}\r\nConnection: close\r\n\r\n`,
    );
    assert.match(get.text, /^HTTP\/1\.1 308 Permanent Redirect\r\n/);
    assert.match(get.text, new RegExp(`\r\nLocation: https://Site\\.test:${tlsPort}/a/b\\?x=1&y=%2F\r\n`));
    const post = await rawRequest(
      plainPort,
      'POST /form HTTP/1.1\r\nHost: site.test\r\nContent-Length: 5\r\n\r\nhello',
    );
    assert.match(post.text, /^HTTP\/1\.1 308 /);
    assert.match(post.text, new RegExp(`\r\nLocation: https://site\\.test:${tlsPort}/form\r\n`));
    const v6 = await rawRequest(plainPort, 'GET / HTTP/1.1\r\nHost: [::1]:80\r\nConnection: close\r\n\r\n');
    assert.match(v6.text, new RegExp(`\r\nLocation: https://\\[::1\\]:${tlsPort}/\r\n`));
    const noHost = await rawRequest(plainPort, 'GET / HTTP/1.0\r\n\r\n');
    assert.match(noHost.text, /^HTTP\/1\.1 400 /);
    assert.equal(upstream.requests.length, before, 'no request reached the upstream');
    const redirects = proxy.accessLogs().filter((l) => l.status === 308);
    assert.ok(redirects.length >= 3);
  });

  test('curl -L follows the redirect and is served over TLS with HSTS', async () => {
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
      `site.test:${plainPort}:127.0.0.1`,
      '--resolve',
      `site.test:${tlsPort}:127.0.0.1`,
      `http://site.test:${plainPort}/follow`,
    ]);
    assert.match(r.stdout, /^HTTP\/1\.1 308 /);
    assert.match(r.stdout, /\r\nHTTP\/2 200 \r\n/i);
    assert.equal(upstream.requests.at(-1)!.url, '/follow');
  });

  test("TLS responses carry zproxy's HSTS (replacing the upstream's); local answers too", async () => {
    const ok = await tlsRequest(tlsPort, 'GET /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n');
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.match(ok, /\r\nStrict-Transport-Security: max-age=600; includeSubDomains\r\n/);
    const own = await tlsRequest(
      tlsPort,
      'GET /own-hsts HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.equal(own.match(/strict-transport-security/gi)?.length, 1, 'one HSTS field');
    assert.match(own, /\r\nStrict-Transport-Security: max-age=600; includeSubDomains\r\n/);
    const local = await tlsRequest(
      tlsPort,
      'DELETE /x HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(local, /^HTTP\/1\.1 405 /);
    assert.match(local, /\r\nStrict-Transport-Security: max-age=600; includeSubDomains\r\n/);
  });

  test('plain HTTP on the TLS listener has no HSTS (RFC 6797 §7.2) and is not redirected', async () => {
    const r = await rawRequest(
      tlsPort,
      'GET /plain HTTP/1.1\r\nHost: site.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(r.text, /strict-transport-security/i);
  });
});

describe('tls.ciphers', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    const cert = certs.make('ciphers', ['ciphers.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      tls: {
        enabled: true,
        cert_file: cert.cert,
        key_file: cert.key,
        ciphers: 'ECDHE-RSA-AES128-GCM-SHA256',
      },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  const cipherOf = (ciphers: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = tls.connect({
        host: '127.0.0.1',
        port: proxy.port,
        rejectUnauthorized: false,
        maxVersion: 'TLSv1.2',
        ciphers,
      });
      socket.once('secureConnect', () => {
        resolve(socket.getCipher().standardName);
        socket.destroy();
      });
      socket.once('error', reject);
    });

  test('TLS 1.2 handshakes use only the configured ciphers', async () => {
    assert.equal(
      await cipherOf('ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256'),
      'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
    );
    await assert.rejects(cipherOf('ECDHE-RSA-AES256-GCM-SHA384'));
  });
});
