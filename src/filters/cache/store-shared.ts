/**
 * The memory cache of an instance whose workers are threads: one store in a SharedArrayBuffer that every
 * worker maps (src/util/instance.ts hands it over), so a response stored by one worker is a hit on every
 * worker, `max_bytes` bounds the instance, and a purge reaches every worker.
 *
 * The buffer holds an index and an arena. Records (a key and its value: an encoded entry, or a URL's
 * Vary names) are appended at the arena's head as to a ring, and leave it at its tail when the head needs
 * their room. Eviction is CLOCK (second chance), an approximate LRU: a hit sets the record's reference
 * byte (one store, under the lock the lookup holds anyway), and a record that reaches the tail with its
 * byte set is moved to the head with the byte cleared instead of being forgotten. A record that nobody
 * read since it was stored (or last moved) goes; so a hot entry stays while a stream of entries read once
 * passes through. Moving is bounded per write (REINSERT_BYTES, or twice the record written): past that,
 * the tail's records go whatever their byte. The index maps a seeded 64-bit hash of the key to the
 * record's position, length, expiry time and reference byte, in buckets of INDEX_BUCKET slots. Positions
 * are logical (bytes written since the start, never reused), so a record is intact exactly while the tail
 * has not passed it.
 *
 * One lock (src/util/shared-lock.ts) guards the index and every write into the arena; a lookup holds it
 * only to read one bucket. The record's bytes are then copied without it and checked afterwards: if a
 * writer came round over them meanwhile, or the key in the record is not the one asked for, it is a miss.
 * Each worker keeps the entries it decoded (by position) in a small LRU of its own, so a hot entry is
 * decoded once per worker and keeps its identity (the filter caches what it derives from an entry).
 */
import { LRUCache } from 'lru-cache';
import { hash32 } from '../../util/hash.ts';
import { lockShared, unlockShared } from '../../util/shared-lock.ts';
import { CLAIMS_BYTES, SharedClaims } from './claims-shared.ts';
import { type CacheEntry, type CacheStore, decodeEntry, encodeEntry, entrySize } from './store.ts';

/** Slots per index bucket. */
const INDEX_BUCKET = 8;
/** One index slot per this many bytes of arena (entries are rarely smaller). */
const BYTES_PER_SLOT = 1024;
/** A record larger than this share of the arena is not stored. */
const MAX_RECORD_SHARE = 4;
/** What a worker keeps of the entries it decoded. */
const DECODED_BYTES = 16 * 1024 * 1024;
/**
 * The control words: the index's lock (int32 0), the lock of the running misses' claims (int32 1), the
 * head (float64 1) and the tail (float64 2). The claims' table (claims-shared.ts) follows them.
 */
const CONTROL_BYTES = 24;
const HEAD = 1;
const TAIL = 2;
/** Bytes of one index slot: hash (2 × u32), position (f64), expiry (f64), length (u32), reference (u8), padding. */
const SLOT_BYTES = 32;
/** Record head: its length (u32), its index slot (u32), its key's length (u32), its kind (u8). */
const RECORD_HEAD = 13;
/** Bytes of records a write may move from the tail to the head (at least; twice its own length if more). */
const REINSERT_BYTES = 1024 * 1024;

function indexSlots(arenaBytes: number): number {
  let slots = INDEX_BUCKET * 16;
  while (slots * BYTES_PER_SLOT < arenaBytes) slots *= 2;
  return slots;
}

/** A new, empty store of `maxBytes` of arena (plus its index), to hand to every worker. */
export function createCacheBuffer(maxBytes: number): SharedArrayBuffer {
  return new SharedArrayBuffer(CONTROL_BYTES + CLAIMS_BYTES + indexSlots(maxBytes) * SLOT_BYTES + maxBytes);
}

/** A value as decoded in this worker, with the key it was stored under. */
interface Decoded {
  readonly key: string;
  readonly value: CacheEntry | string;
}

const VARY = 0;
const ENTRY = 1;

export class SharedCacheStore implements CacheStore {
  private readonly control: Int32Array;
  /** Float64 view of the control words: [HEAD] and [TAIL], logical positions. */
  private readonly position: Float64Array;
  private readonly hashes: Uint32Array;
  private readonly positions: Float64Array;
  private readonly expiries: Float64Array;
  private readonly lengths: Uint32Array;
  /** Reference bytes: set by a hit, cleared when the record gets its second chance. */
  private readonly refs: Uint8Array;
  private readonly arena: Uint8Array;
  private readonly capacity: number;
  private readonly bucketMask: number;
  private readonly seedA: number;
  private readonly seedB: number;
  private readonly decoded = new LRUCache<number, Decoded>({
    maxSize: DECODED_BYTES,
    sizeCalculation: (d) =>
      d.key.length + (typeof d.value === 'string' ? d.value.length + 16 : entrySize(d.value)),
  });
  private readonly now: () => number;
  /** The misses running against this store in every worker (coalescing across workers). */
  readonly claims: SharedClaims;

