import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { CertDir, type CertFiles } from '../helpers/certs.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

/** Opens a TLS connection; resolves once the handshake is done. */
function connectTls(port: number, servername?: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    socket.once('secureConnect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends one keep-alive GET on an open socket and reads one small response. */
function get(socket: tls.TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const m = /content-length: (\d+)/i.exec(text);
      if (end !== -1 && m !== null && text.length >= end + 4 + Number(m[1])) {
        socket.off('data', onData);
        resolve(text);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: tls.test\r\n\r\n`);
  });
}

function commonName(socket: tls.TLSSocket): string {
  return String(socket.getPeerCertificate().subject.CN);
}

async function waitFor(check: () => Promise<boolean>, ms = 8000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail('condition not met in time');
}

describe('TLS on the same port as plain HTTP', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let fallback: CertFiles;

  before(async () => {
    fallback = certs.make('default', ['default.test']);
    const a = certs.make('a', ['a.test']);
    const wild = certs.make('wild', ['*.b.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      tls: {
        enabled: true,
        cert_file: fallback.cert,
        key_file: fallback.key,
        plain_http: 'serve',
        certificates: [
          { server_names: ['a.test'], cert_file: a.cert, key_file: a.key },
          { server_names: ['*.b.test'], cert_file: wild.cert, key_file: wild.key },
        ],
      },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('an HTTPS request is proxied, with X-Forwarded-Proto https', async () => {
    const socket = await connectTls(proxy.port, 'a.test');
    try {
      assert.equal(socket.alpnProtocol, 'http/1.1');
      const res = await get(socket, '/secure?x=1');
      assert.match(res, /^HTTP\/1\.1 200 /);
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.url, '/secure?x=1');
      assert.equal(seen.headers['x-forwarded-proto'], 'https');
    } finally {
      socket.destroy();
    }
  });

  test('plain HTTP still works on the same port, with X-Forwarded-Proto http', async () => {
    const r = await rawRequest(
      proxy.port,
      'GET /plain HTTP/1.1\r\nHost: p.test\r\nConnection: close\r\n\r\n',
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.requests.at(-1)!.headers['x-forwarded-proto'], 'http');
  });

  test('SNI chooses the certificate: exact, wildcard, and the default for unknown or no names', async () => {
    for (const [name, cn] of [
      ['a.test', 'a.test'],
      ['x.b.test', '*.b.test'],
      ['deep.x.b.test', '*.b.test'],
      ['b.test', 'default.test'],
      ['unknown.test', 'default.test'],
      [undefined, 'default.test'],
    ] as const) {
      const socket = await connectTls(proxy.port, name);
      assert.equal(commonName(socket), cn, `server name ${name}`);
      socket.destroy();
    }
  });

  test('curl and openssl s_client see the same', async () => {
    const curl = await run('curl', [
      '-sk',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `https://127.0.0.1:${proxy.port}/c`,
    ]);
    assert.equal(curl.stdout, '200');
    const s = await run('sh', [
      '-c',
      `echo | openssl s_client -connect 127.0.0.1:${proxy.port} -servername a.test -alpn http/1.1 2>/dev/null`,
    ]);
    assert.match(s.stdout, /subject=\s*CN\s*=\s*a\.test/);
    assert.match(s.stdout, /ALPN protocol: http\/1\.1/);
  });
});

describe('certificate reload', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let live: CertFiles;

  before(async () => {
    live = certs.make('live', ['old.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      tls: { enabled: true, cert_file: live.cert, key_file: live.key },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('new handshakes get the new certificate, open connections keep working, a corrupt file is ignored', async () => {
    const held = await connectTls(proxy.port);
    assert.equal(commonName(held), 'old.test');
    assert.match(await get(held, '/before'), /^HTTP\/1\.1 200 /);

    const renewed = certs.make('renewed', ['new.test']);
    copyFileSync(renewed.key, live.key);
    copyFileSync(renewed.cert, live.cert);
    await waitFor(async () => {
      const s = await connectTls(proxy.port);
      const cn = commonName(s);
      s.destroy();
      return cn === 'new.test';
    });
    assert.match(
      await get(held, '/after'),
      /^HTTP\/1\.1 200 /,
      'the connection opened before the reload still works',
    );

    const failures = () => proxy.logs.filter((l) => String(l.msg).includes('not reloaded')).length;
    const before = failures();
    writeFileSync(live.cert, 'not a certificate\n');
    await waitFor(async () => failures() > before);
    const s = await connectTls(proxy.port);
    assert.equal(commonName(s), 'new.test', 'the last good certificate keeps serving');
    s.destroy();
    held.destroy();
  });
});
