/**
 * A GET that zproxy makes on its own to one of a route's upstream targets, outside any client exchange:
 * the cache's background revalidation (stale-while-revalidate, src/filters/cache/filter.ts). It takes the
 * same pools as forwarded requests (a keep-alive HTTP/1.1 connection, or a stream on an HTTP/2 session),
 * reads the whole response (at most `maxBytes` of body) and resolves with it. Any failure, a body over
 * `maxBytes` or no complete answer within `timeoutMs` rejects; the connection is then not reused.
 */
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import http2 from 'node:http2';
import { ZpError } from '../errors.ts';
import type { ResponseHead } from '../http1/parse-head.ts';
import type { UpstreamConnection } from '../http1/upstream-connection.ts';
import type { UpstreamHandler } from './contract.ts';
import type { UpstreamTarget } from './group.ts';
import type { Http2Requester, Http2UpstreamSession } from './http2-pool.ts';

export interface SubrequestOptions {
  /** Path and query. */
  readonly path: string;
  /** The Host (`:authority`) to send. */
  readonly host: string;
  /** `:scheme` for an HTTP/2 upstream. */
  readonly scheme: 'http' | 'https';
  /** End-to-end request fields (lowercase names; no Host, no hop-by-hop fields). */
  readonly fields: readonly (readonly [string, string])[];
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

export interface SubrequestResult {
  readonly status: number;
  /** Response fields, lowercase names, in order (hop-by-hop fields included as received). */
  readonly fields: [string, string][];
  readonly body: Buffer;
}

/** Sends a GET to `target` and reads the whole response. */
export function subrequest(target: UpstreamTarget, options: SubrequestOptions): Promise<SubrequestResult> {
  return new Promise((resolve, reject) => {
    if (target.pool !== null) new Http1Subrequest(target, options, resolve, reject).start();
    else new Http2Subrequest(target, options, resolve, reject).start();
  });
}

type Resolve = (result: SubrequestResult) => void;
type Reject = (error: Error) => void;

/** What both kinds share: the options, the one timer, settling once. */
abstract class Subrequest {
  protected readonly target: UpstreamTarget;
  protected readonly options: SubrequestOptions;
  private readonly resolveWith: Resolve;
  private readonly rejectWith: Reject;
  private timer: NodeJS.Timeout | null = null;
  /** Settled (resolved or rejected): later events are ignored. */
  protected done = false;

  constructor(target: UpstreamTarget, options: SubrequestOptions, resolve: Resolve, reject: Reject) {
    this.target = target;
    this.options = options;
    this.resolveWith = resolve;
    this.rejectWith = reject;
  }

  protected startTimer(): void {
    this.timer = setTimeout(
      () => this.fail(new Error('the upstream did not answer in time')),
      this.options.timeoutMs,
    );
    this.timer.unref();
  }

  /** Settles with the response; false when already settled. */
  protected succeed(result: SubrequestResult): boolean {
    if (this.done) return false;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.resolveWith(result);
    return true;
  }

  /** Settles with an error (the request is abandoned: abandon()); nothing when already settled. */
  fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.abandon();
    this.rejectWith(error);
  }

  /** Lets go of the connection, stream or place in a queue after a failure. */
  protected abstract abandon(): void;
}

class Http1Subrequest extends Subrequest implements UpstreamHandler {
  private conn: UpstreamConnection | null = null;
  private status = 0;
  private fields: [string, string][] = [];
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  start(): void {
    this.startTimer();
    const conn = this.target.pool!.acquire(this, false);
    if (conn !== null) this.onUpstreamReady(conn);
  }

  protected abandon(): void {
    if (this.conn !== null) this.conn.destroy();
    else this.target.pool!.cancel(this);
    this.conn = null;
  }

  onUpstreamReady(conn: UpstreamConnection): void {
    if (this.done) {
      conn.pool.release(conn);
      return;
    }
    this.conn = conn;
    const o = this.options;
    let head = `GET ${o.path} HTTP/1.1\r\nHost: ${o.host}\r\n`;
    for (const [name, value] of o.fields) head += `${name}: ${value}\r\n`;
    head += 'Via: 1.1 zproxy\r\n\r\n';
    conn.beginRequest(false, true);
    conn.write(head);
    conn.requestSent();
  }

