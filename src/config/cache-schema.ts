/**
 * The `config` schema of the cache middleware (docs/filters.md, "cache"; docs/configuration.md).
 */
import { Type } from '@sinclair/typebox';
import { annotate, booleanField, integerField, stringEnum } from './fields.ts';

const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export const CacheConfigSchema = Type.Object(
  {
    ttl_seconds: integerField({
      minimum: 0,
      description:
        'Default freshness lifetime, in seconds, of a storable response whose upstream gives none (no max-age, s-maxage or Expires) (required).',
    }),
    max_entry_bytes: Type.Optional(
      integerField({
        minimum: 1,
        default: 1048576,
        description:
          'Responses with a larger body are not stored (a body of unknown length stops being stored once it passes the limit).',
      }),
    ),
    store: Type.Optional(
      stringEnum(['memory', 'redis'] as const, {
        default: 'memory',
        description:
          'Where entries live: "memory" (bounded in bytes, per instance: shared memory for worker threads, an LRU per process for worker processes) or "redis" (shared by every instance using the same redis_url and key_prefix).',
        expected: '"memory" or "redis"',
      }),
    ),
    max_bytes: Type.Optional(
      integerField({
        minimum: 1,
        default: 67108864,
        description:
          'Memory store: the most bytes (bodies and heads) held; the least recently used entries go first (with worker threads, those not read since they were stored: CLOCK).',
      }),
    ),
    redis_url: Type.Optional(
      Type.String({
        pattern: '^rediss?://',
        description:
          'Redis store: the server, as a redis:// or rediss:// URL (required when store is "redis").',
        'x-expected': 'a redis:// URL such as redis://127.0.0.1:6379/0',
      }),
    ),
    key_prefix: Type.Optional(
      Type.String({
        description: 'Redis store: prefix of every key. Default: "zproxy:cache:".',
        'x-expected': 'a string such as "zproxy:cache:"',
      }),
    ),
    methods: Type.Optional(
      Type.Array(
        stringEnum(['GET', 'HEAD'] as const),
        annotate({
          description:
            'Methods answered from the cache (a HEAD is answered from a stored GET). Default: ["GET", "HEAD"].',
          expected: 'a list of "GET" and "HEAD"',
        }),
      ),
    ),
    shared: Type.Optional(
      booleanField({
        default: true,
        description:
          'Shared-cache semantics (RFC 9111): s-maxage applies, private responses and answers to Authorization requests are not stored unless allowed.',
      }),
    ),
    coalesce_timeout_ms: Type.Optional(
      integerField({
        minimum: 0,
        default: 5000,
        description:
          'How long a request waits for a concurrent miss on the same key (on any worker thread; with worker processes, of its worker) before going upstream itself (0 turns coalescing off).',
      }),
    ),
    purge: Type.Optional(
      Type.Object(
        {
          token: Type.String({
            minLength: 16,
            description: 'The secret a PURGE request must carry in the purge header (required).',
            'x-expected': 'a secret of at least 16 characters',
          }),
          header: Type.Optional(
            Type.String({
              pattern: HEADER_NAME_PATTERN,
              description: 'The request header carrying the purge token. Default: "x-cache-purge-token".',
              'x-expected': 'a header name such as x-cache-purge-token',
            }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'Enables PURGE: `PURGE /path?q` removes every variant of that URL, `PURGE /prefix*` every URL starting with /prefix, on the same host.',
          'x-expected': 'purge settings such as {"token": "a-long-secret-value"}',
        },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of a cache middleware.',
    'x-expected': 'cache settings such as {"ttl_seconds": 300}',
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
