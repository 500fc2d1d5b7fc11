/**
 * Real upstream servers for tests, on 127.0.0.1 port 0, recording what they receive.
 * - startHttpUpstream(handler): a node:http server; every request is recorded (method, url, raw headers,
 *   body bytes) before the handler runs; the default handler answers 200 with a small JSON body.
 * - startRawUpstream(onConnection): a node:net server for faults (silence, resets, malformed answers);
 *   it records every byte received per connection.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  /** Raw header list [name, value, name, value, ...] as received. */
  readonly rawHeaders: string[];
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly bodySha256: string;
}

export interface HttpUpstream {
  readonly port: number;
  readonly url: string;
  readonly server: http.Server;
  readonly requests: RecordedRequest[];
  /** Sockets accepted so far. */
  connections: number;
  close(): Promise<void>;
}

export type UpstreamHandler = (req: RecordedRequest, res: http.ServerResponse) => void;

const defaultHandler: UpstreamHandler = (req, res) => {
  const body = JSON.stringify({ method: req.method, url: req.url, bytes: req.body.length });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

/**
 * An upstream that answers `<name> <request target>` (text/plain), after `delayMs`: which upstream served
 * a request is then in its response.
 */
export function startNamedUpstream(name: string, delayMs = 0): Promise<HttpUpstream> {
  return startHttpUpstream((req, res) => {
    const body = `${name} ${req.url}`;
    const answer = () => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
}

/** `port` 0 (the default): any free port; another: that one (a target that comes back where it was). */
export async function startHttpUpstream(
  handler: UpstreamHandler = defaultHandler,
  port = 0,
): Promise<HttpUpstream> {
  const requests: RecordedRequest[] = [];
  const server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const record: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        httpVersion: req.httpVersion,
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body,
        bodySha256: createHash('sha256').update(body).digest('hex'),
      };
      requests.push(record);
      handler(record, res);
    });
  });
  const upstream: HttpUpstream = {
    port: 0,
    url: '',
    server,
    requests,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on('connection', () => {
    upstream.connections++;
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const bound = (server.address() as net.AddressInfo).port;
  return Object.assign(upstream, { port: bound, url: `http://127.0.0.1:${bound}` });
}

export interface RawUpstream {
  readonly port: number;
  readonly url: string;
  /** Bytes received on each accepted connection, in order of acceptance. */
  readonly received: Buffer[][];
  readonly sockets: net.Socket[];
  close(): Promise<void>;
}

export async function startRawUpstream(
  onConnection: (socket: net.Socket, index: number) => void,
): Promise<RawUpstream> {
  const received: Buffer[][] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    const index = sockets.length;
    sockets.push(socket);
    const bytes: Buffer[] = [];
    received.push(bytes);
    socket.on('data', (c: Buffer) => bytes.push(c));
    socket.on('error', () => {});
    onConnection(socket, index);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    received,
    sockets,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port that was free a moment ago (nothing listens on it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
