/**
 * One HTTP/2 stream from a client forwarded to an HTTP/2 upstream (h2c://, h2://) on a stream of a pooled
 * session (see upstream/http2-pool.ts). Headers are forwarded as mapped by StreamExchange (the same rules
 * as for HTTP/1.1 upstreams, plus `te: trailers`); bodies stream both ways under HTTP/2 flow control (a
 * side that cannot take more pauses the other); trailers cross in both directions (gRPC's `grpc-status`
 * and `grpc-message` arrive as response trailers). A client reset or cancel resets the upstream stream at
 * once with CANCEL (a gRPC deadline reaches the upstream this way); an upstream reset after the response
 * started resets the client stream with the same code; a failure before the response head is answered
 * with zproxy's JSON error (502/503/504) like every other upstream failure.
 */
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { Runtime } from '../config/runtime.ts';
import { ERROR_CODES, type ErrorCode, type ZpError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FieldList, fieldObject } from '../http/fields.ts';
import { ForwardedResponse, http2ResponseList, http2TrailerList } from '../http/forwarding.ts';
import { ObjectFieldReader } from '../pipeline/field-readers.ts';
import { isPending } from '../pipeline/filter-exchange.ts';
import type { Http2Pool, Http2Requester, Http2UpstreamSession } from '../upstream/http2-pool.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import { HeldUpstreamResponse } from './held-upstream-response.ts';
import type { H2ServerStream, StreamOwner } from './server-connection.ts';
import { respondWithError, respondWithLocal } from './stream-exchange.ts';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** The exchange an upstream stream belongs to (its listeners are the module-level functions below). */
const kExchange = Symbol('zproxy.http2.exchange');
type UpstreamStream = ClientHttp2Stream & { [kExchange]?: Http2UpstreamExchange };

function upstreamResponse(this: UpstreamStream, headers: IncomingHttpHeaders, flags: number): void {
  this[kExchange]?.onResponse(headers, flags);
}
function upstreamData(this: UpstreamStream, chunk: Buffer): void {
  this[kExchange]?.onResponseData(chunk);
}
function upstreamTrailers(this: UpstreamStream, trailers: IncomingHttpHeaders): void {
  this[kExchange]?.onResponseTrailers(trailers);
}
function upstreamEnd(this: UpstreamStream): void {
  this[kExchange]?.onResponseEnd();
}
function upstreamClose(this: UpstreamStream): void {
  this[kExchange]?.onUpstreamClose();
}
function upstreamWantTrailers(this: UpstreamStream): void {
  this[kExchange]?.onUpstreamWantTrailers();
}
function upstreamDrain(this: UpstreamStream): void {
  this[kExchange]?.onUpstreamDrain();
}

