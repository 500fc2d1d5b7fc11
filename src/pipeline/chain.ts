/**
 * A route's compiled filter chain: the filters in order and, per phase, the filters that implement it
 * (null when none does, so an unused phase costs one null check). Built once per route when the config is
 * loaded (buildChains), from the top-level `middlewares` and the route's own:
 *
 * - the top-level list applies to every route, in order, unless the route sets `inherit_middlewares: false`;
 * - a route entry whose type is already in the list (for `module`, the same `path`) replaces that entry
 *   where it stands; the route's other entries are appended in their order.
 */
import type { Logger } from 'pino';
import type { Config, MiddlewareConfig } from '../config/schema.ts';
import { ZpError } from '../errors.ts';
import { compileTrustedProxies, ForwardingPolicy } from '../http/forwarding.ts';
import type { Filter, FilterPhase } from './contract.ts';
import type { FilterRegistry } from './registry.ts';
import { moduleDigest } from './user-module.ts';

/** One middleware entry of a route's chain and where it was written (for error messages). */
export interface ChainEntry {
  readonly middleware: MiddlewareConfig;
  /** JSON path of the entry: `middlewares[0]` or `routes[2].middlewares[1]`. */
  readonly where: string;
}

/** The identity an entry replaces by: its type (a user module: its path too). */
function identity(m: MiddlewareConfig): string {
  if (m.type === 'module') return `module:${m.path ?? ''}`;
  return m.type;
}

/** The entries that apply to route `index`, in chain order. */
export function chainEntries(config: Config, index: number): ChainEntry[] {
  const route = config.routes[index]!;
  const entries: ChainEntry[] = route.inherit_middlewares
    ? config.middlewares.map((middleware, i) => ({ middleware, where: `middlewares[${i}]` }))
    : [];
  // Only inherited entries are replaced: a route's own entries never replace each other.
  const inherited = entries.length;
  route.middlewares.forEach((middleware, i) => {
    const entry = { middleware, where: `routes[${index}].middlewares[${i}]` };
    const at = entries.findIndex(
      (e, j) =>
        j < inherited && !e.where.startsWith('routes') && identity(e.middleware) === identity(middleware),
    );
    if (at === -1) entries.push(entry);
    else entries[at] = entry;
  });
  return entries;
}

function withPhase(filters: readonly Filter[], phase: FilterPhase): Filter[] | null {
  const list = filters.filter((f) => typeof f[phase] === 'function');
  return list.length === 0 ? null : list;
}

export class FilterChain {
  readonly filters: readonly Filter[];
  /** The middleware type of each filter, in chain order (for log lines). */
  readonly types: readonly string[];
  readonly onRequest: Filter[] | null;
  readonly onUpstreamRequest: Filter[] | null;
  readonly onResponse: Filter[] | null;
  readonly onUpstreamError: Filter[] | null;
  readonly onResponseBody: Filter[] | null;
  readonly onResponseEnd: Filter[] | null;
  readonly onLog: Filter[] | null;
  /**
   * Methods a filter of the chain answers itself even when the route's `methods` do not list them:
   * OPTIONS (a CORS preflight) with `cors`, PURGE with a `cache` that has `purge`.
   */
  readonly extraMethods: ReadonlySet<string>;
  /** The route's pattern (log lines). */
  readonly route: string;
  readonly logger: Logger | null;
  /**
   * What each filter was built from (its entry, route, position and the settings its factory reads; a
   * user module's file contents too): a reload builds a filter anew only when this changed (buildChains).
   */
  readonly buildKeys: readonly string[];

  constructor(
    filters: readonly Filter[],
    entries: readonly ChainEntry[],
    route: string,
    logger: Logger | null,
    buildKeys: readonly string[] = [],
  ) {
    this.filters = filters;
    this.buildKeys = buildKeys;
    this.types = entries.map((e) => e.middleware.type);
    this.route = route;
    this.logger = logger;
    this.onRequest = withPhase(filters, 'onRequest');
    this.onUpstreamRequest = withPhase(filters, 'onUpstreamRequest');
    this.onResponse = withPhase(filters, 'onResponse');
    this.onUpstreamError = withPhase(filters, 'onUpstreamError');
    this.onResponseBody = withPhase(filters, 'onResponseBody');
    this.onResponseEnd = withPhase(filters, 'onResponseEnd');
    this.onLog = withPhase(filters, 'onLog');
    const extra = new Set<string>();
    for (const f of filters) for (const method of f.answersMethods ?? []) extra.add(method);
    this.extraMethods = extra;
  }

