/**
 * One HTTP/2 stream from a client forwarded to an HTTP/2 upstream (h2c://, h2://) on a stream of a pooled
 * session, through the upstream client contract (src/upstream/http2-stream.ts). Headers are forwarded as
 * decided by the forwarding policy (plus `te: trailers`); bodies stream both ways under HTTP/2 flow
 * control (a side that cannot take more pauses the other); trailers cross in both directions (gRPC's
 * `grpc-status` and `grpc-message` arrive as response trailers). A client reset or cancel resets the
 * upstream stream at once with CANCEL (a gRPC deadline reaches the upstream this way); an upstream reset
 * after the response started resets the client stream with the same code; a failure before the response
 * head is answered with zproxy's JSON error (502/503/504) like every other upstream failure.
 */
import type { Runtime } from '../config/runtime.ts';
import { ERROR_CODES, type ErrorCode, type ZpError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FieldList, type FieldSource } from '../http/fields.ts';
import { ForwardedResponse, http2ResponseList, http2TrailerList } from '../http/forwarding.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { isPending } from '../pipeline/filter-exchange.ts';
import {
  BODY_NONE,
  type UpstreamAttempt,
  type UpstreamHandler,
  type UpstreamResponseHead,
} from '../upstream/contract.ts';
import type { Http2Pool } from '../upstream/http2-pool.ts';
import type { Http2UpstreamStream } from '../upstream/http2-stream.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import { INTERNAL_ERROR, NO_ERROR } from './frames.ts';
import { HeldUpstreamResponse } from './held-upstream-response.ts';
import type { H2ServerStream, StreamOwner } from './server-connection.ts';
import { respondWithError, respondWithLocal } from './stream-exchange.ts';

export class Http2UpstreamExchange implements UpstreamHandler, Timed, StreamOwner {
  private readonly downstream: H2ServerStream;
  private readonly exchange: Exchange;
  private readonly runtime: Runtime;
  private readonly pool: Http2Pool;
  /** The request as node:http2's raw header list (http2RequestList). */
  private readonly headers: string[];
  private readonly headRequest: boolean;
  /** The Strict-Transport-Security value for the client's session, or null. */
  private readonly hsts: string | null;
  /** The client's request has no body (or it has all arrived and been forwarded). */
  private requestDone: boolean;
  private upstream: Http2UpstreamStream | null = null;
  private waiting = false;
  private responded = false;
  /** The upstream's response, held while a response filter waits for I/O (holdResponse). */
  private held: HeldUpstreamResponse | null = null;
  /** onUpstreamError filters are waiting for I/O (fail). */
  private waitingFilters = false;
  private requestTrailers: string[] | null = null;
  private finished = false;
  deadline = 0;

  constructor(
    runtime: Runtime,
    downstream: H2ServerStream,
    exchange: Exchange,
    pool: Http2Pool,
    headers: string[],
    requestDone: boolean,
    headRequest: boolean,
    hsts: string | null,
  ) {
    this.runtime = runtime;
    this.downstream = downstream;
    this.exchange = exchange;
    this.pool = pool;
    this.headers = headers;
    this.requestDone = requestDone;
    this.headRequest = headRequest;
    this.hsts = hsts;
    // The stream's events come here from now on.
    downstream.owner = this;
    watchDeadline(this);
    const attempt = pool.acquire(this);
    if (attempt !== null) this.onUpstreamReady(attempt);
    else {
      this.waiting = true;
      this.deadline = Date.now() + pool.settings.connectTimeoutMs + 1000;
    }
  }

  onUpstreamReady(attempt: UpstreamAttempt): void {
    this.waiting = false;
    this.deadline = 0;
    const upstream = attempt as Http2UpstreamStream;
    if (this.finished || this.downstream.closed) {
      upstream.cancel();
      return;
    }
    this.upstream = upstream;
    upstream.send(this.headers, this.requestDone, this.headRequest);
    if (!this.requestDone) this.downstream.resume();
  }

  onUpstreamError(error: ZpError): void {
    this.waiting = false;
    this.upstream = null;
    this.fail(error.code, error.message);
  }

  onUpstreamDrain(): void {
    this.downstream.resume();
  }

  onRequestTrailers(fields: string[]): void {
    this.requestTrailers = fields;
  }