  onUpstreamError(error: ZpError): void {
    this.conn = null;
    this.fail(error);
  }

  onResponseHead(
    _conn: UpstreamConnection,
    head: ResponseHead,
    _framing: number,
    buf: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    this.status = head.status;
    this.fields = head.entries().map(([name, value]) => [name.toLowerCase(), value]);
    if (bodyEnd > bodyStart) this.onResponseBody(buf, bodyStart, bodyEnd);
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    if (this.done) return true;
    this.bytes += end - start;
    if (this.bytes > this.options.maxBytes) {
      this.fail(new Error('the response is larger than the cache keeps'));
      return true;
    }
    this.chunks.push(Buffer.from(buf.subarray(start, end)));
    return true;
  }

  onResponseEnd(conn: UpstreamConnection): void {
    if (this.done) return;
    this.conn = null;
    conn.pool.release(conn);
    this.succeed({ status: this.status, fields: this.fields, body: Buffer.concat(this.chunks) });
  }

  onResponseAborted(error: ZpError): void {
    this.conn = null;
    this.fail(error);
  }

  onUpstreamDrain(): void {}

  holdsResponseBytes(): boolean {
    return false;
  }
}

class Http2Subrequest extends Subrequest implements Http2Requester {
  private session: Http2UpstreamSession | null = null;
  private stream: ClientHttp2Stream | null = null;
  private headers: IncomingHttpHeaders | null = null;
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  start(): void {
    this.startTimer();
    const session = this.target.http2!.acquire(this);
    if (session !== null) this.onSessionReady(session);
  }

  protected abandon(): void {
    const stream = this.stream;
    if (stream !== null && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    else if (stream === null && this.session === null) this.target.http2!.cancel(this);
  }

  onSessionReady(session: Http2UpstreamSession): void {
    if (this.done) {
      session.release();
      return;
    }
    this.session = session;
    const o = this.options;
    const headers: Record<string, string | string[]> = {
      ':method': 'GET',
      ':path': o.path,
      ':scheme': o.scheme,
      ':authority': o.host,
    };
    for (const [name, value] of o.fields) {
      const prior = headers[name];
      if (prior === undefined) headers[name] = value;
      else if (Array.isArray(prior)) prior.push(value);
      else headers[name] = [prior, value];
    }
    headers.via = '2 zproxy';
    let stream: ClientHttp2Stream;
    try {
      stream = session.session!.request(headers, { endStream: true });
    } catch (error) {
      this.session = null;
      session.release();
      this.fail(error as Error);
      return;
    }
    this.stream = stream;
    stream.on('error', () => {});
    stream.on('response', (h) => {
      this.headers = h;
    });
    stream.on('data', (chunk: Buffer) => {
      if (this.done) return;
      this.bytes += chunk.length;
      if (this.bytes > o.maxBytes) this.fail(new Error('the response is larger than the cache keeps'));
      else this.chunks.push(chunk);
    });
    stream.on('end', () => {
      if (this.done) return;
      const h = this.headers;
      if (h === null || (stream.rstCode ?? 0) !== 0) {
        this.fail(new ZpError('ZP_ERR_UPSTREAM_RESET', 'The upstream reset the stream'));
        return;
      }
      const fields: [string, string][] = [];
      for (const name of Object.keys(h)) {
        if (name.charCodeAt(0) === 0x3a) continue;
        const value = h[name];
        if (Array.isArray(value)) for (const v of value) fields.push([name, v]);
        else if (value !== undefined) fields.push([name, String(value)]);
      }
      this.succeed({ status: Number(h[':status']), fields, body: Buffer.concat(this.chunks) });
    });
    stream.on('close', () => {
      const s = this.session;
      this.session = null;
      s?.release();
      this.fail(new ZpError('ZP_ERR_UPSTREAM_RESET', 'The upstream closed the stream before the end'));
    });
  }

  onSessionError(error: ZpError): void {
    this.fail(error);
  }
}
