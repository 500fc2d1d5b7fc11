/**
 * The router: host table, then path tree (static > :param > *), then method table.
 * The rules are written down in docs/routing.md; keep the two in step.
 *
 * Everything is compiled in the constructor. `match()` scans with charCodeAt/indexOf/startsWith and
 * allocates only what it returns: 404 and 405 results are frozen singletons, and so is the found
 * result of every route without params or wildcard.
 */

import { ZpError } from '../errors.ts';
import { type ParsedHost, type ParsedPattern, parseHost, parseMethods, parsePattern } from './pattern.ts';

export interface RouteSpec<T> {
  /** null = any host; 'api.example.com' exact; '*.example.com' = any subdomain (not example.com itself). */
  readonly host: string | null;
  /** Pattern: '/api', '/api/users/:id', '/api/*', '/'. */
  readonly path: string;
  /** null = any method; 'GET' implies 'HEAD' (RFC 9110 §9.3.2). */
  readonly methods: readonly string[] | null;
  readonly value: T;
}

export interface RouteFound<T> {
  readonly status: 200;
  readonly value: T;
  /** Param values (raw segment text, not decoded); '*' holds the rest after a wildcard. Null if none. */
  readonly params: Readonly<Record<string, string>> | null;
  /** Characters of the path consumed by the pattern, excluding a trailing wildcard (for strip_prefix). */
  readonly matchedLength: number;
}

export interface RouteNotFound {
  readonly status: 404;
}

export interface RouteMethodNotAllowed {
  readonly status: 405;
  /** The allowed methods, sorted in ASCII order and joined with ', ' (e.g. 'GET, HEAD, POST'). */
  readonly allow: string;
}

export type RouteMatch<T> = RouteFound<T> | RouteNotFound | RouteMethodNotAllowed;

export interface RouteProblem {
  /** Index into the specs. */
  readonly index: number;
  readonly message: string;
}

interface ParsedRoute {
  readonly host: ParsedHost | null;
  readonly pattern: ParsedPattern;
  readonly methods: readonly string[] | null;
}

interface Analysis {
  readonly problems: RouteProblem[];
  /** Parsed routes, in spec order; null where a spec has a syntax problem. */
  readonly routes: (ParsedRoute | null)[];
}

function hostKey(host: ParsedHost | null): string {
  if (host === null) return '';
  return host.wildcard ? `*.${host.name}` : host.name;
}

function methodsOverlap(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return true;
  for (const method of a) if (b.includes(method)) return true;
  return false;
}

function analyse<T>(specs: readonly RouteSpec<T>[]): Analysis {
  const problems: RouteProblem[] = [];
  const routes: (ParsedRoute | null)[] = [];
  /** 'host\npath shape' -> indices of the routes seen so far with that host and shape. */
  const seen = new Map<string, number[]>();
  for (let index = 0; index < specs.length; index++) {
    const spec = specs[index]!;
    const messages: string[] = [];
    const host = parseHost(spec.host, messages);
    const pattern = parsePattern(spec.path, messages);
    const methods = parseMethods(spec.methods, messages);
    for (const message of messages) problems.push({ index, message });
    if (messages.length > 0 || pattern === null) {
      routes.push(null);
      continue;
    }
    const route: ParsedRoute = { host, pattern, methods };
    routes.push(route);
    const key = `${hostKey(host)}\n${pattern.shape}`;
    const earlier = seen.get(key);
    if (earlier === undefined) {
      seen.set(key, [index]);
      continue;
    }
    for (const other of earlier) {
      if (methodsOverlap(routes[other]!.methods, methods)) {
        problems.push({ index, message: `duplicates routes[${other}] (same host, path and methods)` });
      }
    }
    earlier.push(index);
  }
  return { problems, routes };
}

/**
 * Every problem in the specs: syntax (path, host, methods) and conflicts (two routes with the same
 * host, the same path shape and overlapping methods; reported on the later one).
 */
export function routeProblems<T>(specs: readonly RouteSpec<T>[]): RouteProblem[] {
  return analyse(specs).problems;
}

// ---------------------------------------------------------------------------------------------------
// Compiled form

const SLASH = 0x2f;
const DOT = 0x2e;
const OPEN_BRACKET = 0x5b;
/** Above this many static children, a node looks its children up by hash instead of scanning. */
const LINEAR_CHILDREN = 8;
/** Above this many exact host names of one length, they are looked up by hash. */
const LINEAR_HOSTS = 8;

const NOT_FOUND: RouteNotFound = Object.freeze({ status: 404 });

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
/** Hashes are kept in the small-integer range so that they are never boxed. */
const SMI_MASK = 0x3fffffff;

