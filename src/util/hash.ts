/**
 * A fast seeded string hash for tables in shared memory (the rate limiter's, the cache's): the same key
 * lands in the same place in every worker of an instance, and the instance's random seed keeps clients
 * from aiming collisions. Not a cryptographic hash.
 */

/** A seeded 32-bit hash of `a` then `b` (a multiply-xorshift mix per UTF-16 unit). */
export function hash32(a: string, b: string, seed: number): number {
  let h = (seed ^ Math.imul(a.length + b.length, 0x9e3779b1)) | 0;
  for (let i = 0; i < a.length; i++) {
    h = Math.imul(h ^ a.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  // A separator no id contains, so ("1:2", "3") and ("1:23", "") differ.
  h = Math.imul(h ^ 0xffff, 0x5bd1e995);
  h ^= h >>> 15;
  for (let i = 0; i < b.length; i++) {
    h = Math.imul(h ^ b.charCodeAt(i), 0x5bd1e995);
    h ^= h >>> 15;
  }
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
