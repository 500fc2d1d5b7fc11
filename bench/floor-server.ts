// The floor of a connection per request on Node's `net` (run by bench/floor.ts, pinned to the proxy CPU):
// the least a Node server can do per `Connection: close` connection, to read zproxy's cost against.
//   node bench/floor-server.ts bare PORT              read one request head, write a canned 200 with
//                                                     `Connection: close`, then close (at once when the
//                                                     whole response is in the kernel, as zproxy does)
//   node bench/floor-server.ts bare-end PORT          the same, closing with end(): a half-close, then the
//                                                     close once the client's FIN is read
//   node bench/floor-server.ts raw PORT               bare's work below net.Socket: libuv's TCP handle as
//                                                     Node's internals drive it (process.binding, deprecated:
//                                                     a measurement of what the stream layer costs, not a
//                                                     way to build on), no Socket, no streams, no ticks
//   node bench/floor-server.ts proxy PORT ORIGIN_PORT read one request head, send a fixed GET (with the
//                                                     client's address in X-Forwarded-For, as a proxy must
//                                                     read it) over a kept-alive upstream connection, answer
//                                                     its status and body with `Connection: close`, close
// bare and proxy keep the connection open for the next request when the request has no
// `Connection: close` (the floor's keep-alive runs, which separate what a connection costs from what a
// request costs); raw and bare-end always close.
// Not a proxy: no parsing beyond finding the head's end and the upstream's Content-Length, no routing, no
// errors handled but by dropping the connection. Written the way the cheapest Node code would be (no
// closure per connection: the listeners are shared functions reading their socket from `this`).
import { connect, createServer, type Socket } from 'node:net';

const [mode, portArg, originArg] = process.argv.slice(2);
if (mode !== 'bare' && mode !== 'bare-end' && mode !== 'raw' && mode !== 'proxy') {
  console.error('usage: node bench/floor-server.ts bare|bare-end|raw|proxy PORT [ORIGIN_PORT]');
  process.exit(2);
}
const port = Number(portArg);
const originPort = Number(originArg);

const BODY = 'hello world!\n';
const CANNED = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
  'latin1',
);
const CANNED_KEEP_ALIVE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  'latin1',
);
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** What wrk sends with `-H 'Connection: close'`. */
const CLOSE = Buffer.from('\r\nConnection: close\r\n', 'latin1');

/** A client connection's state, kept on the socket: the head read so far; its request asked for the close. */
interface ClientSocket extends Socket {
  head: Buffer | null;
  closing: boolean;
}

/** Ends a connection whose whole answer was written: closed at once when the kernel holds all of it. */
function finish(socket: Socket): void {
  if (mode === 'bare-end' || socket.writableLength > 0) socket.end();
  else socket.destroy();
}

function ignoreError(): void {
  // a client gone early: its socket closes
}

/** The head so far (a request head usually comes in one read); null until the blank line. */
function headOf(socket: ClientSocket, chunk: Buffer): Buffer | null {
  const buf = socket.head === null ? chunk : Buffer.concat([socket.head, chunk]);
  if (buf.indexOf(HEAD_END) === -1) {
    socket.head = buf;
    return null;
  }
  socket.head = null;
  return buf;
}

function onBareData(this: ClientSocket, chunk: Buffer): void {
  const head = headOf(this, chunk);
  if (head === null) return;
  if (mode === 'bare' && head.indexOf(CLOSE) === -1) {
    this.write(CANNED_KEEP_ALIVE);
    return;
  }
  this.write(CANNED);
  finish(this);
}

/** One kept-alive connection to the origin and the client it answers now. */
class Upstream {
  readonly socket: Socket;
  client: Socket | null = null;
  buf: Buffer | null = null;
  constructor() {
    this.socket = connect({ host: '127.0.0.1', port: originPort, noDelay: true });
    (this.socket as Socket & { up: Upstream }).up = this;
    this.socket.on('data', onUpstreamData);
    this.socket.on('error', ignoreError);
    this.socket.on('close', onUpstreamClose);
  }
}

const idle: Upstream[] = [];

function onUpstreamClose(this: Socket & { up: Upstream }): void {
  const i = idle.indexOf(this.up);
  if (i !== -1) idle.splice(i, 1);
  this.up.client?.destroy();
}

const CONTENT_LENGTH = 'content-length:';

