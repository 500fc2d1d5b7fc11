/**
 * Parsing and validation of one route spec's host, path pattern and methods. Used by
 * `routeProblems()` and by the `Router` constructor; never on the request path.
 */

import { decodeUnreservedEscapes } from './normalize-path.ts';

export interface StaticSegment {
  readonly kind: 'static';
  /** The segment text, with percent-encoded unreserved characters decoded (as in a normalised path). */
  readonly text: string;
}

export interface ParamSegment {
  readonly kind: 'param';
  readonly name: string;
}

export type PatternSegment = StaticSegment | ParamSegment;

export interface ParsedPattern {
  /** The segments before a trailing wildcard; empty for '/' and '/*'. */
  readonly segments: readonly PatternSegment[];
  /** True when the pattern ends in '/*'. */
  readonly wildcard: boolean;
  readonly paramNames: readonly string[];
  /**
   * The pattern with params reduced to ':' and a trailing '/*' dropped: two patterns with the same
   * shape match exactly the same paths.
   */
  readonly shape: string;
}

export interface ParsedHost {
  readonly wildcard: boolean;
  /** Lower case, without a trailing dot; for a wildcard, the suffix after '*.'. */
  readonly name: string;
}

const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** RFC 9110 token characters. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HOST_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const IPV6_LITERAL = /^\[[0-9a-f:.]*:[0-9a-f:.]*\]$/;

/**
 * Characters allowed literally in a path segment (RFC 3986 pchar without '%', which is checked
 * separately): unreserved, sub-delims, ':' and '@'.
 */
const PCHAR: Uint8Array = (() => {
  const table = new Uint8Array(128);
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789' + "-._~!$&'()*+,;=:@";
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  return table;
})();

