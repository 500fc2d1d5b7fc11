/**
 * `zproxy explain CONFIG METHOD URL [-H name:value]...`: what zproxy would do with one request, without
 * sending anything. Every decision comes from the product's own code, so the explanation cannot drift
 * from what the server does:
 *
 * - the config is compiled into a runtime by the runtime compiler (buildRuntime: the filter chains as the
 *   server builds them, the router with the methods the filters answer, the upstream groups, the
 *   forwarding policy);
 * - the request head is written out as HTTP/1.1 bytes and parsed by the HTTP/1.1 engine's parser
 *   (parseRequestHead), so a malformed field or a missing Host is refused as the server refuses it and
 *   the fields carry the kinds the forwarding policy reads (Connection-nominated fields included);
 * - the path is normalised by normalizePath and routed by the runtime's Router;
 * - the upstream path comes from forwardPath (strip_prefix), the forwarding decisions from the runtime's
 *   ForwardingPolicy, and the head the upstream receives is rendered by the same serializers the
 *   upstream connections use (buildHead + addRequestLines for HTTP/1.1 targets, http2RequestList for
 *   HTTP/2 targets).
 *
 * What explain does not do: run filters (they may answer the request themselves or edit its fields),
 * connect to an upstream, or follow a WebSocket handshake past its routing. docs/cli.md lists the JSON
 * fields.
 */
import { dirname, resolve } from 'node:path';
import type { BalancingPolicy, CircuitBreakingConfig, Config, ListenerConfig } from '../config/schema.ts';
import { ERROR_CODES, type ErrorCode } from '../errors.ts';
import {
  FIELD_DUPLICATE_CONTENT_LENGTH,
  FIELD_EXPECT,
  FIELD_HOST,
  FIELD_NAMED_BY_CONNECTION,
  FIELD_TRACEPARENT,
  FIELD_TRACESTATE,
  FIELD_X_FORWARDED_FOR,
  FIELD_X_FORWARDED_HOST,
  FIELD_X_FORWARDED_PROTO,
  HOP_BY_HOP_MASK,
  kindBit,
} from '../http/fields.ts';
import {
  addRequestLines,
  CONTENT_LENGTH_BIT,
  ForwardedRequest,
  forwardPath,
  headLines,
  http2RequestList,
  UNTRUSTED_DROP_MASK,
} from '../http/forwarding.ts';
import { traceIdOf } from '../http/trace-context.ts';
import { parseRequestHead, RequestHead } from '../http1/parse-head.ts';
import { buildHead } from '../http1/serialize.ts';
import { chainEntries, type FilterChain } from '../pipeline/chain.ts';
import { FILTER_PHASES } from '../pipeline/contract.ts';
import { normalizePath } from '../router/normalize-path.ts';
import { Router } from '../router/router.ts';
import type { CompiledRoute, Runtime } from '../runtime/compile.ts';
import { isWebSocketUpgrade } from '../websocket/handshake.ts';
import { type ExplainRequest, splitUrl } from './explain-request.ts';

export type { ExplainRequest } from './explain-request.ts';

/** One route as the explanation names it. */
export interface ExplainedRoute {
  readonly index: number;
  readonly path: string;
  readonly host: string | null;
  readonly methods: readonly string[] | null;
}

export interface ExplainedCandidate extends ExplainedRoute {
  readonly host_matches: boolean;
  readonly path_matches: boolean;
  readonly method_allowed: boolean;
}

export interface ExplainedDrop {
  readonly name: string;
  readonly value: string;
  readonly reason: string;
}

