/**
 * The recording upstream: a raw TCP server (node:net, no HTTP library) behind one proxy of one lane. It
 * records every byte each connection receives, and answers the first request of a connection as soon
 * as it can delimit it (wire.ts) with a small fixed response that closes the connection:
 *
 *   HTTP/1.1 200 OK / Content-Length: 2 / Connection: close / "ok"   (405 for CONNECT: no tunnel)
 *
 * so every proxy opens one upstream connection per forwarded request, whatever its keep-alive policy,
 * and bytes a proxy sends after the first request on a connection (a smuggled request) are recorded,
 * not answered. Connections are attributed to inputs by time: the harness opens a window before it sends
 * an input and closes it when the exchange is over; a connection accepted outside any window is a
 * stray (recorded and reported, then closed).
 */
import net from 'node:net';
import { parseForwarded } from './wire.ts';

export const UPSTREAM_BODY = 'ok';
const OK = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Length: ${UPSTREAM_BODY.length}\r\nConnection: close\r\n\r\n${UPSTREAM_BODY}`,
  'latin1',
);
const OK_HEAD = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Length: ${UPSTREAM_BODY.length}\r\nConnection: close\r\n\r\n`,
  'latin1',
);
const NOT_ALLOWED = Buffer.from(
  'HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
  'latin1',
);

export interface RecordedConnection {
  /** Everything received, latin1. */
  bytes: string;
  answered: boolean;
  /** Still open when the window ended and closed by the harness (the proxy kept it open). */
  forcedClose: boolean;
  closed: boolean;
}

interface Window {
  connections: RecordedConnection[];
  sockets: net.Socket[];
}

export class RecordingUpstream {
  readonly server: net.Server;
  port = 0;
  private window: Window | null = null;
  /** Connections accepted outside any window. */
  readonly strays: RecordedConnection[] = [];
  /** Called on every accepted connection and received chunk (the harness's idle clock). */
  onActivity: () => void = () => {};
  private readonly open = new Set<net.Socket>();

  constructor() {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  private accept(socket: net.Socket): void {
    this.open.add(socket);
    const record: RecordedConnection = { bytes: '', answered: false, forcedClose: false, closed: false };
    const window = this.window;
    if (window === null) this.strays.push(record);
    else {
      window.connections.push(record);
      window.sockets.push(socket);
    }
    socket.setTimeout(30_000, () => socket.destroy());
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => {
      record.bytes += chunk.latin1Slice(0, chunk.length);
      this.onActivity();
      if (record.answered || window === null) return;
      const parsed = parseForwarded(record.bytes);
      const first = parsed.requests[0];
      if (first?.complete !== true) return;
      record.answered = true;
      socket.end(first.method === 'CONNECT' ? NOT_ALLOWED : first.method === 'HEAD' ? OK_HEAD : OK);
    });
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      record.closed = true;
      this.open.delete(socket);
      this.onActivity();
    });
    // A stray is not answered; what it carries is recorded for a second, then it is closed.
    if (window === null) socket.setTimeout(1000, () => socket.destroy());
    this.onActivity();
  }

  /** Starts attributing new connections to one input. */
  beginWindow(): void {
    this.window = { connections: [], sockets: [] };
  }

  /** True when every connection of the current window has closed. */
  windowQuiet(): boolean {
    return this.window === null || this.window.connections.every((c) => c.closed);
  }

  /** Number of complete requests received in the current window so far. */
  windowRequests(): number {
    if (this.window === null) return 0;
    let n = 0;
    for (const c of this.window.connections) {
      for (const r of parseForwarded(c.bytes).requests) if (r.complete) n++;
    }
    return n;
  }

  /**
   * Ends the window: waits up to `graceMs` for its connections to close and closes the ones still open
   * (marked forcedClose). With `lingerMs` > 0 (the client gave up, or a connection had to be closed, so a
   * proxy may still hold requests it has not forwarded) the window then stays open that long for late
   * connections, which belong to this input too; repeated while late ones come (at most 3 times).
   * Returns the window's connections.
   */
  async endWindow(graceMs: number, lingerMs: number): Promise<RecordedConnection[]> {
    const window = this.window;
    if (window === null) return [];
    for (let round = 0; round < 3; round++) {
      const deadline = Date.now() + graceMs;
      while (!window.connections.every((c) => c.closed) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      let forced = false;
      for (let i = 0; i < window.sockets.length; i++) {
        if (!window.connections[i]!.closed) {
          window.connections[i]!.forcedClose = true;
          window.sockets[i]!.destroy();
          forced = true;
        }
      }
      if (!forced && lingerMs === 0) break;
      const before = window.connections.length;
      await new Promise((resolve) => setTimeout(resolve, Math.max(lingerMs, 100)));
      if (window.connections.length === before) break;
    }
    this.window = null;
    return window.connections;
  }

  close(): Promise<void> {
    for (const s of this.open) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