export class Http2UpstreamExchange implements Http2Requester, Timed, StreamOwner {
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
  private session: Http2UpstreamSession | null = null;
  private upstream: UpstreamStream | null = null;
  /** A 'drain' listener is on the upstream stream (added when a write first returns false). */
  private upstreamDrainWatched = false;
  private waiting = false;
  private responded = false;
  /** The upstream's response, held while a response filter waits for I/O (holdResponse). */
  private held: HeldUpstreamResponse | null = null;
  /** onUpstreamError filters are waiting for I/O (fail). */
  private waitingFilters = false;
  private requestTrailers: string[] | null = null;
  private responseTrailers: IncomingHttpHeaders | null = null;
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
    const session = pool.acquire(this);
    if (session !== null) this.onSessionReady(session);
    else {
      this.waiting = true;
      const s = pool.settings;
      this.deadline = Date.now() + s.connectTimeoutMs + 1000;
    }
  }

  onSessionReady(session: Http2UpstreamSession): void {
    this.waiting = false;
    if (this.finished || this.downstream.closed) {
      session.release();
      return;
    }
    this.session = session;
    let upstream: UpstreamStream;
    try {
      upstream = session.session!.request(this.headers, {
        endStream: this.requestDone,
        waitForTrailers: !this.requestDone,
      });
    } catch (err) {
      session.release();
      this.session = null;
      this.fail(
        'ZP_ERR_UPSTREAM_RESET',
        `Could not open a stream to the upstream: ${(err as Error).message}`,
      );
      return;
    }
    this.upstream = upstream;
    upstream[kExchange] = this;
    upstream.on('error', ignore);
    upstream.on('response', upstreamResponse);
    upstream.on('data', upstreamData);
    upstream.on('trailers', upstreamTrailers);
    upstream.on('end', upstreamEnd);
    upstream.on('close', upstreamClose);
    if (this.requestDone) {
      this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
      return;
    }
    this.deadline = 0;
    upstream.on('wantTrailers', upstreamWantTrailers);
    this.downstream.resume();
  }

  onUpstreamWantTrailers(): void {
    const upstream = this.upstream;
    if (upstream === null || upstream.destroyed) return;
    const trailers = this.requestTrailers;
    upstream.sendTrailers(trailers === null ? {} : fieldObject(http2TrailerList(new FieldList(trailers))));
  }

  onUpstreamDrain(): void {
    this.downstream.resume();
  }

  onRequestTrailers(fields: string[]): void {
    this.requestTrailers = fields;
  }

  onResponseTrailers(trailers: IncomingHttpHeaders): void {
    this.responseTrailers = trailers;
  }

  onStreamDrain(): void {
    // The client's flow-control window reopened: read the upstream again.
    this.upstream?.resume();
  }

  onStreamClose(code: number): void {
    if (code === NGHTTP2_NO_ERROR && this.downstream.localEnded) {
      // A clean close after zproxy ended the response: whoever ended it finishes the exchange. A request
      // body still coming (the client was reset with NO_ERROR) is not forwarded further.
      const upstream = this.upstream;
      if (!this.requestDone && upstream !== null && !upstream.closed && !upstream.destroyed)
        upstream.close(NGHTTP2_CANCEL);
      return;
    }
    this.onDownstreamClose();
  }

  onSessionError(error: ZpError): void {
    this.waiting = false;
    this.fail(error.code, error.message);
  }

  onRequestData(chunk: Buffer): void {
    const upstream = this.upstream;
    if (upstream === null || upstream.destroyed || this.finished) return;
    const ex = this.exchange;
    ex.bytesIn += chunk.length;
    const max = this.runtime.maxBodyBytes;
    if (max > 0 && ex.bytesIn > max) {
      this.fail('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    if (upstream.write(chunk)) return;
    this.downstream.pause();
    if (!this.upstreamDrainWatched) {
      this.upstreamDrainWatched = true;
      upstream.on('drain', upstreamDrain);
    }
  }

  onRequestEnd(): void {
    this.requestDone = true;
    const upstream = this.upstream;
    if (upstream === null || upstream.destroyed || this.finished) return;
    // 'wantTrailers' follows: the client's trailers (or none) close the request.
    upstream.end();
    if (!this.responded) this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
  }

  onResponse(headers: IncomingHttpHeaders, flags: number): void {
    const downstream = this.downstream;
    if (this.finished || downstream.closed) return;
    this.responded = true;
    this.deadline = 0;
    const status = Number(headers[':status']);
    const fx = this.exchange.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(status, new ObjectFieldReader(headers));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(outcome, new HeldUpstreamResponse(headers, flags));
          return;
        }
        this.respondFiltered(outcome);
        return;
      }
    }
    this.sendResponseHead(status, headers, flags);
  }

  /** Answers with a filter's LocalResponse instead of the upstream's response. */
  private respondFiltered(local: LocalResponse): void {
    const upstream = this.upstream;
    if (upstream !== null && !upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
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
    this.sendResponseHead(Number(held.headers[':status']), held.headers, held.flags);
    for (const chunk of held.chunks) this.onResponseData(chunk);
    if (held.ended) this.onResponseEnd();
    if (held.closed) this.onUpstreamClose();
    // A client that is not reading what was replayed resumes the upstream itself (on its drain).
    else if (held.paused && !this.finished && !this.downstream.wantsDrain) this.upstream?.resume();
  }

  /** Responds with the upstream's head (the filters' edits applied). */
  private sendResponseHead(status: number, headers: IncomingHttpHeaders, flags: number): void {
    const downstream = this.downstream;
    const fx = this.exchange.filters;
    const edits = fx === null ? null : fx.responseEditsOrNull;
    const fr = new ForwardedResponse();
    this.runtime.forwarding.response(fr, status, '2', this.hsts, false);
    this.exchange.status = status;
    // A response that is its head alone (a gRPC "trailers-only" answer) ends here.
    const endStream = (flags & NGHTTP2_FLAG_END_STREAM) !== 0 || this.headRequest;
    downstream.respond(status, http2ResponseList(fr, FieldList.fromObject(headers), edits), endStream);
  }

  onResponseData(chunk: Buffer): void {
    if (this.held !== null) {
      this.held.hold(chunk, this.upstream);
      return;
    }
    const downstream = this.downstream;
    if (this.finished || downstream.closed || !this.responded) return;
    this.exchange.bytesOut += chunk.length;
    const fx = this.exchange.filters;
    if (fx !== null) fx.body(chunk);
    if (downstream.write(chunk)) return;
    this.upstream?.pause();
  }

  onResponseEnd(): void {
    if (this.held !== null) {
      this.held.ended = true;
      return;
    }
    if (this.finished || !this.responded) return;
    const code = this.upstream?.rstCode ?? NGHTTP2_NO_ERROR;
    if (code !== NGHTTP2_NO_ERROR) {
      // The upstream reset the stream: the body is not complete (onUpstreamClose resets the client).
      return;
    }
    const downstream = this.downstream;
    const trailers = this.responseTrailers;
    if (trailers !== null) downstream.sendTrailers(http2TrailerList(FieldList.fromObject(trailers)));
    else downstream.end();
    this.finish(null);
  }

  onUpstreamClose(): void {
    const upstream = this.upstream!;
    const session = this.session;
    this.session = null;
    session?.release();
    if (this.finished) return;
    const code = upstream.rstCode ?? NGHTTP2_NO_ERROR;
    const held = this.held;
    if (held !== null) {
      // A response filter is waiting: a clean close is replayed after the held response; a reset is an
      // error answer, since nothing was sent yet.
      if (code === NGHTTP2_NO_ERROR) {
        held.closed = true;
        return;
      }
      this.held = null;
      this.fail('ZP_ERR_UPSTREAM_RESET', `The upstream reset the stream (HTTP/2 error code ${code})`);
      return;
    }
    if (!this.responded) {
      this.fail(
        'ZP_ERR_UPSTREAM_RESET',
        `The upstream reset the stream before answering (HTTP/2 error code ${code})`,
      );
      return;
    }
    // The response started: reset the client stream with the upstream's code.
    const downstream = this.downstream;
    downstream.reset(code === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code);
    this.finish('ZP_ERR_UPSTREAM_RESET');
  }

  private onDownstreamClose(): void {
    // The client reset or cancelled the stream (a gRPC deadline, for one): the upstream sees a CANCEL now.
    const upstream = this.upstream;
    const open = upstream !== null && !upstream.closed && !upstream.destroyed;
    if (open && (!this.finished || !this.requestDone)) upstream.close(NGHTTP2_CANCEL);
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
    } else if (!this.responded) {
      this.fail('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream did not send a response in time');
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
      if (upstream !== null && !upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
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
    if (upstream !== null && !upstream.closed && !upstream.destroyed) upstream.close(NGHTTP2_CANCEL);
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

function ignore(): void {}