  /** `maxBytes` as given to createCacheBuffer; `seed` the instance's. */
  constructor(buffer: SharedArrayBuffer, maxBytes: number, seed: number, now: () => number = Date.now) {
    const slots = indexSlots(maxBytes);
    this.control = new Int32Array(buffer, 0, 2);
    this.position = new Float64Array(buffer, 0, 3);
    this.claims = new SharedClaims(buffer, CONTROL_BYTES, this.control, 1, seed, now);
    const index = CONTROL_BYTES + CLAIMS_BYTES;
    this.hashes = new Uint32Array(buffer, index, slots * 2);
    this.positions = new Float64Array(buffer, index + slots * 8, slots);
    this.expiries = new Float64Array(buffer, index + slots * 16, slots);
    this.lengths = new Uint32Array(buffer, index + slots * 24, slots);
    this.refs = new Uint8Array(buffer, index + slots * 28, slots);
    this.arena = new Uint8Array(buffer, index + slots * SLOT_BYTES, maxBytes);
    this.capacity = maxBytes;
    this.bucketMask = slots / INDEX_BUCKET - 1;
    this.seedA = seed | 0;
    this.seedB = Math.imul(seed ^ 0x85ebca6b, 0xcc9e2d51) | 0;
    this.now = now;
  }

  getVary(urlKey: string): string | undefined {
    const value = this.read(`${urlKey}\nV`);
    return typeof value === 'string' ? value : undefined;
  }

  get(variantKey: string): CacheEntry | undefined {
    const value = this.read(variantKey);
    return typeof value === 'string' ? undefined : value;
  }

  set(urlKey: string, vary: string, variantKey: string, entry: CacheEntry, ttlMs: number): void {
    const expires = this.now() + Math.max(1, Math.ceil(ttlMs));
    const body = encodeEntry(entry);
    // The entry first: a reader that finds the Vary names then finds the variant.
    if (!this.write(variantKey, ENTRY, body, expires)) return;
    this.write(`${urlKey}\nV`, VARY, Buffer.from(vary, 'utf8'), expires);
  }

  purge(prefix: string): number {
    let removed = 0;
    const lengths = this.lengths;
    lockShared(this.control, 0);
    try {
      const tail = this.position[TAIL]!;
      for (let slot = 0; slot < lengths.length; slot++) {
        if (lengths[slot] === 0 || !this.intact(this.positions[slot]!, tail)) continue;
        const key = this.keyAt(this.positions[slot]!);
        if (!key.startsWith(prefix)) continue;
        this.clear(slot);
        if (key.includes('\nE')) removed++;
      }
    } finally {
      unlockShared(this.control, 0);
    }
    return removed;
  }

  // ---------------------------------------------------------------- records

  /** Record layout (RECORD_HEAD): u32 length, u32 index slot, u32 key length, u8 kind; the key (UTF-8), the value. */
  private write(key: string, kind: number, value: Uint8Array, expires: number): boolean {
    const keyBytes = Buffer.from(key, 'utf8');
    const length = RECORD_HEAD + keyBytes.length + value.byteLength;
    if (length > this.capacity / MAX_RECORD_SHARE) return false;
    const hi = hash32(key, '', this.seedA);
    const lo = hash32(key, '', this.seedB) || 1;
    lockShared(this.control, 0);
    try {
      const at = this.makeRoom(length);
      const slot = this.slotFor(hi, lo);
      this.advanceHead(at, length);
      const offset = at % this.capacity;
      this.putU32(offset, length);
      this.putU32(offset + 4, slot);
      this.putU32(offset + 8, keyBytes.length);
      this.arena[offset + 12] = kind;
      this.arena.set(keyBytes, offset + RECORD_HEAD);
      this.arena.set(value, offset + RECORD_HEAD + keyBytes.length);
      this.hashes[2 * slot] = hi;
      this.hashes[2 * slot + 1] = lo;
      this.positions[slot] = at;
      this.lengths[slot] = length;
      this.expiries[slot] = expires;
      this.refs[slot] = 0;
    } finally {
      unlockShared(this.control, 0);
    }
    return true;
  }

  /**
   * Makes room for `length` bytes at the head (under the lock) and answers where they go. The records at
   * the tail leave: forgotten when they are dead (written over in the index, purged, expired) or were not
   * read since they were stored, else moved to the head with their reference byte cleared (their second
   * chance), as long as the write's budget of moved bytes lasts.
   */
  private makeRoom(length: number): number {
    const capacity = this.capacity;
    const position = this.position;
    let budget = Math.min(capacity / 2, Math.max(2 * length, REINSERT_BYTES));
    const now = this.now();
    for (;;) {
      const at = this.placeFor(position[HEAD]!, length);
      const tail = position[TAIL]!;
      if (at + length - tail <= capacity) return at;
      const offset = tail % capacity;
      // The rest of the ring is a gap (a record never wraps).
      if (capacity - offset < 4 || this.u32(offset) === 0) {
        position[TAIL] = tail + capacity - offset;
        continue;
      }
      const size = this.u32(offset);
      const slot = this.u32(offset + 4);
      position[TAIL] = tail + size;
      if (this.positions[slot] !== tail || this.lengths[slot] === 0) continue;
      if (this.refs[slot] === 0 || this.expiries[slot]! <= now || size > budget) continue;
      const to = this.placeFor(position[HEAD]!, size);
      if (to + size - position[TAIL]! > capacity) continue;
      budget -= size;
      this.advanceHead(to, size);
      // The ranges may overlap (the tail's record was the last before the head): copyWithin moves.
      this.arena.copyWithin(to % capacity, offset, offset + size);
      this.positions[slot] = to;
      this.refs[slot] = 0;
    }
  }