/** The JSON form of `zproxy explain --json` (docs/cli.md documents every field). */
export interface Explanation {
  readonly request: {
    readonly method: string;
    readonly url: string;
    readonly scheme: 'http' | 'https';
    readonly port: number;
    /** The Host routed on ('' when none). */
    readonly host: string;
    readonly path: string | null;
    readonly query: string;
    readonly client_address: string;
    readonly client_trusted: boolean;
    /** The HTTP/1.1 head explain parsed (what a client would send). */
    readonly head: string;
  };
  readonly listener: {
    readonly index: number;
    readonly address: string;
    readonly tls: boolean;
    readonly redirect_https: boolean;
    readonly plain_http: string | null;
  } | null;
  readonly outcome: 'forward' | 'answer' | 'redirect';
  /** The status zproxy answers itself (400, 404, 405, 413, 505, 308), or null when it forwards. */
  readonly status: number | null;
  readonly code: ErrorCode | null;
  readonly reason: string;
  /** The Allow field of a 405 (or of the 405 a filter-only method gets when no filter answers it). */
  readonly allow: string | null;
  readonly websocket: boolean;
  readonly route:
    | (ExplainedRoute & {
        readonly strip_prefix: boolean;
        readonly params: Readonly<Record<string, string>> | null;
        /** Methods accepted only so that the route's filters can answer them (CORS OPTIONS, cache PURGE). */
        readonly filter_only_methods: readonly string[];
      })
    | null;
  /** Routes weighed when none matched (404) or the method was not allowed (405). */
  readonly candidates: readonly ExplainedCandidate[];
  readonly filters: readonly { readonly type: string; readonly where: string; readonly phases: string[] }[];
  readonly upstream: {
    /** `single` (one primary target) or the route's `load_balancing.policy`. */
    readonly selection: 'single' | BalancingPolicy;
    readonly targets: readonly {
      readonly url: string;
      readonly weight: number;
      readonly backup: boolean;
      readonly host_header: string;
    }[];
    /** The target a freshly started worker sends this route's first request to. */
    readonly first: string;
    readonly retry: { readonly attempts: number; readonly on: readonly string[] };
    /** Active health checks of the targets, null when none. */
    readonly health_check: {
      readonly method: string;
      readonly path: string;
      readonly interval_ms: number;
    } | null;
    /** Failed exchanges in a row that eject a target, null when outlier detection is off. */
    readonly outlier_detection: { readonly consecutive_failures: number } | null;
    /** The route's circuit-breaking limits (per worker; null: no limit). */
    readonly circuit_breaking: CircuitBreakingConfig;
    /** Request bodies up to this size are read whole before an upstream is taken (0: streamed). */
    readonly request_buffering_max_bytes: number;
  } | null;
  readonly upstream_request: {
    /** The target it is rendered for (`upstream.first`). */
    readonly target: string;
    readonly protocol: 'http/1.1' | 'h2';
    readonly method: string;
    readonly path: string;
    /** The fields in the order the upstream receives them ([name, value]; HTTP/2 pseudo-fields first). */
    readonly fields: readonly (readonly [string, string])[];
    /** The HTTP/1.1 head as bytes (latin1), or null for an HTTP/2 target. */
    readonly head: string | null;
    readonly dropped: readonly ExplainedDrop[];
  } | null;
  readonly notes: readonly string[];
}

/** The listener the URL's port reaches (the one bound to its host name when several share the port). */
function findListener(config: Config, hostname: string, port: number): number {
  let found = -1;
  config.listeners.forEach((l, i) => {
    if (l.port !== port) return;
    if (found === -1 || l.host === hostname) found = i;
  });
  return found;
}

function describeListener(l: ListenerConfig, index: number): NonNullable<Explanation['listener']> {
  return {
    index,
    address: `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`,
    tls: l.tls.enabled,
    redirect_https: l.redirect_https,
    plain_http: l.tls.enabled ? l.tls.plain_http : null,
  };
}

function explainedRoute(config: Config, index: number): ExplainedRoute {
  const r = config.routes[index]!;
  return { index, path: r.path, host: r.host, methods: r.methods };
}

/**
 * How each route weighs this request, asked of the router itself: a router of that one route (any method)
 * for the path, one with its host and a catch-all path for the host, and one of the route as compiled for
 * the method.
 */
