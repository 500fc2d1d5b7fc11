/**
 * The forwarding policy: what a request keeps, loses and gains on its way to the upstream, and what the
 * response keeps, loses and gains on its way back, whatever protocol each side speaks. One rule set,
 * compiled once per runtime (ForwardingPolicy), decided once per exchange (ForwardedRequest,
 * ForwardedResponse), and rendered by serializers for each protocol: HTTP/1.1 field lines and node:http2's
 * flat field lists here; the HTTP/1.1 engine's byte-copying serializer (src/http1/serialize.ts) renders
 * the same decisions from the bytes that arrived.
 *
 * The rules:
 * - hop-by-hop and connection-specific fields (src/http/fields.ts, HOP_BY_HOP_MASK) and the fields
 *   Connection names never cross; each hop frames its own body (Transfer-Encoding, Content-Length);
 * - `X-Forwarded-For` gets the client's address, `X-Forwarded-Proto` the client's scheme and
 *   `X-Forwarded-Host` the authority it addressed. A peer in `trusted_proxies` is a proxy of our own: its
 *   X-Forwarded-For is appended to and its Proto and Host kept, and its `Forwarded`, `X-Real-IP` and
 *   `X-Forwarded-Port` pass. Anyone else's are replaced or dropped;
 * - `Via` gets this hop's entry, after any the message already has (RFC 9110 §7.6.3), naming the
 *   protocol version the message was received with (`1.1 zproxy`, `2 zproxy`);
 * - Host (`:authority` for HTTP/2 upstreams) is the client's with `preserve_host`, else the target's;
 * - Expect is answered by zproxy (100-continue) and never forwarded;
 * - a response to which no body belongs carries no framing: 1xx and 204 lose Content-Length
 *   (RFC 9110 §8.6), every response loses Transfer-Encoding;
 * - with `tls.hsts` on a listener, zproxy's Strict-Transport-Security replaces the upstream's;
 * - with `tracing.traceparent` (the default), the upstream gets a W3C `traceparent` naming zproxy as a new
 *   span: the client's trace id and flags with a new parent id when the client sent one valid
 *   traceparent (its `tracestate` passes unchanged), else a new trace (sampled flag set) and no
 *   tracestate (W3C Trace Context §4: a tracestate without a valid traceparent is discarded);
 * - the filters' edits (MessageEdits) come last: they apply to the fields as forwarded, zproxy's
 *   included, so a `headers` rule that sets `x-forwarded-proto` replaces zproxy's.
 */
import { BlockList, isIP } from 'node:net';
import { writeLatin1 } from '../util/bytes.ts';
import {
  FIELD_CONTENT_LENGTH,
  FIELD_DUPLICATE_CONTENT_LENGTH,
  FIELD_EXPECT,
  FIELD_FORWARDED,
  FIELD_HOST,
  FIELD_STRICT_TRANSPORT_SECURITY,
  FIELD_TE,
  FIELD_TRACEPARENT,
  FIELD_TRACESTATE,
  FIELD_UPGRADE,
  FIELD_X_FORWARDED_FOR,
  FIELD_X_FORWARDED_HOST,
  FIELD_X_FORWARDED_PORT,
  FIELD_X_FORWARDED_PROTO,
  FIELD_X_REAL_IP,
  type FieldSource,
  HOP_BY_HOP_MASK,
  joinedValues,
  kindBit,
  type MessageEdits,
} from './fields.ts';
import { newTraceparent, randomHex, traceFlagsOf, traceIdOf, validTraceparent } from './trace-context.ts';

/** Request fields never copied from the client: hop-by-hop, Expect, and the X-Forwarded-* zproxy rewrites. */
export const REQUEST_DROP_MASK =
  HOP_BY_HOP_MASK |
  kindBit(FIELD_DUPLICATE_CONTENT_LENGTH) |
  kindBit(FIELD_EXPECT) |
  kindBit(FIELD_X_FORWARDED_FOR) |
  kindBit(FIELD_X_FORWARDED_PROTO) |
  kindBit(FIELD_X_FORWARDED_HOST);

/** Client-identity fields only a peer in `trusted_proxies` may set. */
export const UNTRUSTED_DROP_MASK =
  kindBit(FIELD_FORWARDED) | kindBit(FIELD_X_REAL_IP) | kindBit(FIELD_X_FORWARDED_PORT);

