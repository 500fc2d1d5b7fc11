/**
 * zproxy's strict HTTP/1.1 head parser (RFC 9112), for request heads (downstream) and response heads
 * (upstream). It parses a head that lies wholly in one buffer and records where each field line is, so the
 * proxy can forward the lines it keeps as the bytes that arrived, without building a string per field.
 *
 * Protocol:
 *   `findHeadEnd(buf, from)` tells cheaply whether a complete head may be present (a blank line was seen);
 *   `parseRequestHead` / `parseResponseHead` then return the offset just past the head, or a negative
 *   status (`-400`, `-414`, `-431`, `-501`, `-505`, `-502`) with `head.error` saying why.
 *
 * Anything ambiguous is rejected rather than guessed: bare LF, obs-fold, whitespace before the colon,
 * control characters in values, several or malformed Content-Length, Transfer-Encoding other than a lone
 * final `chunked`, Transfer-Encoding together with Content-Length, Transfer-Encoding in HTTP/1.0, several
 * Host fields, a missing Host in HTTP/1.1, a Host value or target authority that is not a host with an
 * optional port of digits.
 */

import {
  FIELD_CONNECTION,
  FIELD_CONTENT_LENGTH,
  FIELD_DUPLICATE_CONTENT_LENGTH,
  FIELD_EXPECT,
  FIELD_HOST,
  FIELD_NAMED_BY_CONNECTION,
  FIELD_OTHER,
  FIELD_TRACEPARENT,
  FIELD_TRACESTATE,
  FIELD_TRANSFER_ENCODING,
} from '../http/fields.ts';
import { ALPHA, TARGET_CHAR, TCHAR, validAuthority } from '../http/syntax.ts';
import { copyBytes } from '../util/bytes.ts';
import {
  COLON,
  CR,
  equalsLower,
  FIELD_VALUE_CHAR,
  HTAB,
  LF,
  METHOD_CHAR,
  REASON_CHAR,
  SP,
  stringEqualsLower,
} from './chars.ts';
import { classifyField, lowerFieldName } from './fields.ts';

/** Numbers stored per field line in `MessageHead.fields`. */
export const FIELD_STRIDE = 6;
export const F_NAME_START = 0;
export const F_NAME_END = 1;
export const F_VALUE_START = 2;
export const F_VALUE_END = 3;
export const F_LINE_END = 4;
export const F_KIND = 5;

export const HEAD_INCOMPLETE = 0;

const EMPTY = Buffer.alloc(0);

export interface HeadLimits {
  /** Bytes of the whole head (start line and fields); beyond it: 431. */
  readonly maxHeaderBytes: number;
  /** Number of field lines; beyond it: 431. */
  readonly maxHeaderCount: number;
  /** Bytes of the request-target; beyond it: 414. */
  readonly maxUriBytes: number;
}

/** What request and response heads share: the field table and the framing and connection fields. */
export class MessageHead {
  buf: Buffer = EMPTY;
  /** Offset of the first byte of the head in `buf` and offset just past its blank line. */
  start = 0;
  end = 0;
  /** Offset just past the start line (where the field lines begin). */
  fieldsStart = 0;
  versionMinor = 1;
  /** FIELD_STRIDE numbers per field line, see F_*; reused from message to message. */
  fields: number[] = [];
  fieldCount = 0;
  /** One bit per FIELD_* kind among the field lines (1 << kind), set when the head is parsed. */
  kindsPresent = 0;
  /** -1 when absent. */
  contentLength = -1;
  chunked = false;
  hasTransferEncoding = false;
  connectionClose = false;
  connectionKeepAlive = false;
  connectionUpgrade = false;
  /** Lowercased names listed in Connection other than close/keep-alive/upgrade; null when none. */
  connectionNames: string[] | null = null;
  /** Why the last parse failed (a constant string). */
  error = '';

  protected resetMessage(buf: Buffer, start: number): void {
    this.buf = buf;
    this.start = start;
    this.end = 0;
    this.fieldsStart = 0;
    this.versionMinor = 1;
    this.fieldCount = 0;
    this.kindsPresent = 0;
    this.contentLength = -1;
    this.chunked = false;
    this.hasTransferEncoding = false;
    this.connectionClose = false;
    this.connectionKeepAlive = false;
    this.connectionUpgrade = false;
    this.connectionNames = null;
    this.error = '';
  }

