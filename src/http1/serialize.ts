/**
 * Builds the heads zproxy sends: the request head for the upstream and the response head for the client.
 * Field lines that are kept are copied as the bytes that arrived, in runs (consecutive kept lines are one
 * copy); only the start line and the fields zproxy adds are written as strings. What is kept and what is
 * added is decided by the forwarding policy (src/http/forwarding.ts): this is its byte serializer for
 * heads that arrived over HTTP/1.1.
 */
import type { HeadLines } from '../http/forwarding.ts';
import {
  F_KIND,
  F_LINE_END,
  F_NAME_END,
  F_NAME_START,
  FIELD_STRIDE,
  type MessageHead,
} from './parse-head.ts';

/** Bytes of the field lines `copyFields` would copy (`dropMask`: kinds not copied, see src/http/forwarding.ts). */
export function keptFieldsLength(head: MessageHead, dropMask: number): number {
  const f = head.fields;
  let n = 0;
  for (let i = 0, o = 0; i < head.fieldCount; i++, o += FIELD_STRIDE) {
    if ((dropMask & (1 << f[o + F_KIND]!)) === 0) n += f[o + F_LINE_END]! - f[o + F_NAME_START]!;
  }
  return n;
}

/** Copies the kept field lines (with their CRLF) into out at offset; returns the offset after them. */
export function copyFields(head: MessageHead, dropMask: number, out: Buffer, offset: number): number {
  const f = head.fields;
  const src = head.buf;
  let runStart = -1;
  let runEnd = -1;
  for (let i = 0, o = 0; i < head.fieldCount; i++, o += FIELD_STRIDE) {
    if ((dropMask & (1 << f[o + F_KIND]!)) !== 0) continue;
    const s = f[o + F_NAME_START]!;
    const e = f[o + F_LINE_END]!;
    if (s === runEnd) {
      runEnd = e;
      continue;
    }
    if (runStart !== -1) offset += src.copy(out, offset, runStart, runEnd);
    runStart = s;
    runEnd = e;
  }
  if (runStart !== -1) offset += src.copy(out, offset, runStart, runEnd);
  return offset;
}

/**
 * A head made of a string prefix (start line), the kept field lines of `head`, and the lines that follow
 * them (added fields and the blank line; written and released). All strings are latin1 (field bytes are
 * carried unchanged).
 */
export function buildHead(prefix: string, head: MessageHead, dropMask: number, suffix: HeadLines): Buffer {
  const fieldsLength = keptFieldsLength(head, dropMask);
  const out = Buffer.allocUnsafe(prefix.length + fieldsLength + suffix.length);
  let o = out.latin1Write(prefix, 0);
  o = copyFields(head, dropMask, out, o);
  suffix.writeTo(out, o);
  return out;
}

/**
 * Like buildHead, but the start line is copied from the source head (bytes [from, to) of its buffer)
 * after a string `lead`. Body bytes [bodyStart, bodyEnd) of `body` may follow in the same buffer, so a
 * small message goes out in one write.
 */
export function buildHeadFromRaw(
  lead: string,
  head: MessageHead,
  from: number,
  to: number,
  dropMask: number,
  suffix: HeadLines,
  body: Buffer | null = null,
  bodyStart = 0,
  bodyEnd = 0,
): Buffer {
  const fieldsLength = keptFieldsLength(head, dropMask);
  const out = Buffer.allocUnsafe(
    lead.length + (to - from) + fieldsLength + suffix.length + (bodyEnd - bodyStart),
  );
  let o = lead.length === 0 ? 0 : out.latin1Write(lead, 0);
  o += head.buf.copy(out, o, from, to);
  o = copyFields(head, dropMask, out, o);
  o = suffix.writeTo(out, o);
  if (body !== null && bodyEnd > bodyStart) body.copy(out, o, bodyStart, bodyEnd);
  return out;
}

/** Per field of the head being built: 1 when it is kept (buildEditedHead; grown as needed). */
let keepScratch = new Uint8Array(128);

/**
 * buildHeadFromRaw for a message whose fields filters edited: the kept field lines also skip the names in
 * `dropped` (lowercase). Only exchanges of routes with filters that edit fields take this path. Runs of
 * adjacent kept lines are copied at once, as in copyFields.
 */
export function buildEditedHead(
  lead: string,
  head: MessageHead,
  from: number,
  to: number,
  dropMask: number,
  dropped: readonly string[],
  suffix: HeadLines,
  body: Buffer | null = null,
  bodyStart = 0,
  bodyEnd = 0,
): Buffer {
  const f = head.fields;
  const count = head.fieldCount;
  if (keepScratch.length < count) keepScratch = new Uint8Array(count * 2);
  const keep = keepScratch;
  const names = dropped.length === 0 ? null : dropped;
  let fieldsLength = 0;
  for (let i = 0, o = 0; i < count; i++, o += FIELD_STRIDE) {
    if (
      (dropMask & (1 << f[o + F_KIND]!)) !== 0 ||
      (names !== null && isOneOf(head, i, f[o + F_NAME_END]! - f[o + F_NAME_START]!, names))
    ) {
      keep[i] = 0;
      continue;
    }
    keep[i] = 1;
    fieldsLength += f[o + F_LINE_END]! - f[o + F_NAME_START]!;
  }
  const out = Buffer.allocUnsafe(
    lead.length + (to - from) + fieldsLength + suffix.length + (bodyEnd - bodyStart),
  );
  const src = head.buf;
  let o = lead.length === 0 ? 0 : out.latin1Write(lead, 0);
  // The start line is copied with the field lines that follow it.
  let runStart = to > from ? from : -1;
  let runEnd = to > from ? to : -1;
  for (let i = 0, at = 0; i < count; i++, at += FIELD_STRIDE) {
    if (keep[i] === 0) continue;
    const s = f[at + F_NAME_START]!;
    const e = f[at + F_LINE_END]!;
    if (s === runEnd) {
      runEnd = e;
      continue;
    }
    if (runStart !== -1) o += src.copy(out, o, runStart, runEnd);
    runStart = s;
    runEnd = e;
  }
  if (runStart !== -1) o += src.copy(out, o, runStart, runEnd);
  o = suffix.writeTo(out, o);
  if (body !== null && bodyEnd > bodyStart) body.copy(out, o, bodyStart, bodyEnd);
  return out;
}

/** True when field `i` of `head` (its name `length` bytes long) is named one of `lowerNames`. */
function isOneOf(head: MessageHead, i: number, length: number, lowerNames: readonly string[]): boolean {
  for (let n = 0; n < lowerNames.length; n++) {
    const name = lowerNames[n]!;
    if (name.length === length && head.fieldNameIs(i, name)) return true;
  }
  return false;
}
