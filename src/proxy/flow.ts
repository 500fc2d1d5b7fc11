/**
 * The request flow: what happens to one exchange once its request head is parsed, whatever protocol the
 * client and the upstream speak. route -> onRequest / onUpstreamRequest filters -> choose a target ->
 * forward (an attempt, through the upstream client contract) -> onResponse filters (the response held
 * while they wait) or onUpstreamError filters -> answer -> one access-log record.
 *
 * The engines are transport: the HTTP/1.1 connection and the HTTP/2 stream each implement Downstream
 * (downstream.ts) and hand the flow the request and its body; the HTTP/1.1 connection and the HTTP/2
 * stream of an upstream each implement UpstreamAttempt (src/upstream/contract.ts). The flow decides what
 * is forwarded (the forwarding policy, src/http/forwarding.ts), never how it is framed.
 *
 * One ProxyFlow per exchange. It is its attempts' UpstreamHandler (callbacks, no closure per request) and
 * watches the coarse deadline sweep only while it waits (for a filter's I/O or for a connection).
 */

import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { RetryCondition } from '../config/schema.ts';
import { ERROR_CODES, type ErrorCode, errorBody, upstreamFailure, type ZpError } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { FieldSource } from '../http/fields.ts';
import { ForwardedResponse, forwardPath } from '../http/forwarding.ts';
import {
  AUTH_REFUSED,
  CACHE_HIT,
  CACHE_MISS,
  CACHE_STALE,
  CORS_REFUSED,
  RATE_LIMITED,
  type RouteMetrics,
} from '../observe/metrics.ts';
import type { LocalResponse } from '../pipeline/contract.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { FilterExchange, isPending } from '../pipeline/filter-exchange.ts';
import { renderLocal } from '../pipeline/local-response.ts';
import type { Runtime } from '../runtime/compile.ts';
import {
  CircuitBreaker,
  LIMIT_PENDING,
  LIMIT_REQUESTS,
  LIMIT_TARGET_PENDING,
  LIMIT_TARGET_REQUESTS,
} from '../upstream/circuit-breaker.ts';
import {
  BODY_CHUNKED,
  BODY_UNTIL_END,
  ProxyRequest,
  REQUEST_BODY_CHUNKED,
  REQUEST_BODY_NONE,
  REQUEST_BODY_STREAM,
  type UpstreamAttempt,
  type UpstreamHandler,
  type UpstreamResponseHead,
} from '../upstream/contract.ts';
import type { UpstreamTarget } from '../upstream/group.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { Downstream } from './downstream.ts';
import { HeldResponse } from './held-response.ts';

/** What the flow needs of the process it runs in (the listener's ConnectionContext is one). */
export interface FlowContext {
  readonly runtime: Runtime;
  readonly shuttingDown: boolean;
  /** The WebSocket tunnels' places; null when WebSocket is not in `protocols`. */
  readonly tunnels?: { reserve(max: number): boolean; release(): void } | null;
}

/** Methods whose requests may be sent again when the upstream certainly did not process them. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Statuses that mean the request itself was malformed: the answer closes an HTTP/1.1 connection. */
function closesConnection(code: ErrorCode): boolean {
  const s = ERROR_CODES[code].status;
  return s === 400 || s === 408 || s === 413 || s === 414 || s === 417 || s === 431 || s === 501 || s === 505;
}

/** zproxy's JSON error answer as fields and body (`extra`: fields to add, names and values alternately). */
function errorAnswer(code: ErrorCode, message: string | undefined, extra: readonly string[]): LocalAnswer {
  const body = Buffer.from(errorBody(code, message), 'utf8');
  // zproxy's own answers name their fields as HTTP/1.1 usually spells them (an HTTP/2 downstream lowercases).
  const fields = [
    ...extra,
    'Content-Type',
    'application/json',
    'Content-Length',
    String(body.length),
    'Cache-Control',
    'no-store',
  ];
  return { status: ERROR_CODES[code].status, fields, body };
}

interface LocalAnswer {
  readonly status: number;
  readonly fields: readonly string[];
  readonly body: Buffer;
}

const NO_FIELDS: readonly string[] = [];

function authorityOf(target: UpstreamTarget): string {
  return target.authority;
}

/**
 * What the filters decided, for the metrics: the filter that answered (auth 401/403, rate_limit 429, cors
 * 403) and what the cache said in its Cache-Status (a hit, a stale answer, or a forward to the upstream).
 */
function countFilterOutcome(metrics: RouteMetrics, fx: FilterExchange, status: number): void {
  const by = fx.answeredBy;
  if (by !== null) {
    const type = fx.chain.typeOf(by);
    if (type === 'auth' && (status === 401 || status === 403)) metrics.filterOutcome(AUTH_REFUSED);
    else if (type === 'rate_limit' && status === 429) metrics.filterOutcome(RATE_LIMITED);
    else if (type === 'cors' && status === 403) metrics.filterOutcome(CORS_REFUSED);
  }
  const edits = fx.responseEditsOrNull;
  if (edits === null) return;
  const added = edits.added;
  for (let i = 0; i < added.length; i += 2) {
    if (added[i] !== 'cache-status') continue;
    const value = added[i + 1]!;
    // `zproxy; hit`, `zproxy; hit; ...; detail=stale-while-revalidate`, `zproxy; fwd=stale; ...;
    // detail=stale-if-error`, `zproxy; fwd=uri-miss` ...; a request the cache does not serve (fwd=method,
    // fwd=request) is none of them.
    if (value.includes('detail=stale-')) metrics.filterOutcome(CACHE_STALE);
    else if (value.includes('; hit')) metrics.filterOutcome(CACHE_HIT);
    else if (!value.includes('fwd=method') && !value.includes('fwd=request'))
      metrics.filterOutcome(CACHE_MISS);
    return;
  }
}