  /** The name of field `i` as sent (original case). */
  fieldName(i: number): string {
    const f = this.fields;
    const o = i * FIELD_STRIDE;
    return this.buf.latin1Slice(f[o + F_NAME_START]!, f[o + F_NAME_END]!);
  }

  /** The name of field `i` in lowercase (a shared string for common names: see lowerFieldName). */
  lowerFieldName(i: number): string {
    const f = this.fields;
    const o = i * FIELD_STRIDE;
    return lowerFieldName(this.buf, f[o + F_NAME_START]!, f[o + F_NAME_END]!);
  }

  fieldValue(i: number): string {
    const f = this.fields;
    const o = i * FIELD_STRIDE;
    return this.buf.latin1Slice(f[o + F_VALUE_START]!, f[o + F_VALUE_END]!);
  }

  fieldValueLength(i: number): number {
    const o = i * FIELD_STRIDE;
    return this.fields[o + F_VALUE_END]! - this.fields[o + F_VALUE_START]!;
  }

  writeFieldValue(i: number, out: Buffer, offset: number): number {
    const f = this.fields;
    const o = i * FIELD_STRIDE;
    return copyBytes(this.buf, f[o + F_VALUE_START]!, f[o + F_VALUE_END]!, out, offset);
  }

  fieldKind(i: number): number {
    return this.fields[i * FIELD_STRIDE + F_KIND]!;
  }

  /** True when field `i`'s name is `lowerName` (lowercase), compared in the buffer without a string. */
  fieldNameIs(i: number, lowerName: string): boolean {
    const o = i * FIELD_STRIDE;
    const start = this.fields[o + F_NAME_START]!;
    const length = lowerName.length;
    if (this.fields[o + F_NAME_END]! - start !== length) return false;
    const buf = this.buf;
    for (let j = 0; j < length; j++) {
      let c = buf[start + j]!;
      if (c >= 0x41 && c <= 0x5a) c |= 0x20;
      if (c !== lowerName.charCodeAt(j)) return false;
    }
    return true;
  }

  /** The index of the first field named `lowerName` (lowercase) at or after `from`, or -1. */
  indexOfField(lowerName: string, from = 0): number {
    for (let i = from; i < this.fieldCount; i++) if (this.fieldNameIs(i, lowerName)) return i;
    return -1;
  }

  /** Values of every field with this (lowercase) name, in order. */
  getAll(lowerName: string): string[] {
    const out: string[] = [];
    for (let i = this.indexOfField(lowerName); i !== -1; i = this.indexOfField(lowerName, i + 1)) {
      out.push(this.fieldValue(i));
    }
    return out;
  }

  /** The first value of a field, or undefined. */
  get(lowerName: string): string | undefined {
    const i = this.indexOfField(lowerName);
    return i === -1 ? undefined : this.fieldValue(i);
  }

  /** [name, value] pairs in order, names as sent. Allocates; for tests, logs and filters. */
  entries(): [string, string][] {
    const out: [string, string][] = [];
    for (let i = 0; i < this.fieldCount; i++) out.push([this.fieldName(i), this.fieldValue(i)]);
    return out;
  }
}

export class RequestHead extends MessageHead {
  method = '';
  /** The request-target exactly as sent. */
  target = '';
  /** The Host field value (absent: null). For an absolute-form target, the authority of the target. */
  host: string | null = null;
  expectContinue = false;

  reset(buf: Buffer, start: number): void {
    this.resetMessage(buf, start);
    this.method = '';
    this.target = '';
    this.host = null;
    this.expectContinue = false;
  }
}

export class ResponseHead extends MessageHead {
  status = 0;

  /** '1.0' or '1.1' (the upstream contract's version of the answer). */
  get httpVersion(): string {
    return this.versionMinor === 1 ? '1.1' : '1.0';
  }

  /** Offset of the status code's first digit (the status line is re-emitted from there). */
  statusStart = 0;

  reset(buf: Buffer, start: number): void {
    this.resetMessage(buf, start);
    this.status = 0;
    this.statusStart = 0;
  }
}

/**
 * Offset just past the first blank line at or after `from` (CRLF CRLF, or a bare-LF variant, LF CRLF or
 * LF LF, that the parser will then reject), or -1. The head starts at offset 0: empty lines before a
 * request-line (RFC 9112 §2.2) are not the blank line that ends a head. `from` lets a caller that appends
 * data resume near where it stopped (3 bytes before the previous end of the data).
 */