  onStreamDrain(): void {
    // The client's flow-control window reopened: read the upstream again.
    this.upstream?.resume();
  }

  onStreamClose(code: number): void {
    if (code === NO_ERROR && this.downstream.localEnded) {
      // A clean close after zproxy ended the response: whoever ended it finishes the exchange. A request
      // body still coming (the client was reset with NO_ERROR) is not forwarded further.
      if (!this.requestDone) this.upstream?.cancelRequest();
      return;
    }
    this.onDownstreamClose();
  }

  onRequestData(chunk: Buffer): void {
    const upstream = this.upstream;
    if (upstream === null || this.finished) return;
    const ex = this.exchange;
    ex.bytesIn += chunk.length;
    const max = this.runtime.maxBodyBytes;
    if (max > 0 && ex.bytesIn > max) {
      this.fail('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    if (!upstream.write(chunk)) this.downstream.pause();
  }

  onRequestEnd(): void {
    this.requestDone = true;
    const upstream = this.upstream;
    if (upstream === null || this.finished) return;
    const trailers = this.requestTrailers;
    upstream.end(trailers === null ? null : http2TrailerList(new FieldList(trailers)));
  }

  onResponseHead(
    _attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    _buf: Buffer,
    _start: number,
    _end: number,
  ): void {
    const downstream = this.downstream;
    if (this.finished || downstream.closed) return;
    this.responded = true;
    const fx = this.exchange.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(head.status, new HeadFieldReader(head));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(outcome, new HeldUpstreamResponse(head, framing));
          return;
        }
        this.respondFiltered(outcome);
        return;
      }
    }
    this.sendResponseHead(head, framing);
  }

  /** Answers with a filter's LocalResponse instead of the upstream's response. */
  private respondFiltered(local: LocalResponse): void {
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.cancel();
    respondWithLocal(this.downstream, this.exchange, local, this.headRequest, this.hsts);
    this.finish(null);
  }

  /**
   * A response filter waits for I/O: the upstream's response is held (nothing sent) for at most
   * connection_timeout_ms (onDeadline: 504 ZP_ERR_FILTER_TIMEOUT).
   */
  private holdResponse(outcome: Promise<undefined | LocalResponse>, held: HeldUpstreamResponse): void {
    this.held = held;
    this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
    outcome.then(
      (local) => this.releaseResponse(held, local),
      () => this.releaseResponse(held, undefined),
    );
  }

  /** The response filters are done: send the held response (or their answer instead). */
  private releaseResponse(held: HeldUpstreamResponse, local: LocalResponse | undefined): void {
    if (this.held !== held) return;
    this.held = null;
    this.deadline = 0;
    if (this.finished || this.downstream.closed) return;
    if (local !== undefined) {
      this.respondFiltered(local);
      return;
    }
    this.sendResponseHead(held.head, held.framing);
    for (const chunk of held.chunks) this.onResponseBody(chunk, 0, chunk.length);
    if (held.ended) this.onResponseEnd(this.upstream!, held.trailers);
    else if (held.aborted !== null) this.onResponseAborted(held.aborted);
    // A client that is not reading what was replayed resumes the upstream itself (on its drain).
    else if (held.paused && !this.finished && !this.downstream.wantsDrain) this.upstream?.resume();
  }

  /** Responds with the upstream's head (the filters' edits applied). */
  private sendResponseHead(head: UpstreamResponseHead, framing: number): void {
    const fx = this.exchange.filters;
    const edits = fx === null ? null : fx.responseEditsOrNull;
    const fr = new ForwardedResponse();
    this.runtime.forwarding.response(fr, head.status, '2', this.hsts, false);
    this.exchange.status = head.status;
    // A response that is its head alone (a gRPC "trailers-only" answer) ends here.
    const endStream = framing === BODY_NONE;
    this.downstream.respond(head.status, http2ResponseList(fr, head, edits), endStream);
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    const held = this.held;
    if (held !== null) return held.hold(buf, start, end);
    const downstream = this.downstream;
    if (this.finished || downstream.closed || !this.responded) return true;
    const chunk = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    this.exchange.bytesOut += chunk.length;
    const fx = this.exchange.filters;
    if (fx !== null) fx.body(chunk);
    return downstream.write(chunk);
  }

  holdsResponseBytes(): boolean {
    return false;
  }

  onResponseEnd(_attempt: UpstreamAttempt, trailers: FieldSource | null): void {
    const held = this.held;
    if (held !== null) {
      held.ended = true;
      held.trailers = trailers;
      return;
    }
    if (this.finished || !this.responded) return;
    const downstream = this.downstream;
    if (trailers !== null) downstream.sendTrailers(http2TrailerList(trailers));
    else downstream.end();
    this.finish(null);
  }

  onResponseAborted(error: ZpError): void {
    const held = this.held;
    if (held !== null) {
      // A response filter is waiting and nothing was sent yet: an error answer.
      this.held = null;
      this.upstream = null;
      this.fail('ZP_ERR_UPSTREAM_RESET', error.message);
      return;
    }
    if (this.finished) return;
    // The response started: reset the client stream with the upstream's code.
    const code = this.upstream?.resetCode ?? 0;
    this.upstream = null;
    this.downstream.reset(code === NO_ERROR ? INTERNAL_ERROR : code);
    this.finish('ZP_ERR_UPSTREAM_RESET');
  }

  private onDownstreamClose(): void {
    // The client reset or cancelled the stream (a gRPC deadline, for one): the upstream sees a CANCEL now.
    const upstream = this.upstream;
    if (upstream !== null && (!this.finished || !this.requestDone)) {
      this.upstream = null;
      upstream.cancel();
    }
    if (this.finished) return;
    if (this.waiting) {
      this.pool.cancel(this);
      this.waiting = false;
    }
    if (this.exchange.status === 0) this.exchange.status = 499;
    this.finish('ZP_ERR_CLIENT_ABORTED');
  }

  onDeadline(): void {
    if (this.finished) return;
    if (this.held !== null || this.waitingFilters) {
      this.held = null;
      this.waitingFilters = false;
      this.failNow('ZP_ERR_FILTER_TIMEOUT');
      return;
    }
    if (this.waiting) {
      this.pool.cancel(this);
      this.waiting = false;
      this.fail('ZP_ERR_UPSTREAM_UNAVAILABLE', 'No HTTP/2 session to the upstream became available in time');
    }
  }

  /** Answers with zproxy's error (or resets the client stream when the response started). */
  private fail(code: ErrorCode, message?: string): void {
    if (this.finished) return;
    const info = ERROR_CODES[code];
    const fx = this.exchange.filters;
    if (fx !== null && info.side === 'upstream' && !this.downstream.headersSent && fx.wantsUpstreamError) {
      // Filters may answer instead of zproxy's 502/504 (the cache's stale-if-error).
      const upstream = this.upstream;
      this.upstream = null;
      upstream?.cancel();
      const outcome = fx.runUpstreamError(info.status);
      if (isPending(outcome)) {
        this.waitingFilters = true;
        this.deadline = Date.now() + this.runtime.connectionTimeoutMs;
        const then = (local: LocalResponse | undefined) => {
          if (this.finished || !this.waitingFilters) return;
          this.waitingFilters = false;
          this.deadline = 0;
          this.answerUpstreamError(code, message, local);
        };
        outcome.then(then, () => then(undefined));
        return;
      }
      this.answerUpstreamError(code, message, outcome);
      return;
    }
    this.failNow(code, message);
  }

  /** After onUpstreamError: the filters' answer (the upstream's failure stays in the log), or zproxy's. */
  private answerUpstreamError(
    code: ErrorCode,
    message: string | undefined,
    local: LocalResponse | undefined,
  ): void {
    if (local === undefined) {
      this.failNow(code, message);
      return;
    }
    this.exchange.errorCode = code;
    this.respondFiltered(local);
  }

  private failNow(code: ErrorCode, message?: string): void {
    if (this.finished) return;
    const upstream = this.upstream;
    this.upstream = null;
    upstream?.cancel();
    respondWithError(this.downstream, this.exchange, code, message, this.headRequest, this.hsts);
    this.finish(code);
  }

  private finish(code: ErrorCode | null): void {
    if (this.finished) return;
    this.finished = true;
    this.deadline = 0;
    unwatchDeadline(this);
    const ex = this.exchange;
    if (code !== null) ex.errorCode = code;
    ex.endTime = performance.now();
    ex.filters?.finish(code !== null);
    this.runtime.accessLog?.write(ex);
  }
}