/** Response fields never copied from the upstream. */
export const RESPONSE_DROP_MASK = HOP_BY_HOP_MASK | kindBit(FIELD_DUPLICATE_CONTENT_LENGTH);

export const HOST_BIT = kindBit(FIELD_HOST);
export const CONTENT_LENGTH_BIT = kindBit(FIELD_CONTENT_LENGTH);
export const HSTS_BIT = kindBit(FIELD_STRICT_TRANSPORT_SECURITY);
/** Cleared from a request's drop mask for a WebSocket handshake: its Upgrade field is forwarded. */
export const UPGRADE_BIT = kindBit(FIELD_UPGRADE);

/** Dropped from a request continued by zproxy's own traceparent: the client's (the tracestate passes). */
export const TRACEPARENT_BIT = kindBit(FIELD_TRACEPARENT);
/** Dropped from a request zproxy starts a new trace for: the client's invalid traceparent and its tracestate. */
export const NEW_TRACE_DROP_MASK = TRACEPARENT_BIT | kindBit(FIELD_TRACESTATE);

/** Fields never forwarded in a trailer section (RFC 9110 §6.5.1: framing, routing and connection fields). */
export const TRAILER_DROP_MASK = RESPONSE_DROP_MASK | CONTENT_LENGTH_BIT | HOST_BIT;

/** `trusted_proxies` (addresses and CIDR ranges) as a BlockList to check peers against; null when empty. */
export function compileTrustedProxies(entries: readonly string[]): BlockList | null {
  if (entries.length === 0) return null;
  const list = new BlockList();
  for (const entry of entries) {
    const slash = entry.indexOf('/');
    const address = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (slash === -1) list.addAddress(address, family);
    else list.addSubnet(address, Number(entry.slice(slash + 1)), family);
  }
  return list;
}

/**
 * The path sent upstream for a request whose route matched `matchedLength` characters of its path (from
 * the router): with `strip_prefix` the matched part is removed and the rest keeps a leading '/'.
 */
export function forwardPath(stripPrefix: boolean, path: string, matchedLength: number): string {
  if (!stripPrefix || matchedLength === 0) return path;
  const rest = path.slice(matchedLength);
  return rest.charCodeAt(0) === 0x2f ? rest : `/${rest}`;
}

/** True when a TE field value lists `trailers` (RFC 9110 §10.1.4). */
export function acceptsTrailers(te: string): boolean {
  return te !== '' && /(?:^|,)[ \t]*trailers[ \t]*(?:;|,|$)/i.test(te);
}

/** True when a response with this status has no body and no framing fields (RFC 9110 §6.4.1, §8.6). */
export function statusForbidsLength(status: number): boolean {
  return status < 200 || status === 204;
}

/** The decisions for one forwarded request (reused from exchange to exchange by an HTTP/1.1 connection). */
export class ForwardedRequest {
  /** Kinds of the client's fields that are not copied (see REQUEST_DROP_MASK, HOST_BIT). */
  dropMask = 0;
  xForwardedFor = '';
  xForwardedProto = '';
  /** '' when the client addressed no authority. */
  xForwardedHost = '';
  /** This hop's Via entry: `1.1 zproxy`. */
  via = '';
  /** The Host (or `:authority`) to send. */
  authority = '';
  /** The client's own Host line is kept as it came (HTTP/1.1 to HTTP/1.1 with `preserve_host`). */
  keepHostField = false;
  /**
   * zproxy's traceparent for the upstream (its trace id and zproxy's span id: traceIdOf, spanIdOf); ''
   * when tracing is off (the client's passes as it came).
   */
  traceparent = '';
  /** The client's trace fields replaced by zproxy's (0, TRACEPARENT_BIT or NEW_TRACE_DROP_MASK). */
  traceDropMask = 0;
}

/** The decisions for one forwarded response. */
export class ForwardedResponse {
  /** Kinds of the upstream's fields that are not copied. */
  dropMask = 0;
  /** This hop's Via entry: `1.1 zproxy` for an HTTP/1.1 upstream. */
  via = '';
  /** zproxy's Strict-Transport-Security value (the listener's `tls.hsts`), or null. */
  hsts: string | null = null;
}

