/**
 * A GET that zproxy makes on its own to one of a route's upstream targets, outside any client exchange:
 * the cache's background revalidation (stale-while-revalidate, src/filters/cache/filter.ts). It is
 * forwarded like any exchange (the forwarding policy decides what the client's fields keep and gain, the
 * filters' edits apply last) and takes the same pools through the upstream client contract (a keep-alive
 * HTTP/1.1 connection, or a stream on an HTTP/2 session): it reads the whole response (at most `maxBytes`
 * of body) and resolves with it. Any failure, a body over `maxBytes` or no complete answer within
 * `timeoutMs` rejects; the connection is then not reused.
 */
import type { ZpError } from '../errors.ts';
import type { FieldSource, MessageEdits } from '../http/fields.ts';
import type { ForwardingPolicy } from '../http/forwarding.ts';
import {
  ProxyRequest,
  REQUEST_BODY_NONE,
  type UpstreamAttempt,
  type UpstreamHandler,
  type UpstreamResponseHead,
} from './contract.ts';
import type { UpstreamTarget } from './group.ts';

export interface SubrequestOptions {
  /** Path and query. */
  readonly path: string;
  /** The client request's fields the request is made for (forwarded as the policy says). */
  readonly fields: FieldSource;
  /** Edits applied last (the route's filters' upstream edits, the cache's validators), or null. */
  readonly edits: MessageEdits | null;
  /** Who the request is made for: its address, scheme, the authority it addressed, its HTTP version. */
  readonly clientAddress: string;
  readonly scheme: string;
  readonly host: string;
  readonly httpVersion: string;
  readonly forwarding: ForwardingPolicy;
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
    const attempt = this.target.acquire(this, false);
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
    else this.target.cancel(this);
    this.rejectWith(error);
  }

  onUpstreamReady(attempt: UpstreamAttempt): void {
    if (this.done) {
      attempt.cancel();
      return;
    }
    this.attempt = attempt;
    const o = this.options;
    const request = new ProxyRequest();
    request.method = 'GET';
    request.path = o.path;
    request.fields = o.fields;
    request.edits = o.edits;
    request.body = REQUEST_BODY_NONE;
    request.decodeResponse = true;
    o.forwarding.request(
      request.forwarded,
      o.fields,
      o.clientAddress,
      o.scheme,
      o.host,
      null,
      o.httpVersion,
      this.target.hostHeader,
    );
    attempt.send(request);
    attempt.flush();
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
    attempt.release();
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