/** FNV-1a hash of s[start, end). */
function hashRange(s: string, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h & SMI_MASK;
}

/** hashRange() with ASCII upper case folded to lower case. */
function hashRangeLower(s: string, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    h = Math.imul(h ^ c, FNV_PRIME);
  }
  return h & SMI_MASK;
}

/** True when s[start, start + lower.length) equals `lower` (lower case) ignoring ASCII case. */
function equalsLowerAt(s: string, start: number, lower: string): boolean {
  const n = lower.length;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(start + i);
    if (c >= 0x41 && c <= 0x5a) c |= 0x20;
    if (c !== lower.charCodeAt(i)) return false;
  }
  return true;
}

class RouteEntry<T> {
  readonly value: T;
  readonly methods: readonly string[] | null;
  /** Param names in path order (the node's param depth says how many). */
  readonly paramNames: readonly string[];
  readonly wildcard: boolean;
  /** The one found result of a route without params and wildcard; null otherwise. */
  readonly fixed: RouteFound<T> | null;

  constructor(value: T, pattern: ParsedPattern, methods: readonly string[] | null) {
    this.value = value;
    this.methods = methods;
    this.paramNames = pattern.paramNames;
    this.wildcard = pattern.wildcard;
    let fixed: RouteFound<T> | null = null;
    if (!pattern.wildcard && pattern.paramNames.length === 0) {
      let length = 0;
      for (const segment of pattern.segments)
        if (segment.kind === 'static') length += 1 + segment.text.length;
      fixed = Object.freeze({ status: 200, value, params: null, matchedLength: length });
    }
    this.fixed = fixed;
  }
}

class PathNode<T> {
  /** The static segment leading to this node ('' for a root or a param node). */
  readonly label: string;
  /** Static children: labels[i] leads to children[i]. */
  labels: string[];
  children: PathNode<T>[];
  /** hash -> children, when there are more than LINEAR_CHILDREN static children. */
  index: Map<number, PathNode<T>[]> | null;
  param: PathNode<T> | null;
  /** Number of param segments from the root down to this node (its own included). */
  readonly paramDepth: number;
  hasChildren: boolean;
  /** True when at least one route ends here. */
  terminal: boolean;
  /** The route with methods = null ending here, if any (it is then the only one). */
  anyMethod: RouteEntry<T> | null;
  /** Method -> route, for routes with explicit methods (HEAD added for GET unless listed). */
  byMethod: Map<string, RouteEntry<T>> | null;
  notAllowed: RouteMethodNotAllowed | null;
  /** Build time only. */
  entries: RouteEntry<T>[];

  constructor(label: string, paramDepth: number) {
    this.label = label;
    this.labels = [];
    this.children = [];
    this.index = null;
    this.param = null;
    this.paramDepth = paramDepth;
    this.hasChildren = false;
    this.terminal = false;
    this.anyMethod = null;
    this.byMethod = null;
    this.notAllowed = null;
    this.entries = [];
  }

  staticChild(label: string): PathNode<T> {
    const i = this.labels.indexOf(label);
    if (i >= 0) return this.children[i]!;
    const child = new PathNode<T>(label, this.paramDepth);
    this.labels.push(label);
    this.children.push(child);
    return child;
  }

  paramChild(): PathNode<T> {
    if (this.param === null) this.param = new PathNode<T>('', this.paramDepth + 1);
    return this.param;
  }

  /** Freezes the build-time lists into the match-time form, for this node and all below it. */
  finish(): void {
    this.hasChildren = this.children.length > 0 || this.param !== null;
    if (this.children.length > LINEAR_CHILDREN) {
      const index = new Map<number, PathNode<T>[]>();
      for (const child of this.children) {
        const hash = hashRange(child.label, 0, child.label.length);
        const bucket = index.get(hash);
        if (bucket === undefined) index.set(hash, [child]);
        else bucket.push(child);
      }
      this.index = index;
    }
    if (this.entries.length > 0) {
      this.terminal = true;
      const any = this.entries.find((entry) => entry.methods === null);
      if (any !== undefined) {
        this.anyMethod = any;
      } else {
        const byMethod = new Map<string, RouteEntry<T>>();
        for (const entry of this.entries) for (const method of entry.methods!) byMethod.set(method, entry);
        const get = byMethod.get('GET');
        if (get !== undefined && !byMethod.has('HEAD')) byMethod.set('HEAD', get);
        this.byMethod = byMethod;
        const allow = [...byMethod.keys()].sort().join(', ');
        this.notAllowed = Object.freeze({ status: 405, allow });
      }
    }
    this.entries = [];
    for (const child of this.children) child.finish();
    this.param?.finish();
  }

