/**
 * Cache entries and where they live. An entry is one stored response (one variant of a URL): its status,
 * its fields, its body and the serialized http-cache-semantics policy that decides its freshness.
 *
 * Keys (built by the filter, see keys.ts):
 * - `<url>\nV` holds the Vary field names of the URL's last stored response (the secondary key's recipe);
 * - `<url>\nE<vary values>` holds one variant.
 * A URL can hold no newline, so `<url>\n` prefixes exactly the keys of that URL, and a path prefix
 * prefixes the keys of every URL under it.
 *
 * Memory stores answer synchronously; the Redis store returns promises (`T | Promise<T>`).
 */
import type CachePolicy from 'http-cache-semantics';
import { LRUCache } from 'lru-cache';

export interface CacheEntry {
  readonly status: number;
  /** Field names in lowercase, in order; repeated fields appear once per value. */
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array;
  readonly policy: CachePolicy.CachePolicyObject;
}

export interface CacheStore {
  /** The Vary names recorded for a URL (`''` for none), or undefined when the URL has no entry. */
  getVary(urlKey: string): string | undefined | Promise<string | undefined>;
  get(variantKey: string): CacheEntry | undefined | Promise<CacheEntry | undefined>;
  /** Stores one variant and its URL's Vary names; `ttlMs` is freshness + stale windows. */
  set(
    urlKey: string,
    vary: string,
    variantKey: string,
    entry: CacheEntry,
    ttlMs: number,
  ): void | Promise<void>;
  /** Removes every key starting with `prefix`; answers how many were removed. */
  purge(prefix: string): number | Promise<number>;
}

/** Bytes an entry takes in memory (body + heads + a fixed share for the policy). */
export function entrySize(entry: CacheEntry): number {
  let size = entry.body.byteLength + 256;
  for (const [name, value] of entry.headers) size += name.length + value.length + 16;
  return size;
}

type MemoryValue = CacheEntry | string;

/** An LRU bounded in bytes, per process; answers synchronously. */
export class MemoryCacheStore implements CacheStore {
  readonly lru: LRUCache<string, MemoryValue>;

  constructor(maxBytes: number) {
    this.lru = new LRUCache<string, MemoryValue>({
      maxSize: maxBytes,
      sizeCalculation: (value, key) =>
        key.length + (typeof value === 'string' ? value.length + 16 : entrySize(value)),
    });
  }

  getVary(urlKey: string): string | undefined {
    const value = this.lru.get(`${urlKey}\nV`);
    return typeof value === 'string' ? value : undefined;
  }

  get(variantKey: string): CacheEntry | undefined {
    const value = this.lru.get(variantKey);
    return typeof value === 'string' ? undefined : value;
  }

  set(urlKey: string, vary: string, variantKey: string, entry: CacheEntry, ttlMs: number): void {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    this.lru.set(`${urlKey}\nV`, vary, { ttl });
    this.lru.set(variantKey, entry, { ttl });
  }

  purge(prefix: string): number {
    let removed = 0;
    for (const key of [...this.lru.keys()]) {
      if (!key.startsWith(prefix)) continue;
      if (this.lru.delete(key) && key.includes('\nE')) removed++;
    }
    return removed;
  }
}

/** Serialized entry: 4-byte big-endian head length, the head as JSON, then the body. */
export function encodeEntry(entry: CacheEntry): Buffer {
  const head = Buffer.from(JSON.stringify({ s: entry.status, h: entry.headers, p: entry.policy }));
  const out = Buffer.allocUnsafe(4 + head.length + entry.body.byteLength);
  out.writeUInt32BE(head.length, 0);
  head.copy(out, 4);
  out.set(entry.body, 4 + head.length);
  return out;
}

export function decodeEntry(data: Buffer): CacheEntry | undefined {
  if (data.length < 4) return undefined;
  const headLength = data.readUInt32BE(0);
  if (4 + headLength > data.length) return undefined;
  try {
    const head = JSON.parse(data.toString('utf8', 4, 4 + headLength)) as {
      s: number;
      h: [string, string][];
      p: CachePolicy.CachePolicyObject;
    };
    return { status: head.s, headers: head.h, policy: head.p, body: data.subarray(4 + headLength) };
  } catch {
    return undefined;
  }
}