  /** Where a record of `length` bytes goes from `head`: there, or at the ring's start when it would wrap. */
  private placeFor(head: number, length: number): number {
    const offset = head % this.capacity;
    return offset + length > this.capacity ? head + this.capacity - offset : head;
  }

  /** Moves the head past a record placed at `at` (placeFor), marking the gap it skipped, if any. */
  private advanceHead(at: number, length: number): void {
    const head = this.position[HEAD]!;
    const offset = head % this.capacity;
    if (at !== head && this.capacity - offset >= 4) this.putU32(offset, 0);
    this.position[HEAD] = at + length;
  }

  private u32(offset: number): number {
    const a = this.arena;
    return ((a[offset]! << 24) | (a[offset + 1]! << 16) | (a[offset + 2]! << 8) | a[offset + 3]!) >>> 0;
  }

  private putU32(offset: number, value: number): void {
    const a = this.arena;
    a[offset] = value >>> 24;
    a[offset + 1] = (value >>> 16) & 0xff;
    a[offset + 2] = (value >>> 8) & 0xff;
    a[offset + 3] = value & 0xff;
  }

  /** The value stored under `key`, or undefined. */
  private read(key: string): CacheEntry | string | undefined {
    const hi = hash32(key, '', this.seedA);
    const lo = hash32(key, '', this.seedB) || 1;
    const first = (hi & this.bucketMask) * INDEX_BUCKET;
    let at = -1;
    let length = 0;
    lockShared(this.control, 0);
    const tail = this.position[TAIL]!;
    for (let slot = first; slot < first + INDEX_BUCKET; slot++) {
      if (this.hashes[2 * slot] !== hi || this.hashes[2 * slot + 1] !== lo || this.lengths[slot] === 0)
        continue;
      if (this.expiries[slot]! > this.now() && this.intact(this.positions[slot]!, tail)) {
        at = this.positions[slot]!;
        length = this.lengths[slot]!;
        // Written only when not set yet: a hot entry's hits leave the cache line clean for the other cores.
        if (this.refs[slot] === 0) this.refs[slot] = 1;
      }
      break;
    }
    unlockShared(this.control, 0);
    if (at === -1) return undefined;
    const known = this.decoded.get(at);
    if (known !== undefined) return known.key === key ? known.value : undefined;
    const offset = at % this.capacity;
    const record = Buffer.from(this.arena.subarray(offset, offset + length));
    // Copied without the lock: a writer may have come round over it meanwhile.
    if (!this.intact(at, this.tailPosition())) return undefined;
    const keyLength = record.readUInt32BE(8);
    if (record.toString('utf8', RECORD_HEAD, RECORD_HEAD + keyLength) !== key) return undefined;
    const data = record.subarray(RECORD_HEAD + keyLength);
    const value = record[12] === VARY ? data.toString('utf8') : decodeEntry(data);
    if (value === undefined) return undefined;
    this.decoded.set(at, { key, value });
    return value;
  }

  private tailPosition(): number {
    lockShared(this.control, 0);
    const tail = this.position[TAIL]!;
    unlockShared(this.control, 0);
    return tail;
  }

  /** True while the record at logical position `at` is in the ring (`tail`: the tail's position). */
  private intact(at: number, tail: number): boolean {
    return at >= tail;
  }

  /** The key of the record at `at` (under the lock). */
  private keyAt(at: number): string {
    const offset = at % this.capacity;
    const a = this.arena;
    return Buffer.from(a.buffer, a.byteOffset + offset + RECORD_HEAD, this.u32(offset + 8)).toString('utf8');
  }

  /**
   * The slot for a key (under the lock, room made): its own, else a free one (empty, expired, or behind
   * the tail), else the bucket's oldest record's.
   */
  private slotFor(hi: number, lo: number): number {
    const tail = this.position[TAIL]!;
    const first = (hi & this.bucketMask) * INDEX_BUCKET;
    const now = this.now();
    let free = -1;
    let oldest = first;
    for (let slot = first; slot < first + INDEX_BUCKET; slot++) {
      if (this.hashes[2 * slot] === hi && this.hashes[2 * slot + 1] === lo) return slot;
      if (
        free === -1 &&
        (this.lengths[slot] === 0 || this.expiries[slot]! <= now || !this.intact(this.positions[slot]!, tail))
      ) {
        free = slot;
      }
      if (this.positions[slot]! < this.positions[oldest]!) oldest = slot;
    }
    return free !== -1 ? free : oldest;
  }

  private clear(slot: number): void {
    this.hashes[2 * slot] = 0;
    this.hashes[2 * slot + 1] = 0;
    this.lengths[slot] = 0;
  }
}
