/**
 * The `cache` filter: a shared HTTP cache per RFC 9111, with http-cache-semantics deciding freshness,
 * storability, Vary matching and revalidation (docs/filters.md, "cache").
 *
 * - onRequest: PURGE (when configured); lookup. A fresh entry answers now (Cache-Status hit, Age). A stale
 *   one with validators turns the request into a conditional one; stale-while-revalidate serves the stale
 *   entry while another request of the same key revalidates. A miss joins a running miss of the same key
 *   (coalescing: in this worker, and with worker threads in any worker of the instance, claims-shared.ts)
 *   and is answered from its entry when it is stored, or goes upstream after `coalesce_timeout_ms`.
 * - onUpstreamError: an upstream that cannot be reached (zproxy's own 502/504) is answered with the stale
 *   entry being revalidated when its stale-if-error allows.
 * - onResponse: a 304 to our revalidation refreshes the entry and answers with it (or with a 304 when the
 *   client's own conditional matches); a 5xx with stale-if-error serves the stale entry; a storable
 *   response starts recording.
 * - onResponseBody / onResponseEnd: the body is copied while it streams to the client and stored when it
 *   is complete (never when aborted, never past max_entry_bytes).
 * - onLog: the leader of a coalesced miss wakes the requests waiting for it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import CachePolicy from 'http-cache-semantics';
import type { Config } from '../../config/schema.ts';
import { FIELD_CONTENT_LENGTH, FieldList, isHopByHop, kindOfName } from '../../http/fields.ts';
import { ForwardingPolicy } from '../../http/forwarding.ts';
import type {
  FieldReader,
  Filter,
  FilterContext,
  FilterEnvironment,
  FilterFactory,
  FilterRequest,
  FilterResponse,
  LocalResponse,
  PhaseResult,
} from '../../pipeline/contract.ts';
import { FieldEditList } from '../../pipeline/field-edits.ts';
import { ObjectFieldReader } from '../../pipeline/field-readers.ts';
import type { FilterModule } from '../../pipeline/registry.ts';
import { subrequest } from '../../upstream/subrequest.ts';
import { instanceShared } from '../../util/instance.ts';
import { CLAIMED, HELD, type SharedClaims } from './claims-shared.ts';
import { closeRedisClients, RedisCacheStore, retainRedisClients } from './redis-store.ts';
import { type CacheEntry, type CacheStore, MemoryCacheStore } from './store.ts';
import { SharedCacheStore } from './store-shared.ts';

export interface CacheConfig {
  readonly ttl_seconds: number;
  readonly max_entry_bytes?: number;
  readonly store?: 'memory' | 'redis';
  readonly max_bytes?: number;
  readonly redis_url?: string;
  readonly key_prefix?: string;
  readonly methods?: readonly ('GET' | 'HEAD')[];
  readonly shared?: boolean;
  readonly coalesce_timeout_ms?: number;
  readonly purge?: { readonly token: string; readonly header?: string };
}

export const CACHE_DEFAULTS = {
  max_entry_bytes: 1048576,
  max_bytes: 67108864,
  key_prefix: 'zproxy:cache:',
  coalesce_timeout_ms: 5000,
  purge_header: 'x-cache-purge-token',
} as const;

/** The name in Cache-Status (RFC 9211). */
const CACHE_NAME = 'zproxy';

/**
 * A running miss (or background revalidation) of one key that the requests of this worker wait for: one
 * this worker leads (holding the key's claim in the instance's table when it has one), or one that another
 * worker thread leads (its claim watched once for all the waiters here).
 */
class Inflight {
  readonly waiters: (() => void)[] = [];
  /** The claim this worker's leader holds in the instance's table (slot -1: none). */
  readonly slot: number;
  readonly generation: number;

  constructor(slot: number, generation: number) {
    this.slot = slot;
    this.generation = generation;
  }
}

/** A store and the misses running against it, kept across config reloads (keyed by identity). */
export interface StoreHandle {
  readonly store: CacheStore;
  readonly inflight: Map<string, Inflight>;
  /** The instance's running misses, with worker threads (the shared memory store); else null. */
  readonly claims: SharedClaims | null;
}

const stores = new Map<string, StoreHandle>();

/** The identity of a memory store: its size (caches of the same size share one store). */
function memoryIdentity(maxBytes: number): string {
  return `memory:${maxBytes}`;
}

/**
 * The memory stores a config's cache filters use, by identity, with their size: what an instance of
 * worker threads makes in shared memory before its workers start (src/server/thread-supervisor.ts).
 */
export function memoryCacheSizes(config: Config): Map<string, number> {
  const sizes = new Map<string, number>();
  for (const list of [config.middlewares, ...config.routes.map((r) => r.middlewares)]) {
    for (const m of list) {
      const cache = m.config as Partial<CacheConfig>;
      if (m.type !== 'cache' || cache.store === 'redis') continue;
      const maxBytes = cache.max_bytes ?? CACHE_DEFAULTS.max_bytes;
      sizes.set(memoryIdentity(maxBytes), maxBytes);
    }
  }
  return sizes;
}

/** The identity of the store a cache config uses. */
function storeIdentity(config: CacheConfig): string {
  return config.store === 'redis'
    ? `redis:${config.redis_url}\n${config.key_prefix ?? CACHE_DEFAULTS.key_prefix}`
    : memoryIdentity(config.max_bytes ?? CACHE_DEFAULTS.max_bytes);
}

/**
 * Keeps the stores the `configs` use and lets go of the others, which a reload removed (a memory store
 * of this process frees its entries; a Redis store's client closes).
 */
function retainStores(configs: readonly CacheConfig[]): void {
  const used = new Set(configs.map(storeIdentity));
  for (const identity of stores.keys()) if (!used.has(identity)) stores.delete(identity);
  retainRedisClients(
    new Set(configs.flatMap((c) => (c.store === 'redis' && c.redis_url ? [c.redis_url] : []))),
  );
}

