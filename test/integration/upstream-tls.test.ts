import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import pino from 'pino';
import { CertDir, type CertDir as CertDirType, type CertFiles } from '../helpers/certs.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';

interface Seen {
  readonly url: string;
  readonly servername: string | false;
  readonly clientCN: string | null;
  readonly socketId: number;
}

interface TlsUpstream {
  readonly port: number;
  readonly seen: Seen[];
  close(): Promise<void>;
}

/** An HTTPS upstream that records the SNI, the client certificate and the connection of each request. */
async function startTlsUpstream(
  cert: CertFiles,
  options: { requireClientCa?: CertFiles } = {},
): Promise<TlsUpstream> {
  const seen: Seen[] = [];
  const ids = new WeakMap<object, number>();
  let nextId = 1;
  const server = https.createServer(
    {
      cert: readFileSync(cert.cert),
      key: readFileSync(cert.key),
      ...(options.requireClientCa === undefined
        ? {}
        : { ca: readFileSync(options.requireClientCa.cert), requestCert: true, rejectUnauthorized: true }),
    },
    (req, res) => {
      const socket = req.socket as TLSSocket;
      if (!ids.has(socket)) ids.set(socket, nextId++);
      const peer = socket.getPeerCertificate();
      seen.push({
        url: req.url ?? '',
        servername: (socket as TLSSocket & { servername: string | false }).servername,
        clientCN: peer?.subject?.CN === undefined ? null : String(peer.subject.CN),
        socketId: ids.get(socket)!,
      });
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`tls ok ${req.url}`);
      });
    },
  );
  server.keepAliveTimeout = 10_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('https:// upstreams', () => {
  let certs: CertDirType;
  let ca: CertFiles;
  let otherCa: CertFiles;
  let serverCert: CertFiles;
  let clientCert: CertFiles;
  let upstream: TlsUpstream;
  let mtlsUpstream: TlsUpstream;
  let proxy: StartedProxy;
  const warnings: Record<string, unknown>[] = [];

  before(async () => {
    certs = new CertDir();
    ca = certs.makeCa('ca', 'zproxy test CA');
    otherCa = certs.makeCa('other-ca', 'another CA');
    serverCert = certs.makeSigned('upstream', ['upstream.test', 'alt.upstream.test', '127.0.0.1'], ca);
    clientCert = certs.makeSigned('client', ['zproxy-client'], ca);
    upstream = await startTlsUpstream(serverCert);
    mtlsUpstream = await startTlsUpstream(serverCert, { requireClientCa: ca });
    const url = `https://127.0.0.1:${upstream.port}`;
    proxy = await startProxy({
      upstream_defaults: { tls: { ca_file: ca.cert } },
      routes: [
        // The defaults: the CA file, the certificate checked against the URL's host (an IP, no SNI).
        { path: '/ca', upstream: url },
        // Another route with the same TLS settings shares the pool.
        { path: '/ca-again', upstream: url },
        // SNI and the name checked come from server_name.
        { path: '/sni', upstream: url, upstream_tls: { server_name: 'alt.upstream.test' } },
        // A CA that did not sign the upstream's certificate: verification fails.
        { path: '/wrong-ca', upstream: url, upstream_tls: { ca_file: otherCa.cert } },
        // A name the certificate does not cover: verification fails.
        { path: '/wrong-name', upstream: url, upstream_tls: { server_name: 'elsewhere.test' } },
        // Verification off: any certificate is accepted.
        { path: '/no-verify', upstream: url, upstream_tls: { ca_file: otherCa.cert, verify: false } },
        // mTLS: the upstream requires a client certificate signed by the CA.
        {
          path: '/mtls',
          upstream: `https://127.0.0.1:${mtlsUpstream.port}`,
          upstream_tls: { cert_file: clientCert.cert, key_file: clientCert.key },
        },
        { path: '/mtls-without-cert', upstream: `https://127.0.0.1:${mtlsUpstream.port}` },
      ],
    });
    // The registry's logger is set by the embedding server; here it writes into `warnings`.
    proxy.server.pools.logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of chunk.toString('utf8').split('\n')) {
            if (line.trim() !== '') warnings.push(JSON.parse(line) as Record<string, unknown>);
          }
          cb();
        },
      }),
    );
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
    await mtlsUpstream.close();
    certs.remove();
  });

  test('a request reaches the upstream over TLS, verified with the CA file', async () => {
    const res = await sendRequest(proxy.port, '/ca/x');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'tls ok /ca/x');
    const last = upstream.seen.at(-1)!;
    assert.equal(last.url, '/ca/x');
    // The URL's host is an IP address: no SNI is sent (RFC 6066 §3).
    assert.equal(last.servername, false);
  });

  test('connections are kept alive and shared by routes with the same TLS settings', async () => {
    const before = upstream.seen.length;
    await sendRequest(proxy.port, '/ca/1');
    await sendRequest(proxy.port, '/ca-again/2');
    await sendRequest(proxy.port, '/ca/3');
    const ids = new Set(upstream.seen.slice(before).map((s) => s.socketId));
    assert.equal(ids.size, 1, 'three sequential requests on one pooled TLS connection');
  });

  test('server_name is sent as SNI and checked against the certificate', async () => {
    const res = await sendRequest(proxy.port, '/sni/y');
    assert.equal(res.status, 200);
    const last = upstream.seen.at(-1)!;
    assert.equal(last.url, '/sni/y');
    assert.equal(last.servername, 'alt.upstream.test');
  });

  test('routes with different TLS settings use separate pools and connections', async () => {
    await sendRequest(proxy.port, '/ca/a');
    const caConn = upstream.seen.at(-1)!.socketId;
    await sendRequest(proxy.port, '/sni/b');
    const sniConn = upstream.seen.at(-1)!.socketId;
    assert.notEqual(caConn, sniConn);
    const pools = [...proxy.server.pools.all()].filter((p) => p.port === upstream.port);
    // /ca and /ca-again share one; /sni, /wrong-ca, /wrong-name and /no-verify have their own.
    assert.equal(pools.length, 5);
  });

  test('a certificate not signed by the configured CA is a 502 ZP_ERR_UPSTREAM_TLS, logged with its reason', async () => {
    const before = upstream.seen.length;
    const res = await sendRequest(proxy.port, '/wrong-ca/z');
    assert.equal(res.status, 502);
    const body = JSON.parse(res.text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'ZP_ERR_UPSTREAM_TLS');
    assert.match(body.error.message, /certificate verification failed/);
    assert.match(body.error.message, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    assert.equal(upstream.seen.length, before, 'nothing reached the upstream');
    const warning = warnings.find(
      (w) => w.msg === 'upstream TLS failure' && w.upstream === `127.0.0.1:${upstream.port}`,
    );
    assert.ok(warning, 'a log line names the TLS failure');
    assert.match(String(warning.code), /UNABLE_TO/);
    await new Promise((r) => setTimeout(r, 50));
    const access = proxy.accessLogs().find((l) => l.target === '/wrong-ca/z');
    assert.equal(access?.error, 'ZP_ERR_UPSTREAM_TLS');
  });

  test('a certificate that does not cover the name is a 502 ZP_ERR_UPSTREAM_TLS', async () => {
    const res = await sendRequest(proxy.port, '/wrong-name/z');
    assert.equal(res.status, 502);
    const body = JSON.parse(res.text) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'ZP_ERR_UPSTREAM_TLS');
    assert.match(body.error.message, /ERR_TLS_CERT_ALTNAME_INVALID/);
    assert.match(body.error.message, /elsewhere\.test/);
  });

  test('verify: false accepts a certificate the CA did not sign', async () => {
    const res = await sendRequest(proxy.port, '/no-verify/v');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'tls ok /no-verify/v');
  });

  test('mTLS: the client certificate is presented to an upstream that requires one', async () => {
    const res = await sendRequest(proxy.port, '/mtls/m');
    assert.equal(res.status, 200);
    const last = mtlsUpstream.seen.at(-1)!;
    assert.equal(last.url, '/mtls/m');
    assert.equal(last.clientCN, 'zproxy-client');
  });

  test('mTLS: without a client certificate the upstream refuses and the client gets a 502 ZP_ERR_UPSTREAM_TLS', async () => {
    const before = mtlsUpstream.seen.length;
    const res = await sendRequest(proxy.port, '/mtls-without-cert/m');
    assert.equal(res.status, 502);
    const body = JSON.parse(res.text) as { error: { code: string } };
    assert.equal(body.error.code, 'ZP_ERR_UPSTREAM_TLS');
    assert.equal(mtlsUpstream.seen.length, before);
  });

  test('an unreadable ca_file is a configuration error naming the route', async () => {
    await assert.rejects(
      startProxy({
        routes: [
          {
            path: '/',
            upstream: 'https://127.0.0.1:1',
            upstream_tls: { ca_file: `${certs.dir}/missing.crt` },
          },
        ],
      }),
      /routes\[0\]\.upstream_tls\.ca_file: cannot read .*missing\.crt: ENOENT/,
    );
  });
});
