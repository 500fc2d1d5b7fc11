/**
 * The `config` schema of each middleware type, in one table. To add a type (or an auth kind), add
 * one entry here: the type list, the validator and the JSON Schema file all follow from this table.
 */
import type { TObject } from '@sinclair/typebox';
import { AuthConfigSchema } from './auth-schema.ts';
import { CacheConfigSchema } from './cache-schema.ts';
import { CorsConfigSchema } from './cors-schema.ts';
import { HeadersConfigSchema } from './headers-schema.ts';
import { RateLimitConfigSchema } from './rate-limit-schema.ts';

/** Middleware type name -> schema of its `config` object. */
export const MIDDLEWARE_CONFIG_SCHEMAS = {
  auth: AuthConfigSchema,
  rate_limit: RateLimitConfigSchema,
  cors: CorsConfigSchema,
  cache: CacheConfigSchema,
  headers: HeadersConfigSchema,
} as const satisfies Record<string, TObject>;

export type MiddlewareType = keyof typeof MIDDLEWARE_CONFIG_SCHEMAS;

export const MIDDLEWARE_TYPES = Object.keys(MIDDLEWARE_CONFIG_SCHEMAS) as MiddlewareType[];

/**
 * `if type is X then config must match X's schema`, one clause per type. A clause whose schema
 * has required keys also requires `config` itself.
 */
export function middlewareConfigClauses(): Record<string, unknown>[] {
  return MIDDLEWARE_TYPES.map((type) => {
    const configSchema: TObject = MIDDLEWARE_CONFIG_SCHEMAS[type];
    const then: Record<string, unknown> = { type: 'object', properties: { config: configSchema } };
    if ((configSchema.required ?? []).length > 0) then.required = ['config'];
    return {
      if: { type: 'object', properties: { type: { const: type } }, required: ['type'] },
      then,
    };
  });
}
