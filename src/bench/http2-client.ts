/**
 * The HTTP/2 client of the load generator, on `node:http2` client sessions: h2c with prior knowledge for
 * http:// URLs, TLS with ALPN h2 for https:// URLs. Each session keeps up to `concurrency` streams open.
 * Received bytes are those of the session's socket (frames; over TLS, the TLS records).
 */
import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';
import { type LoadConnection, RECONNECT_DELAY_MS, type RunContext, serverName } from './client.ts';
import { connectionSchedule, Pacer } from './schedule.ts';
import { classifyError, type ErrorKind } from './stats.ts';

/** What the sessions of one thread share: the origin, the request headers and body. */
export class Http2Target {
  readonly origin: string;
  readonly headers: http2.OutgoingHttpHeaders;
  readonly body: Uint8Array | null;
  readonly secureOptions: http2.SecureClientSessionOptions;
  readonly depth: number;

  constructor(ctx: RunContext) {
    const plan = ctx.plan;
    const url = new URL(plan.url);
    this.origin = url.origin;
    const headers: http2.OutgoingHttpHeaders = {
      ':method': plan.method,
      ':path': `${url.pathname === '' ? '/' : url.pathname}${url.search}`,
      ':scheme': url.protocol === 'https:' ? 'https' : 'http',
      ':authority': url.host,
    };
    for (const [name, value] of plan.headers) {
      const lower = name.toLowerCase();
      if (lower === 'host') headers[':authority'] = value;
      else if (lower === 'connection' || lower === 'keep-alive' || lower === 'transfer-encoding') continue;
      else {
        const before = headers[lower];
        headers[lower] =
          before === undefined ? value : [...(Array.isArray(before) ? before : [String(before)]), value];
      }
    }
    if (plan.body !== null && headers['content-length'] === undefined)
      headers['content-length'] = plan.body.length;
    this.headers = headers;
    this.body = plan.body;
    this.depth = plan.concurrency;
    this.secureOptions = {
      rejectUnauthorized: !plan.insecure,
      servername: serverName(url.hostname),
      // Large windows, as h2load has by default, so that flow control does not pace the target.
      settings: { initialWindowSize: 16 * 1024 * 1024 },
    };
  }
}

export class Http2Connection implements LoadConnection {
  private readonly ctx: RunContext;
  private readonly target: Http2Target;
  private readonly pacer: Pacer;
  private session: http2.ClientHttp2Session | null = null;
  private connected = false;
  private connectStart = 0;
  /** The open streams and their times. */
  private readonly streams = new Set<Stream>();
  /** Bytes of the current session's socket already counted. */
  private countedBytes = 0;
  /** The target sent GOAWAY on the current session: no new stream on it. */
  private goingAway = false;

  constructor(ctx: RunContext, target: Http2Target, index: number) {
    this.ctx = ctx;
    this.target = target;
    this.pacer = new Pacer(connectionSchedule(ctx.plan, ctx.start, index), () => {
      if (this.session === null) this.open();
      else this.fill();
    });
  }

  start(): void {
    this.open();
  }

  stop(): number {
    const inFlight = this.streams.size;
    this.pacer.stop();
    this.countBytes();
    this.drop();
    return inFlight;
  }

  sweep(now: number): void {
    if (this.session === null) return;
    const timeout = this.ctx.plan.timeoutMs;
    if (!this.connected) {
      if (now - this.connectStart > timeout) this.fail('connect_timeout');
      return;
    }
    this.countBytes();
    for (const stream of this.streams) {
      if (now - stream.sent > timeout) {
        this.fail('timeout');
        return;
      }
    }
  }

  private open(): void {
    if (!this.ctx.running) return;
    const session = http2.connect(this.target.origin, this.target.secureOptions);
    this.session = session;
    this.connected = false;
    this.countedBytes = 0;
    this.goingAway = false;
    this.connectStart = performance.now();
    session.on('connect', () => {
      if (this.session !== session) return;
      this.connected = true;
      this.ctx.stats.connectionsOpened++;
      session.setLocalWindowSize(64 * 1024 * 1024);
      this.fill();
    });
    session.on('error', (error: Error) => {
      if (this.session === session) this.fail(classifyError(error, this.connected));
    });
    session.on('goaway', () => {
      // No new stream on this session; the open ones finish (or fail) and the next session takes over.
      if (this.session !== session) return;
      this.goingAway = true;
      if (this.streams.size === 0) this.replace();
    });
    session.on('close', () => {
      if (this.session !== session) return;
      if (this.streams.size > 0 || !this.connected) this.fail(this.connected ? 'closed' : 'connect');
      else this.replace();
    });
  }

