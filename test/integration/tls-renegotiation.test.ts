/**
 * TLS 1.2 client-initiated renegotiation is refused on every TLS connection zproxy serves (a full
 * handshake per request is the classic renegotiation DoS). The client is the real `openssl s_client`,
 * sending its `R` command: the first attempt must fail and the connection must serve nothing more.
 * Covered: HTTP/1.1 and HTTP/2 (ALPN) connections, the default and an SNI certificate, a `redirect_https`
 * listener that has TLS (it inherits the top-level block), and contexts rebuilt by a certificate reload.
 */
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { CertDir, type CertFiles } from '../helpers/certs.ts';
import { requireOpenssl, SClient } from '../helpers/openssl-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const REQUEST = 'GET /reneg HTTP/1.1\r\nHost: reneg.test\r\n\r\n';
const RESPONSE = /HTTP\/1\.1 200 /g;

/** The subject CN of the certificate a fresh handshake gets. */
function servedCommonName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      resolve(String(socket.getPeerCertificate().subject.CN));
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

/**
 * Opens a TLS 1.2 connection with s_client, proves it works (an HTTP/1.1 request answered, or ALPN h2
 * chosen), then types `R`: the renegotiation must fail at once, s_client must end, and a request sent
 * after it must not be answered.
 */
async function assertRenegotiationRefused(
  port: number,
  options: { alpn: 'http/1.1' | 'h2'; servername?: string; expectCommonName: string },
): Promise<void> {
  const args = ['-tls1_2', '-connect', `127.0.0.1:${port}`, '-alpn', options.alpn];
  if (options.servername !== undefined) args.push('-servername', options.servername);
  const client = new SClient(args);
  try {
    await client.waitForOutput(/Verify return code/, 5000, 'the end of the handshake');
    assert.match(client.stdout, /(Protocol\s*:\s*|New, )TLSv1\.2\b/, client.transcript());
    assert.match(client.stdout, new RegExp(`subject=\\s*CN\\s*=\\s*${options.expectCommonName}`));
    if (options.alpn === 'h2') {
      assert.match(client.stdout, /ALPN protocol: h2/, client.transcript());
    } else {
      client.write(REQUEST);
      await client.waitForOutput(RESPONSE, 5000, 'the answer to the first request');
    }
    const answeredBefore = client.stdout.match(RESPONSE)?.length ?? 0;

    client.write('R\n');
    const ended = await client.waitForExit(5000);
    if (!ended && options.alpn === 'http/1.1') {
      // Still connected: show whether the connection goes on serving after the renegotiation.
      client.write(REQUEST);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(
      ended,
      `the renegotiation was accepted: s_client is still connected 5000 ms after R.\n${client.transcript()}`,
    );
    assert.match(client.stderr, /RENEGOTIATING/, 'the R command reached s_client');
    assert.match(client.stderr, /no renegotiation/i, client.transcript());
    assert.notEqual(client.exitCode, 0, 's_client reports the failed renegotiation');
    assert.equal(client.stdout.match(RESPONSE)?.length ?? 0, answeredBefore, 'nothing served after R');
  } finally {
    client.close();
  }
}

describe('TLS 1.2 client-initiated renegotiation is refused', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let fallback: CertFiles;
  let tlsPort: number;
  let redirectPort: number;

  before(async () => {
    requireOpenssl();
    fallback = certs.make('default', ['default.test']);
    const sni = certs.make('sni', ['sni.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      // The top-level block applies to both listeners: the redirect_https one has TLS too (its TLS
      // connections are served, its plain requests redirected).
      tls: {
        enabled: true,
        cert_file: fallback.cert,
        key_file: fallback.key,
        certificates: [{ server_names: ['sni.test'], cert_file: sni.cert, key_file: sni.key }],
      },
      listeners: [
        { host: '127.0.0.1', port: 0 },
        { host: '127.0.0.1', port: 0, redirect_https: true },
      ],
      routes: [{ path: '/', upstream: upstream.url }],
    });
    [tlsPort, redirectPort] = proxy.ports as [number, number];
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    certs.remove();
  });

  test('HTTP/1.1 over TLS, default certificate: R fails on the first attempt', async () => {
    await assertRenegotiationRefused(tlsPort, { alpn: 'http/1.1', expectCommonName: 'default.test' });
  });

  test('HTTP/1.1 over TLS, certificate chosen by SNI: R fails on the first attempt', async () => {
    await assertRenegotiationRefused(tlsPort, {
      alpn: 'http/1.1',
      servername: 'sni.test',
      expectCommonName: 'sni.test',
    });
  });

  test('a connection that negotiated h2 by ALPN: R fails on the first attempt', async () => {
    await assertRenegotiationRefused(tlsPort, { alpn: 'h2', expectCommonName: 'default.test' });
    await assertRenegotiationRefused(tlsPort, {
      alpn: 'h2',
      servername: 'sni.test',
      expectCommonName: 'sni.test',
    });
  });

  test('a redirect_https listener with TLS: R fails on the first attempt', async () => {
    await assertRenegotiationRefused(redirectPort, { alpn: 'http/1.1', expectCommonName: 'default.test' });
    await assertRenegotiationRefused(redirectPort, { alpn: 'h2', expectCommonName: 'default.test' });
  });

  test('after a certificate reload, the new contexts refuse it too', async () => {
    const renewed = certs.make('renewed', ['renewed.test']);
    copyFileSync(renewed.key, fallback.key);
    copyFileSync(renewed.cert, fallback.cert);
    // The files are polled once a second: wait (one handshake per probe) until new handshakes get it.
    const deadline = Date.now() + 8000;
    let served = await servedCommonName(tlsPort);
    while (served !== 'renewed.test' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      served = await servedCommonName(tlsPort);
    }
    assert.equal(served, 'renewed.test', 'the renewed certificate is served');
    await assertRenegotiationRefused(tlsPort, { alpn: 'http/1.1', expectCommonName: 'renewed.test' });
    await assertRenegotiationRefused(tlsPort, { alpn: 'h2', expectCommonName: 'renewed.test' });
  });
});