function describeChar(c: number): string {
  return c >= 0x21 && c <= 0x7e
    ? `'${String.fromCharCode(c)}'`
    : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** Parses a path pattern; pushes a message for every problem found and returns null if there was one. */
export function parsePattern(path: unknown, problems: string[]): ParsedPattern | null {
  if (typeof path !== 'string') {
    problems.push('path must be a string');
    return null;
  }
  const quoted = JSON.stringify(path);
  if (path.charCodeAt(0) !== 0x2f) {
    problems.push(`path ${quoted} must start with '/'`);
    return null;
  }
  const before = problems.length;
  if (path.includes('?')) problems.push(`path ${quoted} must not contain '?' (a route path has no query)`);
  if (path.includes('#')) problems.push(`path ${quoted} must not contain '#'`);
  // The root '/' has no segments; otherwise one trailing slash is allowed and ignored.
  let raw: string[] = [];
  if (path !== '/') {
    const body = path.endsWith('/') ? path.slice(1, -1) : path.slice(1);
    raw = body.split('/'); // '//' gives [''], reported as an empty segment below
  }
  const segments: PatternSegment[] = [];
  const paramNames: string[] = [];
  let wildcard = false;
  let emptyReported = false;
  for (let i = 0; i < raw.length; i++) {
    const text = raw[i]!;
    if (text === '') {
      if (!emptyReported) problems.push(`path ${quoted} has an empty segment ('//')`);
      emptyReported = true;
      continue;
    }
    if (text === '*') {
      if (i === raw.length - 1) wildcard = true;
      else problems.push(`path ${quoted}: '*' is only allowed as the whole last segment`);
      continue;
    }
    if (text.charCodeAt(0) === 0x3a) {
      const name = text.slice(1);
      if (!PARAM_NAME.test(name)) {
        problems.push(
          `path ${quoted}: parameter name ${JSON.stringify(name)} is invalid (expected [A-Za-z_][A-Za-z0-9_]*)`,
        );
      } else if (name === '__proto__') {
        problems.push(`path ${quoted}: parameter name "__proto__" is reserved`);
      } else if (paramNames.includes(name)) {
        problems.push(`path ${quoted}: parameter name ${JSON.stringify(name)} is used twice`);
      } else {
        paramNames.push(name);
        segments.push({ kind: 'param', name });
      }
      continue;
    }
    let valid = true;
    for (let j = 0; j < text.length; j++) {
      const c = text.charCodeAt(j);
      if (c === 0x25 || c === 0x3f || c === 0x23) continue; // '%' checked below, '?' '#' reported above
      if (c === 0x2a) {
        problems.push(`path ${quoted}: '*' is only allowed as the whole last segment`);
        valid = false;
        break;
      }
      if (c >= 128 || PCHAR[c] !== 1) {
        problems.push(`path ${quoted}: character ${describeChar(c)} must be percent-encoded`);
        valid = false;
        break;
      }
    }
    if (!valid) continue;
    const decoded = decodeUnreservedEscapes(text, 0, text.length);
    if (decoded === null) {
      problems.push(`path ${quoted} has a malformed percent escape ('%' must be followed by two hex digits)`);
      continue;
    }
    if (decoded === '.' || decoded === '..') {
      problems.push(
        `path ${quoted} has a dot segment ('.' or '..'); request paths are normalised, so it could never match`,
      );
      continue;
    }
    segments.push({ kind: 'static', text: decoded });
  }
  if (problems.length > before) return null;
  let shape = '';
  for (const segment of segments) shape += segment.kind === 'param' ? '/:' : `/${segment.text}`;
  return { segments, wildcard, paramNames, shape: shape === '' ? '/' : shape };
}

/**
 * Parses a host pattern: null (any host), an exact name ('api.example.com', '[::1]') or a wildcard
 * ('*.example.com'). Pushes a message for every problem found.
 */
export function parseHost(host: unknown, problems: string[]): ParsedHost | null {
  if (host === null) return null;
  if (typeof host !== 'string') {
    problems.push('host must be null or a string');
    return null;
  }
  const quoted = JSON.stringify(host);
  if (host === '') {
    problems.push('host must not be empty (use null for any host)');
    return null;
  }
  let name = host.toLowerCase();
  if (name.charCodeAt(0) === 0x5b) {
    if (!IPV6_LITERAL.test(name))
      problems.push(`host ${quoted} is not a valid IPv6 literal (without a port)`);
    return { wildcard: false, name };
  }
  if (name.endsWith('.')) name = name.slice(0, -1);
  let wildcard = false;
  if (name.startsWith('*.')) {
    wildcard = true;
    name = name.slice(2);
  }
  if (name.includes(':')) {
    problems.push(`host ${quoted} must not include a port`);
    return null;
  }
  if (name.includes('*')) {
    problems.push(`host ${quoted}: '*' is only allowed as the whole first label ('*.example.com')`);
    return null;
  }
  if (name === '' || name.length > 253 || !name.split('.').every((label) => HOST_LABEL.test(label))) {
    problems.push(`host ${quoted} is not a valid host name`);
    return null;
  }
  return { wildcard, name };
}

/** Parses a method list: null (any method) or a non-empty list of upper-case tokens. */
export function parseMethods(methods: unknown, problems: string[]): readonly string[] | null {
  if (methods === null) return null;
  if (!Array.isArray(methods) || methods.length === 0) {
    problems.push('methods must be null (any method) or a non-empty array of method names');
    return null;
  }
  const seen: string[] = [];
  for (const method of methods) {
    if (typeof method !== 'string' || !TOKEN.test(method)) {
      problems.push(`method ${JSON.stringify(method)} is not a valid method name (an RFC 9110 token)`);
    } else if (method !== method.toUpperCase()) {
      problems.push(
        `method ${JSON.stringify(method)} must be upper case (${JSON.stringify(method.toUpperCase())})`,
      );
    } else if (seen.includes(method)) {
      problems.push(`method ${JSON.stringify(method)} is listed twice`);
    } else {
      seen.push(method);
    }
  }
  return seen;
}
