/**
 * The memory store of an instance whose workers are threads: one table of GCRA states in a
 * SharedArrayBuffer that every worker maps (src/util/instance.ts hands it over), so a decision is exact
 * across workers and costs no message and no process in the middle — a lock, a hash and a few loads.
 *
 * The table is a set of buckets of BUCKET_SLOTS slots; a key (the limit's id and the request's key) hashes
 * to one bucket, whose lock (src/util/shared-lock.ts) guards its slots.
 * A slot holds a 64-bit hash of the key (two 32-bit words, seeded per instance so that clients cannot aim
 * collisions) and the key's TAT in ms. A slot whose TAT is past is as good as empty (GCRA gives a past
 * TAT and no TAT the same answer), so expired keys need no sweep: a new key takes the first such slot.
 * When every slot of a bucket holds a live key, the one whose bucket refills first (the smallest TAT) is
 * forgotten — that key may then make a burst again early; size the table (`slots`) for the keys that are
 * active within one refill period (nginx's `limit_req_zone` size plays the same part).
 */
import { hash32 } from '../../util/hash.ts';
import { lockShared, unlockShared } from '../../util/shared-lock.ts';
import { type Decision, gcra, newDecision, type RateLimitPolicy } from './gcra.ts';
import type { RateLimitStore } from './store.ts';

/** Slots a bucket holds (one lock each bucket). */
const BUCKET_SLOTS = 8;

/** The default table: 262,144 keys active at once, 4.1 MiB. */
export const DEFAULT_RATE_LIMIT_SLOTS = 1 << 18;

/** Bytes of a table of `slots` slots (a power of two, at least BUCKET_SLOTS). */
function tableBytes(slots: number): number {
  const buckets = slots / BUCKET_SLOTS;
  // TATs (float64) first for alignment, then the hash words, then the locks.
  return slots * 8 + slots * 8 + buckets * 4;
}

/** A new, empty table of `slots` slots (rounded up to a power of two), to hand to every worker. */
export function createRateLimitTable(slots: number = DEFAULT_RATE_LIMIT_SLOTS): SharedArrayBuffer {
  let size = BUCKET_SLOTS;
  while (size < slots) size *= 2;
  return new SharedArrayBuffer(tableBytes(size));
}

/** The number of slots of a table made by createRateLimitTable. */
function slotsOf(buffer: SharedArrayBuffer): number {
  // bytes = slots * 16 + slots / BUCKET_SLOTS * 4
  return Math.round(buffer.byteLength / (16 + 4 / BUCKET_SLOTS));
}

export class SharedRateLimitStore implements RateLimitStore {
  private readonly tats: Float64Array;
  private readonly hashes: Uint32Array;
  private readonly locks: Int32Array;
  private readonly bucketMask: number;
  private readonly seedA: number;
  private readonly seedB: number;
  /** The decision returned by take(), reused: read it before the next call. */
  private readonly decision: Decision = newDecision();
  private readonly now: () => number;

  /** `seed`: the instance's (the same in every worker), so that every worker finds a key in one place. */
  constructor(buffer: SharedArrayBuffer, seed: number, now: () => number = Date.now) {
    const slots = slotsOf(buffer);
    this.tats = new Float64Array(buffer, 0, slots);
    this.hashes = new Uint32Array(buffer, slots * 8, slots * 2);
    this.locks = new Int32Array(buffer, slots * 16, slots / BUCKET_SLOTS);
    this.bucketMask = slots / BUCKET_SLOTS - 1;
    this.seedA = seed | 0;
    this.seedB = Math.imul(seed ^ 0x85ebca6b, 0xcc9e2d51) | 0;
    this.now = now;
  }

  take(policy: RateLimitPolicy, key: string): Decision {
    const hi = hash32(policy.id, key, this.seedA);
    // 0 in both words marks a slot that never held a key: a key never hashes to it.
    const lo = hash32(policy.id, key, this.seedB) || 1;
    const bucket = hi & this.bucketMask;
    const first = bucket * BUCKET_SLOTS;
    const tats = this.tats;
    const hashes = this.hashes;
    lockShared(this.locks, bucket);
    const now = this.now();
    let slot = -1;
    let free = -1;
    let oldest = first;
    for (let i = first; i < first + BUCKET_SLOTS; i++) {
      if (hashes[2 * i] === hi && hashes[2 * i + 1] === lo) {
        slot = i;
        break;
      }
      const tat = tats[i]!;
      if (free === -1 && tat <= now) free = i;
      if (tat < tats[oldest]!) oldest = i;
    }
    let tat = 0;
    if (slot !== -1) tat = tats[slot]!;
    else slot = free !== -1 ? free : oldest;
    const next = gcra(policy, tat, now, this.decision);
    if (next !== tat || hashes[2 * slot] !== hi || hashes[2 * slot + 1] !== lo) {
      hashes[2 * slot] = hi;
      hashes[2 * slot + 1] = lo;
      tats[slot] = next;
    }
    unlockShared(this.locks, bucket);
    return this.decision;
  }
}