/**
 * The store for a config, created once per identity (`memory:<max_bytes>`, `redis:<url>\n<prefix>`). A
 * memory store is the instance's shared one in a worker thread (store-shared.ts), else this process's.
 */
export function cacheStoreFor(config: CacheConfig): StoreHandle {
  const redis = config.store === 'redis';
  const maxBytes = config.max_bytes ?? CACHE_DEFAULTS.max_bytes;
  const identity = storeIdentity(config);
  let handle = stores.get(identity);
  if (handle === undefined) {
    if (redis && config.redis_url === undefined) throw new Error('cache: store "redis" needs redis_url');
    let store: CacheStore;
    if (redis) {
      store = new RedisCacheStore(config.redis_url as string, config.key_prefix ?? CACHE_DEFAULTS.key_prefix);
    } else {
      const shared = instanceShared();
      const buffer = shared?.caches[identity];
      store =
        buffer === undefined
          ? new MemoryCacheStore(maxBytes)
          : new SharedCacheStore(buffer, maxBytes, shared!.seed);
    }
    handle = { store, inflight: new Map(), claims: store instanceof SharedCacheStore ? store.claims : null };
    stores.set(identity, handle);
  }
  return handle;
}

/** Drops every store (tests). */
export function clearCacheStores(): void {
  stores.clear();
}

/**
 * Response fields never stored: the hop-by-hop ones (RFC 9111 §3.1: the one field table of
 * src/http/fields.ts), the framing (each answer frames its own body) and the cache's own Cache-Status.
 */
function notStored(name: string): boolean {
  const kind = kindOfName(name);
  return isHopByHop(kind) || kind === FIELD_CONTENT_LENGTH || name === 'cache-status';
}

/**
 * Response fields read when the engine's FieldReader cannot list its names (the contract has no
 * iterator yet; see `names` below).
 */
const KNOWN_RESPONSE_FIELDS = [
  'cache-control',
  'content-type',
  'content-encoding',
  'content-language',
  'content-location',
  'content-disposition',
  'content-range',
  'etag',
  'last-modified',
  'expires',
  'date',
  'age',
  'vary',
  'link',
  'location',
  'pragma',
  'accept-ranges',
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-expose-headers',
  'x-content-type-options',
  'strict-transport-security',
  'content-security-policy',
  'server',
];

/** Fields of a 304 that do not replace the stored ones (RFC 9111 §3.2). */
const NOT_UPDATED_BY_304 = new Set(['content-length', 'content-encoding', 'content-type', 'content-range']);

type Mode = 'miss' | 'revalidate' | 'bypass';

/** Per-exchange state of a request that went (or will go) upstream. */
class CacheExchange {
  mode: Mode = 'miss';
  urlKey = '';
  variantKey = '';
  /** The key of the running miss this exchange leads ('' when it leads none). */
  leaderKey = '';
  /** The stale entry being revalidated, or the entry kept for stale-if-error. */
  entry: CacheEntry | null = null;
  policyRequest: CachePolicy.Request | null = null;
  /** The upstream's response being recorded. */
  recording = false;
  headers: [string, string][] | null = null;
  policy: CachePolicy | null = null;
  vary = '';
  chunks: Buffer[] | null = null;
  bytes = 0;
  /** The body's length when the upstream announced it (a GET), else -1: stored once that much came. */
  expectedBytes = -1;
  pending: Promise<void> | null = null;
  /** What Cache-Status says about the forward (`uri-miss`, `vary-miss`, `stale`, `request`, `method`). */
  fwd = 'uri-miss';
  status = 0;
  /** The store was looked in again after a claim in the instance's table (once per exchange at most). */
  lookedAgain = false;
}

/** The client's conditionals: a background revalidation sends the entry's validators instead. */
const CONDITIONALS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range'];

/** How long a background revalidation may take before the stale entry is simply left as it is. */
const BACKGROUND_TIMEOUT_MS = 30_000;

/** A copy of what a background revalidation needs of the request (its reader may be reused meanwhile). */
function snapshotRequest(request: FilterRequest): FilterRequest {
  const headers: Record<string, string | string[]> = {};
  for (const name of request.headers.names()) {
    const values = request.headers.getAll(name);
    headers[name] = values.length === 1 ? (values[0] as string) : [...values];
  }
  return {
    method: request.method,
    path: request.path,
    query: request.query,
    host: request.host,
    scheme: request.scheme,
    clientAddress: request.clientAddress,
    httpVersion: request.httpVersion,
    params: request.params,
    websocket: request.websocket,
    headers: new ObjectFieldReader(headers),
  };
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function';
}

/** Every field of a response as [name, value] pairs, names in lowercase. */
function responseFields(headers: FieldReader): [string, string][] {
  const listed = (headers as FieldReader & { names?(): Iterable<string> }).names;
  const names = typeof listed === 'function' ? listed.call(headers) : KNOWN_RESPONSE_FIELDS;
  const out: [string, string][] = [];
  for (const raw of names) {
    const name = raw.toLowerCase();
    if (notStored(name)) continue;
    for (const value of headers.getAll(name)) out.push([name, value]);
  }
  return out;
}

function fieldsObject(fields: readonly (readonly [string, string])[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of fields) out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
  return out;
}

function fieldValue(fields: readonly (readonly [string, string])[], name: string): string | undefined {
  for (const [n, v] of fields) if (n === name) return v;
  return undefined;
}

/** The Vary names of a response: lowercase, sorted, joined with ','; '*' stays '*'. */
function varyNames(value: string | undefined): string {
  if (value === undefined || value.trim() === '') return '';
  const names = value
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter((n) => n !== '');
  if (names.includes('*')) return '*';
  return [...new Set(names)].sort().join(',');
}

