/**
 * Warnings: configurations that are valid but dangerous. `configWarnings` takes a document that passed
 * validation and returns one warning per risky place, each with a stable code (warning-codes.ts), the JSON
 * path it concerns and one sentence saying what the risk is and how to fix it; codes listed in
 * `accept_risks` are left out. `zproxy check` prints them and `zproxy run` logs them at start. The rules
 * and their reasons are documented in docs/configuration.md, "Warnings".
 */
import { BlockList, isIP } from 'node:net';
import { type ConfigPath, compareOrder, documentOrder, formatPath } from './errors.ts';
import { CONFIG_DEFAULTS, type ConfigInput, type MiddlewareInput, type RouteInput } from './schema.ts';
import { targetEntries } from './upstream-targets.ts';
import type { WarningCode } from './warning-codes.ts';

export { WARNING_CODES, type WarningCode } from './warning-codes.ts';

export interface ConfigWarning {
  readonly code: WarningCode;
  /** The place in the document, e.g. `middlewares[1].config.allowed_origins`. */
  readonly path: string;
  /** What the risk is and how to fix it, in one sentence (no final period). */
  readonly message: string;
}

interface LocatedWarning {
  readonly code: WarningCode;
  readonly at: ConfigPath;
  readonly message: string;
}

/** The warnings of a validated document, in document order, without those whose code is accepted. */
export function configWarnings(input: ConfigInput): ConfigWarning[] {
  const found: LocatedWarning[] = [];
  const middlewares = middlewareEntries(input);
  corsCredentialsWildcard(middlewares, found);
  upstreamTlsUnverified(input, found);
  trustedProxiesTooWide(input, found);
  basicAuthWithoutTls(input, middlewares, found);
  cacheNotShared(middlewares, found);
  const accepted = new Set<string>(input.accept_risks ?? []);
  return found
    .filter((warning) => !accepted.has(warning.code))
    .map((warning, index) => ({ warning, index, order: documentOrder(input, warning.at) }))
    .sort((a, b) => compareOrder(a.order, b.order) || a.index - b.index)
    .map(({ warning }) => ({ code: warning.code, path: formatPath(warning.at), message: warning.message }));
}

/** Every middleware entry of the document (top level and per route) with its location. */
function middlewareEntries(input: ConfigInput): { entry: MiddlewareInput; at: ConfigPath }[] {
  const entries = (input.middlewares ?? []).map((entry, index) => ({ entry, at: ['middlewares', index] }));
  input.routes.forEach((route, r) => {
    (route.middlewares ?? []).forEach((entry, index) => {
      entries.push({ entry, at: ['routes', r, 'middlewares', index] });
    });
  });
  return entries;
}

function quotedList(values: readonly string[]): string {
  return values.map((value) => JSON.stringify(value)).join(', ');
}

// ---------------------------------------------------------------------------------------------
// CORS: any origin allowed together with credentials
// ---------------------------------------------------------------------------------------------

/**
 * Does this allowed_origins entry let any web site in? `*`; `null` (the origin of sandboxed iframes,
 * which any page can create); or a pattern whose host keeps fewer than two labels without `*`
 * (`https://*`, `https://*.com`), which matches sites anyone can register.
 */
export function isOpenOrigin(origin: string): boolean {
  if (origin === '*' || origin.toLowerCase() === 'null') return true;
  const start = origin.indexOf('://');
  if (start === -1 || !origin.includes('*')) return false;
  const host = origin.slice(start + 3).replace(/:[0-9]+$/, '');
  const fixedLabels = host.split('.').filter((label) => label !== '' && !label.includes('*'));
  return fixedLabels.length < 2;
}