export function findHeadEnd(buf: Buffer, from: number): number {
  // Only a hint that parsing is worth trying: the parser itself finds the real end and rejects any bare
  // LF before it, so a blank line found here needs no second scan for an earlier LF LF.
  let lineFrom = from;
  if (buf[0] === CR) {
    let lead = 0;
    while (lead + 1 < buf.length && buf[lead] === CR && buf[lead + 1] === LF) lead += 2;
    if (lineFrom < lead) lineFrom = lead;
  }
  const blank = buf.indexOf('\n\r\n', lineFrom, 'latin1');
  if (blank !== -1) return blank + 3;
  const lflf = buf.indexOf('\n\n', from, 'latin1');
  return lflf === -1 ? -1 : lflf + 2;
}

const COMMON_METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'PATCH', 'OPTIONS'];

function methodString(buf: Buffer, start: number, end: number): string {
  // Common methods come back as the same interned strings, without allocation.
  for (let i = 0; i < COMMON_METHODS.length; i++) {
    const m = COMMON_METHODS[i]!;
    if (m.length !== end - start) continue;
    let j = 0;
    while (j < m.length && buf[start + j] === m.charCodeAt(j)) j++;
    if (j === m.length) return m;
  }
  return buf.latin1Slice(start, end);
}

/**
 * Parses "HTTP/1.x" at p. Returns the minor version (0 or 1), -400 when malformed, -505 for a
 * well-formed other version.
 */
function parseVersion(buf: Buffer, p: number): number {
  if (
    buf[p] !== 0x48 ||
    buf[p + 1] !== 0x54 ||
    buf[p + 2] !== 0x54 ||
    buf[p + 3] !== 0x50 ||
    buf[p + 4] !== 0x2f ||
    buf[p + 6] !== 0x2e
  ) {
    return -400;
  }
  const major = buf[p + 5]! - 0x30;
  const minor = buf[p + 7]! - 0x30;
  if (major < 0 || major > 9 || minor < 0 || minor > 9) return -400;
  if (major !== 1 || minor > 1) return -505;
  return minor;
}

/** Parses a Content-Length value (1*DIGIT, at most 15 digits); -1 when malformed. */
function parseContentLength(buf: Buffer, start: number, end: number): number {
  const n = end - start;
  if (n === 0 || n > 15) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** A list element without the OWS (SP / HTAB only, RFC 9110 §5.6.1) around it. */
function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && (s.charCodeAt(a) === SP || s.charCodeAt(a) === HTAB)) a++;
  while (b > a && (s.charCodeAt(b - 1) === SP || s.charCodeAt(b - 1) === HTAB)) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/**
 * Checks a Transfer-Encoding value: 1 when it is exactly `chunked` (any case), 0 when it is a list of
 * other codings followed by a final chunked (answered 501: zproxy applies no other coding), -1 when
 * malformed: the final coding is not chunked, chunked appears twice (RFC 9112 §6.1: never applied more
 * than once), or a list element is empty.
 */
function transferEncodingKind(buf: Buffer, start: number, end: number): number {
  if (end - start === 7 && equalsLower(buf, start, 'chunked')) return 1;
  const value = buf.latin1Slice(start, end);
  const parts = value.split(',');
  const last = parts.length - 1;
  if (!stringEqualsLower(trimOws(parts[last]!), 'chunked')) return -1;
  for (let i = 0; i < last; i++) {
    const coding = trimOws(parts[i]!);
    if (coding === '' || stringEqualsLower(coding, 'chunked')) return -1;
  }
  return 0;
}

/** Reads the tokens of a Connection field into the head. */
function parseConnection(head: MessageHead, buf: Buffer, start: number, end: number): void {
  // The two common values are read from the bytes: most messages make no string for their Connection.
  const n = end - start;
  if (n === 5 && equalsLower(buf, start, 'close')) {
    head.connectionClose = true;
    return;
  }
  if (n === 10 && equalsLower(buf, start, 'keep-alive')) {
    head.connectionKeepAlive = true;
    return;
  }
  const value = buf.latin1Slice(start, end);
  const tokens = value.split(',');
  for (let i = 0; i < tokens.length; i++) {
    const t = trimOws(tokens[i]!).toLowerCase();
    if (t === '') continue;
    if (t === 'close') head.connectionClose = true;
    else if (t === 'keep-alive') head.connectionKeepAlive = true;
    else if (t === 'upgrade') head.connectionUpgrade = true;
    else {
      if (head.connectionNames === null) head.connectionNames = [];
      head.connectionNames.push(t);
    }
  }
}

