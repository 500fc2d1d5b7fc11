/**
 * A GET that zproxy makes on its own to one of a route's upstream targets, outside any client exchange:
 * the cache's background revalidation (stale-while-revalidate, src/filters/cache/filter.ts). It takes the
 * same pools as forwarded requests (a keep-alive HTTP/1.1 connection, or a stream on an HTTP/2 session)
 * and hears of the answer through the upstream client contract like any exchange: it reads the whole
 * response (at most `maxBytes` of body) and resolves with it. Any failure, a body over `maxBytes` or no
 * complete answer within `timeoutMs` rejects; the connection is then not reused.
 */
import type { ZpError } from '../errors.ts';
import type { FieldSource } from '../http/fields.ts';
import { UpstreamConnection } from '../http1/upstream-connection.ts';
import type { UpstreamAttempt, UpstreamHandler, UpstreamResponseHead } from './contract.ts';
import type { UpstreamTarget } from './group.ts';
import { Http2UpstreamStream } from './http2-stream.ts';

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
  return new Promise((resolve, reject) => new Subrequest(target, options, resolve, reject).start());
}

type Resolve = (result: SubrequestResult) => void;
type Reject = (error: Error) => void;

class Subrequest implements UpstreamHandler {
  private readonly target: UpstreamTarget;
  private readonly options: SubrequestOptions;
  private readonly resolveWith: Resolve;
  private readonly rejectWith: Reject;
  private timer: NodeJS.Timeout | null = null;
  /** Settled (resolved or rejected): later events are ignored. */
  private done = false;
  private attempt: UpstreamAttempt | null = null;
  private status = 0;
  private fields: [string, string][] = [];
  private readonly chunks: Buffer[] = [];
  private bytes = 0;

  constructor(target: UpstreamTarget, options: SubrequestOptions, resolve: Resolve, reject: Reject) {
    this.target = target;
    this.options = options;
    this.resolveWith = resolve;
    this.rejectWith = reject;
  }

  start(): void {
    this.timer = setTimeout(
      () => this.fail(new Error('the upstream did not answer in time')),
      this.options.timeoutMs,
    );
    this.timer.unref();
    const t = this.target;
    const attempt = t.pool !== null ? t.pool.acquire(this, false) : t.http2!.acquire(this);
    if (attempt !== null) this.onUpstreamReady(attempt);
  }

  /** Settles with an error; the request is abandoned. Nothing when already settled. */
  private fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const attempt = this.attempt;
    this.attempt = null;
    if (attempt !== null) attempt.cancel();
    else if (this.target.pool !== null) this.target.pool.cancel(this);
    else this.target.http2!.cancel(this);
    this.rejectWith(error);
  }

  onUpstreamReady(attempt: UpstreamAttempt): void {
    if (this.done) {
      attempt.cancel();
      return;
    }
    this.attempt = attempt;
    const o = this.options;
    if (attempt instanceof Http2UpstreamStream) {
      const headers = [':method', 'GET', ':path', o.path, ':scheme', o.scheme, ':authority', o.host];
      for (const [name, value] of o.fields) headers.push(name, value);
      headers.push('via', '2 zproxy');
      attempt.sendList(headers, true, false);
      return;
    }
    const conn = attempt as UpstreamConnection;
    let head = `GET ${o.path} HTTP/1.1\r\nHost: ${o.host}\r\n`;
    for (const [name, value] of o.fields) head += `${name}: ${value}\r\n`;
    head += 'Via: 1.1 zproxy\r\n\r\n';
    conn.beginRequest(false, true);
    conn.write(head);
    conn.requestSent();
  }

  onUpstreamError(error: ZpError): void {
    this.attempt = null;
    this.fail(error);
  }

  onResponseHead(
    _attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    _framing: number,
    buf: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    this.status = head.status;
    const fields: [string, string][] = [];
    for (let i = 0; i < head.fieldCount; i++) fields.push([head.lowerFieldName(i), head.fieldValue(i)]);
    this.fields = fields;
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

  onResponseEnd(attempt: UpstreamAttempt, _trailers: FieldSource | null): void {
    if (this.done) return;
    this.attempt = null;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (attempt instanceof UpstreamConnection) attempt.pool.release(attempt);
    this.resolveWith({ status: this.status, fields: this.fields, body: Buffer.concat(this.chunks) });
  }

  onResponseAborted(error: ZpError): void {
    this.attempt = null;
    this.fail(error);
  }

  onUpstreamDrain(): void {}

  holdsResponseBytes(): boolean {
    return false;
  }
}
