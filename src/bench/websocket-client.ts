/**
 * The WebSocket client of the load generator, on the `ws` package: each connection keeps up to
 * `concurrency` binary messages of `messageBytes` in flight and counts each echo as one completed
 * request (its latency from the send, or from the intended send in constant-rate mode). Bytes are message
 * payloads. A refused handshake counts as a protocol error (and its status under the statuses).
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { type LoadConnection, RECONNECT_DELAY_MS, type RunContext } from './client.ts';
import { connectionSchedule, Pacer } from './schedule.ts';
import { classifyError, type ErrorKind } from './stats.ts';

export class WebSocketTarget {
  readonly url: string;
  readonly message: Buffer;
  readonly depth: number;
  readonly options: WebSocket.ClientOptions;

  constructor(ctx: RunContext) {
    const plan = ctx.plan;
    this.url = plan.url;
    this.depth = plan.concurrency;
    this.message = plan.body !== null ? Buffer.from(plan.body) : Buffer.alloc(plan.messageBytes, 0x61);
    const headers: Record<string, string> = {};
    for (const [name, value] of plan.headers) headers[name] = value;
    this.options = {
      perMessageDeflate: false,
      rejectUnauthorized: !plan.insecure,
      headers,
      handshakeTimeout: plan.timeoutMs,
      maxPayload: 256 * 1024 * 1024,
    };
  }
}

export class WebSocketConnection implements LoadConnection {
  private readonly ctx: RunContext;
  private readonly target: WebSocketTarget;
  private readonly pacer: Pacer;
  private ws: WebSocket | null = null;
  private connected = false;
  private connectStart = 0;
  /** Messages in flight, oldest first: intended and actual send times, in pairs. */
  private readonly inFlight: number[] = [];

  constructor(ctx: RunContext, target: WebSocketTarget, index: number) {
    this.ctx = ctx;
    this.target = target;
    this.pacer = new Pacer(connectionSchedule(ctx.plan, ctx.start, index), () => {
      if (this.ws === null) this.open();
      else this.fill();
    });
  }

  start(): void {
    this.open();
  }

  stop(): number {
    const inFlight = this.inFlight.length / 2;
    this.pacer.stop();
    this.drop();
    return inFlight;
  }

  sweep(now: number): void {
    if (this.ws === null) return;
    const timeout = this.ctx.plan.timeoutMs;
    if (!this.connected) {
      if (now - this.connectStart > timeout) this.fail('connect_timeout');
    } else if (this.inFlight.length > 0 && now - this.inFlight[1]! > timeout) {
      this.fail('timeout');
    }
  }

  private open(): void {
    if (!this.ctx.running) return;
    const ws = new WebSocket(this.target.url, this.target.options);
    ws.binaryType = 'nodebuffer';
    this.ws = ws;
    this.connected = false;
    this.connectStart = performance.now();
    ws.on('open', () => {
      if (this.ws !== ws) return;
      this.connected = true;
      this.ctx.stats.connectionsOpened++;
      this.fill();
    });
    ws.on('message', (data: Buffer) => {
      if (this.ws !== ws) return;
      this.echoed(data.length);
    });
    ws.on('unexpected-response', (_request, response) => {
      if (this.ws !== ws) return;
      const status = response.statusCode ?? 0;
      if (this.ctx.stats.recording && status > 0 && status < 1000) this.ctx.stats.statuses[status]!++;
      response.resume();
      this.fail('protocol');
    });
    ws.on('error', (error: Error) => {
      if (this.ws === ws) this.fail(classifyError(error, this.connected));
    });
    ws.on('close', () => {
      if (this.ws !== ws) return;
      if (!this.connected || this.inFlight.length > 0) this.fail(this.connected ? 'closed' : 'connect');
      else {
        this.drop();
        this.open();
      }
    });
  }

  private fill(): void {
    const ws = this.ws;
    if (!this.ctx.running || !this.connected || ws === null) return;
    let now = -1;
    while (this.inFlight.length / 2 < this.target.depth) {
      if (now < 0) now = performance.now();
      const intended = this.pacer.next(now);
      if (intended < 0) break;
      this.inFlight.push(intended, now);
      ws.send(this.target.message, { binary: true });
      this.ctx.stats.bytesSent += this.target.message.length;
    }
  }

  private echoed(bytes: number): void {
    this.ctx.stats.bytesReceived += bytes;
    if (this.inFlight.length === 0) return;
    const intended = this.inFlight.shift()!;
    const sent = this.inFlight.shift()!;
    this.ctx.stats.complete(0, intended, sent, performance.now());
    this.fill();
  }

  private fail(kind: ErrorKind): void {
    if (this.ws === null) return;
    const wasConnected = this.connected;
    this.ctx.stats.error(kind, wasConnected ? Math.max(1, this.inFlight.length / 2) : 1);
    this.drop();
    if (!this.ctx.running) return;
    if (wasConnected) this.open();
    else this.pacer.wakeIn(RECONNECT_DELAY_MS);
  }

  private drop(): void {
    const ws = this.ws;
    this.ws = null;
    this.connected = false;
    this.inFlight.length = 0;
    if (ws !== null) {
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
    }
  }
}