/**
 * Marks ordinary fields named by Connection as hop-by-hop (the trace context's too: a kind of their own
 * only so that the forwarding policy finds them). Framing and Host fields are never affected.
 */
function markConnectionNames(head: MessageHead): void {
  const names = head.connectionNames!;
  const f = head.fields;
  for (let i = 0; i < head.fieldCount; i++) {
    const o = i * FIELD_STRIDE;
    const kind = f[o + F_KIND];
    if (kind !== FIELD_OTHER && kind !== FIELD_TRACEPARENT && kind !== FIELD_TRACESTATE) continue;
    const name = head.buf.latin1Slice(f[o + F_NAME_START]!, f[o + F_NAME_END]!).toLowerCase();
    if (names.includes(name)) f[o + F_KIND] = FIELD_NAMED_BY_CONNECTION;
  }
}

/**
 * Checks the form of a request-target whose characters are TARGET_CHAR (RFC 9112 §3.2): origin-form
 * ("/" ...) for any method but CONNECT; asterisk-form ("*") for OPTIONS only; authority-form (host ":"
 * port) for CONNECT only; otherwise absolute-form: a scheme of letters, "://", an authority with a
 * non-empty host and no userinfo (RFC 9110 §4.2.1, §4.2.4), then an optional path or query. Authorities
 * are checked by the rule HTTP/2 shares (src/http/syntax.ts, validAuthority).
 */
function validTargetForm(method: string, target: string): boolean {
  const end = target.length;
  if (method === 'CONNECT') return validAuthority(target, 0, end, true, true);
  const first = target.charCodeAt(0);
  if (first === 0x2f) return true;
  if (first === 0x2a) return end === 1 && method === 'OPTIONS';
  let p = 0;
  while (p < end && ALPHA[target.charCodeAt(p)] === 1) p++;
  if (
    p === 0 ||
    p + 3 > end ||
    target.charCodeAt(p) !== COLON ||
    target.charCodeAt(p + 1) !== 0x2f ||
    target.charCodeAt(p + 2) !== 0x2f
  ) {
    return false;
  }
  p += 3;
  const authorityStart = p;
  while (p < end && target.charCodeAt(p) !== 0x2f && target.charCodeAt(p) !== 0x3f) p++;
  return validAuthority(target, authorityStart, p, true, false);
}

/**
 * Whether the bytes buf[p, end), fewer than `pattern` has, may still begin it; in the pattern '0' stands
 * for any digit. Lets a parser reject a short malformed start line at once instead of waiting for more.
 */
function mayStartWith(buf: Buffer, p: number, end: number, pattern: string): boolean {
  for (let i = 0; p + i < end; i++) {
    const c = buf[p + i]!;
    const want = pattern.charCodeAt(i);
    if (want === 0x30 ? c < 0x30 || c > 0x39 : c !== want) return false;
  }
  return true;
}

/**
 * Parses the field lines starting at `p` up to and including the blank line. Returns the offset past
 * the head, HEAD_INCOMPLETE, or a negative status. Fills `head.fields` and the framing flags.
 */