export class ProxyFlow implements UpstreamHandler, Timed {
  private readonly ctx: FlowContext;
  private runtime: Runtime;
  readonly downstream: Downstream;
  exchange: Exchange;
  /** The request as it goes upstream (filled by the flow; a downstream may hand one in to reuse it). */
  readonly request: ProxyRequest;
  /** The forwarding decisions for the response (reused like `request`). */
  private readonly forwardedResponse: ForwardedResponse;

  // ---------------------------------------------------------------- set by the downstream before start()
  /** The client's Host line when it may be kept as it came (HTTP/1.1), else null. */
  hostField: string | null = null;
  /** The request body as the client sends it: REQUEST_BODY_NONE, _LENGTH, _CHUNKED or _STREAM. */
  requestBody = REQUEST_BODY_NONE;
  /** The Content-Length the client announced, or -1. */
  contentLength = -1;
  /** The request is a WebSocket handshake (an HTTP/1.1 Upgrade, or an RFC 8441 extended CONNECT). */
  websocket = false;
  /** The client's request line may be copied as it came when the path is forwarded unchanged. */
  rawTarget = false;
  /** The client's fields. */
  fieldsSource: FieldSource | null = null;
  /** The request body may end with trailer fields. */
  requestTrailers = false;

  private target: UpstreamTarget | null = null;
  private attempt: UpstreamAttempt | null = null;
  /** Waiting for the target's pool to hand over a connection or a stream. */
  private waiting = false;
  /** A filter phase waits for I/O. */
  private filtering = false;
  /** The client's whole request body has been received (or it has none). */
  private requestDone = true;
  /** The upstream's response, held while a response filter waits. */
  private held: HeldResponse | null = null;
  /** A place among the WebSocket tunnels is reserved for this handshake. */
  private tunnelReserved = false;
  /** The targets tried so far, once there is a retry (the last one is `target`); null until then. */
  private tried: UpstreamTarget[] | null = null;
  /** The exchange is counted in its group's requests in flight (and retries, when `retrying`). */
  private counted = false;
  private retrying = false;
  /** The current attempt was given the request head (its bytes may have reached the upstream). */
  private sent = false;
  /** The current attempt's per-try timeout is being watched. */
  private tryTimer = false;
  /** How the body goes to the current attempt: REQUEST_BODY_* (decided when the first attempt is ready). */
  private bodyAs = REQUEST_BODY_NONE;
  /** A byte of the request body was handed to an attempt. */
  private bodyStarted = false;
  /**
   * The request body so far, kept (by reference) for a retry while it fits `retry.buffer_bytes`; null when
   * it does not (or retries are off): a request whose body started then cannot be sent again.
   */
  private bodyKept: Buffer[] | null = null;
  private bodyKeptBytes = 0;
  /** The body is being read whole (into bodyKept) before an attempt starts (`request_buffering`). */
  private buffering = false;
  private requestTrailerFields: FieldSource | null = null;
  /** performance.now() when the current attempt was sent (metrics on only: the upstream's response time). */
  private sentAt = 0;
  private finished = false;
  deadline = 0;
  private watching = false;
  /**
   * Something may still call this flow after its exchange ended (a pool's queue, a filter's promise, a
   * tunnel): it is not reused for another exchange (reuse()).
   */
  private pinned = false;
  /** The target whose `active` count includes this exchange's attempt in flight. */
  private activeTarget: UpstreamTarget | null = null;
  /** The target whose `pending` count (and its route's) includes this exchange, queued in its pool. */
  private queuedAt: UpstreamTarget | null = null;

  /**
   * `request` and `forwardedResponse`, when given, are reset and reused: an HTTP/1.1 connection, which
   * runs one exchange at a time, hands its own in so that an exchange allocates less.
   */
  constructor(
    ctx: FlowContext,
    downstream: Downstream,
    exchange: Exchange,
    request: ProxyRequest | null = null,
    forwardedResponse: ForwardedResponse | null = null,
  ) {
    this.ctx = ctx;
    this.runtime = ctx.runtime;
    this.runtime.use.begin();
    this.downstream = downstream;
    this.exchange = exchange;
    if (request === null) this.request = new ProxyRequest();
    else {
      request.reset();
      this.request = request;
    }
    this.forwardedResponse = forwardedResponse ?? new ForwardedResponse();
  }

  /**
   * Takes the next exchange of the same downstream (an HTTP/1.1 connection, one exchange at a time) in
   * this flow, which ended its own without anything left that could still call it; false when it cannot
   * (a fresh flow is needed). Every per-exchange field goes back to its initial value here.
   */
  reuse(exchange: Exchange): boolean {
    if (!this.finished || this.pinned || this.ctx.runtime !== this.runtime) return false;
    this.runtime.use.begin();
    this.exchange = exchange;
    this.request.reset();
    this.hostField = null;
    this.requestBody = REQUEST_BODY_NONE;
    this.contentLength = -1;
    this.websocket = false;
    this.rawTarget = false;
    this.fieldsSource = null;
    this.requestTrailers = false;
    this.target = null;
    this.attempt = null;
    this.waiting = false;
    this.filtering = false;
    this.requestDone = true;
    this.held = null;
    this.tunnelReserved = false;
    this.tried = null;
    this.activeTarget = null;
    this.queuedAt = null;
    this.counted = false;
    this.retrying = false;
    this.sent = false;
    this.tryTimer = false;
    this.bodyAs = REQUEST_BODY_NONE;
    this.bodyStarted = false;
    this.bodyKept = null;
    this.bodyKeptBytes = 0;
    this.buffering = false;
    this.requestTrailerFields = null;
    this.sentAt = 0;
    this.finished = false;
    this.deadline = 0;
    this.watching = false;
    return true;
  }