function candidates(runtime: Runtime, host: string, method: string, path: string): ExplainedCandidate[] {
  const config = runtime.config;
  const out: ExplainedCandidate[] = [];
  config.routes.forEach((r, index) => {
    const one = (h: string | null, p: string, methods: readonly string[] | null) =>
      new Router([{ host: h, path: p, methods, value: index }]).match(host, method, path).status === 200;
    const pathMatches = one(null, r.path, null);
    const hostMatches = one(r.host, '/*', null);
    const extra = runtime.chains[index]?.extraMethods;
    const methods =
      r.methods === null || extra === undefined ? r.methods : [...new Set([...r.methods, ...extra])];
    const methodAllowed = one(null, '/*', methods);
    out.push({
      ...explainedRoute(config, index),
      host_matches: hostMatches,
      path_matches: pathMatches,
      method_allowed: methodAllowed,
    });
  });
  return out;
}

function dropReason(kind: number, trusted: boolean): string {
  const bit = kindBit(kind);
  if (kind === FIELD_NAMED_BY_CONNECTION) return 'named by Connection: hop-by-hop for this message';
  if ((HOP_BY_HOP_MASK & bit) !== 0) return 'hop-by-hop: each connection has its own';
  if (kind === FIELD_HOST) return 'replaced: Host is the target’s (preserve_host is off)';
  if (kind === FIELD_EXPECT) return 'answered by zproxy (100-continue), never forwarded';
  if (kind === FIELD_X_FORWARDED_FOR || kind === FIELD_X_FORWARDED_PROTO || kind === FIELD_X_FORWARDED_HOST)
    return trusted ? 'replaced by zproxy’s (the prior value kept in it)' : 'replaced by zproxy’s';
  if ((UNTRUSTED_DROP_MASK & bit) !== 0) return 'only a peer in trusted_proxies may set it';
  if (kind === FIELD_DUPLICATE_CONTENT_LENGTH) return 'a repeated Content-Length: forwarded once';
  if (kind === FIELD_TRACEPARENT) return 'replaced by zproxy’s (tracing.traceparent: zproxy is a new span)';
  if (kind === FIELD_TRACESTATE) return 'no valid traceparent came with it: zproxy starts a new trace';
  return 'written by zproxy';
}

