/**
 * The Redis cache store: entries shared by every zproxy instance that uses the same server and key
 * prefix. One key per variant (the serialized head and body in one value, see encodeEntry) and one key per
 * URL for its Vary names, both expiring after freshness + stale windows. A Redis that fails or is slow
 * makes a lookup a miss and a store a no-op (commands time out; nothing waits forever).
 */
import { Redis } from 'ioredis';
import { type CacheEntry, type CacheStore, decodeEntry, encodeEntry } from './store.ts';

const COMMAND_TIMEOUT_MS = 1000;

/** Redis clients by URL, shared by the stores and kept across config reloads. */
const clients = new Map<string, Redis>();

export function redisClient(url: string): Redis {
  let client = clients.get(url);
  if (client === undefined) {
    client = new Redis(url, {
      commandTimeout: COMMAND_TIMEOUT_MS,
      maxRetriesPerRequest: 1,
      enableOfflineQueue: true,
      lazyConnect: false,
    });
    // Errors surface on the commands (a miss); the event only needs a listener.
    client.on('error', ignore);
    clients.set(url, client);
  }
  return client;
}

/** Closes the clients whose URL is not in `used` (a reload removed them). */
export function retainRedisClients(used: ReadonlySet<string>): void {
  for (const [url, client] of clients) {
    if (used.has(url)) continue;
    clients.delete(url);
    client.disconnect();
  }
}

/** Closes every Redis client of the cache (tests, shutdown). */
export async function closeRedisClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(
    all.map((client) =>
      client.status === 'ready' ? client.quit().then(ignore, () => client.disconnect()) : client.disconnect(),
    ),
  );
}

function ignore(): void {}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

export class RedisCacheStore implements CacheStore {
  readonly client: Redis;
  readonly prefix: string;

  constructor(url: string, prefix: string) {
    this.client = redisClient(url);
    this.prefix = prefix;
  }

  getVary(urlKey: string): Promise<string | undefined> {
    return this.client.get(`${this.prefix}${urlKey}\nV`).then(orUndefined, missOnError);
  }

  get(variantKey: string): Promise<CacheEntry | undefined> {
    return this.client.getBuffer(this.prefix + variantKey).then(decodeOrUndefined, missOnError);
  }

  set(urlKey: string, vary: string, variantKey: string, entry: CacheEntry, ttlMs: number): Promise<void> {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return this.client
      .multi()
      .set(`${this.prefix}${urlKey}\nV`, vary, 'PX', ttl)
      .set(this.prefix + variantKey, encodeEntry(entry), 'PX', ttl)
      .exec()
      .then(ignore, ignore);
  }

  async purge(prefix: string): Promise<number> {
    const stream = this.client.scanStream({ match: `${escapeGlob(this.prefix + prefix)}*`, count: 500 });
    let removed = 0;
    for await (const keys of stream as AsyncIterable<string[]>) {
      if (keys.length === 0) continue;
      await this.client.del(...keys);
      for (const key of keys) if (key.includes('\nE')) removed++;
    }
    return removed;
  }
}

function orUndefined(value: string | null): string | undefined {
  return value ?? undefined;
}

function decodeOrUndefined(value: Buffer | null): CacheEntry | undefined {
  return value === null ? undefined : decodeEntry(value);
}

function missOnError(): undefined {
  return undefined;
}