function variantKeyOf(urlKey: string, vary: string, request: FieldReader): string {
  if (vary === '') return `${urlKey}\nE`;
  let key = `${urlKey}\nE`;
  for (const name of vary.split(',')) key += `${request.get(name) ?? ''}\n`;
  return key;
}

/** The request as http-cache-semantics reads it: only the fields that matter to it. */
function policyRequest(ctx: { readonly request: FilterRequest }, vary: string): CachePolicy.Request {
  const request = ctx.request;
  const headers: CachePolicy.Headers = { host: request.host };
  const names = ['cache-control', 'pragma', 'authorization', 'if-none-match', 'if-modified-since'];
  for (const name of names) {
    const value = request.headers.get(name);
    if (value !== undefined) headers[name] = value;
  }
  if (vary !== '' && vary !== '*') {
    for (const name of vary.split(',')) {
      const value = request.headers.get(name);
      if (value !== undefined) headers[name] = value;
    }
  }
  return { method: 'GET', url: request.path + request.query, headers };
}

/** Does the stored response allow answering a request carrying Authorization (RFC 9111 §3.5)? */
function allowsAuthorized(entry: CacheEntry): boolean {
  const cc = entry.policy.rescc;
  return 'public' in cc || 's-maxage' in cc || 'must-revalidate' in cc;
}

