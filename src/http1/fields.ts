/**
 * Field names the HTTP/1.1 engine must recognise, classified without allocating a lowercased copy of the
 * name. Every other field is `FIELD_OTHER` and is forwarded byte for byte.
 */
import { equalsLower } from './chars.ts';

export const FIELD_OTHER = 0;
export const FIELD_HOST = 1;
export const FIELD_CONTENT_LENGTH = 2;
export const FIELD_TRANSFER_ENCODING = 3;
export const FIELD_CONNECTION = 4;
export const FIELD_KEEP_ALIVE = 5;
export const FIELD_PROXY_CONNECTION = 6;
export const FIELD_TE = 7;
export const FIELD_TRAILER = 8;
export const FIELD_UPGRADE = 9;
export const FIELD_EXPECT = 10;
export const FIELD_X_FORWARDED_FOR = 11;
export const FIELD_X_FORWARDED_PROTO = 12;
export const FIELD_X_FORWARDED_HOST = 13;
/** A field named by a Connection header: hop-by-hop for this message only (set after parsing). */
export const FIELD_NAMED_BY_CONNECTION = 14;
/** A repeated Content-Length line with the same value: forwarded once (RFC 9110 §8.6). */
export const FIELD_DUPLICATE_CONTENT_LENGTH = 15;
export const FIELD_FORWARDED = 16;
export const FIELD_X_REAL_IP = 17;
export const FIELD_X_FORWARDED_PORT = 18;
export const FIELD_STRICT_TRANSPORT_SECURITY = 19;

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1): never forwarded. Framing fields are handled separately because the
 * proxy re-decides framing for the next hop.
 */
export function isHopByHop(kind: number): boolean {
  return (
    kind === FIELD_CONNECTION ||
    kind === FIELD_KEEP_ALIVE ||
    kind === FIELD_PROXY_CONNECTION ||
    kind === FIELD_TE ||
    kind === FIELD_TRAILER ||
    kind === FIELD_UPGRADE ||
    kind === FIELD_NAMED_BY_CONNECTION
  );
}

export function classifyField(buf: Buffer, start: number, end: number): number {
  switch (end - start) {
    case 2:
      return equalsLower(buf, start, 'te') ? FIELD_TE : FIELD_OTHER;
    case 4:
      return equalsLower(buf, start, 'host') ? FIELD_HOST : FIELD_OTHER;
    case 6:
      return equalsLower(buf, start, 'expect') ? FIELD_EXPECT : FIELD_OTHER;
    case 7:
      if (equalsLower(buf, start, 'upgrade')) return FIELD_UPGRADE;
      return equalsLower(buf, start, 'trailer') ? FIELD_TRAILER : FIELD_OTHER;
    case 9:
      if (equalsLower(buf, start, 'forwarded')) return FIELD_FORWARDED;
      return equalsLower(buf, start, 'x-real-ip') ? FIELD_X_REAL_IP : FIELD_OTHER;
    case 10:
      if (equalsLower(buf, start, 'connection')) return FIELD_CONNECTION;
      return equalsLower(buf, start, 'keep-alive') ? FIELD_KEEP_ALIVE : FIELD_OTHER;
    case 14:
      return equalsLower(buf, start, 'content-length') ? FIELD_CONTENT_LENGTH : FIELD_OTHER;
    case 15:
      return equalsLower(buf, start, 'x-forwarded-for') ? FIELD_X_FORWARDED_FOR : FIELD_OTHER;
    case 16:
      if (equalsLower(buf, start, 'proxy-connection')) return FIELD_PROXY_CONNECTION;
      if (equalsLower(buf, start, 'x-forwarded-host')) return FIELD_X_FORWARDED_HOST;
      return equalsLower(buf, start, 'x-forwarded-port') ? FIELD_X_FORWARDED_PORT : FIELD_OTHER;
    case 17:
      if (equalsLower(buf, start, 'transfer-encoding')) return FIELD_TRANSFER_ENCODING;
      return equalsLower(buf, start, 'x-forwarded-proto') ? FIELD_X_FORWARDED_PROTO : FIELD_OTHER;
    case 25:
      return equalsLower(buf, start, 'strict-transport-security')
        ? FIELD_STRICT_TRANSPORT_SECURITY
        : FIELD_OTHER;
    default:
      return FIELD_OTHER;
  }
}

/**
 * Common field names, lowercase, by length: a head mapped to HTTP/2 (or read by name) names its fields
 * with these shared strings instead of a new string (and a lowercased copy) per field.
 */
const COMMON_NAMES: readonly (readonly string[])[] = (() => {
  const names = [
    'accept',
    'accept-encoding',
    'accept-language',
    'user-agent',
    'cookie',
    'authorization',
    'referer',
    'origin',
    'if-none-match',
    'if-modified-since',
    'age',
    'date',
    'etag',
    'vary',
    'link',
    'server',
    'expires',
    'location',
    'set-cookie',
    'content-type',
    'accept-ranges',
    'cache-control',
    'last-modified',
    'content-length',
    'content-language',
    'content-encoding',
    'content-disposition',
    'x-content-type-options',
    'access-control-allow-origin',
    'access-control-allow-credentials',
  ];
  const byLength: string[][] = [];
  for (const name of names) {
    const group = byLength[name.length];
    if (group === undefined) byLength[name.length] = [name];
    else group.push(name);
  }
  return byLength;
})();

/** The name in buf[start, end) in lowercase: a shared string for a common name, else a new one. */
export function lowerFieldName(buf: Buffer, start: number, end: number): string {
  const candidates = COMMON_NAMES[end - start];
  if (candidates !== undefined) for (const name of candidates) if (equalsLower(buf, start, name)) return name;
  return buf.latin1Slice(start, end).toLowerCase();
}
