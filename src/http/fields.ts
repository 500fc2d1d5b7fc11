/**
 * The field names zproxy acts on, whatever protocol carried the message: one table of names and kinds
 * that the HTTP/1.1 parser (classifying bytes, src/http1/fields.ts), the HTTP/2 frame layer
 * (connection-specific fields) and the forwarding policy (src/http/forwarding.ts) all read. Every other
 * field is FIELD_OTHER and is forwarded as it came.
 *
 * A message's fields are read through FieldSource: a parsed HTTP/1.1 head (offsets into the bytes that
 * arrived) and a FieldList (a flat list of lowercase names and values: HTTP/2, local answers) both are one.
 */
import { writeLatin1 } from '../util/bytes.ts';

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
/** The settings of an HTTP/1.1 `Upgrade: h2c` request: connection-specific (RFC 7540 §3.2.1). */
export const FIELD_HTTP2_SETTINGS = 20;
/** W3C Trace Context (src/http/trace-context.ts). */
export const FIELD_TRACEPARENT = 21;
export const FIELD_TRACESTATE = 22;

/** The names of the kinds above (lowercase), the one list every classifier is built from. */
export const FIELD_NAMES: readonly (readonly [name: string, kind: number])[] = [
  ['host', FIELD_HOST],
  ['content-length', FIELD_CONTENT_LENGTH],
  ['transfer-encoding', FIELD_TRANSFER_ENCODING],
  ['connection', FIELD_CONNECTION],
  ['keep-alive', FIELD_KEEP_ALIVE],
  ['proxy-connection', FIELD_PROXY_CONNECTION],
  ['te', FIELD_TE],
  ['trailer', FIELD_TRAILER],
  ['upgrade', FIELD_UPGRADE],
  ['expect', FIELD_EXPECT],
  ['x-forwarded-for', FIELD_X_FORWARDED_FOR],
  ['x-forwarded-proto', FIELD_X_FORWARDED_PROTO],
  ['x-forwarded-host', FIELD_X_FORWARDED_HOST],
  ['forwarded', FIELD_FORWARDED],
  ['x-real-ip', FIELD_X_REAL_IP],
  ['x-forwarded-port', FIELD_X_FORWARDED_PORT],
  ['strict-transport-security', FIELD_STRICT_TRANSPORT_SECURITY],
  ['http2-settings', FIELD_HTTP2_SETTINGS],
  ['traceparent', FIELD_TRACEPARENT],
  ['tracestate', FIELD_TRACESTATE],
];

const KIND_BY_NAME = new Map<string, number>(FIELD_NAMES);

/** The kind of a lowercase field name. */
export function kindOfName(lowerName: string): number {
  return KIND_BY_NAME.get(lowerName) ?? FIELD_OTHER;
}

/** A bit per kind, for masks of kinds (`mask & kindBit(kind)`). */
export function kindBit(kind: number): number {
  return 1 << kind;
}

/**
 * Hop-by-hop fields (RFC 9110 §7.6.1) and the other connection-specific ones: they describe one
 * connection and never cross a proxy. Transfer-Encoding is one too (each hop frames its own body).
 */
export const HOP_BY_HOP_MASK =
  kindBit(FIELD_CONNECTION) |
  kindBit(FIELD_KEEP_ALIVE) |
  kindBit(FIELD_PROXY_CONNECTION) |
  kindBit(FIELD_TE) |
  kindBit(FIELD_TRAILER) |
  kindBit(FIELD_UPGRADE) |
  kindBit(FIELD_NAMED_BY_CONNECTION) |
  kindBit(FIELD_HTTP2_SETTINGS) |
  kindBit(FIELD_TRANSFER_ENCODING);

/**
 * Fields an HTTP/2 message must not carry (RFC 9113 §8.2.2): the frame layer refuses a request that has
 * one (`te` is allowed with the value `trailers` only, and checked on its own).
 */
export const CONNECTION_SPECIFIC_MASK =
  kindBit(FIELD_CONNECTION) |
  kindBit(FIELD_KEEP_ALIVE) |
  kindBit(FIELD_PROXY_CONNECTION) |
  kindBit(FIELD_TRANSFER_ENCODING) |
  kindBit(FIELD_UPGRADE);

/**
 * Fields zproxy writes itself on every hop: the framing fields (Content-Length, Transfer-Encoding), Host,
 * and the hop-by-hop and connection-specific ones. An edit of one by a filter could make the next hop read
 * the message differently (request smuggling toward the upstream, response splitting toward the client),
 * so filters cannot set, add or remove them (src/pipeline/field-edits.ts, the `headers` filter's config),
 * and a filter's local answer does not carry them (src/pipeline/local-response.ts).
 */
export const MANAGED_MASK =
  HOP_BY_HOP_MASK | CONNECTION_SPECIFIC_MASK | kindBit(FIELD_CONTENT_LENGTH) | kindBit(FIELD_HOST);

/** True for the lowercase name of a field zproxy manages (see MANAGED_MASK). */
export function isManagedName(lowerName: string): boolean {
  return (MANAGED_MASK & kindBit(kindOfName(lowerName))) !== 0;
}