export class ForwardingPolicy {
  /** Peers whose forwarding fields are trusted (appended to); null when none are. */
  readonly trustedProxies: BlockList | null;
  readonly preserveHost: boolean;
  /** `tracing.traceparent`: the upstream gets zproxy's traceparent. */
  readonly traceparent: boolean;

  constructor(trustedProxies: BlockList | null, preserveHost: boolean, traceparent = false) {
    this.trustedProxies = trustedProxies;
    this.preserveHost = preserveHost;
    this.traceparent = traceparent;
  }

  /**
   * Decides the trace context of an exchange, once (a retry to another target keeps it): the client's
   * trace continued with a new span when `source` has exactly one valid traceparent, else a new trace.
   * Call before request(), which drops the client's fields this replaces.
   */
  trace(out: ForwardedRequest, source: FieldSource): void {
    if (!this.traceparent) {
      out.traceparent = '';
      out.traceDropMask = 0;
      return;
    }
    let found = -1;
    const n = (source.kindsPresent & (1 << FIELD_TRACEPARENT)) === 0 ? 0 : source.fieldCount;
    for (let i = 0; i < n; i++) {
      if (source.fieldKind(i) !== FIELD_TRACEPARENT) continue;
      // Two traceparent fields cannot be read as one: a new trace (W3C Trace Context §3.2).
      found = found === -1 ? i : -2;
    }
    const client = found >= 0 ? source.fieldValue(found) : '';
    if (found >= 0 && validTraceparent(client)) {
      out.traceparent = `00-${traceIdOf(client)}-${randomHex(16)}-${traceFlagsOf(client)}`;
      out.traceDropMask = TRACEPARENT_BIT;
    } else {
      // A new trace: one slice of a pool of whole traceparents.
      out.traceparent = newTraceparent();
      out.traceDropMask = NEW_TRACE_DROP_MASK;
    }
  }

  /**
   * Decides how a request is forwarded. `host` is the authority the client addressed ('' when none: the
   * Host field, `:authority`, or an absolute-form target's authority); `hostField` is the value of the
   * client's own Host line when it has one that may be kept as it came (HTTP/1.1), else null; `version`
   * the protocol version the client spoke ('1.0', '1.1', '2'); `targetHost` the upstream target's own
   * authority (for Host without `preserve_host`).
   */
  request(
    out: ForwardedRequest,
    source: FieldSource,
    clientAddress: string,
    scheme: string,
    host: string,
    hostField: string | null,
    version: string,
    targetHost: string,
  ): void {
    const trusted = this.trustedProxies?.check(clientAddress) === true;
    let xff = clientAddress;
    let proto = scheme;
    let forwardedHost = host;
    if (trusted) {
      const prior = joinedValues(source, FIELD_X_FORWARDED_FOR);
      if (prior !== '') xff = `${prior}, ${xff}`;
      const priorProto = joinedValues(source, FIELD_X_FORWARDED_PROTO);
      if (priorProto !== '') proto = priorProto;
      const priorHost = joinedValues(source, FIELD_X_FORWARDED_HOST);
      if (priorHost !== '') forwardedHost = priorHost;
    }
    out.xForwardedFor = xff;
    out.xForwardedProto = proto;
    out.xForwardedHost = forwardedHost;
    out.via = version === '1.1' ? '1.1 zproxy' : version === '2' ? '2 zproxy' : '1.0 zproxy';
    const preserve = this.preserveHost;
    out.authority = preserve && host !== '' ? host : targetHost;
    out.keepHostField = preserve && hostField !== null && hostField === host;
    let mask = (trusted ? REQUEST_DROP_MASK : REQUEST_DROP_MASK | UNTRUSTED_DROP_MASK) | out.traceDropMask;
    if (!out.keepHostField) mask |= HOST_BIT;
    out.dropMask = mask;
  }

  /**
   * Decides how a response is forwarded: `version` is the protocol version the upstream answered with,
   * `hsts` the listener's Strict-Transport-Security value or null, `chunked` whether the upstream's body
   * is chunked (a Content-Length beside it means nothing: the chunks frame the body).
   */
  response(
    out: ForwardedResponse,
    status: number,
    version: string,
    hsts: string | null,
    chunked: boolean,
  ): void {
    let mask = RESPONSE_DROP_MASK;
    if (hsts !== null) mask |= HSTS_BIT;
    if (chunked || statusForbidsLength(status)) mask |= CONTENT_LENGTH_BIT;
    out.dropMask = mask;
    out.via = version === '1.1' ? '1.1 zproxy' : version === '2' ? '2 zproxy' : '1.0 zproxy';
    out.hsts = hsts;
  }
}

