/**
 * The misses running in an instance of worker threads: a small table in the cache's shared memory
 * (store-shared.ts lays it out) in which the worker that goes upstream for a key first (the leader)
 * claims the key, so that a miss of the same key on another worker waits for the leader's entry instead
 * of going upstream too. Within one worker the filter keeps its own promise-based list of waiters
 * (filter.ts); this table only decides between workers, once per key and worker.
 *
 * A claim holds a key's 64-bit seeded hash and a deadline (the leader's start + coalesce_timeout_ms). It
 * ends when the leader releases it, or by itself at its deadline: a leader that stalls, or whose worker
 * died, blocks nobody past it. Each slot has a generation word that changes on every claim and release;
 * a follower sleeps on it with Atomics.waitAsync (no timer, no polling: the leader's release wakes every
 * waiting worker at once, and a claim that expires ends the wait at its deadline).
 *
 * Slots are found by open addressing over PROBES slots from the key's hash. One lock word (the store's
 * control word 1, apart from the index's lock) guards the table; a claim or a release holds it for a
 * scan of PROBES slots. When every probed slot holds another key's live claim, the miss is not
 * coalesced across workers (it still is within its worker).
 */
import { hash32 } from '../../util/hash.ts';
import { lockShared, unlockShared } from '../../util/shared-lock.ts';

/** Slots of the table (a power of two): misses of this many keys can run at once across workers. */
export const CLAIM_SLOTS = 1024;
/** Slots probed from a key's home slot. */
const PROBES = 8;
/** Int32 words per slot: generation, hash (2 words), unused. */
const WORDS = 4;
/** Bytes of the table in the shared buffer (a multiple of 8). */
export const CLAIMS_BYTES = CLAIM_SLOTS * (WORDS * 4 + 8);

/** What claim() found. */
export const CLAIMED = 0;
/** Another worker's live claim holds the key: `slot`, `generation` and `deadline` say which. */
export const HELD = 1;
/** No slot free for the key: the miss is not coalesced across workers. */
export const FULL = 2;

export class SharedClaims {
  /** The lock word (control word `lockIndex` of the store). */
  private readonly control: Int32Array;
  private readonly lockIndex: number;
  /** Per slot: [generation, hash hi, hash lo, unused]. */
  private readonly words: Int32Array;
  private readonly deadlines: Float64Array;
  private readonly seedA: number;
  private readonly seedB: number;
  private readonly now: () => number;
  /** The slot of the last claim() (CLAIMED or HELD). */
  slot = -1;
  /** The slot's generation when claim() answered: the claim to release, or the one to wait for. */
  generation = 0;
  /** The claim's deadline (Date.now() time). */
  deadline = 0;

  /** The table at byte `offset` of `buffer`; the lock is `control[lockIndex]`. */
  constructor(
    buffer: SharedArrayBuffer,
    offset: number,
    control: Int32Array,
    lockIndex: number,
    seed: number,
    now: () => number = Date.now,
  ) {
    this.words = new Int32Array(buffer, offset, CLAIM_SLOTS * WORDS);
    this.deadlines = new Float64Array(buffer, offset + CLAIM_SLOTS * WORDS * 4, CLAIM_SLOTS);
    this.control = control;
    this.lockIndex = lockIndex;
    // Seeds apart from the index's, so that the two tables do not collide on the same keys.
    this.seedA = Math.imul(seed ^ 0x27d4eb2f, 0x165667b1) | 0;
    this.seedB = Math.imul(seed ^ 0x61c88647, 0x9e3779b1) | 0;
    this.now = now;
  }

  /**
   * Claims `key` for `timeoutMs` unless a live claim of another holds it. CLAIMED: this caller leads
   * (release `slot`/`generation` when done); HELD: wait for `slot`/`generation` until `deadline`; FULL:
   * neither.
   */
  claim(key: string, timeoutMs: number): number {
    // As Int32Array words hold them (signed).
    const hi = hash32(key, '', this.seedA) | 0;
    const lo = hash32(key, '', this.seedB) | 0 || 1;
    const words = this.words;
    const now = this.now();
    let free = -1;
    let outcome = FULL;
    lockShared(this.control, this.lockIndex);
    const home = hi & (CLAIM_SLOTS - 1);
    for (let i = 0; i < PROBES; i++) {
      const slot = (home + i) & (CLAIM_SLOTS - 1);
      const live = this.deadlines[slot]! > now;
      if (live && words[slot * WORDS + 1] === hi && words[slot * WORDS + 2] === lo) {
        outcome = HELD;
        this.slot = slot;
        this.generation = words[slot * WORDS]!;
        this.deadline = this.deadlines[slot]!;
        break;
      }
      if (!live && free === -1) free = slot;
    }
    if (outcome !== HELD && free !== -1) {
      outcome = CLAIMED;
      const at = free * WORDS;
      words[at + 1] = hi;
      words[at + 2] = lo;
      this.deadlines[free] = now + timeoutMs;
      // A new generation: the release of an earlier, expired claim of this slot leaves this one alone.
      this.generation = (words[at]! + 1) | 0;
      Atomics.store(words, at, this.generation);
      this.slot = free;
      this.deadline = now + timeoutMs;
    }
    unlockShared(this.control, this.lockIndex);
    return outcome;
  }

  /** Ends the claim (`slot`, `generation`) if it is still the slot's, and wakes the workers waiting on it. */
  release(slot: number, generation: number): void {
    const at = slot * WORDS;
    lockShared(this.control, this.lockIndex);
    const ours = this.words[at] === generation;
    if (ours) {
      this.deadlines[slot] = 0;
      this.words[at + 1] = 0;
      this.words[at + 2] = 0;
      Atomics.store(this.words, at, (generation + 1) | 0);
    }
    unlockShared(this.control, this.lockIndex);
    if (ours) Atomics.notify(this.words, at);
  }

  /**
   * Waits until the claim (`slot`, `generation`) ends: released (its generation changes) or past
   * `deadline`. Null when it has ended already.
   */
  wait(slot: number, generation: number, deadline: number): Promise<unknown> | null {
    const remaining = deadline - this.now();
    if (remaining <= 0) return null;
    const waited = Atomics.waitAsync(this.words, slot * WORDS, generation, remaining);
    return waited.async ? waited.value : null;
  }
}
