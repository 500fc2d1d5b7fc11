/**
 * Checks the schema cannot express: route path syntax, duplicate routes and listeners, upstream
 * URLs, IP ranges, TLS files. They run on the raw document (even one that failed the schema), so
 * every value is type-checked before use; a location the schema already reported is skipped later.
 */
import { isIP } from 'node:net';
import { renderFound } from './errors.ts';
import {
  METHOD_PATTERN,
  ROUTE_HOST_EXPECTED,
  UPSTREAM_URL_EXPECTED,
  UPSTREAM_URL_PATTERN,
} from './schema.ts';
import { UPSTREAM_DEFAULT_PORTS, type UpstreamScheme } from './upstream-schemes.ts';
import { targetEntries } from './upstream-targets.ts';
import type { LocatedIssue } from './validate.ts';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** RFC 3986 pchar, without ":" handled separately (a leading ":" starts a parameter). */
/** `.` or `..`, also percent-encoded (%2E). */
const DOT_SEGMENT = /^(?:\.|%2[Ee]){1,2}$/;
const STATIC_SEGMENT = /^(?:[A-Za-z0-9\-._~!$&'()+,;=:@]|%[0-9A-Fa-f]{2})+$/;

/** What is wrong with a route path, in "expected" words, or null when it is well formed. */
export function routePathProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'a path starting with /, such as /api/users/:id';
  if (path.includes('?') || path.includes('#')) return 'a path without ? or #';
  if (path === '/') return null;
  const segments = path.slice(1).split('/');
  // A trailing "/" leaves one empty last segment; it is allowed.
  if (segments.at(-1) === '') segments.pop();
  const params = new Set<string>();
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '') return 'a path without empty segments (//)';
    if (segment === '*') {
      if (i !== segments.length - 1) return 'a path with * only as the last segment, such as /files/*';
      continue;
    }
    if (segment.includes('*')) return 'a path with * only as a whole segment, such as /files/*';
    if (segment.startsWith(':')) {
      const name = segment.slice(1);
      if (!PARAM_NAME.test(name)) {
        return 'a path whose :parameters are named with letters, digits and _ (not starting with a digit), such as /users/:id';
      }
      if (name === '__proto__') return 'a path whose :parameters are not named __proto__ (reserved)';
      if (params.has(name)) return `a path with unique parameter names (:${name} appears twice)`;
      params.add(name);
      continue;
    }
    if (DOT_SEGMENT.test(segment)) {
      return 'a path without . or .. segments (request paths are normalised, so it could never match)';
    }
    if (!STATIC_SEGMENT.test(segment)) {
      return "a path of URL-safe characters (letters, digits, -._~!$&'()+,;=:@ or %XX escapes)";
    }
  }
  return null;
}

/**
 * The shape of a route path, as the router compares them: parameter names erased, a trailing "/" or
 * "/*" dropped, escapes of unreserved characters decoded. `/users/:id`, `/users/:name/` and
 * `/users/:id/*` have the same shape.
 */
export function routePattern(path: string): string {
  let trimmed = path;
  if (trimmed.endsWith('/*')) trimmed = trimmed.slice(0, -2);
  if (trimmed.endsWith('/')) trimmed = trimmed.slice(0, -1);
  return trimmed
    .split('/')
    .map((segment) => (segment.startsWith(':') ? ':' : decodeUnreserved(segment)))
    .join('/');
}

function decodeUnreserved(segment: string): string {
  return segment.replace(/%([0-9A-Fa-f]{2})/g, (encoded, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16));
    return /^[A-Za-z0-9\-._~]$/.test(char) ? char : encoded;
  });
}

