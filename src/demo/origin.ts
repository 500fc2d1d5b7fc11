/**
 * The demo origin started by `zproxy run` without a config (`npm start`), and by `node
 * dist/demo/origin-main.js` in the container setup (compose.yaml). A tiny server behind the demo routes:
 * - every request is answered with a JSON description of what it received (method, URL, HTTP version,
 *   body size, header fields: the `X-Forwarded-*` and `Via` zproxy added), a request number and the time
 *   it was served (so that an answer from zproxy's cache is visible: same number, same time);
 * - `GET /ws/` is a small page that opens a WebSocket to `/ws/echo` through zproxy and shows the echoes;
 * - `/ws/echo` is a WebSocket echo server (every message comes back as it was sent).
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';

export const DEMO_ORIGIN_PORT = 8001;

const PAGE = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>zproxy demo: WebSocket echo</title>
<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:2em auto}li{font-family:monospace}</style>
<h1>WebSocket echo through zproxy</h1>
<p>This page came from the demo origin through zproxy. It opens <code id="url"></code>;
the demo origin sends every message back.</p>
<form id="form"><input id="text" value="hello" autocomplete="off"> <button>Send</button></form>
<p>Status: <strong id="status">connecting</strong></p>
<ol id="log"></ol>
<script>
const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/echo';
document.getElementById('url').textContent = url;
const socket = new WebSocket(url);
const status = document.getElementById('status');
const log = (text) => {
  const item = document.createElement('li');
  item.textContent = text;
  document.getElementById('log').append(item);
};
socket.onopen = () => { status.textContent = 'open'; socket.send('hello from ' + location.protocol); };
socket.onmessage = (event) => log('echo: ' + event.data);
socket.onclose = () => { status.textContent = 'closed'; };
socket.onerror = () => { status.textContent = 'error'; };
document.getElementById('form').onsubmit = (event) => {
  event.preventDefault();
  socket.send(document.getElementById('text').value);
};
</script>
</html>
`;

class DemoOrigin {
  served = 0;
  readonly echo = new WebSocketServer({ noServer: true });

  constructor() {
    this.echo.on('connection', (socket) => {
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
  }

  request(req: http.IncomingMessage, res: http.ServerResponse): void {
    const served = ++this.served;
    if (req.method === 'GET' && (req.url === '/ws' || req.url === '/ws/')) {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-length': Buffer.byteLength(PAGE),
      });
      res.end(PAGE);
      return;
    }
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    req.on('end', () => {
      const body = `${JSON.stringify(
        {
          message: 'Hello from the zproxy demo origin',
          request_number: served,
          served_at: new Date().toISOString(),
          method: req.method,
          url: req.url,
          http_version: req.httpVersion,
          body_bytes: received,
          headers: req.headers,
        },
        null,
        2,
      )}\n`;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  }

  upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    if (req.url !== '/ws/echo') {
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    this.echo.handleUpgrade(req, socket, head, (ws) => this.echo.emit('connection', ws, req));
  }
}

export function startDemoOrigin(host = '127.0.0.1', port = DEMO_ORIGIN_PORT): Promise<http.Server> {
  const origin = new DemoOrigin();
  const server = http.createServer((req, res) => origin.request(req, res));
  server.on('upgrade', (req, socket, head) => origin.upgrade(req, socket, head));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