/** True for a hop-by-hop kind (see HOP_BY_HOP_MASK). */
export function isHopByHop(kind: number): boolean {
  return (HOP_BY_HOP_MASK & (1 << kind)) !== 0;
}

/** A message's fields, read by index (a parsed HTTP/1.1 head, or a FieldList). */
export interface FieldSource {
  readonly fieldCount: number;
  /** One of FIELD_*. */
  fieldKind(i: number): number;
  /** One bit per FIELD_* kind among the fields (1 << kind): a kind that is absent needs no search. */
  readonly kindsPresent: number;
  /** The name in lowercase. */
  lowerFieldName(i: number): string;
  fieldValue(i: number): string;
  /** The length of field `i`'s value in bytes (latin1: one byte per character). */
  fieldValueLength(i: number): number;
  /**
   * Writes field `i`'s value into `out` at `offset` (no string made when the source holds the bytes, as a
   * parsed HTTP/1.1 head does); returns the offset after it. `out` has room (see fieldValueLength).
   */
  writeFieldValue(i: number, out: Buffer, offset: number): number;
  /** The index of the first field named `lowerName` (lowercase) at or after `from`, or -1. */
  indexOfField(lowerName: string, from?: number): number;
}

/**
 * Edits to apply to a message's fields as it is written (filters make them: src/pipeline/field-edits.ts):
 * the received fields whose lowercase name is in `dropped` are left out, then `added` (names and values
 * alternately) is written.
 */
export interface MessageEdits {
  readonly dropped: readonly string[];
  readonly added: readonly string[];
  /** `added` as HTTP/1.1 field lines, each ending in CRLF. */
  lines(): string;
}

/**
 * Fields as a flat list of lowercase names and values (`[name, value, name, value...]`), as HTTP/2 carries
 * them; the kinds are classified once, when first asked for.
 */
export class FieldList implements FieldSource {
  readonly list: readonly string[];
  private kinds: number[] | null;
  /** kindsPresent, -1 until first asked for. */
  private present = -1;

  /**
   * `kinds`, when given, are the fields' kinds already looked up (the HTTP/2 frame layer does so while it
   * checks them); else they are looked up when first asked for.
   */
  constructor(list: readonly string[], kinds: number[] | null = null) {
    this.list = list;
    this.kinds = kinds;
  }

  /**
   * The fields of a header object (node:http2's shape: lowercase names, lists for repeated fields);
   * pseudo-header fields are left out.
   */
  static fromObject(headers: Readonly<Record<string, string | string[] | number | undefined>>): FieldList {
    const list: string[] = [];
    for (const name of Object.keys(headers)) {
      if (name.charCodeAt(0) === 0x3a) continue;
      const value = headers[name];
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) list.push(name, v);
      else list.push(name, typeof value === 'string' ? value : String(value));
    }
    return new FieldList(list);
  }

  get fieldCount(): number {
    return this.list.length >> 1;
  }

  fieldKind(i: number): number {
    return (this.kinds ?? this.classify())[i]!;
  }

  get kindsPresent(): number {
    if (this.present === -1) {
      const kinds = this.kinds ?? this.classify();
      let present = 0;
      for (let j = 0; j < kinds.length; j++) present |= 1 << kinds[j]!;
      this.present = present;
    }
    return this.present;
  }

  private classify(): number[] {
    const list = this.list;
    const n = list.length >> 1;
    const kinds: number[] = [];
    for (let j = 0; j < n; j++) kinds.push(kindOfName(list[j * 2]!));
    this.kinds = kinds;
    return kinds;
  }

  lowerFieldName(i: number): string {
    return this.list[i * 2]!;
  }

  fieldValue(i: number): string {
    return this.list[i * 2 + 1]!;
  }

  fieldValueLength(i: number): number {
    return this.list[i * 2 + 1]!.length;
  }

  writeFieldValue(i: number, out: Buffer, offset: number): number {
    return writeLatin1(out, this.list[i * 2 + 1]!, offset);
  }

  indexOfField(lowerName: string, from = 0): number {
    const list = this.list;
    for (let i = from * 2; i < list.length; i += 2) if (list[i] === lowerName) return i >> 1;
    return -1;
  }
}

/** A flat field list as a header object (node:http2's shape: lists for repeated fields). */
export function fieldObject(list: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    const prior = out[name];
    if (prior === undefined) out[name] = list[i + 1]!;
    else if (Array.isArray(prior)) prior.push(list[i + 1]!);
    else out[name] = [prior, list[i + 1]!];
  }
  return out;
}

/** The values of the fields of one kind joined with ", " (RFC 9110 §5.3); '' when there is none. */
export function joinedValues(source: FieldSource, kind: number): string {
  let out = '';
  const n = source.fieldCount;
  for (let i = 0; i < n; i++) {
    if (source.fieldKind(i) !== kind) continue;
    const v = source.fieldValue(i);
    out = out === '' ? v : `${out}, ${v}`;
  }
  return out;
}