/** True when a filter's edits remove every field of this (lowercase) name. */
function edited(edits: MessageEdits | null, lowerName: string): boolean {
  return edits !== null && edits.dropped.length > 0 && edits.dropped.includes(lowerName);
}

// ---------------------------------------------------------------- HTTP/1.1 field lines

/**
 * HTTP/1.1 field lines as pieces (names, separators, values) in the order they go out: building them
 * concatenates no strings. (A concatenated string is a chain of parts that V8 copies into one flat string
 * when it is written into a buffer: an allocation and a copy per head.) The HTTP/1.1 engine writes the
 * pieces into the head's buffer (src/http1/serialize.ts), which releases them; toString() joins them where
 * a string is wanted. Heads are built synchronously, one at a time: each engine fills the process's one
 * collector, `headLines`, and writes it before it builds another head.
 */
export class HeadLines {
  private readonly parts: string[] = [];
  private count = 0;
  /** Bytes of the pieces (latin1: one byte per character). */
  length = 0;

  /** Starts a new set of lines (what an earlier one left is forgotten). */
  clear(): this {
    for (let i = 0; i < this.count; i++) this.parts[i] = '';
    this.count = 0;
    this.length = 0;
    return this;
  }

  add(piece: string): this {
    this.parts[this.count++] = piece;
    this.length += piece.length;
    return this;
  }

  /**
   * Writes the pieces into `out` at `offset` and releases them (a piece kept by this long-lived array would
   * outlive its exchange); returns the offset after them. Short pieces are copied by a loop: no native call.
   */
  writeTo(out: Buffer, offset: number): number {
    const parts = this.parts;
    let o = offset;
    for (let i = 0; i < this.count; i++) {
      o = writeLatin1(out, parts[i]!, o);
      parts[i] = '';
    }
    this.count = 0;
    this.length = 0;
    return o;
  }

  /** The pieces in a buffer of their own (released like writeTo). */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.length);
    this.writeTo(out, 0);
    return out;
  }

  /** The pieces as one string (released like writeTo). */
  toString(): string {
    let out = '';
    for (let i = 0; i < this.count; i++) out += this.parts[i]!;
    this.clear();
    return out;
  }
}

/** The process's one HeadLines (see there: filled and written at once, one head at a time). */
export const headLines = new HeadLines();

/**
 * zproxy's own request fields as HTTP/1.1 lines (each ending in CRLF), then the filters' added fields:
 * what follows the client's kept fields, added to `lines`. Host is included unless the client's own line is
 * kept. Framing, Connection and the blank line are the engine's.
 */
export function addRequestLines(lines: HeadLines, fwd: ForwardedRequest, edits: MessageEdits | null): void {
  if (edits === null) {
    // The common case: the forwarding lines and the Host line, each remembered from the request before
    // (the requests of a connection, and most of an instance's, render the same ones), so most requests
    // build no string for them; the trace line, new for every request, goes as pieces between them.
    lines.add(forwardingLines(fwd));
    if (fwd.traceparent !== '') lines.add('traceparent: ').add(fwd.traceparent).add(CRLF);
    if (!fwd.keepHostField) lines.add(hostLine(fwd.authority));
    return;
  }
  if (!edited(edits, 'x-forwarded-for')) lines.add('X-Forwarded-For: ').add(fwd.xForwardedFor).add(CRLF);
  if (!edited(edits, 'x-forwarded-proto'))
    lines.add('X-Forwarded-Proto: ').add(fwd.xForwardedProto).add(CRLF);
  if (fwd.xForwardedHost !== '' && !edited(edits, 'x-forwarded-host'))
    lines.add('X-Forwarded-Host: ').add(fwd.xForwardedHost).add(CRLF);
  if (!edited(edits, 'via')) lines.add(viaLine(fwd.via));
  if (fwd.traceparent !== '' && !edited(edits, 'traceparent'))
    lines.add('traceparent: ').add(fwd.traceparent).add(CRLF);
  if (edits !== null) lines.add(edits.lines());
  if (!fwd.keepHostField) lines.add('Host: ').add(fwd.authority).add(CRLF);
}