  /** The static child whose label equals path[start, end), or null. */
  findStatic(path: string, start: number, end: number): PathNode<T> | null {
    const length = end - start;
    const index = this.index;
    if (index !== null) {
      const bucket = index.get(hashRange(path, start, end));
      if (bucket === undefined) return null;
      for (let i = 0; i < bucket.length; i++) {
        const node = bucket[i]!;
        if (node.label.length === length && path.startsWith(node.label, start)) return node;
      }
      return null;
    }
    const labels = this.labels;
    for (let i = 0; i < labels.length; i++) {
      const label = labels[i]!;
      if (label.length === length && path.startsWith(label, start)) return this.children[i]!;
    }
    return null;
  }
}

/** The exact host tables whose names have one length. */
class HostGroup<T> {
  readonly tables: readonly HostTable<T>[];
  /** Lower-case hash -> tables, when there are more than LINEAR_HOSTS tables. */
  readonly byHash: Map<number, HostTable<T>[]> | null;

  constructor(tables: readonly HostTable<T>[]) {
    this.tables = tables;
    let byHash: Map<number, HostTable<T>[]> | null = null;
    if (tables.length > LINEAR_HOSTS) {
      byHash = new Map();
      for (const table of tables) {
        const hash = hashRange(table.name, 0, table.name.length);
        const bucket = byHash.get(hash);
        if (bucket === undefined) byHash.set(hash, [table]);
        else bucket.push(table);
      }
    }
    this.byHash = byHash;
  }

  /** The table named host[0, name length), ignoring ASCII case, or null. */
  find(host: string): HostTable<T> | null {
    const byHash = this.byHash;
    const tables =
      byHash === null ? this.tables : byHash.get(hashRangeLower(host, 0, this.tables[0]!.name.length));
    if (tables === undefined) return null;
    for (let i = 0; i < tables.length; i++) {
      const table = tables[i]!;
      // Host headers are nearly always lower case: try the native comparison first.
      if (host.startsWith(table.name) || equalsLowerAt(host, 0, table.name)) return table;
    }
    return null;
  }
}

class HostTable<T> {
  /** Lower case, without trailing dot; for a wildcard table, the suffix after '*.'. */
  readonly name: string;
  readonly root: PathNode<T>;

  constructor(name: string) {
    this.name = name;
    this.root = new PathNode<T>('', 0);
  }
}

/**
 * Routes requests by host, path and method. See docs/routing.md for the rules.
 * The constructor throws a ZpError (ZP_ERR_CONFIG) listing every problem routeProblems() finds.
 */
export class Router<T> {
  /** Routes without a host; null if there are none. */
  private readonly anyHost: PathNode<T> | null;
  /** False when no route has a host: host handling is skipped entirely. */
  private readonly hostAware: boolean;
  /** Exact host tables by the length of their name (null where there is none). */
  private readonly exactByLength: (HostGroup<T> | null)[];
  /** Wildcard host tables, longest suffix first. */
  private readonly wildcards: HostTable<T>[];
  /** Param segment offsets of the branch being walked: [start, end) of param i. */
  private readonly paramStarts: Int32Array;
  private readonly paramEnds: Int32Array;
  /** The most specific node that matched the path but not the method, during one match(). */
  private denied: PathNode<T> | null;

