/**
 * The `config` of a rate_limit middleware (docs/filters.md, "rate_limit"): a GCRA limit of
 * `requests_per_minute` with a `burst`, counted per `key`, in a `memory` or `redis` store.
 */
import { type Static, Type } from '@sinclair/typebox';
import { integerField, stringEnum } from './fields.ts';

/** `client_ip`, `route`, `header:<name>` or `jwt_claim:<name>`. */
export const RATE_LIMIT_KEY_PATTERN =
  "^(client_ip|route|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+|jwt_claim:[^\\s]+)$";

export const RateLimitConfigSchema = Type.Object(
  {
    requests_per_minute: integerField({
      minimum: 1,
      description: 'Requests each key (client) may make per minute, the sustained rate (required).',
    }),
    burst: Type.Optional(
      integerField({
        minimum: 0,
        description:
          'Requests allowed above the steady rate at once: a key that was idle may make burst + 1 requests back to back. Default: requests_per_minute - 1 (a minute of requests at once).',
      }),
    ),
    key: Type.Optional(
      Type.String({
        pattern: RATE_LIMIT_KEY_PATTERN,
        description:
          'What one limit is counted per: "client_ip" (the peer, or the X-Forwarded-For address it vouches for when the peer is in trusted_proxies), "header:<name>" (a request header; requests without it share one bucket), "jwt_claim:<name>" (a claim of the JWT the auth middleware verified), "route" (one limit for the whole route). Default: "client_ip".',
        default: 'client_ip',
        'x-expected': 'a key such as "client_ip", "route", "header:x-api-key" or "jwt_claim:sub"',
      }),
    ),
    store: Type.Optional(
      stringEnum(['memory', 'redis'] as const, {
        default: 'memory',
        description:
          'Where the counters live: "memory" (this zproxy instance, exact across its workers) or "redis" (shared by every instance using redis_url).',
        expected: '"memory" or "redis"',
      }),
    ),
    redis_url: Type.Optional(
      Type.String({
        pattern: '^rediss?://',
        description: 'The Redis server of store "redis" (required for it), e.g. redis://127.0.0.1:6379/0.',
        'x-expected': 'a redis:// URL such as redis://127.0.0.1:6379',
      }),
    ),
    on_store_error: Type.Optional(
      stringEnum(['allow', 'deny'] as const, {
        default: 'allow',
        description:
          'When the store cannot answer (Redis down or slower than timeout_ms): "allow" lets the request through (fail-open), "deny" answers 503 (fail-closed).',
        expected: '"allow" or "deny"',
      }),
    ),
    timeout_ms: Type.Optional(
      integerField({
        minimum: 1,
        maximum: 60_000,
        default: 50,
        description: 'How long a decision waits for Redis before on_store_error applies.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of a rate_limit middleware.',
    'x-expected': 'rate_limit settings such as {"requests_per_minute": 100}',
    if: { properties: { store: { const: 'redis' } }, required: ['store'] },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then (store "redis" needs redis_url)
    then: {
      properties: {
        redis_url: {
          type: 'string',
          description: 'Required when store is "redis".',
          'x-expected': 'a redis:// URL (store "redis" needs redis_url)',
        },
      },
      required: ['redis_url'],
    },
  },
);

export type RateLimitConfig = Static<typeof RateLimitConfigSchema>;
