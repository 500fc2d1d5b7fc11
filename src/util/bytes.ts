/**
 * Copying a few bytes into a Buffer. Node's native copies (`latin1Write`, `copy`) cost about 40-50 ns a
 * call whatever the length; a loop costs about 1.5 ns a byte. Field values and header pieces are mostly
 * short, so below a threshold they are copied by a loop (measured on Node 24: the loop wins up to about
 * 32 characters of a string and 24 bytes of a Buffer).
 */

const SHORT_STRING = 32;
const SHORT_BYTES = 24;

/** Writes `s` (latin1: one byte per character) into `out` at `offset`; returns the offset after it. */
export function writeLatin1(out: Buffer, s: string, offset: number): number {
  const n = s.length;
  if (n > SHORT_STRING) return offset + out.latin1Write(s, offset);
  let o = offset;
  for (let j = 0; j < n; j++) out[o++] = s.charCodeAt(j);
  return o;
}

/** Copies `src[start, end)` into `out` at `offset`; returns the offset after it. */
export function copyBytes(src: Buffer, start: number, end: number, out: Buffer, offset: number): number {
  if (end - start > SHORT_BYTES) return offset + src.copy(out, offset, start, end);
  let o = offset;
  for (let i = start; i < end; i++) out[o++] = src[i]!;
  return o;
}