function pairsOfLines(head: string): [string, string][] {
  const out: [string, string][] = [];
  for (const line of head.split('\r\n').slice(1)) {
    if (line === '') break;
    const colon = line.indexOf(':');
    out.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return out;
}

function phasesOf(chain: FilterChain, i: number): string[] {
  const filter = chain.filters[i]!;
  return FILTER_PHASES.filter((phase) => chain[phase]?.includes(filter) === true);
}

/** The explanation with its keys in the documented order (docs/cli.md), whatever order it was built in. */
function inOrder(e: Explanation): Explanation {
  return {
    request: e.request,
    listener: e.listener,
    outcome: e.outcome,
    status: e.status,
    code: e.code,
    reason: e.reason,
    allow: e.allow,
    websocket: e.websocket,
    route: e.route,
    candidates: e.candidates,
    filters: e.filters,
    upstream: e.upstream,
    upstream_request: e.upstream_request,
    notes: e.notes,
  };
}

/**
 * Explains one request against a compiled runtime (buildRuntime). Pure: sends nothing, and the runtime's
 * balancers are not advanced.
 */
export function explainRequest(runtime: Runtime, req: ExplainRequest): Explanation {
  const config = runtime.config;
  const url = splitUrl(req.url);
  if (url === null) throw new Error(`not an http://, https://, ws:// or wss:// URL: ${req.url}`);
  const notes: string[] = [];
  const trusted = runtime.forwarding.trustedProxies?.check(req.clientAddress) === true;

  // The head a client sends: the request line, Host (the URL's authority unless -H gives one), the fields.
  const hasHost = req.fields.some(([name]) => name.toLowerCase() === 'host');
  let headText = `${req.method} ${url.target} HTTP/1.1\r\n`;
  if (!hasHost) headText += `Host: ${url.authority}\r\n`;
  for (const [name, value] of req.fields) headText += `${name}: ${value}\r\n`;
  headText += '\r\n';

  const listenerIndex = findListener(config, url.hostname, url.port);
  const listener =
    listenerIndex === -1 ? null : describeListener(config.listeners[listenerIndex]!, listenerIndex);
  if (listener === null)
    notes.push(
      `no listener is configured on port ${url.port}: explained as if the request reached one (listeners: ${config.listeners.map((l) => `${l.host}:${l.port}`).join(', ')})`,
    );

  const head = new RequestHead();
  const buf = Buffer.from(headText, 'latin1');
  const parsed = parseRequestHead(buf, 0, buf.length, runtime.headLimits, head);
  const host = parsed > 0 ? (head.host ?? '') : '';
  const rawPath = url.target.split('?', 1)[0]!;
  const query = url.target.slice(rawPath.length);
  const path = parsed > 0 ? normalizePath(rawPath) : null;

  const base = {
    request: {
      method: req.method,
      url: req.url,
      scheme: url.scheme,
      port: url.port,
      host,
      path,
      query,
      client_address: req.clientAddress,
      client_trusted: trusted,
      head: headText,
    },
    listener,
    websocket: false,
    route: null,
    candidates: [] as ExplainedCandidate[],
    filters: [],
    upstream: null,
    upstream_request: null,
    allow: null,
    notes,
  };
  const answer = (status: number, code: ErrorCode | null, reason: string, extra: Partial<Explanation> = {}) =>
    inOrder({
      ...base,
      outcome: status === 308 ? 'redirect' : 'answer',
      status,
      code,
      reason,
      ...extra,
    } as Explanation);
  const fail = (code: ErrorCode, reason: string, extra: Partial<Explanation> = {}) =>
    answer(ERROR_CODES[code].status, code, reason, extra);

  // The listener, before any request is parsed: TLS spoken to a plain port, plain HTTP to a TLS port.
  if (listener !== null) {
    if (url.scheme === 'https' && !listener.tls)
      return fail(
        'ZP_ERR_BAD_REQUEST',
        `listeners[${listener.index}] does not speak TLS: its HTTP/1.1 parser refuses the ClientHello as a malformed request (400 in plain text) and the client's handshake fails`,
      );
    if (url.scheme === 'http' && listener.tls && !listener.redirect_https) {
      if (listener.plain_http === 'reject')
        return fail(
          'ZP_ERR_PLAIN_HTTP_ON_TLS',
          `listeners[${listener.index}] has TLS and tls.plain_http "reject"`,
        );
      if (listener.plain_http === 'redirect')
        return answer(
          308,
          null,
          `listeners[${listener.index}] has TLS and tls.plain_http "redirect": a redirect to https`,
        );
      notes.push(`listeners[${listener.index}] has TLS and serves plain HTTP too (tls.plain_http "serve")`);
    }
  }
  if (parsed <= 0)
    return answer(
      parsed === 0 ? 400 : -parsed,
      null,
      `the request head is refused: ${head.error === '' ? 'incomplete' : head.error}`,
    );
  if (!config.protocols.includes('http1'))
    return fail(
      'ZP_ERR_VERSION_NOT_SUPPORTED',
      'HTTP/1.x is not enabled (protocols); explain speaks HTTP/1.1',
    );
  if (path === null) return fail('ZP_ERR_BAD_REQUEST', 'Invalid request path');
  if (listener?.redirect_https && url.scheme === 'http')
    return answer(
      308,
      null,
      `listeners[${listener.index}] has redirect_https: every plain-HTTP request is redirected to https`,
    );
  if (runtime.maxBodyBytes > 0 && head.contentLength > runtime.maxBodyBytes)
    return fail(
      'ZP_ERR_BODY_TOO_LARGE',
      `Content-Length ${head.contentLength} > limits.max_body_bytes ${runtime.maxBodyBytes}`,
    );

  // Route as the flow does: a WebSocket handshake is routed as the GET it is.
  const websocket = head.connectionUpgrade && isWebSocketUpgrade(head);
  const method = websocket ? 'GET' : head.method;
  const m = runtime.router.match(host, method, path);
  if (m.status === 404) {
    // The routes that match the path (then their host did not); a route that only matches the host is no news.
    const weighed = candidates(runtime, host, method, path).filter((c) => c.path_matches);
    const why =
      weighed.length > 0
        ? `no route matches host "${host}" and path ${path}: routes ${weighed
            .map((c) => `[${c.index}]`)
            .join(', ')} match the path but not the host`
        : `no route's path matches ${path}${host === '' ? '' : ` (host "${host}")`}`;
    return fail('ZP_ERR_NOT_FOUND', why, { candidates: weighed, websocket });
  }
  if (m.status === 405) {
    const weighed = candidates(runtime, host, method, path).filter((c) => c.host_matches && c.path_matches);
    return fail(
      'ZP_ERR_METHOD_NOT_ALLOWED',
      `the routes for host "${host}" and path ${path} do not allow ${method}`,
      {
        allow: m.allow,
        candidates: weighed,
        websocket,
      },
    );
  }

  const route: CompiledRoute = m.value;
  const routeConfig = config.routes[route.index]!;
  const chain = route.filters;
  const entries = chainEntries(config, route.index);
  const filters = entries.map((entry, i) => ({
    type: entry.middleware.type,
    where: entry.where,
    phases: chain === null ? [] : phasesOf(chain, i),
  }));
  const filterOnly = route.filterOnlyMethods === null ? [] : [...route.filterOnlyMethods];
  const explainedRouteValue = {
    ...explainedRoute(config, route.index),
    strip_prefix: route.stripPrefix,
    params: m.params,
    filter_only_methods: filterOnly,
  };
  const targets = route.group.targets;
  const primary = targets.filter((t) => !t.backup);
  const firstIndex = targets.indexOf(primary[0]!);
  const first = targets[firstIndex]!;
  const upstream = {
    selection: primary.length === 1 ? ('single' as const) : routeConfig.load_balancing.policy,
    targets: targets.map((t, i) => ({
      url: routeConfig.upstream[i]!.url,
      weight: t.weight,
      backup: t.backup,
      host_header: t.hostHeader,
    })),
    first: routeConfig.upstream[firstIndex]!.url,
    retry: { attempts: routeConfig.retry.attempts, on: routeConfig.retry.on },
    health_check:
      routeConfig.health_check === null
        ? null
        : {
            method: routeConfig.health_check.method,
            path: routeConfig.health_check.path,
            interval_ms: routeConfig.health_check.interval_ms,
          },
    outlier_detection:
      routeConfig.outlier_detection === null
        ? null
        : { consecutive_failures: routeConfig.outlier_detection.consecutive_failures },
    circuit_breaking: routeConfig.circuit_breaking,
    request_buffering_max_bytes: routeConfig.request_buffering.max_bytes,
  };

  // The forwarding decisions and the head, for the first target.
  const upstreamPath = `${forwardPath(route.stripPrefix, path, m.matchedLength)}${query}`;
  const fwd = new ForwardedRequest();
  runtime.forwarding.trace(fwd, head);
  // The ids zproxy draws for each request are named, not drawn: explain says what any request gets.
  if (fwd.traceparent !== '') {
    const continued = (fwd.traceDropMask & kindBit(FIELD_TRACESTATE)) === 0;
    fwd.traceparent = `00-${continued ? traceIdOf(fwd.traceparent) : '{new trace id}'}-{new span id}-${fwd.traceparent.slice(-2)}`;
  }
  runtime.forwarding.request(
    fwd,
    head,
    req.clientAddress,
    url.scheme,
    host,
    head.host,
    '1.1',
    first.hostHeader,
  );
  const dropped: ExplainedDrop[] = [];
  for (let i = 0; i < head.fieldCount; i++) {
    if ((fwd.dropMask & kindBit(head.fieldKind(i))) !== 0)
      dropped.push({
        name: head.fieldName(i),
        value: head.fieldValue(i),
        reason: dropReason(head.fieldKind(i), trusted),
      });
  }
  const firstUrl = upstream.first;
  const http2 = firstUrl.startsWith('h2');
  let upstreamRequest: Explanation['upstream_request'];
  if (http2) {
    const scheme = firstUrl.startsWith('h2://') ? 'https' : 'http';
    const list = http2RequestList(fwd, head, method, scheme, upstreamPath, null);
    const fields: [string, string][] = [];
    for (let i = 0; i < list.length; i += 2) fields.push([list[i]!, list[i + 1]!]);
    upstreamRequest = {
      target: firstUrl,
      protocol: 'h2',
      method,
      path: upstreamPath,
      fields,
      head: null,
      dropped,
    };
  } else {
    // As the HTTP/1.1 upstream connection writes it (src/http1/upstream-connection.ts, send): the request
    // line, the client's kept field lines, zproxy's fields, the framing of a body of unknown length.
    let dropMask = fwd.dropMask;
    const lines = headLines.clear();
    addRequestLines(lines, fwd, null);
    if (head.chunked) {
      dropMask |= CONTENT_LENGTH_BIT;
      lines.add('Transfer-Encoding: chunked\r\n');
    }
    const bytes = buildHead(`${method} ${upstreamPath} HTTP/1.1\r\n`, head, dropMask, lines.add('\r\n'));
    const text = bytes.toString('latin1');
    upstreamRequest = {
      target: firstUrl,
      protocol: 'http/1.1',
      method,
      path: upstreamPath,
      fields: pairsOfLines(text),
      head: text,
      dropped,
    };
  }
  if (primary.length > 1)
    notes.push(
      `${upstream.selection}: a worker spreads this route's requests over its ${primary.length} targets (round_robin: in turn by weight, starting with ${upstream.first}; least_request, random, hash: chosen per request); the head is shown for ${upstream.first}; a retry goes to a target not tried yet`,
    );
  if (primary.length < targets.length)
    notes.push(
      'a backup target gets a request as a retry once every other target was tried, and every request while no primary target is up (health checks, outlier detection)',
    );
  if (filters.length > 0)
    notes.push(
      'filters run in the order listed and are not run by explain: one may answer the request itself (auth 401, rate_limit 429, a CORS preflight, a cache hit) or edit the fields shown',
    );
  if (websocket) {
    notes.push(
      'a WebSocket handshake: routed as GET; the upstream receives its Upgrade fields too and the connection becomes a tunnel (the head shown is without them)',
    );
    if (!config.protocols.includes('websocket'))
      return fail('ZP_ERR_WEBSOCKET_DISABLED', 'WebSocket is not enabled (protocols)', {
        route: explainedRouteValue,
        websocket,
      });
  }
  let reason = `forwarded to ${upstream.first}`;
  let allow: string | null = null;
  if (route.filterOnlyMethods?.has(head.method) === true) {
    allow = route.allow;
    reason = `${head.method} reaches this route only for its filters (${filters.map((f) => f.type).join(', ')}): when none answers it, 405 with Allow: ${allow}`;
  }
  return inOrder({
    ...base,
    outcome: 'forward',
    status: null,
    code: null,
    reason,
    allow,
    websocket,
    route: explainedRouteValue,
    filters,
    upstream,
    upstream_request: upstreamRequest,
  });
}

/** Builds the config's runtime as the server does (filters included), explains, then lets it go. */
export async function explainConfig(
  config: Config,
  configFile: string,
  req: ExplainRequest,
): Promise<Explanation> {
  const { buildRuntime, disposeRuntime } = await import('../runtime/compile.ts');
  const { PoolRegistry } = await import('../runtime/pools.ts');
  const { FilterRegistry } = await import('../pipeline/registry.ts');
  const { BUILT_IN_FILTERS } = await import('../filters/index.ts');
  const filters = new FilterRegistry(BUILT_IN_FILTERS);
  try {
    const runtime = await buildRuntime(config, {
      pools: new PoolRegistry(),
      accessLog: null,
      filters,
      baseDir: dirname(resolve(configFile)),
    });
    try {
      return explainRequest(runtime, req);
    } finally {
      await disposeRuntime(runtime);
    }
  } finally {
    // What filters keep for the whole process (Redis clients) would keep the command from exiting.
    await filters.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Text form

const label = (name: string) => name.padEnd(10);

function routeLine(r: ExplainedRoute): string {
  const methods = r.methods === null ? 'any method' : r.methods.join(', ');
  return `routes[${r.index}] ${r.path} (host ${r.host ?? 'any'}, ${methods})`;
}

/** The explanation for a reader. */
export function formatExplanation(e: Explanation): string {
  const out: string[] = [];
  const add = (name: string, text: string) => out.push(`${label(name)}${text}`);
  const more = (text: string) => out.push(`${label('')}${text}`);
  const r = e.request;
  add(
    'request',
    `${r.method} ${r.url} from ${r.client_address}${r.client_trusted ? ' (in trusted_proxies)' : ''}, HTTP/1.1`,
  );
  add(
    'listener',
    e.listener === null
      ? `none on port ${r.port}`
      : `listeners[${e.listener.index}] ${e.listener.address}${e.listener.tls ? ' (TLS)' : ''}${
          e.listener.redirect_https ? ' (redirect_https)' : ''
        }`,
  );
  add('host', r.host === '' ? '(none)' : r.host);
  add('path', r.path === null ? '(invalid)' : `${r.path}${r.query}`);
  if (e.route !== null) {
    const params =
      e.route.params === null
        ? ''
        : `  params ${Object.entries(e.route.params)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`;
    add('route', `${routeLine(e.route)}${e.route.strip_prefix ? ' strip_prefix' : ''}${params}`);
  }
  if (e.status !== null) {
    add('answer', `${e.status}${e.code === null ? '' : ` ${e.code}`}: ${e.reason}`);
    if (e.allow !== null) more(`Allow: ${e.allow}`);
    for (const c of e.candidates) {
      const facts = [
        c.path_matches ? 'path matches' : 'path does not match',
        c.host_matches ? 'host matches' : 'host does not match',
        c.method_allowed ? 'method allowed' : 'method not allowed',
      ];
      more(`${routeLine(c)}: ${facts.join(', ')}`);
    }
  } else {
    add('answer', e.reason);
  }
  if (e.route !== null) {
    if (e.filters.length === 0) add('filters', '(none)');
    e.filters.forEach((f, i) => {
      const text = `${i + 1}. ${f.type} (${f.where}${f.phases.length > 0 ? `; ${f.phases.join(', ')}` : ''})`;
      if (i === 0) add('filters', text);
      else more(text);
    });
  }
  if (e.upstream !== null) {
    const u = e.upstream;
    add(
      'upstream',
      u.selection === 'single'
        ? `${u.first} (one target)`
        : `${u.selection} over ${u.targets.map((t) => `${t.url}${t.weight === 1 ? '' : ` (weight ${t.weight})`}${t.backup ? ' (backup)' : ''}`).join(', ')}`,
    );
    if (u.retry.attempts > 1) more(`retry: ${u.retry.attempts} attempts on ${u.retry.on.join(', ')}`);
    if (u.targets.length > 1) {
      if (u.health_check !== null)
        more(
          `health checks: ${u.health_check.method} ${u.health_check.path} every ${u.health_check.interval_ms} ms`,
        );
      if (u.outlier_detection !== null)
        more(
          `outlier detection: ${u.outlier_detection.consecutive_failures} failures in a row eject a target`,
        );
    }
    const limits = Object.entries(u.circuit_breaking).filter(([, v]) => v !== null);
    if (limits.length > 0)
      more(`circuit breaking (per worker): ${limits.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    if (u.request_buffering_max_bytes > 0)
      more(`request buffering: bodies up to ${u.request_buffering_max_bytes} bytes are read whole first`);
  }
  const ur = e.upstream_request;
  if (ur !== null) {
    out.push('', `upstream request (to ${ur.target}, ${ur.protocol}):`);
    if (ur.head !== null) for (const line of ur.head.split('\r\n').slice(0, -2)) out.push(`  ${line}`);
    else for (const [name, value] of ur.fields) out.push(`  ${name}: ${value}`);
    if (ur.dropped.length > 0) {
      out.push('', 'not forwarded:');
      for (const d of ur.dropped) out.push(`  ${d.name}: ${d.value}  (${d.reason})`);
    }
  }
  if (e.notes.length > 0) {
    out.push('', 'notes:');
    for (const note of e.notes) out.push(`  - ${note}`);
  }
  return `${out.join('\n')}\n`;
}