  /** The target's count of attempts in flight no longer includes this exchange's. */
  private releaseTarget(): void {
    if (this.activeTarget === null) return;
    this.activeTarget.active--;
    this.activeTarget = null;
  }

  /** The exchange is over (answered, aborted or handed to a tunnel). */
  get done(): boolean {
    return this.finished;
  }

  // ---------------------------------------------------------------- route and filters

  /** Routes the request (ex.path, ex.host, ex.method set) and runs its filters, then forwards it. */
  start(): void {
    const rt = this.runtime;
    const ex = this.exchange;
    this.requestDone = this.requestBody === REQUEST_BODY_NONE;
    if (rt.maxBodyBytes > 0 && this.contentLength > rt.maxBodyBytes) {
      this.fail('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    // A WebSocket is routed as the GET it is over HTTP/1.1, so method rules apply the same to both.
    const method = this.websocket ? 'GET' : ex.method;
    const m = rt.router.match(ex.host, method, ex.path);
    if (m.status !== 200) {
      if (m.status === 405) this.fail('ZP_ERR_METHOD_NOT_ALLOWED', undefined, ['Allow', m.allow]);
      else this.fail('ZP_ERR_NOT_FOUND');
      return;
    }
    const route = m.value;
    ex.route = route;
    ex.params = m.params;
    const request = this.request;
    const upstreamPath = forwardPath(route.stripPrefix, ex.path, m.matchedLength);
    request.method = method;
    request.path = `${upstreamPath}${ex.query}`;
    request.rawLine = this.rawTarget && upstreamPath === ex.path;
    const target = route.group.pick(ex, this.fieldsSource);
    this.target = target;
    ex.upstream = target.authority;
    const chain = route.filters;
    if (chain === null) {
      this.forward();
      return;
    }
    const fx = new FilterExchange(chain, ex, this.downstream.filterRequest(this.websocket), request.path);
    ex.filters = fx;
    if (route.filterOnlyMethods?.has(ex.method) === true) fx.methodNotAllowed = route.allow;
    const outcome = fx.runRequest();
    if (isPending(outcome)) {
      this.waitFor();
      outcome.then(
        (local) => {
          if (this.settleWait()) this.afterRequestFilters(fx, local);
        },
        () => {
          if (this.settleWait()) this.afterRequestFilters(fx, undefined);
        },
      );
      return;
    }
    this.afterRequestFilters(fx, outcome);
  }

  private afterRequestFilters(fx: FilterExchange, local: LocalResponse | undefined): void {
    const ex = this.exchange;
    if (local !== undefined) {
      ex.upstream = '';
      this.answerWith(local);
      return;
    }
    const allow = fx.methodNotAllowed;
    if (allow !== null) {
      ex.upstream = '';
      this.fail('ZP_ERR_METHOD_NOT_ALLOWED', undefined, ['Allow', allow]);
      return;
    }
    this.forward();
  }

  // ---------------------------------------------------------------- forward

  /** Decides what is forwarded and asks the target for a connection or a stream. */
  private forward(): void {
    const ex = this.exchange;
    const target = this.target!;
    const request = this.request;
    const fx = ex.filters;
    if (fx !== null) {
      request.edits = fx.upstreamEditsOrNull;
      if (fx.targetOverride !== null) {
        request.path = fx.targetOverride;
        request.rawLine = false;
      }
    }
    request.fields = this.fieldsSource;
    request.headRequest = ex.method === 'HEAD';
    request.trailers = this.requestTrailers;
    // The trace context is decided once per exchange: a retry to another target keeps it.
    const forwarded = request.forwarded;
    this.runtime.forwarding.trace(forwarded, request.fields!);
    if (forwarded.traceparent !== '') ex.traceparent = forwarded.traceparent;
    this.decideForwarding(target);
    if (this.websocket) {
      this.forwardWebSocket(target);
      return;
    }
    const max = ex.route!.bufferBodyBytes;
    if (max > 0 && !this.requestDone && this.contentLength <= max) {
      // request_buffering: the body (up to max bytes; any length when unknown) is read before an
      // upstream connection is taken, in the framing the target will take it in.
      this.buffering = true;
      this.bodyKept = [];
      const decode = this.requestBody === REQUEST_BODY_CHUNKED && !target.client.http1;
      this.bodyAs = decode ? REQUEST_BODY_STREAM : this.requestBody;
      this.downstream.resumeRequest(decode);
      return;
    }
    this.dispatch();
  }

  /** Counts the exchange toward its route's limits and starts its first attempt (or answers 503). */
  private dispatch(): void {
    const target = this.target!;
    const route = this.exchange.route!;
    const budget = route.group.budget;
    const breaker = route.breaker;
    if (budget.inFlight >= breaker.maxRequests) {
      this.overloaded(breaker, LIMIT_REQUESTS, target);
      return;
    }
    budget.inFlight++;
    this.counted = true;
    if (this.requestBody !== REQUEST_BODY_NONE && route.retry.bufferBytes > 0) this.bodyKept ??= [];
    const refused = this.startAttempt(target, false);
    if (refused !== -1) this.overloaded(breaker, refused, target);
  }

  /** A circuit-breaking limit refused the exchange: 503 at once (the filters' onUpstreamError may answer). */
  private overloaded(breaker: CircuitBreaker, which: number, target: UpstreamTarget): void {
    breaker.refuse(which, target);
    this.fail('ZP_ERR_UPSTREAM_OVERLOADED', CircuitBreaker.message(which));
  }

  /** The forwarding decisions for `target` (its authority is the Host without `preserve_host`). */
  private decideForwarding(target: UpstreamTarget): void {
    const request = this.request;
    const ex = this.exchange;
    this.runtime.forwarding.request(
      request.forwarded,
      request.fields!,
      this.downstream.clientAddress,
      this.downstream.scheme,
      ex.host,
      this.hostField,
      ex.httpVersion,
      target.hostHeader,
    );
  }

  /**
   * Asks `target` for a connection or a stream (`fresh`: not an idle one, after a stale one failed).
   * Returns -1, or the circuit-breaking limit (LIMIT_*) that refused the attempt: then nothing was asked
   * and nothing changed.
   */
  private startAttempt(target: UpstreamTarget, fresh: boolean): number {
    const breaker = this.exchange.route!.breaker;
    // A retry to the same target: its count includes this exchange's own attempt, which ends here.
    const own = target === this.activeTarget ? 1 : 0;
    if (target.active - own >= breaker.maxRequestsPerTarget) return LIMIT_TARGET_REQUESTS;
    // Queued behind busy connections (the pool at max_connections_per_target): bounded per target and route.
    const queued = target.client.saturated;
    if (queued) {
      if (target.pending >= breaker.maxPendingPerTarget) return LIMIT_TARGET_PENDING;
      if (breaker.pending >= breaker.maxPending) return LIMIT_PENDING;
    }
    this.exchange.attempts++;
    this.sent = false;
    // The attempt in flight counts toward its target's load (least_request) until the next one or the end.
    this.releaseTarget();
    target.active++;
    this.activeTarget = target;
    const attempt = target.acquire(this, fresh);
    if (attempt !== null) this.onUpstreamReady(attempt);
    else {
      if (queued) {
        target.pending++;
        breaker.pending++;
        this.queuedAt = target;
      }
      this.waitForConnection();
    }
    return -1;
  }

  /** No longer waiting for a connection or stream (it came, failed, or the wait was given up). */
  private stopWaiting(): void {
    this.waiting = false;
    this.unwatch();
    const t = this.queuedAt;
    if (t !== null) {
      this.queuedAt = null;
      t.pending--;
      this.exchange.route!.breaker.pending--;
    }
  }

  /**
   * A WebSocket handshake: checked by the rules of the client's protocol, given a place among the tunnels,
   * and sent to the upstream as an HTTP/1.1 Upgrade on a connection of its own.
   */
  private forwardWebSocket(target: UpstreamTarget): void {
    const tunnels = this.ctx.tunnels;
    if (!tunnels) {
      this.fail('ZP_ERR_WEBSOCKET_DISABLED', 'WebSocket is not enabled (protocols)');
      return;
    }
    const refusal = this.downstream.checkWebSocket();
    if (refusal !== null) {
      this.fail(refusal.code, refusal.message, refusal.fields);
      return;
    }
    if (!target.client.http1 || target.client.upgrade === undefined) {
      this.fail('ZP_ERR_WEBSOCKET_UPSTREAM_UNSUPPORTED');
      return;
    }
    if (this.ctx.shuttingDown) {
      this.fail('ZP_ERR_SHUTTING_DOWN');
      return;
    }
    if (!tunnels.reserve(this.runtime.maxTunnels)) {
      this.fail('ZP_ERR_TUNNEL_LIMIT');
      return;
    }
    this.tunnelReserved = true;
    this.pinned = true;
    const request = this.request;
    // An HTTP/1.1 client's own Upgrade fields go on; an HTTP/2 client has none: zproxy makes the handshake.
    request.websocket = this.hostField !== null ? 'forward' : randomBytes(16).toString('base64');
    request.body = REQUEST_BODY_NONE;
    request.trailers = false;
    // The handshake has no body; what the client sends afterwards belongs to the tunnel.
    this.requestDone = true;
    this.attempt = target.client.upgrade(this);
  }

  private waitForConnection(): void {
    if (this.finished) return;
    this.waiting = true;
    this.pinned = true;
    const settings = this.target!.client.settings;
    this.watch(Date.now() + settings.connectTimeoutMs + 1000);
  }

  onUpstreamReady(attempt: UpstreamAttempt): void {
    if (this.finished || (this.attempt !== null && this.attempt !== attempt)) {
      attempt.cancel();
      return;
    }
    if (this.waiting) this.stopWaiting();
    this.attempt = attempt;
    const request = this.request;
    const ds = this.downstream;
    const first = this.bodyAs === REQUEST_BODY_NONE;
    let decode = false;
    if (first) {
      // An HTTP/1.1 client's chunked body goes on as it came to an HTTP/1.1 upstream; any other body is data.
      const body = this.requestBody;
      decode = body === REQUEST_BODY_CHUNKED && !attempt.http1;
      this.bodyAs = decode ? REQUEST_BODY_STREAM : body;
    }
    if (request.websocket === '') request.body = this.bodyAs;
    // Chunked response bodies pass as they came to an HTTP/1.1 client whose filters do not read them.
    request.decodeResponse =
      !ds.acceptsChunked || !attempt.http1 || (this.exchange.filters?.chain.onResponseBody ?? null) !== null;
    this.sent = true;
    const tm = this.target!.metrics;
    if (tm !== null) {
      tm.attempt();
      this.sentAt = performance.now();
    }
    attempt.send(request);
    if (this.finished || this.attempt !== attempt) return;
    const perTry = this.exchange.route?.retry.perTryTimeoutMs ?? 0;
    if (perTry > 0 && request.websocket === '') {
      this.tryTimer = true;
      this.watch(Date.now() + perTry);
    }
    const kept = this.bodyKept;
    if (!first && kept !== null) {
      // A retry, or a buffered body: the body so far, then the rest as it comes.
      if (kept.length > 0) this.bodyStarted = true;
      for (let i = 0; i < kept.length; i++) attempt.write(kept[i]!);
      if (this.requestDone) attempt.end(this.requestTrailerFields);
    }
    if (!this.requestDone && this.requestBody !== REQUEST_BODY_NONE) ds.resumeRequest(decode);
    if (this.attempt === attempt) attempt.flush();
  }

  // ---------------------------------------------------------------- request body (from the downstream)

  /** Request body bytes (as the client sent them, or decoded: see resumeRequest). */
  onRequestBody(buf: Buffer): void {
    if (this.finished) return;
    const kept = this.bodyKept;
    if (kept !== null) {
      // Chunks the downstream hands over are not reused: kept by reference.
      this.bodyKeptBytes += buf.length;
      const route = this.exchange.route!;
      if (this.buffering) {
        kept.push(buf);
        if (this.bodyKeptBytes > route.bufferBodyBytes) {
          // Longer than request_buffering.max_bytes: what was read goes first, the rest streams.
          this.buffering = false;
          this.downstream.pauseRequest();
          this.dispatch();
        }
        return;
      }
      if (this.bodyKeptBytes > Math.max(route.retry.bufferBytes, route.bufferBodyBytes)) this.bodyKept = null;
      else kept.push(buf);
    }
    const attempt = this.attempt;
    if (attempt === null) return;
    this.bodyStarted = true;
    if (!attempt.write(buf)) this.downstream.pauseRequest();
  }

  /** The request body is complete, with the client's trailers when it sent some. */
  onRequestEnd(trailers: FieldSource | null): void {
    this.requestDone = true;
    this.requestTrailerFields = trailers;
    if (this.buffering) {
      // The whole body is here: now an upstream connection is taken.
      this.buffering = false;
      if (!this.finished) this.dispatch();
      return;
    }
    const attempt = this.attempt;
    if (attempt === null || this.finished) return;
    attempt.end(trailers);
  }

  onUpstreamDrain(): void {
    if (!this.finished && !this.requestDone) this.downstream.resumeRequest(false);
  }

  /**
   * The request cannot go on (a malformed or oversized body, a client too slow to send it): answered when
   * nothing was sent yet, else the response is aborted.
   */
  onRequestError(code: ErrorCode, message?: string): void {
    if (this.finished) return;
    this.dropAttempt();
    if (this.downstream.responseStarted) {
      this.abort(code);
      return;
    }
    this.answerError(code, message, NO_FIELDS);
  }

  /**
   * An answer the transport gives itself without routing (a `redirect_https` listener's 308):
   * `fields` as names and values alternately, Content-Length and Cache-Control added.
   */
  respondFromTransport(status: number, fields: readonly string[], body: string): void {
    if (this.finished) return;
    const bytes = Buffer.from(body, 'utf8');
    this.exchange.status = status;
    this.downstream.respondLocal(
      status,
      [...fields, 'Content-Length', String(bytes.length), 'Cache-Control', 'no-store'],
      bytes,
      false,
    );
    this.finish(null, false);
  }

  /** The client went away (closed, reset, stopped reading): everything stops; logged as 499. */
  onClientGone(): void {
    if (this.finished) return;
    this.dropAttempt();
    const ex = this.exchange;
    if (ex.status === 0) ex.status = 499;
    this.finish('ZP_ERR_CLIENT_ABORTED', true);
  }

  /** The client reads again after a write returned false. */
  onClientDrain(): void {
    if (this.finished || this.held !== null) return;
    this.attempt?.resume();
  }

  // ---------------------------------------------------------------- response (UpstreamHandler)

  onResponseHead(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    buf: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    if (attempt !== this.attempt || this.finished) return;
    this.stopTryTimer();
    const target = this.target!;
    const tm = target.metrics;
    if (tm !== null) tm.responded(performance.now() - this.sentAt);
    if (target.health !== null) this.exchange.route!.group.responded(target, head.status);
    const retry = this.exchange.route?.retry;
    if (retry?.retriesStatus(head.status) && this.exchange.attempts < retry.attempts) {
      // A status the route retries: this answer is dropped if another attempt may be made.
      this.attempt = null;
      if (this.retryAfter('status')) {
        attempt.cancel();
        return;
      }
      this.attempt = attempt;
    }
    if (this.request.websocket !== '' && this.hostField === null && head.status < 300) {
      // To an HTTP/2 client a 2xx answer to the extended CONNECT would mean the tunnel is open.
      this.dropAttempt();
      this.fail('ZP_ERR_UPSTREAM_BAD_RESPONSE', 'The upstream did not switch to websocket');
      return;
    }
    const fx = this.exchange.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(head.status, new HeadFieldReader(head));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          const held = new HeldResponse(attempt, head, framing, buf, bodyStart, bodyEnd);
          this.held = held;
          this.waitFor();
          outcome.then(
            (local) => this.release(held, local),
            () => this.release(held, undefined),
          );
          return;
        }
        // A filter answers instead (a cache entry refreshed by this 304, ...): the upstream's body is not read.
        this.dropAttempt();
        this.answerWith(outcome);
        return;
      }
    }
    this.sendHead(attempt, head, framing, buf, bodyStart, bodyEnd);
  }

  /** Sends the upstream's head (the filters' edits applied) and the body bytes that came with it. */
  private sendHead(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    buf: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    const ex = this.exchange;
    const ds = this.downstream;
    const fx = ex.filters;
    const fr = this.forwardedResponse;
    this.runtime.forwarding.response(fr, head.status, head.httpVersion, ds.hsts, framing === BODY_CHUNKED);
    ex.status = head.status;
    if (fx !== null && bodyEnd > bodyStart) fx.body(buf.subarray(bodyStart, bodyEnd));
    const out = framing === BODY_CHUNKED && this.request.decodeResponse ? BODY_UNTIL_END : framing;
    if (!ds.respond(head, out, fr, fx === null ? null : fx.responseEditsOrNull, buf, bodyStart, bodyEnd))
      attempt.pause();
  }

  /** The response filters are done: send the held response and replay what arrived (or their answer). */
  private release(held: HeldResponse, local: LocalResponse | undefined): void {
    if (this.held !== held || !this.settleWait()) return;
    this.held = null;
    const attempt = this.attempt;
    if (local !== undefined || attempt === null) {
      this.dropAttempt();
      if (local !== undefined) this.answerWith(local);
      else this.fail(held.aborted?.code ?? 'ZP_ERR_UPSTREAM_RESET', held.aborted?.message);
      return;
    }
    const inline = held.inline;
    this.sendHead(attempt, held.head, held.framing, inline, 0, inline.length);
    let more = true;
    for (const chunk of held.chunks) {
      if (this.finished) return;
      more = this.onResponseBody(chunk, 0, chunk.length);
    }
    if (this.finished) return;
    if (held.ended) this.onResponseEnd(attempt, held.trailers);
    else if (held.aborted !== null) this.onResponseAborted(held.aborted);
    else if (more) attempt.resume();
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    const held = this.held;
    if (held !== null) return held.hold(buf, start, end);
    if (this.finished) return true;
    const fx = this.exchange.filters;
    if (fx !== null) fx.body(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
    return this.downstream.write(buf, start, end);
  }

  holdsResponseBytes(): boolean {
    return this.held === null && !this.finished && this.downstream.holdsResponseBytes();
  }

  onResponseEnd(attempt: UpstreamAttempt, trailers: FieldSource | null): void {
    if (attempt !== this.attempt || this.finished) return;
    const held = this.held;
    if (held !== null) {
      held.ended = true;
      held.trailers = trailers;
      return;
    }
    this.attempt = null;
    this.downstream.end(trailers);
    attempt.release();
    this.finish(null, false);
  }

  onResponseAborted(error: ZpError): void {
    if (this.finished) return;
    const held = this.held;
    if (held !== null) {
      // Nothing was sent yet (a response filter is waiting): the answer is an error once it is done.
      held.aborted = error;
      return;
    }
    const attempt = this.attempt;
    this.attempt = null;
    this.abort(error.code, attempt === null ? 0 : attempt.resetCode);
  }

  onUpstreamError(error: ZpError, attempt: UpstreamAttempt | null): void {
    if (this.finished || (attempt !== null && this.attempt !== null && attempt !== this.attempt)) return;
    this.attempt = null;
    this.stopTryTimer();
    const target = this.target;
    if (target !== null) {
      target.metrics?.error(error.code);
      if (target.health !== null && upstreamFailure(error.code) !== -1)
        this.exchange.route!.group.failed(target);
    }
    if (this.waiting) this.stopWaiting();
    if (this.downstream.responseStarted) {
      this.abort(error.code);
      return;
    }
    if (this.retryAfter(this.failureOf(error, attempt))) return;
    this.fail(error.code, error.message);
  }

  /** Which retry condition a failure before the response head is, or null when none applies. */
  private failureOf(error: ZpError, attempt: UpstreamAttempt | null): RetryCondition | null {
    switch (error.code) {
      case 'ZP_ERR_UPSTREAM_CONNECT':
      case 'ZP_ERR_UPSTREAM_TLS':
      case 'ZP_ERR_UPSTREAM_PROTOCOL':
        return this.sent ? null : 'connect-failure';
      case 'ZP_ERR_UPSTREAM_TIMEOUT':
        return this.sent ? 'timeout' : 'connect-failure';
      case 'ZP_ERR_UPSTREAM_RESET':
        // An HTTP/2 upstream that refused the stream (or sent GOAWAY below it) never processed it.
        return error.retryable && attempt !== null && !attempt.http1 ? 'refused-stream' : 'reset';
      default:
        return null;
    }
  }

  /**
   * Tries again when the route's `retry` allows it for `condition` (a failure, or 'status'): attempts
   * left, the method and the body safe to send again, and the retry budget not spent. Another target of
   * the route when it has one; a fresh connection to the same one otherwise. False when not retried.
   */
  private retryAfter(condition: RetryCondition | 'status' | null): boolean {
    const ex = this.exchange;
    const route = ex.route;
    if (condition === null || route === null || this.websocket || !this.counted) return false;
    const policy = route.retry;
    if (ex.attempts >= policy.attempts) return false;
    switch (condition) {
      case 'connect-failure':
        if (!policy.onConnectFailure) return false;
        break;
      case 'refused-stream':
        if (!policy.onRefusedStream) return false;
        break;
      case 'reset':
        if (!policy.onReset) return false;
        break;
      case 'timeout':
        if (!policy.onTimeout) return false;
        break;
    }
    // Sent (or maybe processed): only an idempotent request may go again. Never processed: any.
    const processed = condition === 'reset' || condition === 'timeout' || condition === 'status';
    if (processed && !IDEMPOTENT.has(ex.method)) return false;
    // A body that started going out goes again only from what was kept, and only in the same framing.
    if (this.bodyStarted && this.bodyKept === null) return false;
    const group = route.group;
    const breaker = route.breaker;
    const failed = this.target!;
    const tried = this.tried ?? [failed];
    const target = group.pickOther(tried);
    // The budget bounds the load retries add. Failover to another target is outside it: a request no
    // upstream processed (no connection, or its stream refused) adds no load where it goes next, and the
    // requests of a target now out of rotation (down or ejected) go elsewhere like the new ones — so a
    // target that dies does not turn its share of requests into errors. Again to the same target, or
    // after an upstream that is still in rotation may have processed it, a retry counts.
    const free =
      target !== failed && (!processed || (failed.health !== null && !failed.health.up(Date.now())));
    // A retry that counts: over circuit_breaking.max_retries or the retry budget, it is not sent and the
    // failure (or the upstream's answer) stands.
    const counts = !free && !this.retrying;
    if (counts) {
      const refused = group.budget.refusal(policy, breaker.maxRetries);
      if (refused !== -1) {
        breaker.refuse(refused, failed);
        return false;
      }
    }
    if (this.bodyStarted && this.bodyAs === REQUEST_BODY_CHUNKED && !target.client.http1) return false;
    if (counts) {
      this.retrying = true;
      group.budget.retries++;
    }
    const paused = this.requestBody !== REQUEST_BODY_NONE && !this.requestDone;
    if (paused) this.downstream.pauseRequest();
    this.target = target;
    tried.push(target);
    this.tried = tried;
    ex.upstream = target.authority;
    if (target !== failed) this.decideForwarding(target);
    const refused = this.startAttempt(target, target === failed);
    if (refused !== -1) {
      // The target's limits refuse the retry: not sent either, and nothing of it is left.
      breaker.refuse(refused, target);
      this.target = failed;
      tried.pop();
      ex.upstream = failed.authority;
      if (counts) {
        this.retrying = false;
        group.budget.retries--;
      }
      // The body was flowing to the attempt that answered (or failed): it flows again as it did.
      if (paused && this.bodyAs !== REQUEST_BODY_NONE)
        this.downstream.resumeRequest(
          this.bodyAs === REQUEST_BODY_STREAM && this.requestBody === REQUEST_BODY_CHUNKED,
        );
      return false;
    }
    route.metrics?.retried();
    return true;
  }

  /** The upstream switched to WebSocket: the client is answered and both are joined in a tunnel. */
  onUpstreamSwitched(
    attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    socket: Duplex,
    rest: Buffer | null,
  ): void {
    if (attempt !== this.attempt || this.finished) {
      socket.destroy();
      return;
    }
    this.attempt = null;
    const ex = this.exchange;
    const fr = this.forwardedResponse;
    this.runtime.forwarding.response(fr, 101, head.httpVersion, this.downstream.hsts, false);
    // The exchange's filters are done: the tunnel carries frames they do not see.
    ex.filters?.finish(false);
    // Counted as an exchange answered 101 now; the tunnel's own line is logged when it ends.
    ex.route!.metrics?.record(ex.method, 101, ex.httpVersion, performance.now() - ex.startTime);
    // From here on the tunnel owns both ends, its place among the tunnels and the access log line.
    this.tunnelReserved = false;
    this.finished = true;
    this.unwatch();
    // A tunnel uses nothing of the runtime a reload would let go of (its filters are done).
    this.runtime.use.end();
    this.releaseTarget();
    this.downstream.switchToTunnel(head, fr, socket, rest, ex.route!.websocketIdleTimeoutMs);
    this.downstream.finished();
  }

  // ---------------------------------------------------------------- waits

  onDeadline(): void {
    this.watching = false;
    unwatchDeadline(this);
    if (this.finished) return;
    if (this.tryTimer) {
      // The attempt took longer than retry.per_try_timeout_ms.
      this.tryTimer = false;
      const attempt = this.attempt;
      this.attempt = null;
      attempt?.cancel();
      this.target?.metrics?.error('ZP_ERR_UPSTREAM_TIMEOUT');
      if (this.target !== null && this.target.health !== null) this.exchange.route!.group.failed(this.target);
      if (this.retryAfter('timeout')) return;
      this.fail('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream did not answer within retry.per_try_timeout_ms');
      return;
    }
    if (this.filtering || this.held !== null) {
      this.filtering = false;
      this.held = null;
      this.dropAttempt();
      this.answerError('ZP_ERR_FILTER_TIMEOUT', undefined, NO_FIELDS);
    } else if (this.waiting) {
      this.stopWaiting();
      this.target?.cancel(this);
      this.target?.metrics?.error('ZP_ERR_UPSTREAM_UNAVAILABLE');
      this.fail('ZP_ERR_UPSTREAM_UNAVAILABLE');
    }
  }

  /** A filter phase waits for I/O: for at most connection_timeout_ms (then 504 ZP_ERR_FILTER_TIMEOUT). */
  private waitFor(): void {
    this.filtering = true;
    this.pinned = true;
    this.watch(Date.now() + this.runtime.connectionTimeoutMs);
  }

  /** The filter phase settled: false when the exchange ended meanwhile (or the wait timed out). */
  private settleWait(): boolean {
    if (this.finished || !this.filtering) return false;
    this.filtering = false;
    this.unwatch();
    return true;
  }

  private stopTryTimer(): void {
    if (this.tryTimer) {
      this.tryTimer = false;
      this.unwatch();
    }
  }

  private watch(deadline: number): void {
    this.deadline = deadline;
    if (!this.watching) {
      this.watching = true;
      watchDeadline(this);
    }
  }

  private unwatch(): void {
    this.deadline = 0;
    if (this.watching) {
      this.watching = false;
      unwatchDeadline(this);
    }
  }

  // ---------------------------------------------------------------- answers and the end

  /**
   * Answers with zproxy's error for `code`; an upstream failure first lets filters answer instead (the
   * cache's stale-if-error). `extra`: fields to add (names and values alternately).
   */
  private fail(code: ErrorCode, message?: string, extra: readonly string[] = NO_FIELDS): void {
    if (this.finished) return;
    const fx = this.exchange.filters;
    const info = ERROR_CODES[code];
    if (
      fx !== null &&
      info.side === 'upstream' &&
      !this.downstream.responseStarted &&
      fx.wantsUpstreamError
    ) {
      this.dropAttempt();
      const outcome = fx.runUpstreamError(info.status);
      if (isPending(outcome)) {
        this.waitFor();
        outcome.then(
          (local) => {
            if (this.settleWait()) this.afterUpstreamError(code, message, extra, local);
          },
          () => {
            if (this.settleWait()) this.afterUpstreamError(code, message, extra, undefined);
          },
        );
        return;
      }
      this.afterUpstreamError(code, message, extra, outcome);
      return;
    }
    this.answerError(code, message, extra);
  }

  /** After onUpstreamError: the filters' answer (the upstream's failure stays in the log), or zproxy's. */
  private afterUpstreamError(
    code: ErrorCode,
    message: string | undefined,
    extra: readonly string[],
    local: LocalResponse | undefined,
  ): void {
    if (local === undefined) {
      this.answerError(code, message, extra);
      return;
    }
    this.exchange.errorCode = code;
    this.answerWith(local, closesConnection(code));
  }

  private answerError(code: ErrorCode, message: string | undefined, extra: readonly string[]): void {
    if (this.finished) return;
    this.dropAttempt();
    if (this.downstream.responseStarted) {
      this.abort(code);
      return;
    }
    const answer = errorAnswer(code, message, extra);
    this.exchange.status = answer.status;
    this.downstream.respondLocal(answer.status, answer.fields, answer.body, closesConnection(code));
    this.finish(code, false);
  }

  /** Answers with a filter's LocalResponse (the chain's response edits applied). */
  private answerWith(local: LocalResponse, close = false): void {
    if (this.finished) return;
    this.dropAttempt();
    const ex = this.exchange;
    const r = renderLocal(local, ex.filters?.responseEditsOrNull ?? null, ex.method === 'HEAD');
    ex.status = r.status;
    this.downstream.respondLocal(r.status, r.fields, r.body, close);
    this.finish(null, false);
  }

  /** The response started and cannot be completed. */
  private abort(code: ErrorCode, resetCode = 0): void {
    const ex = this.exchange;
    if (ex.status === 0) ex.status = code === 'ZP_ERR_CLIENT_ABORTED' ? 499 : ERROR_CODES[code].status;
    this.dropAttempt();
    this.downstream.abort(code, resetCode);
    this.finish(code, true);
  }

  /** Lets go of the attempt in progress, or of the place in its pool's queue. */
  private dropAttempt(): void {
    this.stopTryTimer();
    const attempt = this.attempt;
    this.attempt = null;
    if (attempt !== null) attempt.cancel();
    if (this.waiting) {
      this.stopWaiting();
      this.target?.cancel(this);
    }
    this.held = null;
  }

  private finish(code: ErrorCode | null, aborted: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.unwatch();
    this.releaseTarget();
    if (this.counted) {
      const budget = this.exchange.route!.group.budget;
      budget.inFlight--;
      if (this.retrying) budget.retries--;
    }
    const tried = this.tried;
    if (tried !== null && tried.length > 1) this.exchange.tried = tried.map(authorityOf);
    if (this.tunnelReserved) {
      // A WebSocket handshake that did not become a tunnel gives its place back.
      this.tunnelReserved = false;
      this.ctx.tunnels?.release();
    }
    const ex = this.exchange;
    if (code !== null) ex.errorCode = code;
    ex.endTime = performance.now();
    ex.filters?.finish(aborted);
    this.runtime.accessLog?.write(ex);
    const metrics = ex.route === null ? this.runtime.unmatchedMetrics : ex.route.metrics;
    if (metrics !== null) {
      metrics.record(ex.method, ex.status, ex.httpVersion, ex.endTime - ex.startTime);
      if (ex.filters !== null) countFilterOutcome(metrics, ex.filters, ex.status);
    }
    this.runtime.use.end();
    this.downstream.finished();
  }
}
