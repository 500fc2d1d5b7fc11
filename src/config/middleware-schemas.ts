/**
 * The `config` schema of each middleware type, in one table. To add a type (or an auth kind), add
 * one entry here: the type list, the validator and the JSON Schema file all follow from this table.
 */
import { type TObject, Type } from '@sinclair/typebox';
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
  /** A user filter: `path` names the module; its `config` is the module's to check. */
  module: Type.Object(
    {},
    {
      additionalProperties: true,
      description: 'Settings passed to the user filter module as they are; the module checks them.',
    },
  ),
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
    const required: string[] = [];
    if ((configSchema.required ?? []).length > 0) required.push('config');
    // `path` names a user filter module: required for `module`, meaningless for the built-in types.
    const properties = then.properties as Record<string, unknown>;
    if (type === 'module') {
      required.push('path');
      properties.path = {
        type: 'string',
        minLength: 1,
        description: "The user filter module, relative to the config file's directory.",
        'x-expected': 'the path of the user filter module (a .ts or .js file)',
      };
    } else {
      properties.path = {
        not: {},
        description: 'Not allowed: only type `module` names a path.',
        'x-expected': 'no path (path is only for type module)',
      };
    }
    if (required.length > 0) then.required = required;
    return {
      if: { type: 'object', properties: { type: { const: type } }, required: ['type'] },
      then,
    };
  });
}
