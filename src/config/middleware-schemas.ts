/**
 * The `config` schema of each middleware type, in one table. To add a type (or an auth kind), add
 * one entry here: the type list, the validator and the JSON Schema file all follow from this table.
 */
import { type TObject, Type } from '@sinclair/typebox';
import { CacheConfigSchema } from './cache-schema.ts';
import { annotate, booleanField, integerField } from './fields.ts';

const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const METHOD_PATTERN = '^[A-Z]+$';

function headerNameList(description: string) {
  return Type.Array(
    Type.String({
      pattern: HEADER_NAME_PATTERN,
      'x-expected': 'a header name such as Content-Type',
    }),
    annotate({ description, expected: 'a list of header names such as ["Content-Type"]' }),
  );
}

const RateLimitConfigSchema = Type.Object(
  {
    requests_per_minute: integerField({
      minimum: 1,
      description: 'Requests each client may make per minute (required).',
    }),
    burst: Type.Optional(
      integerField({
        minimum: 0,
        description: 'Extra requests allowed above the steady rate in a short burst.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of a rate_limit middleware.',
    'x-expected': 'rate_limit settings such as {"requests_per_minute": 100}',
  },
);

const CorsConfigSchema = Type.Object(
  {
    allowed_origins: Type.Array(
      Type.String({ minLength: 1, 'x-expected': 'an origin such as https://example.com, or *' }),
      annotate({
        description: 'Origins allowed to make cross-origin requests; "*" allows any (required).',
        expected: 'a list of origins such as ["https://example.com"] or ["*"]',
      }),
    ),
    allow_credentials: Type.Optional(
      booleanField({ description: 'Answer with Access-Control-Allow-Credentials: true.' }),
    ),
    allowed_methods: Type.Optional(
      Type.Array(
        Type.String({
          pattern: METHOD_PATTERN,
          'x-expected': 'an HTTP method in uppercase letters, such as GET',
        }),
        annotate({
          description: 'Methods allowed in preflight answers.',
          expected: 'a list of HTTP methods such as ["GET", "POST"]',
        }),
      ),
    ),
    allowed_headers: Type.Optional(headerNameList('Request headers allowed in preflight answers.')),
    exposed_headers: Type.Optional(headerNameList('Response headers exposed to the browser.')),
    max_age_seconds: Type.Optional(
      integerField({ minimum: 0, description: 'How long browsers may cache a preflight answer.' }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of a cors middleware.',
    'x-expected': 'cors settings such as {"allowed_origins": ["*"]}',
  },
);

const AuthConfigSchema = Type.Object(
  {
    api_keys: Type.Optional(
      Type.Array(
        Type.String({ minLength: 1, 'x-expected': 'a non-empty string' }),
        annotate({
          description: 'Accepted API keys.',
          expected: 'a list of API keys (non-empty strings)',
        }),
      ),
    ),
    header: Type.Optional(
      Type.String({
        pattern: HEADER_NAME_PATTERN,
        description: 'Request header that carries the API key.',
        'x-expected': 'a header name such as x-api-key',
      }),
    ),
    query_param: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Query parameter that carries the API key.',
        'x-expected': 'a non-empty string',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of an auth middleware.',
    'x-expected': 'auth settings such as {"api_keys": ["change-me"]}',
  },
);

/** Middleware type name -> schema of its `config` object. */
export const MIDDLEWARE_CONFIG_SCHEMAS = {
  auth: AuthConfigSchema,
  rate_limit: RateLimitConfigSchema,
  cors: CorsConfigSchema,
  cache: CacheConfigSchema,
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