function onUpstreamData(this: Socket & { up: Upstream }, chunk: Buffer): void {
  const up = this.up;
  const buf = up.buf === null ? chunk : Buffer.concat([up.buf, chunk]);
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd === -1) {
    up.buf = buf;
    return;
  }
  const head = buf.latin1Slice(0, headEnd);
  const at = head.toLowerCase().indexOf(CONTENT_LENGTH);
  const length = at === -1 ? 0 : Number.parseInt(head.slice(at + CONTENT_LENGTH.length), 10);
  const bodyStart = headEnd + 4;
  if (buf.length < bodyStart + length) {
    up.buf = buf;
    return;
  }
  up.buf = null;
  const client = up.client;
  up.client = null;
  idle.push(up);
  if (client === null || client.destroyed) return;
  const status = head.slice(0, head.indexOf('\r\n'));
  const closing = (client as ClientSocket).closing;
  client.write(
    `${status}\r\nContent-Type: text/plain\r\nContent-Length: ${length}\r\n${closing ? 'Connection: close\r\n' : ''}\r\n${buf.latin1Slice(bodyStart, bodyStart + length)}`,
    'latin1',
  );
  if (closing) finish(client);
}

function onProxyData(this: ClientSocket, chunk: Buffer): void {
  const head = headOf(this, chunk);
  if (head === null) return;
  this.closing = head.indexOf(CLOSE) !== -1;
  const up = idle.pop() ?? new Upstream();
  up.client = this;
  up.socket.write(
    `GET /small HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nX-Forwarded-For: ${this.remoteAddress}\r\n\r\n`,
    'latin1',
  );
}

const onData = mode === 'proxy' ? onProxyData : onBareData;

function onConnection(socket: Socket): void {
  (socket as ClientSocket).head = null;
  (socket as ClientSocket).closing = true;
  socket.on('data', onData);
  socket.on('error', ignoreError);
}

// ------------------------------------------------------------------ raw: libuv's handle, no net.Socket

/** The parts of Node's internal TCP handle and write request the raw mode uses. */
interface RawHandle {
  onread: (this: RawHandle, buffer: ArrayBuffer | undefined) => void;
  onconnection: (error: number, handle: RawHandle) => void;
  readStart(): number;
  writeBuffer(req: RawWrite, data: Buffer): number;
  close(): void;
  bind(host: string, port: number): number;
  listen(backlog: number): number;
  head: Buffer | null;
}
interface RawWrite {
  handle: RawHandle;
  oncomplete: (this: RawWrite) => void;
  async: boolean;
}

function startRaw(): void {
  const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
  const tcp = binding('tcp_wrap') as { TCP: new (kind: number) => RawHandle; constants: { SERVER: number } };
  const stream = binding('stream_wrap') as {
    WriteWrap: new () => RawWrite;
    streamBaseState: Int32Array;
    kReadBytesOrError: number;
    kArrayBufferOffset: number;
    kLastWriteWasAsync: number;
  };
  const state = stream.streamBaseState;
  function closeAfterWrite(this: RawWrite): void {
    this.handle.close();
  }
  function onRawRead(this: RawHandle, buffer: ArrayBuffer | undefined): void {
    const n = state[stream.kReadBytesOrError]!;
    if (n <= 0 || buffer === undefined) {
      // the client's FIN or an error: nothing to answer
      this.close();
      return;
    }
    const chunk = Buffer.from(buffer, state[stream.kArrayBufferOffset]!, n);
    const buf = this.head === null ? chunk : Buffer.concat([this.head, chunk]);
    if (buf.indexOf(HEAD_END) === -1) {
      this.head = Buffer.from(buf);
      return;
    }
    const req = new stream.WriteWrap();
    req.handle = this;
    req.oncomplete = closeAfterWrite;
    req.async = false;
    if (this.writeBuffer(req, CANNED) !== 0) this.close();
    else if (state[stream.kLastWriteWasAsync] === 0) this.close();
  }
  const server = new tcp.TCP(tcp.constants.SERVER);
  server.onconnection = (error, handle) => {
    if (error !== 0) return;
    handle.head = null;
    handle.onread = onRawRead;
    handle.readStart();
  };
  if (server.bind('127.0.0.1', port) !== 0 || server.listen(4096) !== 0) {
    console.error(`raw: cannot listen on ${port}`);
    process.exit(1);
  }
}

if (mode === 'raw') startRaw();
else createServer(onConnection).listen(port, '127.0.0.1', 4096);
process.on('SIGTERM', () => process.exit(0));