  constructor(specs: readonly RouteSpec<T>[]) {
    const { problems, routes } = analyse(specs);
    if (problems.length > 0) {
      const lines = problems.map((problem) => `  routes[${problem.index}]: ${problem.message}`);
      throw new ZpError('ZP_ERR_CONFIG', `Invalid routes:\n${lines.join('\n')}`);
    }
    let anyHost: PathNode<T> | null = null;
    const exactTables = new Map<string, HostTable<T>>();
    const wildcardTables = new Map<string, HostTable<T>>();
    let maxParams = 0;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i]!;
      let root: PathNode<T>;
      if (route.host === null) {
        anyHost ??= new PathNode<T>('', 0);
        root = anyHost;
      } else {
        const tables = route.host.wildcard ? wildcardTables : exactTables;
        let table = tables.get(route.host.name);
        if (table === undefined) {
          table = new HostTable<T>(route.host.name);
          tables.set(route.host.name, table);
        }
        root = table.root;
      }
      let node = root;
      for (const segment of route.pattern.segments) {
        node = segment.kind === 'static' ? node.staticChild(segment.text) : node.paramChild();
      }
      node.entries.push(new RouteEntry(specs[i]!.value, route.pattern, route.methods));
      maxParams = Math.max(maxParams, route.pattern.paramNames.length);
    }
    anyHost?.finish();
    const byLength: HostTable<T>[][] = [];
    for (const table of exactTables.values()) {
      table.root.finish();
      const length = table.name.length;
      while (byLength.length <= length) byLength.push([]);
      byLength[length]!.push(table);
    }
    const exactByLength = byLength.map((tables) => (tables.length === 0 ? null : new HostGroup(tables)));
    const wildcards = [...wildcardTables.values()].sort((a, b) => b.name.length - a.name.length);
    for (const table of wildcards) table.root.finish();
    this.anyHost = anyHost;
    this.hostAware = exactTables.size > 0 || wildcards.length > 0;
    this.exactByLength = exactByLength;
    this.wildcards = wildcards;
    this.paramStarts = new Int32Array(Math.max(1, maxParams));
    this.paramEnds = new Int32Array(Math.max(1, maxParams));
    this.denied = null;
  }

  /**
   * Routes one request. `host` is the raw Host header value ('' if absent; a port, an IPv6 literal
   * and one trailing dot are handled); `path` is normalised (normalizePath) and has no query.
   */
  match(host: string, method: string, path: string): RouteMatch<T> {
    this.denied = null;
    if (this.hostAware) {
      const found = this.matchHosts(host, method, path);
      if (found !== null) return found;
    }
    if (this.anyHost !== null) {
      const found = this.search(this.anyHost, method, path, 0);
      if (found !== null) return found;
    }
    const denied = this.denied as PathNode<T> | null;
    return denied === null ? NOT_FOUND : denied.notAllowed!;
  }

  /** Exact host table, then wildcard tables (longest suffix first). */
  private matchHosts(host: string, method: string, path: string): RouteFound<T> | null {
    // The name ends before the port; an IPv6 literal ends at its ']'. One trailing dot is ignored.
    let end: number;
    if (host.charCodeAt(0) === OPEN_BRACKET) {
      end = host.indexOf(']') + 1;
    } else {
      end = host.indexOf(':');
      if (end === -1) end = host.length;
      if (end > 0 && host.charCodeAt(end - 1) === DOT) end--;
    }
    if (end === 0) return null;
    const exactByLength = this.exactByLength;
    if (end < exactByLength.length) {
      const group = exactByLength[end]!;
      const table = group === null ? null : group.find(host);
      if (table !== null) {
        const found = this.search(table.root, method, path, 0);
        if (found !== null) return found;
      }
    }
    const wildcards = this.wildcards;
    for (let i = 0; i < wildcards.length; i++) {
      const table = wildcards[i]!;
      // At least one label, then '.', then the suffix.
      const name = table.name;
      const dot = end - name.length - 1;
      if (
        dot >= 1 &&
        host.charCodeAt(dot) === DOT &&
        (host.startsWith(name, dot + 1) || equalsLowerAt(host, dot + 1, name))
      ) {
        const found = this.search(table.root, method, path, 0);
        if (found !== null) return found;
      }
    }
    return null;
  }

  /**
   * Depth-first walk from `node`, whose segments end at `pos` (a '/' or the end of the path): static
   * child, then param child, then the node's own routes. Returns the first route that allows the
   * method; remembers the first (most specific) node that matched but did not allow it.
   */
  private search(node: PathNode<T>, method: string, path: string, pos: number): RouteFound<T> | null {
    const length = path.length;
    if (node.hasChildren && pos < length && path.charCodeAt(pos) === SLASH) {
      const start = pos + 1;
      let end = start;
      while (end < length && path.charCodeAt(end) !== SLASH) end++;
      if (end > start) {
        const child = node.findStatic(path, start, end);
        if (child !== null) {
          const found = this.search(child, method, path, end);
          if (found !== null) return found;
        }
        const param = node.param;
        if (param !== null) {
          const i = node.paramDepth;
          this.paramStarts[i] = start;
          this.paramEnds[i] = end;
          const found = this.search(param, method, path, end);
          if (found !== null) return found;
        }
      }
    }
    if (!node.terminal) return null;
    const entry = node.anyMethod ?? node.byMethod!.get(method);
    if (entry === undefined) {
      if (this.denied === null) this.denied = node;
      return null;
    }
    if (entry.fixed !== null) return entry.fixed;
    const params: Record<string, string> = {};
    const names = entry.paramNames;
    for (let i = 0; i < names.length; i++) {
      params[names[i]!] = path.slice(this.paramStarts[i]!, this.paramEnds[i]!);
    }
    if (entry.wildcard) params['*'] = pos < length ? path.slice(pos + 1) : '';
    return { status: 200, value: entry.value, params, matchedLength: pos };
  }
}
