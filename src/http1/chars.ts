/**
 * Byte classes and small byte helpers for the HTTP/1.1 engine (RFC 9110 §5.6.2, RFC 9112). Tables are
 * built once; lookups are one array read per byte. The request-target, authority and token tables that
 * the HTTP/2 frame layer shares are in src/http/syntax.ts.
 */

declare global {
  interface Buffer {
    /** Node's internal fast latin1 decoder (present on every Buffer; not in @types/node). */
    latin1Slice(start: number, end: number): string;
    /** Node's internal fast latin1 encoder; returns the bytes written. */
    latin1Write(value: string, offset: number, length?: number): number;
  }
}

export const CR = 0x0d;
export const LF = 0x0a;
export const SP = 0x20;
export const HTAB = 0x09;
export const COLON = 0x3a;

function table(predicate: (c: number) => boolean): Uint8Array {
  const t = new Uint8Array(256);
  for (let c = 0; c < 256; c++) t[c] = predicate(c) ? 1 : 0;
  return t;
}

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** Method characters zproxy accepts: uppercase letters, digits, '-' and '_' (nginx 1.22 takes the same but digits). */
export const METHOD_CHAR = table((c) => (c >= 0x41 && c <= 0x5a) || isDigit(c) || c === 0x2d || c === 0x5f);

/** field-vchar / SP / HTAB (RFC 9110 §5.5): anything else in a field value (CR, LF, NUL, controls) is invalid. */
export const FIELD_VALUE_CHAR = table((c) => c === HTAB || (c >= 0x20 && c !== 0x7f));

/** reason-phrase characters (RFC 9112 §4). */
export const REASON_CHAR = FIELD_VALUE_CHAR;

/** Hex digit value, or -1. */
export const HEX_VALUE = (() => {
  const t = new Int8Array(256).fill(-1);
  for (let c = 0x30; c <= 0x39; c++) t[c] = c - 0x30;
  for (let c = 0x41; c <= 0x46; c++) t[c] = c - 0x41 + 10;
  for (let c = 0x61; c <= 0x66; c++) t[c] = c - 0x61 + 10;
  return t;
})();

/**
 * Case-insensitive comparison of buf[start, start + lower.length) with a lowercase ASCII literal made of
 * letters, digits and '-'. Callers have already checked the length.
 */
export function equalsLower(buf: Buffer, start: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    const c = buf[start + i]!;
    const l = lower.charCodeAt(i);
    if (c !== l && (c | 0x20) !== l) return false;
  }
  return true;
}

/** Case-insensitive comparison of a string with a lowercase ASCII literal. */
export function stringEqualsLower(s: string, lower: string): boolean {
  if (s.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    const c = s.charCodeAt(i);
    const l = lower.charCodeAt(i);
    if (c !== l && (c | 0x20) !== l) return false;
  }
  return true;
}
