/**
 * The phase runner: one FilterExchange per exchange of a route that has filters. It is the FilterContext
 * every filter of the chain sees, holds the edits they make, and runs the phases in chain order. A phase
 * loop stays synchronous until a filter returns a promise; only then does it continue in a `then`.
 *
 * The request flow (src/proxy/flow.ts) calls: runRequest() once routed (onRequest, then onUpstreamRequest), runResponse() when the upstream's
 * head arrives, body() per response chunk, and finish() exactly once when the exchange ends (onResponseEnd
 * when a response phase ran, then onLog).
 */

import { errorBody } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { FilterChain } from './chain.ts';
import type {
  FieldReader,
  Filter,
  FilterContext,
  FilterRequest,
  FilterResponse,
  LocalResponse,
} from './contract.ts';
import { FieldEditList } from './field-edits.ts';

export type RequestOutcome = undefined | LocalResponse | Promise<undefined | LocalResponse>;
/** What the response phase gives: the same three outcomes. */
export type ResponseOutcome = RequestOutcome;

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function';
}

/** True when a request or response phase is waiting for a filter's I/O. */
export function isPending(outcome: RequestOutcome): outcome is Promise<undefined | LocalResponse> {
  return outcome !== undefined && isThenable(outcome);
}

const FAILED: LocalResponse = Object.freeze({
  status: 500,
  headers: Object.freeze({ 'content-type': 'application/json', 'cache-control': 'no-store' }),
  body: errorBody('ZP_ERR_FILTER_FAILED'),
});

/** What filters see of the request. */
export class FilterRequestView implements FilterRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly host: string;
  readonly scheme: 'http' | 'https';
  readonly clientAddress: string;
  readonly httpVersion: string;
  readonly params: Readonly<Record<string, string>> | null;
  readonly websocket: boolean;
  readonly headers: FieldReader;

  constructor(ex: Exchange, method: string, scheme: string, websocket: boolean, headers: FieldReader) {
    this.method = method;
    this.path = ex.path;
    this.query = ex.query;
    this.host = ex.host;
    this.scheme = scheme === 'https' ? 'https' : 'http';
    this.clientAddress = ex.clientAddress;
    this.httpVersion = ex.httpVersion;
    this.params = ex.params;
    this.websocket = websocket;
    this.headers = headers;
  }
}

export class FilterExchange implements FilterContext {
  readonly chain: FilterChain;
  readonly exchange: Exchange;
  readonly request: FilterRequest;
  /** FilterContext.state, made when a filter first uses it. */
  private stateSlots: unknown[] | null = null;
  /** The path and query forwarded when no filter replaced it. */
  private readonly defaultTarget: string;
  /** Set by setUpstreamTarget; null when the route's own target is forwarded. */
  targetOverride: string | null = null;
  private upstreamEdits: FieldEditList | null = null;
  private responseEdits: FieldEditList | null = null;
  /**
   * The route matched the path but not the method, and was chosen only because one of its filters may
   * answer that method itself (a CORS preflight, a cache PURGE): the `Allow` value to answer 405 with when
   * no filter does.
   */
  methodNotAllowed: string | null = null;
  /** A response phase ran (the upstream answered): onResponseEnd is owed. */
  private responding = false;
  private ended = false;
  private finished = false;
  private upstreamErrorRan = false;
  /** The filter whose local response answers the exchange (metrics: its outcome), else null. */
  answeredBy: Filter | null = null;

  constructor(chain: FilterChain, exchange: Exchange, request: FilterRequest, defaultTarget: string) {
    this.chain = chain;
    this.exchange = exchange;
    this.request = request;
    this.defaultTarget = defaultTarget;
  }

  get state(): unknown[] {
    this.stateSlots ??= new Array(this.chain.filters.length);
    return this.stateSlots;
  }

  get upstreamHeaders(): FieldEditList {
    this.upstreamEdits ??= new FieldEditList();
    return this.upstreamEdits;
  }

  get responseHeaders(): FieldEditList {
    this.responseEdits ??= new FieldEditList();
    return this.responseEdits;
  }

  /** The edits to the forwarded request, or null when there are none. */
  get upstreamEditsOrNull(): FieldEditList | null {
    const e = this.upstreamEdits;
    return e === null || e.empty ? null : e;
  }

  /** The edits to the response, or null when there are none. */
  get responseEditsOrNull(): FieldEditList | null {
    const e = this.responseEdits;
    return e === null || e.empty ? null : e;
  }