  private fill(): void {
    const session = this.session;
    if (!this.ctx.running || !this.connected || session === null || this.goingAway) return;
    if (session.closed || session.destroyed) return;
    let now = -1;
    while (this.streams.size < this.target.depth) {
      if (now < 0) now = performance.now();
      const intended = this.pacer.next(now);
      if (intended < 0) break;
      this.send(session, intended, now);
    }
  }

  private send(session: http2.ClientHttp2Session, intended: number, now: number): void {
    const body = this.target.body;
    let request: http2.ClientHttp2Stream;
    try {
      request = session.request(this.target.headers, { endStream: body === null });
    } catch (error) {
      this.fail(classifyError(error, true));
      return;
    }
    const stream = new Stream(this, request, intended, now);
    this.streams.add(stream);
    if (body !== null) {
      request.end(body);
      this.ctx.stats.bytesSent += body.length;
    }
  }

  /** A stream finished: its response complete (status > 0) or failed (kind). */
  finished(stream: Stream, kind: ErrorKind | null): void {
    if (!this.streams.delete(stream)) return;
    if (kind === null) {
      this.ctx.stats.complete(stream.status, stream.intended, stream.sent, performance.now());
    } else {
      this.ctx.stats.error(kind);
    }
    const session = this.session;
    if (session === null) return;
    if (session.closed || session.destroyed || this.goingAway) {
      if (this.streams.size === 0) this.replace();
      return;
    }
    this.fill();
  }

  private countBytes(): void {
    const socket = this.session?.socket;
    if (socket === undefined) return;
    const read = socket.bytesRead ?? 0;
    if (read > this.countedBytes) {
      this.ctx.stats.bytesReceived += read - this.countedBytes;
      this.countedBytes = read;
    }
  }

  /** The session can take no more streams: a new one takes over. */
  private replace(): void {
    this.countBytes();
    this.drop();
    this.open();
  }

  private fail(kind: ErrorKind): void {
    if (this.session === null) return;
    const wasConnected = this.connected;
    this.ctx.stats.error(kind, wasConnected ? Math.max(1, this.streams.size) : 1);
    this.countBytes();
    this.drop();
    if (!this.ctx.running) return;
    if (wasConnected) this.open();
    else this.pacer.wakeIn(RECONNECT_DELAY_MS);
  }

  private drop(): void {
    const session = this.session;
    this.session = null;
    this.connected = false;
    for (const stream of this.streams) stream.abandon();
    this.streams.clear();
    if (session !== null) {
      session.removeAllListeners();
      session.on('error', () => {});
      session.destroy();
    }
  }
}

/** One request on a session. */
class Stream {
  status = 0;
  readonly intended: number;
  readonly sent: number;
  private readonly owner: Http2Connection;
  private readonly request: http2.ClientHttp2Stream;
  private done = false;

  constructor(owner: Http2Connection, request: http2.ClientHttp2Stream, intended: number, sent: number) {
    this.owner = owner;
    this.request = request;
    this.intended = intended;
    this.sent = sent;
    request.on('response', (headers) => {
      this.status = Number(headers[':status']);
    });
    // Read and drop the body.
    request.resume();
    request.on('end', () => this.finish(this.status > 0 ? null : 'protocol'));
    request.on('error', (error: Error) => {
      const code = (error as NodeJS.ErrnoException).code;
      this.finish(code === 'ERR_HTTP2_STREAM_ERROR' ? 'reset' : classifyError(error, true));
    });
    request.on('close', () => {
      if (this.done) return;
      // Closed without 'end' or 'error': reset by the target (RST_STREAM NO_ERROR before the end).
      this.finish('reset');
    });
  }

  private finish(kind: ErrorKind | null): void {
    if (this.done) return;
    this.done = true;
    this.owner.finished(this, kind);
  }

  /** The session is going away: nothing more is reported for this stream. */
  abandon(): void {
    this.done = true;
    this.request.removeAllListeners();
    this.request.on('error', () => {});
  }
}
