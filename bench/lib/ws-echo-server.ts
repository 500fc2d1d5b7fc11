// The WebSocket upstream of the bench's `ws` scenarios: an echo server on the `ws` package, started by
// bench/lib/ws-load.ts as its own process pinned to the load CPU (as the nginx origin is for HTTP).
//
//   node bench/lib/ws-echo-server.ts <port>
//
// Listens on 127.0.0.1:<port>, accepts WebSocket upgrades on any path, and sends every message back as it
// came (text as text, binary as binary). No compression (permessage-deflate is off), and incoming text is
// not checked for UTF-8 (`skipUTF8Validation`): the echo server shares its CPU with the load generator, so
// it does as little as a WebSocket server can. Plain HTTP requests get `426 Upgrade Required`. Stops on
// SIGTERM or SIGINT.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type RawData, type WebSocket, WebSocketServer } from 'ws';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node bench/lib/ws-echo-server.ts <port>');
  process.exit(2);
}

const TEXT = { binary: false } as const;
const BINARY = { binary: true } as const;

function answerPlainRequest(_request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket', connection: 'Upgrade' });
  response.end('WebSocket echo server: upgrade required\n');
}

const server = createServer(answerPlainRequest);
server.keepAliveTimeout = 0;
const wss = new WebSocketServer({
  server,
  perMessageDeflate: false,
  skipUTF8Validation: true,
  maxPayload: 16 * 1024 * 1024,
  clientTracking: false,
});

/** `this` is the WebSocket: one function for all connections, no closure per connection or message. */
function echo(this: WebSocket, data: RawData, isBinary: boolean): void {
  this.send(data as Buffer, isBinary ? BINARY : TEXT);
}

function ignore(): void {
  // A client that goes away abruptly (ECONNRESET) is not a reason to stop the echo server.
}

wss.on('connection', (socket: WebSocket) => {
  socket.on('message', echo);
  socket.on('error', ignore);
});
wss.on('error', (error: Error) => {
  console.error(`ws-echo-server: ${error.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  console.error(`ws-echo-server: listening on 127.0.0.1:${port} (pid ${process.pid})`);
});
server.on('error', (error: Error) => {
  console.error(`ws-echo-server: ${error.message}`);
  process.exit(1);
});

function stop(): void {
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
