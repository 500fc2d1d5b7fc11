/**
 * WebSocket test helpers on the real `ws` package:
 * - startWsUpstream(): a `ws` server on 127.0.0.1 port 0 (HTTP/1.1, or TLS) that echoes every message by
 *   default and records what it saw: each handshake request's headers, each connection (open or closed,
 *   close code and reason), and the raw TCP sockets, so that tests can assert on the upstream's view.
 * - openWs(): a `ws` client that resolves once open, or rejects with the HTTP answer it got instead.
 * - nextMessage() / closed(): promises for the next message and for the close of a client.
 * (waitUntil() is in simple-request.ts.)
 */
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import { type ClientOptions, type RawData, type ServerOptions, WebSocket, WebSocketServer } from 'ws';

export interface UpstreamConnection {
  readonly ws: WebSocket;
  /** The handshake request as the upstream received it. */
  readonly request: http.IncomingMessage;
  readonly socket: net.Socket;
  /** Set when the connection closes: the code and reason the upstream saw. */
  closed: { code: number; reason: string; at: number } | null;
  /** Messages received (also echoed unless the server was started with echo: false). */
  readonly messages: RawData[];
}

export interface WsUpstream {
  readonly port: number;
  /** 'http://127.0.0.1:PORT' ('https://' with `tls`), for a route's upstream. */
  readonly url: string;
  readonly server: http.Server;
  readonly wss: WebSocketServer;
  readonly connections: UpstreamConnection[];
  /** Plain HTTP requests (non-upgrade) that reached the upstream. */
  readonly plainRequests: http.IncomingMessage[];
  /** Upgrade requests that reached the upstream, accepted or not. */
  readonly upgradeRequests: http.IncomingMessage[];
  close(): Promise<void>;
}

export interface WsUpstreamOptions {
  /** Echo every message back (default true). */
  readonly echo?: boolean;
  /** Passed to WebSocketServer (perMessageDeflate, handleProtocols, maxPayload, ...). */
  readonly server?: Omit<ServerOptions, 'server' | 'port' | 'noServer'>;
  /**
   * Decides an upgrade before `ws` does: return true to let `ws` complete it, or answer on the raw socket
   * yourself (e.g. a 403 with a body) and return false.
   */
  readonly onUpgrade?: (request: http.IncomingMessage, socket: net.Socket) => boolean;
  /** Called for every new connection after it was recorded. */
  readonly onConnection?: (conn: UpstreamConnection) => void;
  /** Serve over TLS with this certificate (PEM file contents). */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
}

export async function startWsUpstream(options: WsUpstreamOptions = {}): Promise<WsUpstream> {
  const echo = options.echo ?? true;
  const connections: UpstreamConnection[] = [];
  const plainRequests: http.IncomingMessage[] = [];
  const upgradeRequests: http.IncomingMessage[] = [];
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    plainRequests.push(req);
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 16 });
    res.end('a plain request\n');
  };
  const server: http.Server =
    options.tls === undefined ? http.createServer(onRequest) : https.createServer(options.tls, onRequest);
  const wss = new WebSocketServer({ ...options.server, noServer: true });
  server.on('upgrade', (request: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    upgradeRequests.push(request);
    socket.on('error', () => {});
    if (options.onUpgrade !== undefined && !options.onUpgrade(request, socket)) return;
    wss.handleUpgrade(request, socket, head, (ws) => {
      const conn: UpstreamConnection = { ws, request, socket, closed: null, messages: [] };
      connections.push(conn);
      ws.on('error', () => {});
      ws.on('message', (data, isBinary) => {
        conn.messages.push(data);
        if (echo) ws.send(data, { binary: isBinary });
      });
      ws.on('close', (code, reason) => {
        conn.closed = { code, reason: reason.toString(), at: performance.now() };
      });
      options.onConnection?.(conn);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    server,
    wss,
    connections,
    plainRequests,
    upgradeRequests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of connections) c.ws.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a handshake that did not end in 101 got instead. */
export class UnexpectedResponse extends Error {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;

  constructor(status: number, headers: http.IncomingHttpHeaders, body: string) {
    super(`unexpected response ${status}: ${body}`);
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
}

/** Opens a client; resolves when open, rejects with UnexpectedResponse for a non-101 answer. */
export function openWs(
  url: string,
  protocols: string | string[] = [],
  options: ClientOptions = {},
): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, ...options });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => {
        reject(new UnexpectedResponse(res.statusCode ?? 0, res.headers, body));
        ws.terminate();
      });
    });
    ws.once('error', reject);
  });
}

/** The next message a client receives. */
export function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => {
    ws.once('message', (data: RawData, isBinary: boolean) => resolve({ data: toBuffer(data), isBinary }));
  });
}

/** Resolves with the code and reason once the client is closed. */
export function closed(ws: WebSocket): Promise<{ code: number; reason: string }> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve({ code: 1006, reason: '' });
  return new Promise((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
}

export function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
