/**
 * The HTTP/1.1 client of the load generator, on `node:net` (or `node:tls`) sockets: the request is
 * serialised once, up to `concurrency` requests are in flight on each connection (pipelined), responses
 * are framed by `ResponseParser`, and the requests that a batch of responses makes room for go out in one
 * write. With keep-alive off each request has a connection of its own (`Connection: close`), and its
 * latency includes the connection's set-up.
 */
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  connectHost,
  connectPort,
  type LoadConnection,
  openSocket,
  RECONNECT_DELAY_MS,
  type RunContext,
  serverName,
} from './client.ts';
import { ResponseParser, type ResponseSink } from './http1-response.ts';
import { connectionSchedule, Pacer } from './schedule.ts';
import { classifyError, type ErrorKind } from './stats.ts';

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** The request's bytes, head and body. */
export function serialiseRequest(
  url: URL,
  method: string,
  headers: readonly (readonly [string, string])[],
  body: Uint8Array | null,
  keepAlive: boolean,
): Buffer {
  const has = (name: string): boolean => headers.some(([n]) => n.toLowerCase() === name);
  let head = `${method} ${url.pathname === '' ? '/' : url.pathname}${url.search} HTTP/1.1\r\n`;
  if (!has('host')) head += `Host: ${url.host}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  if (!has('content-length') && !has('transfer-encoding') && (body !== null || BODY_METHODS.has(method))) {
    head += `Content-Length: ${body === null ? 0 : body.length}\r\n`;
  }
  if (!keepAlive && !has('connection')) head += 'Connection: close\r\n';
  head += '\r\n';
  const headBytes = Buffer.from(head, 'latin1');
  return body === null || body.length === 0 ? headBytes : Buffer.concat([headBytes, body]);
}

/** What the connections of one thread share: where to connect and the request bytes. */
export class Http1Target {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly servername: string | undefined;
  readonly insecure: boolean;
  readonly request: Buffer;
  readonly keepAlive: boolean;
  readonly depth: number;
  readonly headRequests: boolean;
  /** `batches[n - 1]`: n requests back to back, made when first needed. */
  private readonly batches: Buffer[] = [];

  constructor(ctx: RunContext) {
    const plan = ctx.plan;
    const url = new URL(plan.url);
    this.host = connectHost(url);
    this.port = connectPort(url);
    this.secure = url.protocol === 'https:';
    this.servername = serverName(url.hostname);
    this.insecure = plan.insecure;
    this.keepAlive = plan.keepAlive;
    this.depth = plan.keepAlive ? plan.concurrency : 1;
    this.headRequests = plan.method === 'HEAD';
    this.request = serialiseRequest(url, plan.method, plan.headers, plan.body, plan.keepAlive);
  }

  batch(n: number): Buffer {
    let bytes = this.batches[n - 1];
    if (bytes === undefined) {
      bytes = n === 1 ? this.request : Buffer.concat(Array.from({ length: n }, () => this.request));
      this.batches[n - 1] = bytes;
    }
    return bytes;
  }
}

function ignore(): void {}

/**
 * Lets a socket go once its last response is read: the target closes it (it said so), and the socket is
 * destroyed then, or after a second if it does not; whichever closes first keeps the TIME_WAIT, so the
 * generator leaves that to the target and does not run out of local ports.
 */
function retire(socket: net.Socket): void {
  socket.removeAllListeners();
  socket.on('error', ignore);
  socket.setTimeout(1000, () => socket.destroy());
  socket.on('end', () => socket.destroy());
}

export class Http1Connection implements LoadConnection, ResponseSink {
  private readonly ctx: RunContext;
  private readonly target: Http1Target;
  private readonly parser: ResponseParser;
  private readonly pacer: Pacer;
  private socket: net.Socket | null = null;
  private connected = false;
  private connectStart = 0;
  /** The requests in flight, oldest first: when each was meant to go and when it went (a ring). */
  private readonly intended: Float64Array;
  private readonly sent: Float64Array;
  private head = 0;
  private count = 0;
  /** Keep-alive off: the request of the connection being opened (its intended and start times), or -1. */
  private pendingIntended = -1;
  private pendingSent = 0;
  /** Requests queued by this turn of the data handler, written together at its end. */
  private batched = 0;
  private inData = false;
  private readonly onConnect = (): void => this.connectedNow();
  private readonly onData = (chunk: Buffer): void => this.received(chunk);
  private readonly onEnd = (): void => this.ended();
  private readonly onError = (error: Error): void => this.fail(classifyError(error, this.connected), true);
  private readonly onClose = (): void => this.closed();

  constructor(ctx: RunContext, target: Http1Target, index: number) {
    this.ctx = ctx;
    this.target = target;
    this.parser = new ResponseParser(this, target.headRequests);
    this.intended = new Float64Array(target.depth);
    this.sent = new Float64Array(target.depth);
    this.pacer = new Pacer(connectionSchedule(ctx.plan, ctx.start, index), () => {
      if (this.socket === null) this.open();
      else this.fill();
    });
  }

  start(): void {
    this.open();
  }

  stop(): number {
    const inFlight = this.count + (this.pendingIntended >= 0 ? 1 : 0);
    this.count = 0;
    this.pendingIntended = -1;
    this.pacer.stop();
    this.dropSocket();
    return inFlight;
  }

  sweep(now: number): void {
    if (this.socket === null) return;
    const timeout = this.ctx.plan.timeoutMs;
    if (!this.connected) {
      if (now - this.connectStart > timeout) this.fail('connect_timeout', false);
    } else if (this.count > 0 && now - this.sent[this.head]! > timeout) {
      this.fail('timeout', false);
    }
  }

  /** Opens a connection (keep-alive off: when the schedule says the next request is due). */
  private open(): void {
    if (!this.ctx.running) return;
    const now = performance.now();
    if (!this.target.keepAlive) {
      const intended = this.pacer.next(now);
      if (intended < 0) return;
      this.pendingIntended = intended;
      this.pendingSent = now;
    }
    this.socket = openSocket(
      this.target,
      'http/1.1',
      this.onConnect,
      this.onData,
      this.onEnd,
      this.onError,
      this.onClose,
    );
    this.connected = false;
    this.connectStart = now;
    this.parser.reset();
  }

  private connectedNow(): void {
    this.connected = true;
    this.ctx.stats.connectionsOpened++;
    this.fill();
  }

  /** Sends as many requests as the depth allows and the schedule has due. */
  private fill(): void {
    if (!this.ctx.running || !this.connected) return;
    if (!this.target.keepAlive) {
      if (this.pendingIntended < 0) return;
      this.push(this.pendingIntended, this.pendingSent);
      this.pendingIntended = -1;
    } else {
      const depth = this.target.depth;
      let now = -1;
      while (this.count < depth) {
        if (now < 0) now = performance.now();
        const intended = this.pacer.next(now);
        if (intended < 0) break;
        this.push(intended, now);
      }
    }
    if (!this.inData) this.flush();
  }

  private push(intended: number, sent: number): void {
    const slot = (this.head + this.count) % this.target.depth;
    this.intended[slot] = intended;
    this.sent[slot] = sent;
    this.count++;
    this.batched++;
  }

  private flush(): void {
    const n = this.batched;
    if (n === 0 || this.socket === null) return;
    this.batched = 0;
    this.socket.write(this.target.batch(n));
    this.ctx.stats.bytesSent += n * this.target.request.length;
  }

  private received(chunk: Buffer): void {
    this.ctx.stats.bytesReceived += chunk.length;
    this.inData = true;
    this.parser.execute(chunk);
    this.inData = false;
    this.flush();
  }

  onResponse(status: number, close: boolean): boolean {
    if (this.count === 0) {
      this.fail('protocol', false);
      return false;
    }
    const slot = this.head;
    this.head = (slot + 1) % this.target.depth;
    this.count--;
    this.ctx.stats.complete(status, this.intended[slot]!, this.sent[slot]!, performance.now());
    if (close || !this.target.keepAlive) {
      // The unanswered requests go again on the next connection, at their intended times.
      for (let k = 0; k < this.count; k++)
        this.pacer.again(this.intended[(this.head + k) % this.target.depth]!);
      this.count = 0;
      this.batched = 0;
      const socket = this.socket;
      this.socket = null;
      this.connected = false;
      if (socket !== null) retire(socket);
      this.open();
      return false;
    }
    this.fill();
    return true;
  }

  onProtocolError(): void {
    this.fail('protocol', false);
  }

  private ended(): void {
    // A close-delimited body ends here; otherwise the target closed the connection.
    if (this.parser.end()) return;
    this.closed();
  }

  private closed(): void {
    if (this.socket === null) return;
    if (this.count > 0 || !this.connected) {
      this.fail(this.connected ? 'closed' : 'connect', false);
      return;
    }
    // Closed while idle (an idle timeout of the target): open another.
    this.dropSocket();
    this.open();
  }

  /**
   * The connection failed: every request in flight on it counts as an error of this kind (one error for
   * a failure to connect); then another connection is opened, after a short delay if this one never
   * connected.
   */
  private fail(kind: ErrorKind, fromSocketError: boolean): void {
    if (this.socket === null && !fromSocketError) return;
    const wasConnected = this.connected;
    const lost = this.count + (this.pendingIntended >= 0 ? 1 : 0);
    this.ctx.stats.error(kind, wasConnected ? Math.max(1, lost) : 1);
    this.count = 0;
    this.batched = 0;
    this.pendingIntended = -1;
    this.dropSocket();
    if (!this.ctx.running) return;
    if (wasConnected) this.open();
    else this.pacer.wakeIn(RECONNECT_DELAY_MS);
  }

  private dropSocket(): void {
    const socket = this.socket;
    if (socket === null) return;
    this.socket = null;
    this.connected = false;
    socket.removeAllListeners();
    socket.on('error', ignore);
    socket.destroy();
  }
}