const CRLF = '\r\n';

/**
 * The last rendering of X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Via, and what it was
 * rendered from. One template builds the lines in one go and one copy writes them (a piece per name and
 * value, written byte by byte, measured slower); kept, the string is flat after its first write.
 */
let lastFor = '';
let lastProto = '';
let lastForwardedHost = '';
let lastVia = '';
let lastForwardingLines = '';

function forwardingLines(fwd: ForwardedRequest): string {
  const xff = fwd.xForwardedFor;
  const proto = fwd.xForwardedProto;
  const forwardedHost = fwd.xForwardedHost;
  const via = fwd.via;
  if (
    xff === lastFor &&
    proto === lastProto &&
    forwardedHost === lastForwardedHost &&
    via === lastVia &&
    lastForwardingLines !== ''
  )
    return lastForwardingLines;
  lastFor = xff;
  lastProto = proto;
  lastForwardedHost = forwardedHost;
  lastVia = via;
  const hostLine = forwardedHost === '' ? '' : `X-Forwarded-Host: ${forwardedHost}\r\n`;
  lastForwardingLines = `X-Forwarded-For: ${xff}\r\nX-Forwarded-Proto: ${proto}\r\n${hostLine}${viaLine(via)}`;
  return lastForwardingLines;
}

/** The last `Host:` line and its authority (a target's, the same for every request sent to it). */
let lastAuthority = '';
let lastHostLine = '';

function hostLine(authority: string): string {
  if (authority !== lastAuthority || lastHostLine === '') {
    lastAuthority = authority;
    lastHostLine = `Host: ${authority}\r\n`;
  }
  return lastHostLine;
}

/** `Via: <entry>` and CRLF, the same string every time for zproxy's own entries. */
function viaLine(via: string): string {
  switch (via) {
    case '1.1 zproxy':
      return 'Via: 1.1 zproxy\r\n';
    case '2 zproxy':
      return 'Via: 2 zproxy\r\n';
    case '1.0 zproxy':
      return 'Via: 1.0 zproxy\r\n';
    default:
      return `Via: ${via}\r\n`;
  }
}

/**
 * The kept fields of a source that is not an HTTP/1.1 head (an HTTP/2 request or response) as HTTP/1.1
 * lines, added to `lines`. Repeated `cookie` fields become one line joined with "; " (RFC 9113 §8.2.3:
 * HTTP/1.1 allows one).
 */
export function addKeptLines(
  lines: HeadLines,
  source: FieldSource,
  dropMask: number,
  edits: MessageEdits | null,
): void {
  const dropped = droppedNames(edits);
  let cookies: string | null = null;
  const n = source.fieldCount;
  for (let i = 0; i < n; i++) {
    const name = keptName(source, i, dropMask, dropped);
    if (name === null) continue;
    const value = source.fieldValue(i);
    if (name === 'cookie') cookies = cookies === null ? value : `${cookies}; ${value}`;
    else lines.add(name).add(': ').add(value).add(CRLF);
  }
  if (cookies !== null) lines.add('cookie: ').add(cookies).add(CRLF);
}

/** zproxy's response fields as HTTP/1.1 lines, then the filters' added fields, added to `lines`. */
export function addResponseLines(lines: HeadLines, fwd: ForwardedResponse, edits: MessageEdits | null): void {
  if (!edited(edits, 'via')) lines.add(viaLine(fwd.via));
  if (fwd.hsts !== null && !edited(edits, 'strict-transport-security'))
    lines.add('Strict-Transport-Security: ').add(fwd.hsts).add(CRLF);
  if (edits !== null) lines.add(edits.lines());
}

// ---------------------------------------------------------------- field lists (HTTP/2)

/** The names a filter's edits remove from every field (lowercase), or null when none. */
function droppedNames(edits: MessageEdits | null): readonly string[] | null {
  return edits !== null && edits.dropped.length > 0 ? edits.dropped : null;
}

/** The lowercase name of field `i` of `source` when it is kept (its kind not in `dropMask`, its name not dropped by a filter), else null. */
function keptName(
  source: FieldSource,
  i: number,
  dropMask: number,
  dropped: readonly string[] | null,
): string | null {
  if ((dropMask & (1 << source.fieldKind(i))) !== 0) return null;
  const name = source.lowerFieldName(i);
  return dropped?.includes(name) === true ? null : name;
}

