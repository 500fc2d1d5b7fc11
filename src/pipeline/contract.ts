/**
 * The filter contract (docs/filters.md): what a filter is, what it sees and what it may return. Built-in
 * filters (auth, rate_limit, cors, cache, headers) and user filters (TypeScript modules named in the config)
 * implement the same interfaces; the package exports them for user filters.
 *
 * A filter is created once per route from its config by a factory, and has optional phase methods. A
 * phase method returns nothing to continue, a LocalResponse to answer now (the remaining phases that lead
 * to the upstream are skipped), or a promise of one of these only when it must do I/O: the runner stays
 * synchronous until it meets a promise. A phase no filter of a route implements is `null` in the compiled
 * route, so it costs nothing.
 *
 * The phases, in order (ARCHITECTURE.md, "A request's path"):
 * - onRequest: after routing, before an upstream is picked (auth, rate limit, CORS preflight, cache
 *   lookup, request id). May answer.
 * - onUpstreamRequest: the upstream is picked and the forwarded request is about to be written (header
 *   rules, path rewrites, conditional headers for revalidation). May edit, not answer.
 * - onResponse: the upstream's response head arrived (cache store decision, CORS headers, header rules).
 *   May edit the response sent to the client, or replace the response with a LocalResponse (a 304 from
 *   the upstream turned into the stored entry). Synchronous.
 * - onResponseBody / onResponseEnd: the body as it is sent to the client (the cache stores while
 *   streaming). Observers only: they cannot change or hold the bytes.
 * - onLog: exactly once per exchange, success or failure.
 */
import type { Exchange } from '../exchange.ts';

/** A response a filter answers with instead of (or in place of) the upstream's. */
export interface LocalResponse {
  readonly status: number;
  /** Field names in lowercase; a list for a repeated field. */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  readonly body?: string | Uint8Array;
}

/** A message's fields, read-only, whatever protocol carried them. Names are looked up in lowercase. */
export interface FieldReader {
  /** The field's value, repeated fields joined with ", " (`cookie` with "; "); undefined when absent. */
  get(name: string): string | undefined;
  /** Each value of the field as received (empty when absent). */
  getAll(name: string): readonly string[];
  /** The names of the fields present, in lowercase, each once. */
  names(): Iterable<string>;
}

/** The client's request as filters see it, whatever protocol carried it. */
export interface FilterRequest {
  readonly method: string;
  /** The normalised path used for routing (no query). */
  readonly path: string;
  /** '' or the query string with its leading '?'. */
  readonly query: string;
  /** The authority the client addressed (Host or :authority), '' when absent. */
  readonly host: string;
  readonly scheme: 'http' | 'https';
  /** The client's address (the peer, not X-Forwarded-For). */
  readonly clientAddress: string;
  /** '1.0', '1.1' or '2'. */
  readonly httpVersion: string;
  /** Parameters captured by the route pattern (`:id`, `*`), null when none. */
  readonly params: Readonly<Record<string, string>> | null;
  /** A WebSocket handshake (HTTP/1.1 Upgrade, or an RFC 8441 extended CONNECT). */
  readonly websocket: boolean;
  readonly headers: FieldReader;
}

/** The upstream's response head, read-only. */
export interface FilterResponse {
  readonly status: number;
  readonly headers: FieldReader;
}

/**
 * Changes to a message's fields, applied in order by the engine when it writes the message. Names are
 * case-insensitive; values must be valid field values (no CR, LF or NUL). The fields zproxy manages
 * (Content-Length, Transfer-Encoding, Host, Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Upgrade, HTTP2-Settings) cannot be edited. Anything else throws a TypeError.
 */
export interface FieldEdits {
  /** Replaces every field of that name with one. */
  set(name: string, value: string): void;
  /** Adds a field, keeping those already there. */
  add(name: string, value: string): void;
  /** Removes every field of that name. */
  remove(name: string): void;
}

