/**
 * The grammar of request-targets and authorities (RFC 9110, RFC 9112 §3.2, RFC 3986), shared by the
 * HTTP/1.1 parser (src/http1/parse-head.ts) and the HTTP/2 frame layer (src/http2/server-connection.ts),
 * so that a request-target or a Host one engine refuses never reaches an upstream through the other.
 * Tables are built once; a check is one array read per character, no RegExp. Strings are latin1 (one
 * character per octet), as everywhere in zproxy: a character above 0xff reads `undefined` and is refused.
 */

function table(predicate: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = predicate(c) ? 1 : 0;
  return t;
}

const isAlpha = (c: number) => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** ALPHA (RFC 5234). */
export const ALPHA = table(isAlpha);

/** tchar (RFC 9110 §5.6.2): the characters of a token, e.g. a field name or a method. */
export const TCHAR = table(
  (c) => isAlpha(c) || isDigit(c) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c)),
);

/**
 * Request-target characters: visible ASCII except '\' (never valid in a URI, and some upstreams treat it
 * as '/', which would allow path confusion) and '#' (a fragment is never part of a request-target, RFC 9112
 * §3.2; components that strip it and components that do not would see different paths). Bytes above 0x7e,
 * controls, SP and DEL are refused.
 */
export const TARGET_CHAR = table((c) => c > 0x20 && c < 0x7f && c !== 0x5c && c !== 0x23);

/**
 * reg-name characters (RFC 3986 §3.2.2): unreserved, pct-encoded and sub-delims. With ':' before a port and
 * the brackets of an IP-literal (validAuthority), they make Host values, `:authority` and the authority of
 * a request-target: no userinfo '@', no '/', '?', '#', '\', quotes, braces or anything outside visible
 * ASCII.
 */
export const REG_NAME_CHAR = table(
  (c) => isAlpha(c) || isDigit(c) || "-._~%!$&'()*+,;=".includes(String.fromCharCode(c)),
);

const COLON = 0x3a;
const SLASH = 0x2f;
const LEFT_BRACKET = 0x5b;
const RIGHT_BRACKET = 0x5d;

/**
 * Checks uri-host [ ":" port ] (RFC 3986 §3.2.2-3.2.3, RFC 9110 §7.2) in s[start, end): an IP-literal in
 * brackets or a reg-name, then optionally ":" and digits only; never userinfo. `requireHost` refuses an
 * empty host, `requirePort` a missing or empty port (the authority-form of CONNECT). The one rule for
 * Host values, `:authority` and the authority of absolute-form and authority-form targets, so that
 * "a:b", "a:1:2", "[::1", "user@a" or "a/b" never reach routing or an upstream.
 */
export function validAuthority(
  s: string,
  start: number,
  end: number,
  requireHost: boolean,
  requirePort: boolean,
): boolean {
  let p = start;
  if (p < end && s.charCodeAt(p) === LEFT_BRACKET) {
    p++;
    while (p < end && s.charCodeAt(p) !== RIGHT_BRACKET) {
      const c = s.charCodeAt(p);
      if (REG_NAME_CHAR[c] !== 1 && c !== COLON) return false;
      p++;
    }
    if (p === end || p === start + 1) return false;
    p++;
  } else {
    while (p < end && REG_NAME_CHAR[s.charCodeAt(p)] === 1) p++;
    if (requireHost && p === start) return false;
  }
  if (p === end) return !requirePort;
  if (s.charCodeAt(p) !== COLON) return false;
  p++;
  if (requirePort && p === end) return false;
  for (; p < end; p++) {
    const c = s.charCodeAt(p);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * An origin-form request-target (RFC 9112 §3.2.1: absolute-path [ "?" query ]) with the characters the
 * HTTP/1.1 parser accepts in a request-target (TARGET_CHAR): starts with '/', no SP, controls, DEL, '\',
 * '#' or octets above 0x7e.
 */
export function validOriginForm(s: string): boolean {
  const n = s.length;
  if (n === 0 || s.charCodeAt(0) !== SLASH) return false;
  for (let i = 1; i < n; i++) if (TARGET_CHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}