  setUpstreamTarget(pathAndQuery: string): void {
    if (
      typeof pathAndQuery !== 'string' ||
      pathAndQuery.charCodeAt(0) !== 0x2f ||
      /[\s#]/.test(pathAndQuery)
    ) {
      throw new TypeError(`invalid upstream target ${JSON.stringify(pathAndQuery)}`);
    }
    this.targetOverride = pathAndQuery;
  }

  get upstreamTarget(): string {
    return this.targetOverride ?? this.defaultTarget;
  }

  // ------------------------------------------------------------------ request phases

  /** onRequest, then onUpstreamRequest: undefined to forward, a LocalResponse to answer, or a promise. */
  runRequest(): RequestOutcome {
    return this.requestFrom(0);
  }

  private requestFrom(from: number): RequestOutcome {
    const list = this.chain.onRequest;
    if (list !== null) {
      for (let i = from; i < list.length; i++) {
        const filter = list[i]!;
        let result: RequestOutcome;
        try {
          result = filter.onRequest!(this);
        } catch (error) {
          return this.failed(filter, 'onRequest', error);
        }
        if (result === undefined) continue;
        if (isThenable(result)) {
          return result.then(
            // The exchange may have ended meanwhile (the client left): the later filters do not run.
            (value) =>
              value !== undefined
                ? this.answered(filter, value)
                : this.finished
                  ? value
                  : this.requestFrom(i + 1),
            (error: unknown) => this.failed(filter, 'onRequest', error),
          );
        }
        return this.answered(filter, result);
      }
    }
    return this.upstreamFrom(0);
  }

  /** `filter` answers the exchange with `local` (recorded for the metrics' filter outcomes). */
  private answered(filter: Filter, local: LocalResponse): LocalResponse {
    this.answeredBy = filter;
    return local;
  }

  private upstreamFrom(from: number): RequestOutcome {
    const list = this.chain.onUpstreamRequest;
    if (list === null) return undefined;
    for (let i = from; i < list.length; i++) {
      const filter = list[i]!;
      let result: undefined | Promise<undefined>;
      try {
        result = filter.onUpstreamRequest!(this);
      } catch (error) {
        return this.failed(filter, 'onUpstreamRequest', error);
      }
      if (result !== undefined && isThenable(result)) {
        return result.then(
          () => (this.finished ? undefined : this.upstreamFrom(i + 1)),
          (error: unknown) => this.failed(filter, 'onUpstreamRequest', error),
        );
      }
    }
    return undefined;
  }

  // ------------------------------------------------------------------ response phases

  /**
   * The upstream's response head arrived: undefined to send it (with the edits), a replacement, or a
   * promise of either when a filter waits for I/O (the engine then holds the upstream's response: it
   * reads no more of it and sends nothing until the promise settles).
   */
  runResponse(status: number, headers: FieldReader): ResponseOutcome {
    this.responding = true;
    const list = this.chain.onResponse;
    if (list === null) return undefined;
    return this.responseFrom(0, { status, headers });
  }

  private responseFrom(from: number, response: FilterResponse): ResponseOutcome {
    const list = this.chain.onResponse!;
    for (let i = from; i < list.length; i++) {
      const filter = list[i]!;
      let result: ResponseOutcome;
      try {
        result = filter.onResponse!(this, response);
      } catch (error) {
        return this.failed(filter, 'onResponse', error);
      }
      if (result === undefined) continue;
      if (isThenable(result)) {
        return result.then(
          // The client may have left meanwhile: the later filters do not run.
          (value) =>
            value !== undefined
              ? this.answered(filter, value)
              : this.finished
                ? value
                : this.responseFrom(i + 1, response),
          (error: unknown) => this.failed(filter, 'onResponse', error),
        );
      }
      return this.answered(filter, result);
    }
    return undefined;
  }

  /**
   * True when filters of the chain want to hear of an upstream failure (onUpstreamError) and have not
   * yet: the engines then call runUpstreamError before answering zproxy's own 502/504.
   */
  get wantsUpstreamError(): boolean {
    return this.chain.onUpstreamError !== null && !this.upstreamErrorRan && !this.finished;
  }

  /** onUpstreamError (once): undefined to let zproxy's error answer go, a replacement, or a promise. */
  runUpstreamError(status: number): RequestOutcome {
    this.upstreamErrorRan = true;
    return this.upstreamErrorFrom(0, status);
  }

  private upstreamErrorFrom(from: number, status: number): RequestOutcome {
    const list = this.chain.onUpstreamError;
    if (list === null) return undefined;
    for (let i = from; i < list.length; i++) {
      const filter = list[i]!;
      let result: RequestOutcome;
      try {
        result = filter.onUpstreamError!(this, status);
      } catch (error) {
        this.report(filter, 'onUpstreamError', error);
        continue;
      }
      if (result === undefined) continue;
      if (isThenable(result)) {
        return result.then(
          (value) =>
            value !== undefined
              ? this.answered(filter, value)
              : this.finished
                ? value
                : this.upstreamErrorFrom(i + 1, status),
          (error: unknown) => {
            this.report(filter, 'onUpstreamError', error);
            return this.finished ? undefined : this.upstreamErrorFrom(i + 1, status);
          },
        );
      }
      return this.answered(filter, result);
    }
    return undefined;
  }

  /** A chunk of the response body, as it is sent to the client. */
  body(chunk: Uint8Array): void {
    const list = this.chain.onResponseBody;
    if (list === null || this.ended) return;
    for (let i = 0; i < list.length; i++) {
      const filter = list[i]!;
      try {
        filter.onResponseBody!(this, chunk);
      } catch (error) {
        this.report(filter, 'onResponseBody', error);
      }
    }
  }

  /** The exchange ended: onResponseEnd (when the upstream answered), then onLog. Runs once. */
  finish(aborted: boolean): void {
    if (this.finished) return;
    this.finished = true;
    if (this.responding && !this.ended) {
      this.ended = true;
      const list = this.chain.onResponseEnd;
      if (list !== null) {
        for (let i = 0; i < list.length; i++) {
          const filter = list[i]!;
          try {
            filter.onResponseEnd!(this, aborted);
          } catch (error) {
            this.report(filter, 'onResponseEnd', error);
          }
        }
      }
    }
    const log = this.chain.onLog;
    if (log === null) return;
    for (let i = 0; i < log.length; i++) {
      const filter = log[i]!;
      try {
        filter.onLog!(this);
      } catch (error) {
        this.report(filter, 'onLog', error);
      }
    }
  }

  private failed(filter: Filter, phase: string, error: unknown): LocalResponse {
    this.report(filter, phase, error);
    this.exchange.errorCode = 'ZP_ERR_FILTER_FAILED';
    return FAILED;
  }

  private report(filter: Filter, phase: string, error: unknown): void {
    this.chain.logger?.error(
      { filter: this.chain.typeOf(filter), phase, route: this.chain.route, err: error },
      'filter failed',
    );
  }
}
