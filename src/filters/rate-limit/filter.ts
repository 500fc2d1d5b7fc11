/**
 * The rate_limit filter (docs/filters.md, "rate_limit"): in onRequest, one GCRA decision per request for
 * its key (client address, a header, a JWT claim or the route) from the configured store. Allowed
 * requests continue with `RateLimit-Policy` and `RateLimit` on the response; refused ones are answered 429
 * with `Retry-After` and the same fields (draft-ietf-httpapi-ratelimit-headers-11). When the store cannot
 * answer, `on_store_error` lets the request through (allow) or answers 503 (deny), with a warn line at
 * most every WARN_INTERVAL_MS.
 */
import { type BlockList, isIPv6 } from 'node:net';
import type { RateLimitConfig } from '../../config/rate-limit-schema.ts';
import { createLogger, type Logger } from '../../observe/logger.ts';
import type {
  Filter,
  FilterContext,
  FilterEnvironment,
  FilterFactory,
  LocalResponse,
  PhaseResult,
} from '../../pipeline/contract.ts';
import type { FilterModule } from '../../pipeline/registry.ts';
import { type Decision, type RateLimitPolicy, ratePolicy } from './gcra.ts';
import type { RateLimitStore } from './store.ts';
import { closeRateLimitRedisClients } from './store-redis.ts';
import { memoryStore, redisStore, redisStoreId, retainRedisStores } from './stores.ts';

const WARN_INTERVAL_MS = 10_000;
/** `timeout_ms` of a Redis store when the config leaves it out. */
const REDIS_TIMEOUT_MS = 50;
/** The name of zproxy's one policy in RateLimit-Policy and RateLimit. */
const POLICY_NAME = '"default"';

/** What the engine may give a factory besides the contract's environment. */
export interface RateLimitEnvironment extends FilterEnvironment {
  /** The top-level trusted_proxies: X-Forwarded-For is believed only from these peers. */
  readonly trustedProxies?: BlockList | null;
  readonly logger?: Logger;
}

/** The kinds of key (numbers, compared per request). */
const KeyKind = { ClientIp: 0, Header: 1, JwtClaim: 2, Route: 3 } as const;
type KeyKind = (typeof KeyKind)[keyof typeof KeyKind];

let fallbackLogger: Logger | null = null;

function defaultLogger(): Logger {
  fallbackLogger ??= createLogger('info', { component: 'rate_limit' });
  return fallbackLogger;
}

function family(address: string): 'ipv4' | 'ipv6' {
  return isIPv6(address) ? 'ipv6' : 'ipv4';
}

/**
 * The client's address: the peer, or, when the peer is a trusted proxy, the rightmost X-Forwarded-For
 * address that is not itself a trusted proxy (the leftmost when all are).
 */
export function clientAddress(
  peer: string,
  forwardedFor: readonly string[],
  trusted: BlockList | null,
): string {
  if (trusted === null || forwardedFor.length === 0 || !trusted.check(peer, family(peer))) return peer;
  let client = peer;
  for (let i = forwardedFor.length - 1; i >= 0; i--) {
    const parts = forwardedFor[i]!.split(',');
    for (let j = parts.length - 1; j >= 0; j--) {
      const address = parts[j]!.trim();
      if (address === '') continue;
      client = address;
      if (!trusted.check(address, family(address))) return address;
    }
  }
  return client;
}

export class RateLimitFilter implements Filter {
  readonly policy: RateLimitPolicy;
  readonly store: RateLimitStore;
  readonly keyKind: KeyKind;
  /** The header or claim name of the key. */
  readonly keyName: string;
  /** Prepended to the key's value (the key kind, or the whole key for `route`). */
  readonly keyPrefix: string;
  readonly deny: boolean;
  readonly trustedProxies: BlockList | null;
  readonly logger: Logger;
  /** RateLimit-Policy, built once. */
  readonly policyField: string;
  readonly storeName: string;
  private lastWarn = 0;
  /** No address is NUL: the first request builds its key. */
  private lastAddress = '\0';
  private lastAddressKey = '';
  private suppressed = 0;

