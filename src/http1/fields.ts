/**
 * Field names recognised in the bytes of an HTTP/1.1 head without allocating a lowercased copy: the kinds
 * of src/http/fields.ts (one table for every protocol), classified here byte by byte. Every other field
 * is `FIELD_OTHER` and is forwarded byte for byte.
 */
import { FIELD_NAMES, FIELD_OTHER, FieldList } from '../http/fields.ts';
import { equalsLower } from './chars.ts';

/** The table's names and kinds grouped by name length (a head's field name is compared with these only). */
const KINDS_BY_LENGTH: (readonly (readonly [string, number])[] | undefined)[] = (() => {
  const out: (readonly [string, number])[][] = [];
  for (const entry of FIELD_NAMES) {
    const group = out[entry[0].length];
    if (group === undefined) out[entry[0].length] = [entry];
    else group.push(entry);
  }
  return out;
})();

/** The kind (FIELD_*) of the field name in buf[start, end). */
export function classifyField(buf: Buffer, start: number, end: number): number {
  const candidates = KINDS_BY_LENGTH[end - start];
  if (candidates === undefined) return FIELD_OTHER;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    if (equalsLower(buf, start, c[0])) return c[1];
  }
  return FIELD_OTHER;
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

/**
 * The trailer section of a chunked message (validated by ChunkedDecoder: `name: value` lines ending in
 * CRLF) as a field list: lowercase names, values without surrounding whitespace, in order.
 */
export function parseTrailerSection(text: string): FieldList {
  const list: string[] = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\r\n', start);
    if (end === -1) end = text.length;
    const colon = text.indexOf(':', start);
    if (colon !== -1 && colon < end) {
      list.push(text.slice(start, colon).toLowerCase(), text.slice(colon + 1, end).trim());
    }
    start = end + 2;
  }
  return new FieldList(list);
}
