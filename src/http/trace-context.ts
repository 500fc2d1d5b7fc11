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
