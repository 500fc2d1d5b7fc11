/**
 * A real headless Chromium (Debian's `chromium`, driven by playwright-core) loads a page over HTTPS from
 * zproxy and opens a `wss://` WebSocket through it. The page comes over HTTP/2 (ALPN h2), and Chromium,
 * seeing SETTINGS_ENABLE_CONNECT_PROTOCOL on that connection, opens the WebSocket as an RFC 8441 extended
 * CONNECT on it: zproxy's access log shows the tunnel as a CONNECT over HTTP/2, the `ws` upstream sees an
 * ordinary HTTP/1.1 Upgrade, and the messages go both ways.
 *
 * Chromium is required (CI installs it): a missing browser fails the test, it is never skipped.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { CertDir } from '../helpers/certs.ts';
import { launchChromium, requireChromium } from '../helpers/chromium.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>zproxy websocket</title></head>
<body><script>
  window.result = { received: [], error: null, done: false };
  const ws = new WebSocket('wss://' + location.host + '/socket');
  ws.onopen = () => { ws.send('hello'); ws.send('wörld ✓'); ws.send(new Uint8Array([1, 2, 3])); };
  ws.onmessage = async (event) => {
    const data = typeof event.data === 'string' ? event.data : 'binary:' + new Uint8Array(await event.data.arrayBuffer()).join(',');
    window.result.received.push(data);
    if (window.result.received.length === 3) ws.close(1000, 'page done');
  };
  ws.onerror = () => { window.result.error = 'error'; };
  ws.onclose = (event) => { window.result.closeCode = event.code; window.result.done = true; };
</script></body></html>`;

describe('a real Chromium opens a wss:// WebSocket through zproxy over HTTP/2', () => {
  const certs = new CertDir();
  let server: http.Server;
  let wss: WebSocketServer;
  const upgrades: http.IncomingMessage[] = [];
  const upstreamMessages: string[] = [];
  let proxy: StartedProxy;
  let certFile: string;

  before(async () => {
    requireChromium();
    const cert = certs.make('browser', ['localhost']);
    certFile = cert.cert;
    server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE);
    });
    wss = new WebSocketServer({ noServer: true });
    server.on('upgrade', (request: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      upgrades.push(request);
      wss.handleUpgrade(request, socket, head, (ws) => {
        ws.on('message', (data, isBinary) => {
          upstreamMessages.push(isBinary ? `binary:${[...(data as Buffer)].join(',')}` : data.toString());
          ws.send(data, { binary: isBinary });
        });
      });
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
    wss?.close();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    certs.remove();
  });

  test('the page is served over h2 and the WebSocket is an extended CONNECT on it; messages both ways', async () => {
    const browser = await launchChromium(certFile);
    try {
      const page = await browser.newPage();
      await page.goto(`https://localhost:${proxy.port}/`);
      // Expressions evaluated in the page (the tests are compiled without the DOM library).
      await page.waitForFunction('window.result.done', null, { timeout: 15_000 });
      const result = (await page.evaluate('window.result')) as {
        received: string[];
        error: string | null;
        closeCode: number;
      };
      const protocol = await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol");
      assert.equal(protocol, 'h2', 'the page came over HTTP/2');
      assert.equal(result.error, null);
      assert.deepEqual(result.received, ['hello', 'wörld ✓', 'binary:1,2,3']);
      assert.equal(result.closeCode, 1000);
      assert.deepEqual(upstreamMessages, ['hello', 'wörld ✓', 'binary:1,2,3']);
      assert.equal(upgrades.length, 1);
      assert.equal(upgrades[0]!.headers.upgrade, 'websocket');
      await waitUntil(() => proxy.accessLogs().some((l) => l.target === '/socket'), 5000);
      const line = proxy.accessLogs().find((l) => l.target === '/socket')!;
      assert.equal(line.method, 'CONNECT', `the WebSocket went over HTTP/2: ${JSON.stringify(line)}`);
      assert.equal(line.version, '2');
      assert.equal(line.status, 200);
    } finally {
      await browser.close();
    }
  });
});