  constructor(config: RateLimitConfig, env: RateLimitEnvironment) {
    this.policy = ratePolicy(config.requests_per_minute, config.burst);
    const kind = config.store ?? 'memory';
    const timeoutMs = config.timeout_ms ?? REDIS_TIMEOUT_MS;
    this.store = kind === 'redis' ? redisStore(config.redis_url!, timeoutMs) : memoryStore();
    this.storeName = kind;
    const key = config.key ?? 'client_ip';
    if (key === 'client_ip') {
      this.keyKind = KeyKind.ClientIp;
      this.keyName = '';
      this.keyPrefix = 'ip:';
    } else if (key === 'route') {
      this.keyKind = KeyKind.Route;
      this.keyName = '';
      this.keyPrefix = `route:${env.route}`;
    } else if (key.startsWith('header:')) {
      this.keyKind = KeyKind.Header;
      this.keyName = key.slice(7).toLowerCase();
      this.keyPrefix = `h:${this.keyName}:`;
    } else {
      this.keyKind = KeyKind.JwtClaim;
      this.keyName = key.slice(10);
      this.keyPrefix = `jwt:${this.keyName}:`;
    }
    this.deny = config.on_store_error === 'deny';
    this.trustedProxies = env.trustedProxies ?? null;
    this.logger = env.logger ?? defaultLogger();
    this.policyField = `${POLICY_NAME};q=${config.requests_per_minute};w=60`;
  }

  /** The bucket key of a request. */
  keyOf(ctx: FilterContext): string {
    switch (this.keyKind) {
      case KeyKind.ClientIp: {
        if (this.trustedProxies === null) {
          // Most requests come from the address before (keep-alive): its key is not built again.
          const address = ctx.request.clientAddress;
          if (address !== this.lastAddress) {
            this.lastAddress = address;
            this.lastAddressKey = this.keyPrefix + address;
          }
          return this.lastAddressKey;
        }
        return (
          this.keyPrefix +
          clientAddress(
            ctx.request.clientAddress,
            ctx.request.headers.getAll('x-forwarded-for'),
            this.trustedProxies,
          )
        );
      }
      case KeyKind.Header:
        return this.keyPrefix + (ctx.request.headers.get(this.keyName) ?? '');
      case KeyKind.JwtClaim: {
        const value = ctx.exchange.claims?.[this.keyName];
        return this.keyPrefix + (value === undefined || value === null ? '' : String(value));
      }
      default:
        return this.keyPrefix;
    }
  }

  onRequest(ctx: FilterContext): PhaseResult {
    let decision: Decision | Promise<Decision>;
    try {
      decision = this.store.take(this.policy, this.keyOf(ctx));
    } catch (error) {
      return this.storeFailed(error);
    }
    if (decision instanceof Promise) {
      return decision.then(
        (d) => this.decided(ctx, d),
        (error: unknown) => this.storeFailed(error),
      );
    }
    return this.decided(ctx, decision);
  }

  decided(ctx: FilterContext, d: Decision): LocalResponse | undefined {
    if (d.allowed) {
      ctx.responseHeaders.set('ratelimit-policy', this.policyField);
      ctx.responseHeaders.set(
        'ratelimit',
        `${POLICY_NAME};r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`,
      );
      return undefined;
    }
    const retryAfter = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
    return {
      status: 429,
      headers: {
        'content-type': 'text/plain; charset=utf-8',
        'retry-after': String(retryAfter),
        'ratelimit-policy': this.policyField,
        ratelimit: `${POLICY_NAME};r=0;t=${retryAfter}`,
      },
      body: 'Too Many Requests\n',
    };
  }

  storeFailed(error: unknown): LocalResponse | undefined {
    const now = Date.now();
    if (now - this.lastWarn >= WARN_INTERVAL_MS) {
      this.logger.warn(
        {
          store: this.storeName,
          on_store_error: this.deny ? 'deny' : 'allow',
          suppressed: this.suppressed,
          err: error instanceof Error ? error.message : String(error),
        },
        'rate_limit store unavailable',
      );
      this.lastWarn = now;
      this.suppressed = 0;
    } else {
      this.suppressed++;
    }
    if (!this.deny) return undefined;
    return {
      status: 503,
      headers: { 'content-type': 'text/plain; charset=utf-8', 'retry-after': '1' },
      body: 'Service Unavailable: rate limit store unavailable\n',
    };
  }
}

export const rateLimitFactory: FilterFactory<RateLimitConfig> = {
  type: 'rate_limit',
  create(config: RateLimitConfig, env: FilterEnvironment): Filter {
    return new RateLimitFilter(config, env);
  },
};

/**
 * The `rate_limit` filter module (src/pipeline/registry.ts); retain() lets go of the Redis stores a reload
 * removed, close() ends every Redis client.
 */
export const rateLimitFilter: FilterModule<RateLimitConfig> = {
  type: 'rate_limit',
  loadSchema: async () => (await import('../../config/rate-limit-schema.ts')).RateLimitConfigSchema,
  factory: rateLimitFactory,
  async retain(configs) {
    const used = new Set<string>();
    for (const c of configs) {
      if (c.store === 'redis' && c.redis_url !== undefined) {
        used.add(redisStoreId(c.redis_url, c.timeout_ms ?? REDIS_TIMEOUT_MS));
      }
    }
    retainRedisStores(used);
  },
  close: closeRateLimitRedisClients,
};
