/**
 * The origin compare starts as its own process, pinned to the load CPU:
 *
 *   node origin-server.js PORT
 *
 * On 127.0.0.1:PORT it answers GET …/small (13 bytes), …/64k and …/1m (files of that size; under any
 * prefix, so a user's route reaches them too), 404 otherwise; and it accepts WebSocket upgrades on any path
 * and sends every message back as it came. It is the WebSocket echo server of every comparison and the HTTP
 * origin when nginx is not installed. No compression, no UTF-8 check of incoming text: it shares its CPU
 * with the load generator, so it does as little as it can. Stops on SIGTERM or SIGINT.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';
import { originBody, SIZE_1M, SIZE_64K, SMALL_BODY } from './scenarios.ts';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node origin-server.js PORT');
  process.exit(2);
}

const SMALL = Buffer.from(SMALL_BODY);
const LARGE = originBody(SIZE_64K);
const HUGE = originBody(SIZE_1M);
const TEXT = { 'content-type': 'text/plain', 'content-length': String(SMALL.length) };
const BINARY_64K = { 'content-type': 'application/octet-stream', 'content-length': String(SIZE_64K) };
const BINARY_1M = { 'content-type': 'application/octet-stream', 'content-length': String(SIZE_1M) };

function answer(request: IncomingMessage, response: ServerResponse): void {
  const url = request.url ?? '/';
  const path = url.includes('?') ? url.slice(0, url.indexOf('?')) : url;
  if (path.endsWith('/small')) {
    response.writeHead(200, TEXT);
    response.end(SMALL);
  } else if (path.endsWith('/64k')) {
    response.writeHead(200, BINARY_64K);
    response.end(LARGE);
  } else if (path.endsWith('/1m')) {
    response.writeHead(200, BINARY_1M);
    response.end(HUGE);
  } else {
    response.writeHead(404, { 'content-type': 'text/plain', 'content-length': '10' });
    response.end('not found\n');
  }
}

const server = createServer({ keepAliveTimeout: 75_000 }, answer);
const wss = new WebSocketServer({
  server,
  perMessageDeflate: false,
  skipUTF8Validation: true,
  maxPayload: 16 * 1024 * 1024,
  clientTracking: false,
});

const AS_TEXT = { binary: false } as const;
const AS_BINARY = { binary: true } as const;

/** `this` is the WebSocket: one function for all connections, no closure per connection or message. */
function echo(this: WebSocket, data: RawData, isBinary: boolean): void {
  this.send(data as Buffer, isBinary ? AS_BINARY : AS_TEXT);
}

function ignore(): void {
  // A client that goes away abruptly (ECONNRESET) is not a reason to stop.
}

wss.on('connection', (socket: WebSocket) => {
  socket.on('message', echo);
  socket.on('error', ignore);
});
server.on('error', (error: Error) => {
  console.error(`origin-server: ${error.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  console.error(`origin-server: listening on 127.0.0.1:${port} (pid ${process.pid})`);
});

function stop(): void {
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
