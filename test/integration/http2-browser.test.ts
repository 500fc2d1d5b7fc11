/**
 * A real headless Chromium (Debian's `chromium`, driven by playwright-core) talks HTTP/2 over TLS to
 * zproxy's frame layer with the traffic a web page makes: 60 fetches at once on one connection, uploads
 * and downloads of a few MB (flow control both ways, Chromium's own window sizes), repeated header
 * fields and cookies (HPACK with Chromium's dynamic table and Huffman coding), and a POST answered
 * early. Every body is checked by its SHA-256 on both sides.
 *
 * Chromium is required (CI installs it): a missing browser fails the test, it is never skipped.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CertDir } from '../helpers/certs.ts';
import { launchChromium, requireChromium } from '../helpers/chromium.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';

/** The page's script: it runs the fetches and leaves a summary in window.result. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>zproxy h2</title></head>
<body><script>
  async function sha(buf) {
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
    return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  async function run() {
    document.cookie = 'a=1; path=/';
    document.cookie = 'b=2; path=/';
    const small = Array.from({ length: 60 }, (_, i) =>
      fetch('/echo/' + i, { headers: { 'x-n': String(i), 'x-long': 'v'.repeat(500 + i) } }).then((r) => r.json()));
    const up = new Uint8Array(3 * 1024 * 1024);
    for (let i = 0; i < up.length; i++) up[i] = (i * 7) & 255;
    const upload = fetch('/upload', { method: 'POST', body: up }).then((r) => r.json());
    const download = fetch('/download').then(async (r) => sha(await r.arrayBuffer()));
    const early = fetch('/early', { method: 'POST', body: new Uint8Array(2 * 1024 * 1024) }).then((r) => r.status);
    return {
      small: await Promise.all(small),
      upload: await upload,
      uploadSha: await sha(up),
      download: await download,
      early: await early,
      protocol: performance.getEntriesByType('navigation')[0].nextHopProtocol,
    };
  }
  window.result = null;
  run().then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });
</script></body></html>`;

const DOWNLOAD = Buffer.alloc(4 * 1024 * 1024);
for (let i = 0; i < DOWNLOAD.length; i++) DOWNLOAD[i] = (i * 13) & 255;

describe('a real Chromium over HTTP/2 (TLS) through zproxy', () => {
  const certs = new CertDir();
  let server: http.Server;
  let proxy: StartedProxy;
  let certFile: string;

  before(async () => {
    requireChromium();
    const cert = certs.make('browser-h2', ['localhost']);
    certFile = cert.cert;
    server = http.createServer((req, res) => {
      const url = req.url ?? '/';
      if (url === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(PAGE);
      } else if (url.startsWith('/echo/')) {
        res.writeHead(200, { 'content-type': 'application/json', 'set-cookie': ['s1=x', 's2=y'] });
        res.end(
          JSON.stringify({
            path: url,
            n: req.headers['x-n'],
            long: req.headers['x-long'],
            cookie: req.headers.cookie,
          }),
        );
      } else if (url === '/upload') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
        });
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes, sha: hash.digest('hex') }));
        });
      } else if (url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(DOWNLOAD);
      } else if (url === '/early') {
        // Answers before reading the body (node:http discards the rest); zproxy passes the answer on and
        // tells Chromium to stop sending (RST_STREAM NO_ERROR).
        res.writeHead(413, { 'content-type': 'text/plain' });
        res.end('too large');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    proxy = await startProxy({
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key },
      routes: [{ path: '/', upstream: `http://127.0.0.1:${port}` }],
    });
  });

  after(async () => {
    await proxy?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    certs.remove();
  });

  test('parallel fetches, uploads and downloads of MBs, cookies and an early answer, bodies checked', async () => {
    const browser = await launchChromium(certFile);
    try {
      const page = await browser.newPage();
      await page.goto(`https://localhost:${proxy.port}/`);
      // Expressions evaluated in the page (the tests are compiled without the DOM library).
      await page.waitForFunction('window.result !== null', null, { timeout: 30_000 });
      const r = (await page.evaluate('window.result')) as {
        error?: string;
        protocol: string;
        small: { path: string; n: string; long: string; cookie: string }[];
        upload: { bytes: number; sha: string };
        uploadSha: string;
        download: string;
        early: number;
      };
      assert.equal(r.error, undefined, r.error);
      assert.equal(r.protocol, 'h2');
      assert.equal(r.small.length, 60);
      r.small.forEach((s, i) => {
        assert.equal(s.path, `/echo/${i}`);
        assert.equal(s.n, String(i));
        assert.equal(s.long, 'v'.repeat(500 + i));
        // Chromium splits cookies into separate HTTP/2 fields; the HTTP/1.1 upstream sees one line with
        // all of them (the page's two, and the upstream's Set-Cookie ones once earlier answers arrived).
        const parts = s.cookie.split('; ');
        assert.ok(parts.includes('a=1') && parts.includes('b=2'), s.cookie);
        assert.ok(
          parts.every((p) => /^[a-z0-9]+=[a-z0-9]+$/.test(p)),
          s.cookie,
        );
      });
      assert.equal(r.upload.bytes, 3 * 1024 * 1024);
      assert.equal(r.upload.sha, r.uploadSha);
      assert.equal(r.download, createHash('sha256').update(DOWNLOAD).digest('hex'));
      assert.equal(r.early, 413, JSON.stringify(proxy.accessLogs().filter((l) => l.target === '/early')));
      const lines = proxy.accessLogs();
      assert.ok(lines.filter((l) => l.version === '2').length >= 63, 'every request went over HTTP/2');
    } finally {
      await browser.close();
    }
  });
});