function parseFields(
  buf: Buffer,
  p: number,
  end: number,
  head: MessageHead,
  limits: HeadLimits,
  request: boolean,
) {
  const f = head.fields;
  const headLimit = head.start + limits.maxHeaderBytes;
  let count = 0;
  let present = 0;
  for (;;) {
    if (p >= end) return HEAD_INCOMPLETE;
    let c = buf[p]!;
    if (c === CR) {
      if (p + 1 >= end) return HEAD_INCOMPLETE;
      if (buf[p + 1] !== LF) {
        head.error = 'CR not followed by LF';
        return -400;
      }
      head.fieldCount = count;
      head.kindsPresent = present;
      head.end = p + 2;
      return p + 2;
    }
    if (c === LF) {
      head.error = 'bare LF line ending';
      return -400;
    }
    if (c === SP || c === HTAB) {
      head.error = 'obsolete line folding or whitespace before a field name';
      return -400;
    }
    const nameStart = p;
    while (p < end && TCHAR[buf[p]!] === 1) p++;
    if (p >= end) return HEAD_INCOMPLETE;
    if (buf[p] !== COLON || p === nameStart) {
      head.error = buf[p] === SP || buf[p] === HTAB ? 'whitespace before the colon' : 'invalid field name';
      return -400;
    }
    const nameEnd = p++;
    while (p < end && (buf[p] === SP || buf[p] === HTAB)) p++;
    const valueStart = p;
    while (p < end && FIELD_VALUE_CHAR[buf[p]!] === 1) p++;
    if (p >= end) return HEAD_INCOMPLETE;
    c = buf[p]!;
    if (c !== CR) {
      head.error = c === LF ? 'bare LF line ending' : 'control character in a field value';
      return -400;
    }
    if (p + 1 >= end) return HEAD_INCOMPLETE;
    if (buf[p + 1] !== LF) {
      head.error = 'CR not followed by LF';
      return -400;
    }
    let valueEnd = p;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--;
    p += 2;
    if (p > headLimit) {
      // An upstream's response head has fixed limits (src/http1/upstream-connection.ts), not the config's.
      head.error = request ? 'head larger than limits.max_header_bytes' : 'response head too large';
      return -431;
    }
    if (count >= limits.maxHeaderCount) {
      head.error = request
        ? 'more field lines than limits.max_header_count'
        : 'too many field lines in the response head';
      return -431;
    }
    const kind = classifyField(buf, nameStart, nameEnd);
    present |= 1 << kind;
    const o = count * FIELD_STRIDE;
    f[o] = nameStart;
    f[o + 1] = nameEnd;
    f[o + 2] = valueStart;
    f[o + 3] = valueEnd;
    f[o + 4] = p;
    f[o + 5] = kind;
    count++;
    if (kind === FIELD_OTHER) continue;
    if (kind === FIELD_CONTENT_LENGTH) {
      const n = parseContentLength(buf, valueStart, valueEnd);
      if (n < 0) {
        head.error = 'malformed Content-Length';
        return request ? -400 : -502;
      }
      if (head.contentLength !== -1) {
        if (head.contentLength !== n) {
          head.error = 'conflicting Content-Length fields';
          return request ? -400 : -502;
        }
        // The same length again: accepted as that length and forwarded once (RFC 9110 §8.6).
        f[o + 5] = FIELD_DUPLICATE_CONTENT_LENGTH;
      }
      head.contentLength = n;
    } else if (kind === FIELD_TRANSFER_ENCODING) {
      if (head.hasTransferEncoding) {
        head.error = 'several Transfer-Encoding fields';
        return request ? -400 : -502;
      }
      head.hasTransferEncoding = true;
      const te = transferEncodingKind(buf, valueStart, valueEnd);
      if (te === 1) head.chunked = true;
      else if (te === 0) {
        head.error = 'transfer codings other than chunked are not supported';
        return request ? -501 : -502;
      } else {
        head.error = 'Transfer-Encoding other than one final chunked';
        return request ? -400 : -502;
      }
    } else if (kind === FIELD_CONNECTION) {
      parseConnection(head, buf, valueStart, valueEnd);
    } else if (request) {
      const req = head as RequestHead;
      if (kind === FIELD_HOST) {
        if (req.host !== null) {
          req.error = 'several Host fields';
          return -400;
        }
        const host = buf.latin1Slice(valueStart, valueEnd);
        if (!validAuthority(host, 0, host.length, false, false)) {
          req.error = 'invalid Host';
          return -400;
        }
        req.host = host;
      } else if (kind === FIELD_EXPECT) {
        const v = buf.latin1Slice(valueStart, valueEnd);
        if (!stringEqualsLower(v, '100-continue')) {
          req.error = 'unsupported expectation';
          return -417;
        }
        req.expectContinue = true;
      }
    }
  }
}

/** Checks that apply once every field has been read. */
function finishFraming(head: MessageHead, request: boolean): number {
  if (head.hasTransferEncoding) {
    if (head.contentLength !== -1) {
      head.error = 'both Content-Length and Transfer-Encoding';
      return request ? -400 : -502;
    }
    if (head.versionMinor === 0) {
      head.error = 'Transfer-Encoding in an HTTP/1.0 message';
      return request ? -400 : -502;
    }
  }
  if (head.connectionNames !== null) markConnectionNames(head);
  return 0;
}

/**
 * Parses one request head at buf[start, end). Returns the offset just past the head, HEAD_INCOMPLETE, or
 * a negative status: -400, -414, -417, -431, -501, -505.
 */