/** Does the client's own conditional match the entry (RFC 9110 §13.1.1, §13.1.3)? */
function clientConditionalMatches(request: FieldReader, entry: CacheEntry): boolean {
  const inm = request.get('if-none-match');
  if (inm !== undefined) {
    const etag = fieldValue(entry.headers, 'etag');
    if (etag === undefined) return false;
    if (inm.trim() === '*') return true;
    const opaque = etag.replace(/^W\//, '');
    for (const candidate of inm.split(',')) if (candidate.trim().replace(/^W\//, '') === opaque) return true;
    return false;
  }
  const ims = request.get('if-modified-since');
  if (ims !== undefined) {
    const lastModified = fieldValue(entry.headers, 'last-modified');
    if (lastModified === undefined) return false;
    const since = Date.parse(ims);
    const modified = Date.parse(lastModified);
    return Number.isFinite(since) && Number.isFinite(modified) && modified <= since;
  }
  return false;
}

const NOT_MODIFIED_FIELDS = new Set([
  'cache-control',
  'content-location',
  'date',
  'etag',
  'expires',
  'vary',
  'last-modified',
]);

function ageOf(policy: CachePolicy): string {
  return String(Math.max(0, Math.floor(policy.age())));
}

/** The answer built from an entry: the stored response, or a 304 when the client's conditional matches. */
function answerFromEntry(
  ctx: FilterContext,
  entry: CacheEntry,
  policy: CachePolicy,
  cacheStatus: string,
  status304: boolean,
): LocalResponse {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of entry.headers) {
    if (status304 && !NOT_MODIFIED_FIELDS.has(name)) continue;
    if (name === 'age') continue;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (typeof previous === 'string') headers[name] = [previous, value];
    else (previous as string[]).push(value);
  }
  headers.age = ageOf(policy);
  headers['cache-status'] = cacheStatus;
  // Edits made earlier in the exchange (a miss's Cache-Status) apply to local responses too.
  ctx.responseHeaders.set('cache-status', cacheStatus);
  if (status304) return { status: 304, headers };
  if (ctx.request.method === 'HEAD') {
    headers['content-length'] = String(entry.body.byteLength);
    return { status: entry.status, headers };
  }
  return { status: entry.status, headers, body: entry.body };
}

/**
 * The entry's policy, deserialized once per entry object (a memory store hands out the same object on
 * every hit; a Redis entry is a new object each time).
 */
const policies = new WeakMap<CacheEntry, CachePolicy>();

function policyOf(entry: CacheEntry): CachePolicy {
  let policy = policies.get(entry);
  if (policy === undefined) {
    policy = CachePolicy.fromObject(entry.policy);
    policies.set(entry, policy);
  }
  return policy;
}

/**
 * What a plain hit on an entry needs, worked out once per entry object (see fastHit): the stored fields
 * as a LocalResponse's headers, and the entry's freshness on this process's clock.
 */
interface HitTemplate {
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Date.now() until which the entry is fresh. */
  readonly freshUntil: number;
  /** The entry's age (seconds) at `at`. */
  readonly age: number;
  readonly at: number;
}

const templates = new WeakMap<CacheEntry, HitTemplate | null>();

/** Request fields that make a lookup more than a plain hit (validation, client freshness demands). */
const SLOW_PATH_FIELDS = ['cache-control', 'pragma', 'if-none-match', 'if-modified-since'];

/**
 * A GET without Authorization, conditionals or cache directives, on a fresh entry that needs no
 * revalidation: answered without http-cache-semantics (its checks were made when the template was made,
 * and freshness only moves with the clock). Undefined: take the full path.
 */
function fastHit(ctx: FilterContext, entry: CacheEntry): LocalResponse | undefined {
  let template = templates.get(entry);
  if (template === undefined) {
    template = hitTemplate(entry);
    templates.set(entry, template);
  }
  if (template === null) return undefined;
  const now = Date.now();
  if (now >= template.freshUntil) return undefined;
  const headers = ctx.request.headers;
  for (let i = 0; i < SLOW_PATH_FIELDS.length; i++) {
    if (headers.get(SLOW_PATH_FIELDS[i]!) !== undefined) return undefined;
  }
  const status = `${CACHE_NAME}; hit; ttl=${Math.floor((template.freshUntil - now) / 1000)}`;
  const edits = ctx.responseHeaders;
  edits.set('age', String(Math.max(0, Math.floor(template.age + (now - template.at) / 1000))));
  edits.set('cache-status', status);
  return { status: entry.status, headers: template.headers, body: entry.body };
}

function hitTemplate(entry: CacheEntry): HitTemplate | null {
  const cc = entry.policy.rescc;
  if ('no-cache' in cc || 'must-revalidate' in cc || 'proxy-revalidate' in cc) return null;
  const policy = policyOf(entry);
  if (policy.stale()) return null;
  const at = Date.now();
  const age = policy.age();
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of entry.headers) {
    if (name === 'age') continue;
    const previous = headers[name];
    if (previous === undefined) headers[name] = value;
    else if (typeof previous === 'string') headers[name] = [previous, value];
    else (previous as string[]).push(value);
  }
  return { headers: Object.freeze(headers), freshUntil: at + (policy.maxAge() - age) * 1000, age, at };
}

/** The entry's policy without must-revalidate, used while the entry is fresh. */
function freshMustRevalidate(entry: CacheEntry): CachePolicy {
  const rescc = Object.assign({}, entry.policy.rescc);
  delete rescc['must-revalidate'];
  return CachePolicy.fromObject(Object.assign({}, entry.policy, { rescc }));
}

function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export class CacheFilter implements Filter {
  readonly index: number;
  readonly handle: StoreHandle;
  readonly store: CacheStore;
  readonly defaultTtl: number;
  readonly maxEntryBytes: number;
  readonly getEnabled: boolean;
  readonly headEnabled: boolean;
  readonly shared: boolean;
  readonly coalesceTimeoutMs: number;
  readonly purgeHeader: string;
  /** The forwarding policy a background revalidation is forwarded with (trusted_proxies, preserve_host). */
  readonly forwarding: ForwardingPolicy;
  readonly purgeDigest: Buffer | null;
  /** PURGE is answered here (when `purge` is configured) whatever the route's methods. */
  readonly answersMethods: readonly string[];

  constructor(config: CacheConfig, env: FilterEnvironment) {
    this.index = env.index;
    this.handle = cacheStoreFor(config);
    this.store = this.handle.store;
    this.defaultTtl = config.ttl_seconds;
    this.maxEntryBytes = config.max_entry_bytes ?? CACHE_DEFAULTS.max_entry_bytes;
    const methods = config.methods ?? ['GET', 'HEAD'];
    this.getEnabled = methods.includes('GET');
    this.headEnabled = methods.includes('HEAD');
    this.shared = config.shared ?? true;
    this.coalesceTimeoutMs = config.coalesce_timeout_ms ?? CACHE_DEFAULTS.coalesce_timeout_ms;
    this.purgeHeader = (config.purge?.header ?? CACHE_DEFAULTS.purge_header).toLowerCase();
    this.purgeDigest = config.purge === undefined ? null : tokenDigest(config.purge.token);
    this.answersMethods = config.purge === undefined ? [] : ['PURGE'];
    this.forwarding = env.forwarding ?? new ForwardingPolicy(null, env.preserveHost ?? true);
  }

  onRequest(ctx: FilterContext): PhaseResult {
    const method = ctx.request.method;
    if (method === 'PURGE' && this.purgeDigest !== null) return this.purge(ctx);
    // A WebSocket handshake is a GET, but its answer is a tunnel: never looked up or stored.
    if (ctx.request.websocket) return undefined;
    if ((method !== 'GET' || !this.getEnabled) && (method !== 'HEAD' || !this.headEnabled)) {
      ctx.responseHeaders.set('cache-status', `${CACHE_NAME}; fwd=method`);
      return undefined;
    }
    const state = new CacheExchange();
    ctx.state[this.index] = state;
    state.urlKey = ctx.request.host.toLowerCase() + ctx.request.path + ctx.request.query;
    const vary = this.store.getVary(state.urlKey);
    if (isPromise(vary)) return vary.then((v) => this.withVary(ctx, state, v));
    return this.withVary(ctx, state, vary);
  }

  withVary(ctx: FilterContext, state: CacheExchange, vary: string | undefined): PhaseResult {
    if (vary === undefined || vary === '*') {
      state.variantKey = `${state.urlKey}\nE`;
      return this.withEntry(ctx, state, undefined, true);
    }
    state.vary = vary;
    state.variantKey = variantKeyOf(state.urlKey, vary, ctx.request.headers);
    const entry = this.store.get(state.variantKey);
    if (isPromise(entry)) return entry.then((e) => this.withEntry(ctx, state, e, true));
    return this.withEntry(ctx, state, entry, true);
  }

  /** Decides with the entry found (or none); `mayWait` is false after waiting once for a running miss. */
  withEntry(
    ctx: FilterContext,
    state: CacheExchange,
    entry: CacheEntry | undefined,
    mayWait: boolean,
  ): PhaseResult {
    const request = ctx.request;
    const authorized = request.headers.get('authorization') !== undefined;
    if (entry !== undefined && authorized && !allowsAuthorized(entry)) {
      state.mode = 'bypass';
      state.fwd = 'request';
      ctx.responseHeaders.set('cache-status', `${CACHE_NAME}; fwd=request; detail=authorization`);
      return undefined;
    }
    if (entry !== undefined && !authorized && request.method === 'GET') {
      const hit = fastHit(ctx, entry);
      if (hit !== undefined) return hit;
    }
    if (entry !== undefined) {
      let policy = policyOf(entry);
      // must-revalidate binds once the entry is stale (RFC 9111 §5.2.2.2); http-cache-semantics applies it
      // to fresh entries too.
      if ('must-revalidate' in entry.policy.rescc && !policy.stale()) policy = freshMustRevalidate(entry);
      const req = policyRequest(ctx, state.vary);
      const result = policy.evaluateRequest(req);
      if (result.response !== undefined && result.revalidation === undefined) {
        return answerFromEntry(
          ctx,
          entry,
          policy,
          `${CACHE_NAME}; hit; ttl=${Math.floor(policy.maxAge() - policy.age())}`,
          clientConditionalMatches(request.headers, entry),
        );
      }
      let revalidating = result.response !== undefined && this.handle.inflight.has(state.variantKey);
      if (
        result.response !== undefined &&
        !revalidating &&
        request.method === 'GET' &&
        ctx.exchange.route !== null
      ) {
        // stale-while-revalidate (RFC 5861 §3): revalidate in the background, answer with the stale entry
        // now; when another worker thread is already at it, this one waits for it instead.
        if (this.lead(state.variantKey)) this.revalidateInBackground(ctx, state, entry, policy, req);
        else this.followRemote(state.variantKey);
        revalidating = true;
      }
      if (revalidating) {
        // stale-while-revalidate: a request of this key (ours in the background, a client's, or another
        // worker's) revalidates it.
        return answerFromEntry(
          ctx,
          entry,
          policy,
          `${CACHE_NAME}; hit; ttl=${Math.floor(policy.maxAge() - policy.age())}; detail=stale-while-revalidate`,
          clientConditionalMatches(request.headers, entry),
        );
      }
      // Stale (or the client asked for validation): revalidate with the entry's validators.
      state.entry = entry;
      state.mode = 'revalidate';
      const cc = request.headers.get('cache-control');
      state.fwd =
        (cc !== undefined && /no-cache|max-age=0/.test(cc)) ||
        /no-cache/.test(request.headers.get('pragma') ?? '')
          ? 'request'
          : 'stale';
      if (request.method === 'GET') {
        const conditional = policy.revalidationHeaders(req);
        const inm = conditional['if-none-match'];
        const ims = conditional['if-modified-since'];
        if (typeof inm === 'string') ctx.upstreamHeaders.set('if-none-match', inm);
        if (typeof ims === 'string') ctx.upstreamHeaders.set('if-modified-since', ims);
      }
      state.policyRequest = req;
    } else if (state.vary !== '') {
      state.fwd = 'vary-miss';
    }
    const requestCc = request.headers.get('cache-control');
    if (requestCc?.includes('only-if-cached')) {
      // RFC 9111 §5.2.1.7: nothing usable is stored, and the client does not want the upstream asked.
      state.mode = 'bypass';
      const status = `${CACHE_NAME}; fwd=${state.fwd}; detail=only-if-cached`;
      ctx.responseHeaders.set('cache-status', status);
      return { status: 504, headers: { 'cache-status': status } };
    }
    if (request.method !== 'GET') {
      ctx.responseHeaders.set('cache-status', `${CACHE_NAME}; fwd=${state.fwd}`);
      return undefined;
    }
    // Coalescing: one upstream request per key at a time, in this worker and (worker threads) the instance.
    const running = this.handle.inflight.get(state.variantKey);
    if (running !== undefined) {
      if (mayWait && this.coalesceTimeoutMs > 0) return this.waitFor(ctx, state, running);
    } else if (this.lead(state.variantKey)) {
      if (entry === undefined && this.handle.claims !== null && !state.lookedAgain) {
        const found = this.storedSinceLookup(ctx, state);
        if (found !== null) return this.withEntry(ctx, state, found, mayWait);
      }
      state.leaderKey = state.variantKey;
    } else if (mayWait) {
      return this.waitFor(ctx, state, this.followRemote(state.variantKey));
    }
    ctx.responseHeaders.set('cache-status', `${CACHE_NAME}; fwd=${state.fwd}`);
    return undefined;
  }

  /**
   * Makes this worker the leader of `key` (no request of this worker runs it): true, unless another
   * worker thread's claim holds the key (then the claims' slot, generation and deadline say which).
   */
  lead(key: string): boolean {
    const claims = this.handle.claims;
    if (claims === null || this.coalesceTimeoutMs === 0) {
      this.handle.inflight.set(key, new Inflight(-1, 0));
      return true;
    }
    const outcome = claims.claim(key, this.coalesceTimeoutMs);
    if (outcome === HELD) return false;
    // FULL: no room in the instance's table; this worker's requests still wait for this one.
    this.handle.inflight.set(
      key,
      outcome === CLAIMED ? new Inflight(claims.slot, claims.generation) : new Inflight(-1, 0),
    );
    return true;
  }

  /**
   * A pure miss just led (lead()) with worker threads: another worker may have stored the entry and
   * released its claim between this request's lookup and its claim (the claim then found the key free).
   * When the claim is in the instance's table, the shared store (synchronous) is looked in again: if it now
   * holds an entry for this request, or a new Vary recipe for its URL, the claim is released and the answer
   * is the entry found (or undefined: a miss of the right variant, to decide again); null: nothing was
   * stored meanwhile, this request leads. Once per exchange; a hit never comes here.
   */
  storedSinceLookup(ctx: FilterContext, state: CacheExchange): CacheEntry | undefined | null {
    state.lookedAgain = true;
    const key = state.variantKey;
    const running = this.handle.inflight.get(key) as Inflight;
    // FULL (no room in the table): not coalesced across workers anyway.
    if (running.slot === -1) return null;
    const store = this.store as SharedCacheStore;
    const vary = store.getVary(state.urlKey);
    if (vary === undefined || vary === '*') return null;
    const variantKey =
      vary === '' ? `${state.urlKey}\nE` : variantKeyOf(state.urlKey, vary, ctx.request.headers);
    const found = store.get(variantKey);
    if (found === undefined && variantKey === key) return null;
    this.end(key, running);
    state.vary = vary;
    state.variantKey = variantKey;
    return found;
  }

  /**
   * What this worker's requests of `key` wait for while another worker thread leads it (lead() just
   * answered false): one wait on that claim, which ends when the leader releases it or at its deadline.
   */
  followRemote(key: string): Inflight {
    const claims = this.handle.claims as SharedClaims;
    const watch = new Inflight(-1, 0);
    this.handle.inflight.set(key, watch);
    const ended = claims.wait(claims.slot, claims.generation, claims.deadline);
    if (ended === null) queueMicrotask(() => this.end(key, watch));
    else ended.then(() => this.end(key, watch));
    return watch;
  }

  waitFor(ctx: FilterContext, state: CacheExchange, running: Inflight): Promise<undefined | LocalResponse> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.coalesceTimeoutMs);
      running.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    }).then(() => this.lookupAgain(ctx, state));
  }

  lookupAgain(ctx: FilterContext, state: CacheExchange): PhaseResult {
    state.entry = null;
    state.vary = '';
    state.fwd = 'uri-miss';
    state.mode = 'miss';
    const vary = this.store.getVary(state.urlKey);
    const next = (v: string | undefined): PhaseResult => {
      if (v === undefined || v === '*') {
        state.variantKey = `${state.urlKey}\nE`;
        return this.withEntry(ctx, state, undefined, false);
      }
      state.vary = v;
      state.variantKey = variantKeyOf(state.urlKey, v, ctx.request.headers);
      const entry = this.store.get(state.variantKey);
      if (isPromise(entry)) return entry.then((e) => this.withEntry(ctx, state, e, false));
      return this.withEntry(ctx, state, entry, false);
    };
    if (isPromise(vary)) return vary.then(next);
    return next(vary);
  }

  /**
   * Revalidates a stale entry within its stale-while-revalidate window with a request of zproxy's own
   * (src/upstream/subrequest.ts) to the route's upstream: the client's end-to-end fields with the edits the
   * filters before this one made (auth's stripped credentials stay stripped), the entry's validators,
   * X-Forwarded-*. A 304 refreshes the entry, a storable answer replaces it; anything else (an error, a
   * timeout, an answer not storable) leaves it as it is. The key counts as a running miss meanwhile (the
   * caller led it: lead(), which claims it for the instance with worker threads), so the requests of the
   * window are answered stale and only one revalidation runs.
   */
  revalidateInBackground(
    ctx: FilterContext,
    state: CacheExchange,
    entry: CacheEntry,
    policy: CachePolicy,
    req: CachePolicy.Request,
  ): void {
    const key = state.variantKey;
    // The exchange's request may be gone by the time the upstream answers: keep what is needed now.
    const snapshot = snapshotRequest(ctx.request);
    // The request goes upstream as the client's would (the forwarding policy), its conditionals replaced
    // by the entry's validators, with the chain's upstream edits.
    const flat: string[] = [];
    for (const name of snapshot.headers.names()) {
      for (const value of snapshot.headers.getAll(name)) flat.push(name, value);
    }
    const edits = new FieldEditList();
    for (const name of CONDITIONALS) edits.remove(name);
    const chainEdits = ctx.upstreamHeaders as FieldEditList;
    for (const name of chainEdits.dropped) edits.remove(name);
    for (let i = 0; i < chainEdits.added.length; i += 2)
      edits.add(chainEdits.added[i]!, chainEdits.added[i + 1]!);
    const validators = policy.revalidationHeaders(req);
    for (const name of ['if-none-match', 'if-modified-since'] as const) {
      const value = validators[name];
      if (typeof value === 'string') edits.add(name, value);
    }
    // The request's own fields are not at hand here: a `hash` on a header or cookie balances in turn.
    const target = ctx.exchange.route!.group.pick(ctx.exchange, null);
    const urlKey = state.urlKey;
    const storedVary = state.vary;
    subrequest(target, {
      path: ctx.upstreamTarget,
      fields: new FieldList(flat),
      edits,
      clientAddress: snapshot.clientAddress,
      scheme: snapshot.scheme,
      host: snapshot.host,
      httpVersion: snapshot.httpVersion,
      forwarding: this.forwarding,
      timeoutMs: BACKGROUND_TIMEOUT_MS,
      maxBytes: this.maxEntryBytes,
    })
      .then((answer) => this.revalidated({ request: snapshot }, urlKey, storedVary, key, entry, req, answer))
      .catch(() => undefined)
      .finally(() => this.release(key));
  }

  /** Stores what a background revalidation brought: the refreshed entry (304) or a new one. */
  revalidated(
    ctx: { readonly request: FilterRequest },
    urlKey: string,
    storedVary: string,
    variantKey: string,
    entry: CacheEntry,
    req: CachePolicy.Request,
    answer: { status: number; fields: [string, string][]; body: Buffer },
  ): Promise<void> | undefined {
    const fields = answer.fields.filter(([name]) => !notStored(name));
    if (answer.status === 304) {
      const fresh = this.refreshedEntry(entry, req, fields);
      if (fresh === null) return undefined;
      const ttl = this.retentionMs(fresh.policy, fieldsObject(fresh.entry.headers));
      if (ttl <= 0) return undefined;
      const done = this.store.set(urlKey, storedVary, variantKey, fresh.entry, ttl);
      return isPromise(done) ? done : undefined;
    }
    const headers = fieldsObject(fields);
    const vary = varyNames(headers.vary);
    if (vary === '*' || headers['set-cookie'] !== undefined) return undefined;
    const policy = new CachePolicy(
      policyRequest(ctx, vary),
      { status: answer.status, headers: this.withDefaultTtl(headers) },
      { shared: this.shared },
    );
    if (!policy.storable() || answer.body.length > this.maxEntryBytes) return undefined;
    const ttl = this.retentionMs(policy, headers);
    if (ttl <= 0) return undefined;
    const replacement: CacheEntry = {
      status: answer.status,
      headers: fields,
      body: answer.body,
      policy: policy.toObject(),
    };
    const done = this.store.set(
      urlKey,
      vary,
      variantKeyOf(urlKey, vary, ctx.request.headers),
      replacement,
      ttl,
    );
    return isPromise(done) ? done : undefined;
  }

  /**
   * The upstream could not be reached or failed before answering (zproxy would send its own 502/504): a
   * stale entry being revalidated is served instead when its stale-if-error allows (RFC 5861 §4).
   */
  onUpstreamError(ctx: FilterContext, status: number): undefined | LocalResponse {
    const state = ctx.state[this.index] as CacheExchange | undefined;
    const entry = state?.entry ?? null;
    if (state === undefined || entry === null || state.mode !== 'revalidate') return undefined;
    if (!this.staleIfErrorAllows(entry)) return undefined;
    return answerFromEntry(
      ctx,
      entry,
      policyOf(entry),
      `${CACHE_NAME}; fwd=stale; fwd-status=${status}; detail=stale-if-error`,
      clientConditionalMatches(ctx.request.headers, entry),
    );
  }

  onResponse(ctx: FilterContext, response: FilterResponse): undefined | LocalResponse {
    const state = ctx.state[this.index] as CacheExchange | undefined;
    if (state === undefined) return undefined;
    const entry = state.entry;
    if (entry !== null && state.mode === 'revalidate' && state.policyRequest !== null) {
      if (response.status === 304) return this.refreshed(ctx, state, entry, response);
      if (response.status >= 500 && this.staleIfErrorAllows(entry)) {
        const policy = policyOf(entry);
        return answerFromEntry(
          ctx,
          entry,
          policy,
          `${CACHE_NAME}; fwd=stale; fwd-status=${response.status}; detail=stale-if-error`,
          clientConditionalMatches(ctx.request.headers, entry),
        );
      }
    }
    if (ctx.request.method !== 'GET') return undefined;
    const fields = responseFields(response.headers);
    const resHeaders = fieldsObject(fields);
    const vary = varyNames(resHeaders.vary);
    const req = policyRequest(ctx, vary);
    const policyHeaders = this.withDefaultTtl(resHeaders);
    const policy = new CachePolicy(
      req,
      { status: response.status, headers: policyHeaders },
      { shared: this.shared },
    );
    let detail = '';
    const length = response.headers.get('content-length');
    if (vary === '*') detail = 'vary-star';
    else if (response.headers.get('set-cookie') !== undefined) detail = 'set-cookie';
    else if (!policy.storable()) detail = 'not-storable';
    else if (length !== undefined && Number(length) > this.maxEntryBytes) detail = 'too-large';
    else if (this.retentionMs(policy, resHeaders) <= 0) detail = 'expired';
    const fwdStatus = `${CACHE_NAME}; fwd=${state.fwd}; fwd-status=${response.status}`;
    if (detail !== '') {
      ctx.responseHeaders.set('cache-status', `${fwdStatus}; detail=${detail}`);
      return undefined;
    }
    ctx.responseHeaders.set('cache-status', `${fwdStatus}; stored`);
    state.recording = true;
    state.status = response.status;
    state.headers = fields;
    state.policy = policy;
    state.vary = vary;
    state.variantKey =
      vary === '' ? `${state.urlKey}\nE` : variantKeyOf(state.urlKey, vary, ctx.request.headers);
    state.chunks = [];
    state.bytes = 0;
    state.expectedBytes = length !== undefined && ctx.request.method === 'GET' ? Number(length) : -1;
    return undefined;
  }

  /** The upstream confirmed the stale entry (304): refresh it and answer with it. */
  refreshed(
    ctx: FilterContext,
    state: CacheExchange,
    entry: CacheEntry,
    response: FilterResponse,
  ): undefined | LocalResponse {
    const fresh = this.refreshedEntry(
      entry,
      state.policyRequest as CachePolicy.Request,
      responseFields(response.headers),
    );
    if (fresh === null) return undefined;
    const ttl = this.retentionMs(fresh.policy, fieldsObject(fresh.entry.headers));
    if (ttl > 0) {
      const done = this.store.set(state.urlKey, state.vary, state.variantKey, fresh.entry, ttl);
      if (isPromise(done)) state.pending = done;
    }
    return answerFromEntry(
      ctx,
      fresh.entry,
      fresh.policy,
      `${CACHE_NAME}; fwd=${state.fwd}; fwd-status=304`,
      clientConditionalMatches(ctx.request.headers, fresh.entry),
    );
  }

  /**
   * The entry as a 304 (its fields `fields304`) refreshes it (RFC 9111 §4.3.4), or null when the 304 does
   * not match it (the stored response was modified).
   */
  refreshedEntry(
    entry: CacheEntry,
    req: CachePolicy.Request,
    fields304: [string, string][],
  ): { entry: CacheEntry; policy: CachePolicy } | null {
    const stored = policyOf(entry);
    const revalidated = stored.revalidatedPolicy(req, { status: 304, headers: fieldsObject(fields304) });
    if (revalidated.modified) return null;
    const updated = new Set<string>();
    for (const [name] of fields304) if (!NOT_UPDATED_BY_304.has(name)) updated.add(name);
    const headers: [string, string][] = [];
    for (const pair of entry.headers) if (!updated.has(pair[0])) headers.push([pair[0], pair[1]]);
    for (const pair of fields304) if (updated.has(pair[0])) headers.push(pair);
    const policy = new CachePolicy(
      req,
      { status: entry.status, headers: this.withDefaultTtl(fieldsObject(headers)) },
      { shared: this.shared },
    );
    return { entry: { status: entry.status, headers, body: entry.body, policy: policy.toObject() }, policy };
  }

  staleIfErrorAllows(entry: CacheEntry): boolean {
    if ('must-revalidate' in entry.policy.rescc) return false;
    const sie = Number(entry.policy.rescc['stale-if-error'] ?? 0);
    if (!(sie > 0)) return false;
    const policy = policyOf(entry);
    return policy.maxAge() + sie > policy.age();
  }

  /**
   * How long the store keeps an entry: freshness + stale windows (http-cache-semantics' timeToLive), and
   * for a response with a validator ttl_seconds more (at least 60 s) so that it can be revalidated with a
   * 304 instead of fetched again (no-cache responses, stale entries).
   */
  retentionMs(policy: CachePolicy, headers: Record<string, string>): number {
    const ttl = policy.timeToLive();
    if (headers.etag === undefined && headers['last-modified'] === undefined) return ttl;
    return ttl + Math.max(60, this.defaultTtl) * 1000;
  }

  /** Adds `max-age=<ttl_seconds>` for the policy when the upstream gave no explicit freshness. */
  withDefaultTtl(headers: Record<string, string>): Record<string, string> {
    const cc = headers['cache-control'];
    if (this.defaultTtl <= 0 || headers.expires !== undefined) return headers;
    if (cc !== undefined && /(^|[\s,])(max-age|s-maxage)\s*=/i.test(cc)) return headers;
    const copy = Object.assign({}, headers);
    copy['cache-control'] =
      cc === undefined || cc.trim() === ''
        ? `max-age=${this.defaultTtl}`
        : `${cc}, max-age=${this.defaultTtl}`;
    return copy;
  }

  onResponseBody(ctx: FilterContext, chunk: Uint8Array): void {
    const state = ctx.state[this.index] as CacheExchange | undefined;
    if (state === undefined || !state.recording) return;
    state.bytes += chunk.byteLength;
    if (state.bytes > this.maxEntryBytes) {
      state.recording = false;
      state.chunks = null;
      return;
    }
    (state.chunks as Buffer[]).push(Buffer.from(chunk));
    // The whole announced body is here: stored now, before its last bytes go to the client, so that the
    // client's next request finds it whichever worker thread takes it.
    if (state.bytes === state.expectedBytes) this.storeRecorded(state);
  }

  onResponseEnd(ctx: FilterContext, aborted: boolean): void {
    const state = ctx.state[this.index] as CacheExchange | undefined;
    if (state === undefined || !state.recording) return;
    if (aborted) {
      state.recording = false;
      state.chunks = null;
      return;
    }
    this.storeRecorded(state);
  }

  /** Stores the recorded response. */
  storeRecorded(state: CacheExchange): void {
    state.recording = false;
    const chunks = state.chunks as Buffer[];
    state.chunks = null;
    const policy = state.policy as CachePolicy;
    const entry: CacheEntry = {
      status: state.status,
      headers: state.headers as [string, string][],
      body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
      policy: policy.toObject(),
    };
    const ttl = this.retentionMs(policy, fieldsObject(entry.headers));
    const done = this.store.set(state.urlKey, state.vary, state.variantKey, entry, ttl);
    if (isPromise(done)) state.pending = done;
  }

  onLog(ctx: FilterContext): void {
    const state = ctx.state[this.index] as CacheExchange | undefined;
    if (state === undefined || state.leaderKey === '') return;
    const key = state.leaderKey;
    state.leaderKey = '';
    if (state.pending !== null) {
      state.pending.then(
        () => this.release(key),
        () => this.release(key),
      );
    } else {
      this.release(key);
    }
  }

  release(key: string): void {
    const running = this.handle.inflight.get(key);
    if (running !== undefined) this.end(key, running);
  }

  /** Ends a running miss: its claim in the instance's table is released, and its waiters look again. */
  end(key: string, running: Inflight): void {
    if (this.handle.inflight.get(key) === running) this.handle.inflight.delete(key);
    if (running.slot !== -1) this.handle.claims?.release(running.slot, running.generation);
    for (const wake of running.waiters) wake();
  }

  purge(ctx: FilterContext): PhaseResult {
    const token = ctx.request.headers.get(this.purgeHeader);
    if (token === undefined || !timingSafeEqual(tokenDigest(token), this.purgeDigest as Buffer)) {
      return {
        status: 403,
        headers: { 'content-type': 'application/json' },
        body: '{"error":"purge token"}\n',
      };
    }
    const host = ctx.request.host.toLowerCase();
    const path = ctx.request.path;
    const prefix = path.endsWith('*') ? host + path.slice(0, -1) : `${host}${path}${ctx.request.query}\n`;
    const removed = this.store.purge(prefix);
    if (isPromise(removed)) return removed.then(purged, purgeFailed);
    return purged(removed);
  }
}

function purged(count: number): LocalResponse {
  return {
    status: 200,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
    body: `{"purged":${count}}\n`,
  };
}

function purgeFailed(): LocalResponse {
  return { status: 503, headers: { 'content-type': 'application/json' }, body: '{"error":"purge failed"}\n' };
}

export const cacheFilterFactory: FilterFactory<CacheConfig> = {
  type: 'cache',
  create(config: CacheConfig, env: FilterEnvironment): Filter {
    return new CacheFilter(config, env);
  },
};

/**
 * The `cache` filter module (src/pipeline/registry.ts); retain() lets go of the stores a reload removed,
 * close() ends every Redis client.
 */
export const cacheFilter: FilterModule<CacheConfig> = {
  type: 'cache',
  loadSchema: async () => (await import('../../config/cache-schema.ts')).CacheConfigSchema,
  factory: cacheFilterFactory,
  async retain(configs) {
    retainStores(configs);
  },
  close: closeRedisClients,
};
