/**
 * Request path normalisation (see docs/routing.md, "Path normalisation").
 *
 * The router, the filters and the upstream all see the same normalised path, so that two spellings
 * of one resource (`/a/%62`, `/a//b/../b`) cannot be routed, authorised or cached differently
 * ("path confusion").
 */

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;

/** UNRESERVED[octet] === 1 for ALPHA / DIGIT / '-' / '.' / '_' / '~' (RFC 3986 §2.3). */
const UNRESERVED: Uint8Array = (() => {
  const table = new Uint8Array(256);
  for (let c = 0x30; c <= 0x39; c++) table[c] = 1;
  for (let c = 0x41; c <= 0x5a; c++) table[c] = 1;
  for (let c = 0x61; c <= 0x7a; c++) table[c] = 1;
  table[0x2d] = 1; // '-'
  table[0x2e] = 1; // '.'
  table[0x5f] = 1; // '_'
  table[0x7e] = 1; // '~'
  return table;
})();

/** The value of one hex digit, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * The octet encoded by the escape whose '%' is at `i`, or -1 when it is malformed (not followed by
 * two hex digits before `end`).
 */
function escapedOctet(s: string, i: number, end: number): number {
  if (i + 2 >= end) return -1;
  const hi = hexValue(s.charCodeAt(i + 1));
  const lo = hexValue(s.charCodeAt(i + 2));
  if (hi < 0 || lo < 0) return -1;
  return (hi << 4) | lo;
}

/**
 * `s.slice(start, end)` with percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2); every
 * other escape is kept exactly as written (hex case included). Null when an escape is malformed.
 */
export function decodeUnreservedEscapes(s: string, start: number, end: number): string | null {
  let out = '';
  let copied = start;
  for (let i = start; i < end; i++) {
    if (s.charCodeAt(i) !== PERCENT) continue;
    const octet = escapedOctet(s, i, end);
    if (octet < 0) return null;
    if (UNRESERVED[octet] === 1) {
      out += s.slice(copied, i) + String.fromCharCode(octet);
      copied = i + 3;
    }
    i += 2;
  }
  return copied === start ? s.slice(start, end) : out + s.slice(copied, end);
}

/** True when the '.' at `i` (just after a '/') starts a '.' or '..' segment. */
function isDotSegmentAt(path: string, i: number): boolean {
  const len = path.length;
  const next = i + 1;
  if (next === len) return true;
  const c = path.charCodeAt(next);
  if (c === SLASH) return true;
  return c === DOT && (next + 1 === len || path.charCodeAt(next + 1) === SLASH);
}

/**
 * Normalises the path of an origin-form request target (no query string):
 * 1. percent-encoded unreserved characters are decoded (`%41` → `A`, `%2e` → `.`); every other escape
 *    (`%2F`, `%2f`, `%25`, `%20`, ...) is kept exactly as sent;
 * 2. repeated slashes are merged (`//a///b` → `/a/b`);
 * 3. dot segments are removed (RFC 3986 §5.2.4); a trailing `/.` or `/..` leaves a trailing slash.
 *
 * Returns the same string instance when nothing changes (one charCodeAt scan, no allocation), and
 * null when the path does not start with '/', has a malformed escape (`%` not followed by two hex
 * digits) or its dot segments would climb above the root (`/../x`).
 */
export function normalizePath(path: string): string | null {
  const len = path.length;
  if (len === 0 || path.charCodeAt(0) !== SLASH) return null;
  for (let i = 1; i < len; i++) {
    const c = path.charCodeAt(i);
    if (c === SLASH) {
      if (path.charCodeAt(i - 1) === SLASH) return normalizeSlow(path);
    } else if (c === DOT) {
      if (path.charCodeAt(i - 1) === SLASH && isDotSegmentAt(path, i)) return normalizeSlow(path);
    } else if (c === PERCENT) {
      const octet = escapedOctet(path, i, len);
      if (octet < 0) return null;
      if (UNRESERVED[octet] === 1) return normalizeSlow(path);
      i += 2;
    }
  }
  return path;
}

/** The general case: decode, merge slashes and remove dot segments, segment by segment. */
function normalizeSlow(path: string): string | null {
  const len = path.length;
  const segments: string[] = [];
  let start = 1;
  for (;;) {
    let end = path.indexOf('/', start);
    const last = end === -1;
    if (last) end = len;
    const segment = decodeUnreservedEscapes(path, start, end);
    if (segment === null) return null;
    const isDot = segment === '.';
    const isDotDot = segment === '..';
    if (isDotDot) {
      if (segments.length === 0) return null;
      segments.pop();
    } else if (segment !== '' && !isDot) {
      segments.push(segment);
    }
    if (last) {
      if (segments.length === 0) return '/';
      const trailingSlash = segment === '' || isDot || isDotDot;
      return `/${segments.join('/')}${trailingSlash ? '/' : ''}`;
    }
    start = end + 1;
  }
}