  typeOf(filter: Filter): string {
    return this.types[this.filters.indexOf(filter)] ?? 'unknown';
  }
}

export interface ChainOptions {
  /** The filter types to build from (the built-in ones are src/filters/index.ts's BUILT_IN_FILTERS). */
  /** The filter types to build from (new FilterRegistry(BUILT_IN_FILTERS) for the built-in ones). */
  readonly filters: FilterRegistry;
  readonly logger?: Logger | null;
  /** Relative paths in filter configs (user filter modules) are resolved against this directory. */
  readonly baseDir?: string;
  /**
   * The chains of the running runtime (a reload): a filter whose build key (FilterChain.buildKeys) is
   * unchanged is taken over as it is, with its state, instead of being built anew.
   */
  readonly previous?: readonly (FilterChain | null)[];
}

/**
 * What a filter is built from, as one string: two entries with the same key build the same filter. A
 * user module's key holds a digest of its file, so an edited module is built (and loaded) anew.
 */
function buildKey(entry: ChainEntry, route: string, index: number, shared: string, baseDir: string): string {
  const m = entry.middleware;
  let key = `${route}\n${index}\n${shared}\n${baseDir}\n${m.type}\n${m.path ?? ''}\n${JSON.stringify(m.config)}`;
  if (m.type === 'module' && m.path !== undefined) key += `\n${moduleDigest(m.path, baseDir)}`;
  return key;
}

/**
 * The filters of `chains` by build key, in chain order: two routes with the same pattern and entries have
 * the same keys, and each takes over one filter of its own (takeFilter).
 */
function filtersByKey(chains: readonly (FilterChain | null)[] | undefined): Map<string, Filter[]> {
  const byKey = new Map<string, Filter[]>();
  for (const chain of chains ?? []) {
    if (chain === null) continue;
    chain.buildKeys.forEach((key, i) => {
      const list = byKey.get(key);
      if (list === undefined) byKey.set(key, [chain.filters[i]!]);
      else list.push(chain.filters[i]!);
    });
  }
  return byKey;
}

function takeFilter(byKey: Map<string, Filter[]>, key: string): Filter | undefined {
  return byKey.get(key)?.shift();
}

/**
 * Builds every route's chain (null for a route without filters). A factory that fails becomes a
 * ZP_ERR_CONFIG error naming the entry's JSON path.
 */
export async function buildChains(config: Config, options: ChainOptions): Promise<(FilterChain | null)[]> {
  const trustedProxies = compileTrustedProxies(config.trusted_proxies);
  const forwarding = new ForwardingPolicy(trustedProxies, config.preserve_host, config.tracing.traceparent);
  const logger = options.logger ?? null;
  const baseDir = options.baseDir ?? process.cwd();
  const shared = `${JSON.stringify(config.trusted_proxies)}\n${config.preserve_host}`;
  const previous = filtersByKey(options.previous);
  const chains: (FilterChain | null)[] = [];
  for (let r = 0; r < config.routes.length; r++) {
    const entries = chainEntries(config, r);
    if (entries.length === 0) {
      chains.push(null);
      continue;
    }
    const route = config.routes[r]!.path;
    const filters: Filter[] = [];
    const keys: string[] = [];
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      try {
        const key = buildKey(entry, route, i, shared, baseDir);
        keys.push(key);
        const kept = takeFilter(previous, key);
        if (kept !== undefined) {
          filters.push(kept);
          continue;
        }
        filters.push(
          await options.filters.create(entry.middleware, {
            index: i,
            route,
            trustedProxies,
            ...(logger === null ? {} : { logger }),
            baseDir,
            preserveHost: config.preserve_host,
            forwarding,
          }),
        );
      } catch (error) {
        if (error instanceof ZpError) throw error;
        // A factory's own config errors start with `config.<field>: ` (AuthConfigError and the like).
        const message = (error as Error).message;
        const text = message.startsWith('config.')
          ? `${entry.where}.${message}`
          : `${entry.where} (${entry.middleware.type}): ${message}`;
        throw new ZpError('ZP_ERR_CONFIG', text, { cause: error });
      }
    }
    chains.push(new FilterChain(filters, entries, route, logger, keys));
  }
  return chains;
}
