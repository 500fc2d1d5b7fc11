/**
 * The Redis store: one key per `<limit>:<key>` holding the key's TAT in microseconds of Redis's own clock
 * (TIME), so that every zproxy instance using the server shares one limit whatever their clocks. Each
 * decision is one atomic Lua script (ioredis defineCommand: EVALSHA, EVAL only when the server lost the
 * script), and the key expires when its bucket is full again. Commands time out after `timeout_ms`, also
 * while they wait for the first connection, and fail at once while a lost connection is being
 * re-established, so a decision never waits longer.
 */
import { Redis } from 'ioredis';
import type { Decision, RateLimitPolicy } from './gcra.ts';
import type { RateLimitStore } from './store.ts';

/**
 * KEYS[1] the key; ARGV[1] interval (µs), ARGV[2] capacity. Returns {allowed, remaining, reset µs,
 * retry after µs} as integers. Same arithmetic as gcra().
 */
const GCRA_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = tat
if start < now then start = now end
local nxt = start + interval
local ahead = nxt - now
if ahead > tolerance then
  return {0, 0, start - now, ahead - tolerance}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil(ahead / 1000))
return {1, math.floor((tolerance - ahead) / interval), ahead, 0}
`;

interface GcraRedis extends Redis {
  zproxyGcra(key: string, intervalUs: number, capacity: number): Promise<[number, number, number, number]>;
}

/** Redis clients by URL and timeout, kept across config reloads. */
const clients = new Map<string, GcraRedis>();

function client(url: string, timeoutMs: number): GcraRedis {
  const id = `${timeoutMs} ${url}`;
  let redis = clients.get(id);
  if (redis === undefined) {
    redis = new Redis(url, {
      commandTimeout: timeoutMs,
      // The first commands wait for the connection, never past commandTimeout; once it was ready the
      // queue is turned off (failFastOffline).
      enableOfflineQueue: true,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(100 * times, 1000),
    }) as GcraRedis;
    redis.defineCommand('zproxyGcra', { numberOfKeys: 1, lua: GCRA_SCRIPT });
    // Failures surface on the commands (on_store_error); the event only needs a listener.
    redis.on('error', ignore);
    // Once connected, a lost connection fails decisions at once instead of after timeout_ms each.
    redis.once('ready', failFastOffline);
    clients.set(id, redis);
  }
  return redis;
}

function ignore(): void {}

function failFastOffline(this: Redis): void {
  this.options.enableOfflineQueue = false;
}

function toDecision(reply: [number, number, number, number]): Decision {
  return {
    allowed: reply[0] === 1,
    remaining: reply[1],
    resetMs: reply[2] / 1000,
    retryAfterMs: reply[3] / 1000,
  };
}

export class RedisRateLimitStore implements RateLimitStore {
  readonly redis: GcraRedis;
  readonly prefix: string;

  constructor(url: string, timeoutMs: number, prefix = 'zproxy:rl:') {
    this.redis = client(url, timeoutMs);
    this.prefix = prefix;
  }

  take(policy: RateLimitPolicy, key: string): Promise<Decision> {
    return this.redis
      .zproxyGcra(`${this.prefix}${policy.id}:${key}`, Math.round(policy.intervalMs * 1000), policy.capacity)
      .then(toDecision);
  }
}

/** Closes the Redis clients whose id (`<timeout_ms> <url>`) is not in `used` (a reload removed them). */
export function retainRateLimitRedisClients(used: ReadonlySet<string>): void {
  for (const [id, redis] of clients) {
    if (used.has(id)) continue;
    clients.delete(id);
    redis.disconnect();
  }
}

/** Closes every Redis client of the rate limits (tests, shutdown). */
export async function closeRateLimitRedisClients(): Promise<void> {
  const all = [...clients.values()];
  clients.clear();
  for (const redis of all) redis.disconnect();
}