function corsCredentialsWildcard(
  middlewares: readonly { entry: MiddlewareInput; at: ConfigPath }[],
  found: LocatedWarning[],
): void {
  for (const { entry, at } of middlewares) {
    if (entry.type !== 'cors' || entry.config?.allow_credentials !== true) continue;
    const origins = entry.config.allowed_origins;
    if (!Array.isArray(origins)) continue;
    const open = origins.filter(
      (origin): origin is string => typeof origin === 'string' && isOpenOrigin(origin),
    );
    if (open.length === 0) continue;
    found.push({
      code: 'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
      at: [...at, 'config', 'allowed_origins'],
      message: `allow_credentials is true and allowed_origins admits any web site (${quotedList(open)}), so any page a user visits can send requests with the user's cookies and read the answers; list only trusted origins, or set allow_credentials to false`,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream TLS without certificate verification
// ---------------------------------------------------------------------------------------------

const UNVERIFIED_MESSAGE =
  'the certificates of https:// and h2:// upstreams are not verified, so anyone able to intercept those connections can pose as the upstream and read or change the traffic; remove verify: false (give ca_file for a private CA)';

function hasTlsUpstream(upstream: RouteInput['upstream']): boolean {
  return targetEntries(upstream).some(({ url }) => /^(?:https|h2):\/\//i.test(url));
}

/**
 * `verify: false` where it takes effect: on a route with a TLS upstream, or in upstream_defaults.tls when
 * such a route does not set verify itself. A setting no TLS upstream uses is left alone.
 */
function upstreamTlsUnverified(input: ConfigInput, found: LocatedWarning[]): void {
  const defaultsVerify = input.upstream_defaults?.tls?.verify;
  let defaultsUsed = false;
  input.routes.forEach((route, index) => {
    if (!hasTlsUpstream(route.upstream)) return;
    const own = route.upstream_tls?.verify;
    if (own === false) {
      found.push({
        code: 'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
        at: ['routes', index, 'upstream_tls', 'verify'],
        message: UNVERIFIED_MESSAGE,
      });
    } else if (own === undefined && defaultsVerify === false) {
      defaultsUsed = true;
    }
  });
  if (defaultsUsed) {
    found.push({
      code: 'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
      at: ['upstream_defaults', 'tls', 'verify'],
      message: UNVERIFIED_MESSAGE,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// trusted_proxies covering much of the address space
// ---------------------------------------------------------------------------------------------

/** IPv6 ranges that never reach zproxy from the internet: unique local (fc00::/7), link-local (fe80::/10). */
const LOCAL_IPV6: readonly (readonly [address: string, prefix: number])[] = [
  ['fc00::', 7],
  ['fe80::', 10],
];
/** IPv4-mapped IPv6 addresses: Node's BlockList matches IPv4 peers against them. */
const MAPPED_IPV4 = new BlockList();
MAPPED_IPV4.addSubnet('::ffff:0:0', 96, 'ipv6');

function inSubnet(address: string, network: string, prefix: number): boolean {
  const list = new BlockList();
  list.addSubnet(network, prefix, 'ipv6');
  return list.check(address, 'ipv6');
}

/**
 * What a trusted_proxies range covers, in words, when it is too wide: an IPv4 prefix shorter than /8, an
 * IPv6 prefix shorter than /16 unless the range is unique local or link-local, an IPv4-mapped IPv6 range
 * judged as the IPv4 range it maps. null when it is narrow enough (single addresses always are).
 */
export function tooWideScope(entry: string): string | null {
  const slash = entry.indexOf('/');
  if (slash === -1) return null;
  const address = entry.slice(0, slash);
  const prefix = Number(entry.slice(slash + 1));
  const family = isIP(address);
  if (family === 4) return ipv4Scope(prefix);
  if (family !== 6) return null;
  if (prefix >= 96 && MAPPED_IPV4.check(address, 'ipv6')) return ipv4Scope(prefix - 96);
  if (prefix >= 16) return null;
  if (LOCAL_IPV6.some(([network, bits]) => prefix >= bits && inSubnet(address, network, bits))) return null;
  // ::/0 also covers every IPv4 peer (BlockList matches IPv4 addresses against IPv4-mapped ranges).
  return prefix === 0 ? 'every address' : 'a large part of the IPv6 address space';
}

function ipv4Scope(prefix: number): string | null {
  if (prefix >= 8) return null;
  return prefix === 0 ? 'every IPv4 address' : 'a large part of the IPv4 address space';
}

function trustedProxiesTooWide(input: ConfigInput, found: LocatedWarning[]): void {
  (input.trusted_proxies ?? []).forEach((entry, index) => {
    const scope = tooWideScope(entry);
    if (scope === null) return;
    found.push({
      code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
      at: ['trusted_proxies', index],
      message: `${JSON.stringify(entry)} covers ${scope}, so clients there can forge X-Forwarded-For and Forwarded and pass for any address in rate limits and upstream headers (logs show the TCP peer); list only the proxies in front of zproxy`,
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Basic auth on listeners without TLS
// ---------------------------------------------------------------------------------------------

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (also IPv4-mapped) and `localhost`; any other name may resolve to anything. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const family = isIP(bare);
  if (family === 4) return LOOPBACK.check(bare, 'ipv4');
  if (family === 6) return LOOPBACK.check(bare, 'ipv6');
  return /^localhost\.?$/i.test(bare);
}

/**
 * kind `basic` when no listener accepts TLS and one listens beyond loopback: user names and passwords then
 * arrive in clear text (a TLS-terminating proxy in front is the case `accept_risks` is for).
 */
function basicAuthWithoutTls(
  input: ConfigInput,
  middlewares: readonly { entry: MiddlewareInput; at: ConfigPath }[],
  found: LocatedWarning[],
): void {
  const listeners = input.listeners ?? [{ host: input.host ?? CONFIG_DEFAULTS.host, tls: input.tls }];
  const anyTls = listeners.some((listener) => (listener.tls ?? input.tls)?.enabled === true);
  const beyondLoopback = listeners.some((listener) => !isLoopbackHost(listener.host));
  if (anyTls || !beyondLoopback) return;
  for (const { entry, at } of middlewares) {
    if (entry.type !== 'auth' || entry.config?.kind !== 'basic') continue;
    found.push({
      code: 'ZP_WARN_BASIC_AUTH_WITHOUT_TLS',
      at: [...at, 'config', 'kind'],
      message:
        'no listener accepts TLS, so Basic auth user names and passwords cross the network in clear text; enable tls, or accept this risk only when a TLS-terminating proxy sits in front of zproxy',
    });
  }
}

// ---------------------------------------------------------------------------------------------
// A cache that is not shared
// ---------------------------------------------------------------------------------------------

function cacheNotShared(
  middlewares: readonly { entry: MiddlewareInput; at: ConfigPath }[],
  found: LocatedWarning[],
): void {
  for (const { entry, at } of middlewares) {
    if (entry.type !== 'cache' || entry.config?.shared !== false) continue;
    found.push({
      code: 'ZP_WARN_CACHE_NOT_SHARED',
      at: [...at, 'config', 'shared'],
      message:
        "shared is false, so responses meant for one user (Cache-Control: private, answers to requests with Authorization) are stored and served to other clients; remove shared: false, since zproxy's cache serves every client",
    });
  }
}
