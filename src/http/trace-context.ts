/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): reading a `traceparent` field value and
 * drawing new ids. The forwarding policy (src/http/forwarding.ts) decides with these what an upstream
 * gets: the client's trace with zproxy as a new span, or a new trace.
 *
 * A traceparent is `version-trace_id-parent_id-flags` in lowercase hex: 2, 32, 16 and 2 digits. Version
 * `ff` is invalid; version `00` is exactly 55 characters; a later version may carry more after a `-`, and
 * its first four parts are read as version 00's. An all-zero trace id or parent id is invalid.
 */
import { randomFillSync } from 'node:crypto';

/** Length of a version-00 traceparent. */
export const TRACEPARENT_LENGTH = 55;

/** True for a lowercase hexadecimal digit. */
function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66);
}

/** True when value[from, to) is lowercase hex and not all zeros. */
function nonZeroHex(value: string, from: number, to: number): boolean {
  let zero = true;
  for (let i = from; i < to; i++) {
    const c = value.charCodeAt(i);
    if (!isHex(c)) return false;
    if (c !== 0x30) zero = false;
  }
  return !zero;
}

/** True when `value` is a traceparent zproxy can continue (see the module's comment). */
export function validTraceparent(value: string): boolean {
  const n = value.length;
  if (n < TRACEPARENT_LENGTH) return false;
  const v0 = value.charCodeAt(0);
  const v1 = value.charCodeAt(1);
  if (!isHex(v0) || !isHex(v1)) return false;
  // Version ff is never valid; version 00 has nothing after the flags; a later one continues with '-'.
  if (v0 === 0x66 && v1 === 0x66) return false;
  if (v0 === 0x30 && v1 === 0x30) {
    if (n !== TRACEPARENT_LENGTH) return false;
  } else if (n > TRACEPARENT_LENGTH && value.charCodeAt(TRACEPARENT_LENGTH) !== 0x2d) return false;
  if (value.charCodeAt(2) !== 0x2d || value.charCodeAt(35) !== 0x2d || value.charCodeAt(52) !== 0x2d)
    return false;
  if (!isHex(value.charCodeAt(53)) || !isHex(value.charCodeAt(54))) return false;
  return nonZeroHex(value, 3, 35) && nonZeroHex(value, 36, 52);
}

/** The trace id of a valid traceparent. */
export function traceIdOf(traceparent: string): string {
  return traceparent.slice(3, 35);
}

/** The parent id of a valid traceparent (for zproxy's own traceparent: zproxy's span id). */
export function spanIdOf(traceparent: string): string {
  return traceparent.slice(36, 52);
}

/** The flags of a valid traceparent (two hex digits). */
export function traceFlagsOf(traceparent: string): string {
  return traceparent.slice(53, 55);
}

/**
 * Random lowercase hex, drawn in bulk: one `randomFillSync` of POOL_BYTES (8,192 hex digits) fills the pool for
 * 512 span ids (or about 170 new traces: a trace id and a span id each), and each id is a slice of it.
 */
const POOL_BYTES = 4096;
const poolBytes = Buffer.allocUnsafe(POOL_BYTES);
let pool = '';
let poolAt = 0;

/**
 * `chars` random lowercase hex digits (a multiple of 8), not all zeros (an all-zero id is invalid): a
 * slice of the pool, checked for zeros on the pool's bytes.
 */
export function randomHex(chars: number): string {
  for (;;) {
    if (poolAt + chars > pool.length) {
      randomFillSync(poolBytes);
      pool = poolBytes.toString('hex');
      poolAt = 0;
    }
    const at = poolAt;
    poolAt += chars;
    const end = (at + chars) >> 1;
    for (let i = at >> 1; i < end; i += 4) {
      if (poolBytes.readUInt32LE(i) !== 0) return pool.slice(at, at + chars);
    }
  }
}

/** New traces drawn at once (one randomFillSync), each a whole version-00 traceparent with the sampled flag. */
const TRACES_PER_POOL = 128;
const traceRandom = Buffer.allocUnsafe(TRACES_PER_POOL * 24);
const traceText = Buffer.allocUnsafe(TRACES_PER_POOL * TRACEPARENT_LENGTH);
let traces = '';
let tracesAt = 0;
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

/** Writes `n` random bytes from traceRandom[from) as 2n hex digits at traceText[at); false when all are zero. */
function hexInto(from: number, n: number, at: number): boolean {
  let any = 0;
  for (let i = 0; i < n; i++) {
    const b = traceRandom[from + i]!;
    any |= b;
    traceText[at + 2 * i] = HEX_DIGITS[b >> 4]!;
    traceText[at + 2 * i + 1] = HEX_DIGITS[b & 15]!;
  }
  return any !== 0;
}

/**
 * A new trace's traceparent (`00-<trace id>-<parent id>-01`, neither id all zeros): a slice of a string of
 * TRACES_PER_POOL of them made at once, so a new trace costs one short slice, no concatenation. The trace id
 * is at [3, 35) and the parent id at [36, 52).
 */
export function newTraceparent(): string {
  if (tracesAt >= traces.length) {
    for (;;) {
      randomFillSync(traceRandom);
      let ok = true;
      for (let r = 0; r < TRACES_PER_POOL && ok; r++) {
        const at = r * TRACEPARENT_LENGTH;
        traceText[at] = 0x30;
        traceText[at + 1] = 0x30;
        traceText[at + 2] = 0x2d;
        ok = hexInto(r * 24, 16, at + 3);
        traceText[at + 35] = 0x2d;
        ok = hexInto(r * 24 + 16, 8, at + 36) && ok;
        traceText[at + 52] = 0x2d;
        traceText[at + 53] = 0x30;
        traceText[at + 54] = 0x31;
      }
      // An all-zero id (2^-64 per id) is invalid: such a draw is thrown away whole.
      if (ok) break;
    }
    traces = traceText.latin1Slice(0, traceText.length);
    tracesAt = 0;
  }
  const at = tracesAt;
  tracesAt += TRACEPARENT_LENGTH;
  return traces.slice(at, at + TRACEPARENT_LENGTH);
}