/** Appends the kept fields of `source` to `out` (a flat list of lowercase names and values). */
function appendKept(out: string[], source: FieldSource, dropMask: number, edits: MessageEdits | null): void {
  const dropped = droppedNames(edits);
  const n = source.fieldCount;
  for (let i = 0; i < n; i++) {
    const name = keptName(source, i, dropMask, dropped);
    if (name !== null) out.push(name, source.fieldValue(i));
  }
}

function appendAdded(out: string[], edits: MessageEdits | null): void {
  if (edits === null) return;
  const added = edits.added;
  for (let i = 0; i < added.length; i++) out.push(added[i]!);
}

/**
 * The request for an HTTP/2 upstream as node:http2's raw header list: the pseudo-header fields, the
 * client's kept fields, zproxy's, then the filters' added ones. `te: trailers` is the one TE HTTP/2
 * allows, sent when the client accepts trailers.
 */
export function http2RequestList(
  fwd: ForwardedRequest,
  source: FieldSource,
  method: string,
  scheme: string,
  path: string,
  edits: MessageEdits | null,
): string[] {
  const out = [':method', method, ':scheme', scheme, ':authority', fwd.authority, ':path', path];
  appendKept(out, source, fwd.dropMask | HOST_BIT, edits);
  if (acceptsTrailers(joinedValues(source, FIELD_TE))) out.push('te', 'trailers');
  if (!edited(edits, 'x-forwarded-for')) out.push('x-forwarded-for', fwd.xForwardedFor);
  if (!edited(edits, 'x-forwarded-proto')) out.push('x-forwarded-proto', fwd.xForwardedProto);
  if (fwd.xForwardedHost !== '' && !edited(edits, 'x-forwarded-host'))
    out.push('x-forwarded-host', fwd.xForwardedHost);
  if (!edited(edits, 'via')) out.push('via', fwd.via);
  if (fwd.traceparent !== '' && !edited(edits, 'traceparent')) out.push('traceparent', fwd.traceparent);
  appendAdded(out, edits);
  return out;
}

/**
 * Where an HTTP/2 field section is written field by field: the HPACK encoder of a stream's HEADERS
 * (src/http2/hpack.ts), so a response's fields go from the upstream's bytes to the block without a list.
 */
export interface Http2FieldSink {
  /** A field by its name (lowercased by the sink) and value. */
  field(name: string, value: string): void;
  /** Field `i` of `source`, named `lowerName`, its value copied from where the source holds it. */
  fieldOf(lowerName: string, source: FieldSource, i: number): void;
}

/** A response for an HTTP/2 client, written to `sink`: the upstream's kept fields, zproxy's, the filters'. */
export function writeHttp2Response(
  sink: Http2FieldSink,
  fwd: ForwardedResponse,
  source: FieldSource,
  edits: MessageEdits | null,
): void {
  const dropped = droppedNames(edits);
  const n = source.fieldCount;
  const dropMask = fwd.dropMask;
  for (let i = 0; i < n; i++) {
    const name = keptName(source, i, dropMask, dropped);
    if (name !== null) sink.fieldOf(name, source, i);
  }
  if (!edited(edits, 'via')) sink.field('via', fwd.via);
  if (fwd.hsts !== null && !edited(edits, 'strict-transport-security'))
    sink.field('strict-transport-security', fwd.hsts);
  if (edits === null) return;
  const added = edits.added;
  for (let i = 0; i < added.length; i += 2) sink.field(added[i]!, added[i + 1]!);
}

// ---------------------------------------------------------------- trailers

/** A trailer section as HTTP/1.1 lines (the last chunk's), the fields that may not be trailers left out. */
export function http1TrailerLines(source: FieldSource): string {
  addKeptLines(headLines.clear(), source, TRAILER_DROP_MASK, null);
  return headLines.toString();
}

/** A trailer section as a flat field list (HTTP/2 trailers), the fields that may not be trailers left out. */
export function http2TrailerList(source: FieldSource): string[] {
  const out: string[] = [];
  appendKept(out, source, TRAILER_DROP_MASK, null);
  return out;
}