/** Route hosts as the router compares them: lowercase, without one trailing dot. */
function hostKey(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

const UPSTREAM_URL = new RegExp(UPSTREAM_URL_PATTERN);

/**
 * `scheme://host[:port]` -> `scheme://host:port` (scheme lowercase, port spelled out), or null when not
 * acceptable. Schemes: http, https, h2c, h2 (see UPSTREAM_SCHEMES).
 */
export function normaliseUpstreamUrl(text: string): string | null {
  if (!UPSTREAM_URL.test(text)) return null;
  const colon = text.indexOf(':');
  const scheme = text.slice(0, colon) as UpstreamScheme;
  if (!Object.hasOwn(UPSTREAM_DEFAULT_PORTS, scheme)) return null;
  let url: URL;
  try {
    // WHATWG URL parses special schemes (http, https) strictly and others opaquely: parse every
    // scheme as http to get the same host rules for all of them.
    url = new URL(`http${text.slice(colon)}`);
  } catch {
    return null;
  }
  if (url.username !== '' || url.password !== '') return null;
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') return null;
  // The port as written (the http parse above drops an explicit :80); the parse has checked its range.
  const port = /:([0-9]{1,5})\/?$/.exec(text)?.[1];
  return `${scheme}://${url.hostname}:${port === undefined ? UPSTREAM_DEFAULT_PORTS[scheme] : Number(port)}`;
}

/** True for an IPv4/IPv6 address or a CIDR range with a prefix length that fits its family. */
export function isAddressOrCidr(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash === -1) return isIP(text) !== 0;
  const family = isIP(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (family === 0 || !/^[0-9]{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (family === 4 ? 32 : 128);
}

function methodList(value: unknown): string[] | null {
  if (!Array.isArray(value)) return null;
  return value.filter((method): method is string => typeof method === 'string');
}

const METHOD = new RegExp(METHOD_PATTERN);

export function checkSemantics(root: unknown): LocatedIssue[] {
  const issues: LocatedIssue[] = [];
  if (!isObject(root)) return issues;

  checkListeners(root.listeners, issues);
  checkAdmin(root, issues);

  if (
    Array.isArray(root.protocols) &&
    root.protocols.length > 0 &&
    !root.protocols.includes('http1') &&
    !root.protocols.includes('http2')
  ) {
    issues.push({
      at: ['protocols'],
      expected: 'a list that includes http1 or http2 (websocket is carried by one of them)',
      found: renderFound(root.protocols),
    });
  }
  checkTls(root.tls, ['tls'], issues);
  if (Array.isArray(root.listeners)) {
    root.listeners.forEach((listener, index) => {
      if (isObject(listener)) {
        checkTls(listener.tls, ['listeners', index, 'tls'], issues);
        checkPlainHttp(listener, index, issues);
      }
    });
  }
  if (isObject(root.upstream_defaults)) {
    checkUpstreamTls(root.upstream_defaults.tls, ['upstream_defaults', 'tls'], issues);
  }

  if (Array.isArray(root.trusted_proxies)) {
    root.trusted_proxies.forEach((entry, index) => {
      if (typeof entry === 'string' && entry !== '' && !isAddressOrCidr(entry)) {
        issues.push({
          at: ['trusted_proxies', index],
          expected: 'an IPv4 or IPv6 address or CIDR range, such as 10.0.0.0/8 or ::1',
          found: renderFound(entry),
        });
      }
    });
  }

  if (Array.isArray(root.routes)) checkRoutes(root.routes, issues);
  return issues;
}

/** An enabled TLS block needs its default certificate files, unless SNI certificates stand in. */
function checkTls(tls: unknown, at: (string | number)[], issues: LocatedIssue[]): void {
  if (!isObject(tls) || tls.enabled !== true) return;
  const sniCertificates = Array.isArray(tls.certificates) ? tls.certificates.length : 0;
  if (sniCertificates > 0 && tls.cert_file == null && tls.key_file == null) return;
  // Without SNI certificates, or with a default certificate half given, both files are needed.
  for (const key of ['cert_file', 'key_file'] as const) {
    const file = tls[key];
    if (typeof file !== 'string' || file === '') {
      const what = key === 'cert_file' ? 'a certificate file path' : 'a private key file path';
      issues.push({
        at: [...at, key],
        expected: `${what} (${at.join('.').replace(/\.(\d+)/g, '[$1]')}.enabled is true)`,
        found: renderFound(file),
      });
    }
  }
}

/** `redirect_https` decides for plain HTTP on its listener: its own TLS block may not say otherwise. */
function checkPlainHttp(listener: Record<string, unknown>, index: number, issues: LocatedIssue[]): void {
  const tls = listener.tls;
  if (listener.redirect_https !== true || !isObject(tls) || tls.enabled !== true) return;
  if (tls.plain_http === undefined || tls.plain_http === 'redirect') return;
  issues.push({
    at: ['listeners', index, 'tls', 'plain_http'],
    expected: `"redirect" or nothing (listeners[${index}].redirect_https is true)`,
    found: renderFound(tls.plain_http),
  });
}

/** A client certificate needs its key and the other way round. */
function checkUpstreamTls(tls: unknown, at: (string | number)[], issues: LocatedIssue[]): void {
  if (!isObject(tls)) return;
  const cert = typeof tls.cert_file === 'string';
  const key = typeof tls.key_file === 'string';
  if (cert === key) return;
  const missing = cert ? 'key_file' : 'cert_file';
  issues.push({
    at: [...at, missing],
    expected: cert
      ? 'the private key file of cert_file (a client certificate needs its key)'
      : 'the certificate file of key_file (a client key needs its certificate)',
    found: renderFound(tls[missing]),
  });
}

function checkRouteHost(host: unknown, index: number, issues: LocatedIssue[]): void {
  if (typeof host !== 'string' || !host.startsWith('[')) return;
  if (isIP(host.slice(1, -1)) !== 6) {
    issues.push({ at: ['routes', index, 'host'], expected: ROUTE_HOST_EXPECTED, found: renderFound(host) });
  }
}

function checkListeners(listeners: unknown, issues: LocatedIssue[]): void {
  if (!Array.isArray(listeners)) return;
  const seen = new Map<string, number>();
  listeners.forEach((listener, index) => {
    if (!isObject(listener) || typeof listener.host !== 'string' || typeof listener.port !== 'number') return;
    if (listener.port === 0) return;
    const key = `${listener.host}|${listener.port}`;
    const first = seen.get(key);
    if (first === undefined) seen.set(key, index);
    else {
      issues.push({
        at: ['listeners', index],
        expected: `a listener that does not repeat listeners[${first}]`,
        found: renderFound(listener),
      });
    }
  });
}

/** The admin listener is never one of the proxy's listeners (same port on the same or a wildcard address). */
function checkAdmin(root: Json, issues: LocatedIssue[]): void {
  const admin = root.admin;
  if (!isObject(admin) || typeof admin.port !== 'number' || admin.port === 0) return;
  const adminHost = typeof admin.host === 'string' ? admin.host : '127.0.0.1';
  const listeners = Array.isArray(root.listeners)
    ? root.listeners
    : [{ host: root.host ?? '0.0.0.0', port: root.port ?? 8000 }];
  const wildcard = (host: unknown) => host === '0.0.0.0' || host === '::' || host === '';
  listeners.forEach((listener, index) => {
    if (!isObject(listener) || listener.port !== admin.port) return;
    if (listener.host === adminHost || wildcard(listener.host) || wildcard(adminHost)) {
      issues.push({
        at: ['admin', 'port'],
        expected: `a port that no proxy listener uses (${Array.isArray(root.listeners) ? `listeners[${index}]` : 'port'} has it)`,
        found: renderFound(admin.port),
      });
    }
  });
}

interface RouteKey {
  readonly index: number;
  readonly host: string | null;
  readonly pattern: string;
  readonly methods: string[] | null;
}

function checkRoutes(routes: readonly unknown[], issues: LocatedIssue[]): void {
  const keys: RouteKey[] = [];
  routes.forEach((route, index) => {
    if (!isObject(route)) return;
    checkRouteHost(route.host, index, issues);
    checkUpstreamTls(route.upstream_tls, ['routes', index, 'upstream_tls'], issues);
    const path = route.path;
    let pathOk = false;
    if (typeof path === 'string') {
      const problem = routePathProblem(path);
      if (problem === null) pathOk = true;
      else issues.push({ at: ['routes', index, 'path'], expected: problem, found: renderFound(path) });
    }

    const targets = targetEntries(route.upstream);
    for (const { url, at } of targets) {
      if (normaliseUpstreamUrl(url) === null) {
        issues.push({
          at: ['routes', index, ...at],
          expected: UPSTREAM_URL_EXPECTED,
          found: renderFound(url),
        });
      }
    }
    if (targets.length > 0 && targets.every((t) => t.backup === true)) {
      issues.push({
        at: ['routes', index, 'upstream'],
        expected: 'at least one target that is not a backup',
        found: 'only backup targets',
      });
    }

    if (!pathOk) return;
    const host = route.host === undefined ? null : route.host;
    if (host !== null && typeof host !== 'string') return;
    const methods = route.methods === undefined ? null : methodList(route.methods);
    if (route.methods !== undefined && methods === null) return;
    keys.push({
      index,
      host: host === null ? null : hostKey(host),
      pattern: routePattern(path as string),
      methods: methods === null ? null : methods.filter((method) => METHOD.test(method)),
    });
  });

  for (let j = 1; j < keys.length; j++) {
    const later = keys[j]!;
    for (let i = 0; i < j; i++) {
      const earlier = keys[i]!;
      if (earlier.host !== later.host || earlier.pattern !== later.pattern) continue;
      const overlap = overlappingMethods(earlier.methods, later.methods);
      if (overlap === null) continue;
      issues.push({
        at: ['routes', later.index, 'path'],
        expected: `a route that does not repeat routes[${earlier.index}] (same host and path, methods overlap: ${overlap})`,
        found: renderFound((routes[later.index] as Json).path),
      });
      break;
    }
  }
}

/** The shared methods in words ("GET, POST" or "any"), or null when the sets are disjoint. */
function overlappingMethods(a: string[] | null, b: string[] | null): string | null {
  if (a === null && b === null) return 'any';
  if (a === null) return b!.length > 0 ? b!.join(', ') : null;
  if (b === null) return a.length > 0 ? a.join(', ') : null;
  const shared = a.filter((method) => b.includes(method));
  return shared.length > 0 ? shared.join(', ') : null;
}