export function parseRequestHead(
  buf: Buffer,
  start: number,
  end: number,
  limits: HeadLimits,
  head: RequestHead,
): number {
  let p = start;
  // RFC 9112 §2.2: ignore empty lines received before the request-line.
  while (p + 1 < end && buf[p] === CR && buf[p + 1] === LF) p += 2;
  head.reset(buf, p);
  if (p + 1 === end && buf[p] === CR) return HEAD_INCOMPLETE; // maybe one more empty line

  const methodStart = p;
  while (p < end && METHOD_CHAR[buf[p]!] === 1) p++;
  if (p >= end) return HEAD_INCOMPLETE;
  if (buf[p] !== SP || p === methodStart || p - methodStart > 32) {
    head.error = 'invalid method';
    return -400;
  }
  head.method = methodString(buf, methodStart, p);
  p++;

  const targetStart = p;
  const targetLimit = targetStart + limits.maxUriBytes;
  while (p < end && TARGET_CHAR[buf[p]!] === 1) {
    if (++p > targetLimit) {
      head.error = 'request-target longer than limits.max_uri_bytes';
      return -414;
    }
  }
  if (p >= end) return HEAD_INCOMPLETE;
  if (buf[p] !== SP || p === targetStart) {
    head.error = 'invalid request-target';
    return -400;
  }
  const target = buf.latin1Slice(targetStart, p);
  if (!validTargetForm(head.method, target)) {
    head.error = 'request-target not in origin, absolute, authority or asterisk form';
    return -400;
  }
  head.target = target;
  p++;

  if (p + 10 > end) {
    if (mayStartWith(buf, p, end, 'HTTP/0.0\r\n')) return HEAD_INCOMPLETE;
    head.error = 'invalid HTTP version';
    return -400;
  }
  const minor = parseVersion(buf, p);
  if (minor < 0) {
    head.error = minor === -505 ? 'unsupported HTTP version' : 'invalid HTTP version';
    return minor;
  }
  head.versionMinor = minor;
  if (buf[p + 8] !== CR || buf[p + 9] !== LF) {
    head.error = buf[p + 8] === LF ? 'bare LF line ending' : 'invalid request line';
    return -400;
  }
  p += 10;
  if (p - head.start > limits.maxHeaderBytes) {
    head.error = 'head larger than limits.max_header_bytes';
    return -431;
  }
  head.fieldsStart = p;

  const r = parseFields(buf, p, end, head, limits, true);
  if (r <= 0) return r;
  const framing = finishFraming(head, true);
  if (framing < 0) return framing;
  if (head.host === null && minor === 1) {
    head.error = 'missing Host';
    return -400;
  }
  return r;
}

/**
 * Parses one response head at buf[start, end). Returns the offset just past the head, HEAD_INCOMPLETE,
 * or -502 for anything malformed (the upstream broke the protocol).
 */
export function parseResponseHead(
  buf: Buffer,
  start: number,
  end: number,
  limits: HeadLimits,
  head: ResponseHead,
): number {
  head.reset(buf, start);
  let p = start;
  if (p + 12 > end) {
    if (mayStartWith(buf, p, end, 'HTTP/0.0 000')) return HEAD_INCOMPLETE;
    head.error = 'invalid status line';
    return -502;
  }
  const minor = parseVersion(buf, p);
  if (minor < 0 || buf[p + 8] !== SP) {
    head.error = 'invalid status line';
    return -502;
  }
  head.versionMinor = minor;
  p += 9;
  head.statusStart = p;
  let status = 0;
  for (let i = 0; i < 3; i++) {
    const d = buf[p + i]! - 0x30;
    if (d < 0 || d > 9) {
      head.error = 'invalid status code';
      return -502;
    }
    status = status * 10 + d;
  }
  if (status < 100 || status > 599) {
    // RFC 9110 §15: codes outside 100..599 are invalid; the response is treated as a server error.
    head.error = 'invalid status code';
    return -502;
  }
  head.status = status;
  p += 3;
  if (buf[p] === SP) {
    p++;
    while (p < end && REASON_CHAR[buf[p]!] === 1) p++;
  }
  if (p + 1 >= end) {
    if (p - start > limits.maxHeaderBytes) {
      head.error = 'response head too large';
      return -502;
    }
    return HEAD_INCOMPLETE;
  }
  if (buf[p] !== CR || buf[p + 1] !== LF) {
    head.error = 'invalid status line';
    return -502;
  }
  p += 2;
  head.fieldsStart = p;
  const r = parseFields(buf, p, end, head, limits, false);
  if (r < 0) return -502;
  if (r === HEAD_INCOMPLETE) return r;
  return finishFraming(head, false) < 0 ? -502 : r;
}