/** What every phase of one exchange gets. One context per exchange, shared by its filters. */
export interface FilterContext {
  readonly exchange: Exchange;
  readonly request: FilterRequest;
  /** Edits to the request forwarded upstream (onRequest, onUpstreamRequest). */
  readonly upstreamHeaders: FieldEdits;
  /**
   * Replaces the path and query forwarded upstream (a rewrite); `pathAndQuery` starts with '/'. The route's
   * own prefix rules were already applied to the value filters see as the default.
   */
  setUpstreamTarget(pathAndQuery: string): void;
  /** The path and query that will be forwarded upstream. */
  readonly upstreamTarget: string;
  /** Edits to the response sent to the client, proxied or local (any phase before its head is written). */
  readonly responseHeaders: FieldEdits;
  /**
   * Per-exchange state of the route's filters, one slot per filter in chain order (`index` is given to the
   * factory's filter through FilterEnvironment.index).
   */
  readonly state: unknown[];
}

/** What a phase that may answer returns. */
export type PhaseResult = undefined | LocalResponse | Promise<undefined | LocalResponse>;

/** The phase methods a filter may have, in the order an exchange reaches them. */
export const FILTER_PHASES = [
  'onRequest',
  'onUpstreamRequest',
  'onResponse',
  'onUpstreamError',
  'onResponseBody',
  'onResponseEnd',
  'onLog',
] as const;

export type FilterPhase = (typeof FILTER_PHASES)[number];

export interface Filter {
  /**
   * Methods this filter answers itself although the route's `methods` may not list them (a CORS
   * preflight's OPTIONS, the cache's PURGE): the router lets them reach the route's filters, and one that
   * no filter answers gets 405.
   */
  readonly answersMethods?: readonly string[];
  onRequest?(ctx: FilterContext): PhaseResult;
  onUpstreamRequest?(ctx: FilterContext): undefined | Promise<undefined>;
  /**
   * The upstream's response head is in hand, nothing of it has been sent. Like onRequest: nothing to send
   * it (with the edits), a LocalResponse to answer instead, or a promise only when the filter does I/O;
   * meanwhile zproxy reads no more of the upstream's response and sends nothing to the client.
   */
  onResponse?(ctx: FilterContext, response: FilterResponse): PhaseResult;
  /**
   * The upstream could not be reached, or failed or timed out before its response head: zproxy is about
   * to answer `status` (502 or 504) with its own error. Nothing lets that answer go; a LocalResponse
   * answers instead (the cache serves a stale entry under stale-if-error); a promise only for I/O. Runs
   * at most once per exchange, and only while nothing has been sent.
   */
  onUpstreamError?(ctx: FilterContext, status: number): PhaseResult;
  onResponseBody?(ctx: FilterContext, chunk: Uint8Array): void;
  /** The body is complete (`aborted` false) or was cut short (`aborted` true: never store it). */
  onResponseEnd?(ctx: FilterContext, aborted: boolean): void;
  onLog?(ctx: FilterContext): void;
  /**
   * The runtime the filter was built for is done (zproxy stops, or a reload replaced it and its exchanges
   * are over): let go of what this instance holds (timers, connections of its own).
   */
  close?(): void | Promise<void>;
}

/** What a factory gets besides its config. */
export interface FilterEnvironment {
  /** The filter's position in its route's chain (its slot in FilterContext.state). */
  readonly index: number;
  /** The route's pattern, for log lines and keys. */
  readonly route: string;
  /** The top-level `trusted_proxies` (X-Forwarded-For is believed only from these peers); null when none. */
  readonly trustedProxies?: import('node:net').BlockList | null;
  /** The process logger (pino); a filter logs through it, never once per request at info level. */
  readonly logger?: import('pino').Logger;
  /** The directory relative paths in the filter's config are resolved against (the config file's). */
  readonly baseDir?: string;
  /** The top-level `preserve_host`: a filter making requests of its own sends the client's Host when true. */
  readonly preserveHost?: boolean;
  /** The forwarding policy (trusted_proxies, preserve_host): what a request of a filter's own keeps and gains. */
  readonly forwarding?: import('../http/forwarding.ts').ForwardingPolicy;
}

/** Builds a filter from its (validated) config. */
export interface FilterFactory<Config = unknown> {
  /** The `type` named in the config (`cors`, `rate_limit`, ...). */
  readonly type: string;
  create(config: Config, env: FilterEnvironment): Filter | Promise<Filter>;
}
