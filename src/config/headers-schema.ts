/**
 * The `config` schema of the `headers` middleware: header rules on the forwarded request and on the
 * response, a path rewrite, and a request id (docs/filters.md, "headers"). What the schema cannot say
 * (variables in values, hop-by-hop names, the rewrite's regular expression) the factory checks, with the
 * same `config.<field>: ` paths.
 */
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { annotate, booleanField } from './fields.ts';

/** RFC 9110 §5.1 token characters. */
const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/** A field value as written in the config: no CR, LF or NUL (variables are checked by the factory). */
const VALUE_PATTERN = '^[^\\r\\n\\u0000]*$';
const VALUE_EXPECTED = `a header value without CR, LF or NUL, such as "\${client_ip}"`;
/** A path prefix: starts with `/`, no query, fragment or whitespace. */
const PREFIX_PATTERN = '^/[^?#\\s]*$';

function headerName(description: string, defaultValue?: string) {
  return Type.String({
    pattern: HEADER_NAME_PATTERN,
    ...annotate({
      description,
      ...(defaultValue === undefined ? {} : { default: defaultValue }),
      expected: 'a header name such as x-request-id',
    }),
  });
}

function headerValue() {
  return Type.String({ pattern: VALUE_PATTERN, 'x-expected': VALUE_EXPECTED });
}

/** An object whose keys are header names (propertyNames) and whose values match `values`. */
function byHeaderName<T extends TSchema>(values: T, description: string, expected: string) {
  return Type.Unsafe<Record<string, Static<T>>>({
    ...annotate({ description, expected }),
    type: 'object',
    propertyNames: { pattern: HEADER_NAME_PATTERN, 'x-expected': 'a header name such as x-real-ip' },
    additionalProperties: values,
  });
}

function valueOrValues() {
  return Type.Union([headerValue(), Type.Array(headerValue(), { minItems: 1 })], {
    'x-expected': `${VALUE_EXPECTED}, or a non-empty list of them`,
  });
}

function rules(side: 'request' | 'response', description: string) {
  const where = side === 'request' ? 'the forwarded request' : 'the response sent to the client';
  return Type.Object(
    {
      remove: Type.Optional(
        Type.Array(
          Type.String({ pattern: HEADER_NAME_PATTERN, 'x-expected': 'a header name such as x-powered-by' }),
          annotate({
            description: `Fields removed from ${where} (applied first).`,
            expected: 'a list of header names such as ["x-powered-by"]',
          }),
        ),
      ),
      set: Type.Optional(
        byHeaderName(
          headerValue(),
          `Fields set on ${where}, replacing any of the same name (after remove). Values may hold variables such as \${client_ip}.`,
          `an object of header names to values, such as {"x-real-ip": "\${client_ip}"}`,
        ),
      ),
      add: Type.Optional(
        byHeaderName(
          valueOrValues(),
          `Fields added to ${where}, keeping those already there (after set); a list adds one field per value.`,
          'an object of header names to a value or a list of values, such as {"via": "zproxy"}',
        ),
      ),
    },
    {
      additionalProperties: false,
      description,
      'x-expected':
        'header rules such as {"set": {"x-a": "1"}, "add": {"x-b": ["1", "2"]}, "remove": ["x-c"]}',
    },
  );
}

const RewriteSchema = Type.Union(
  [
    Type.Object(
      {
        prefix: Type.String({
          pattern: PREFIX_PATTERN,
          description:
            'A path prefix, matched at a segment boundary (/old matches /old and /old/x, not /older); a trailing / is ignored.',
          'x-expected': 'a path starting with /, such as /old',
        }),
        replacement: Type.String({
          pattern: '^(?:/[^?#\\s]*)?$',
          description: 'What the prefix becomes ("" or "/" removes it).',
          'x-expected': 'a path starting with /, or ""',
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        regex: Type.String({
          minLength: 1,
          description:
            'A JavaScript regular expression matched against the forwarded path (without the query); the first match is replaced.',
          'x-expected': 'a regular expression such as ^/users/(\\d+)$',
        }),
        replacement: Type.String({
          pattern: '^[^?#\\s]*$',
          description: 'The replacement of the match; $1, $2... and $<name> are the groups.',
          'x-expected': 'a path such as /u/$1 (no ?, # or whitespace)',
        }),
      },
      { additionalProperties: false },
    ),
  ],
  {
    description:
      'Rewrites the forwarded path (after the route strip_prefix), keeping the query: a prefix, or a regular expression.',
    'x-expected':
      'a rewrite such as {"prefix": "/old", "replacement": "/new"} or {"regex": "^/u/(\\\\d+)$", "replacement": "/users/$1"}',
  },
);

const RequestIdSchema = Type.Object(
  {
    header: Type.Optional(
      headerName('The header carrying the request id, on the request and the response.', 'x-request-id'),
    ),
    trust_incoming: Type.Optional(
      booleanField({
        default: true,
        description:
          "Keep the client's id when it is 1 to 200 visible ASCII characters; false: always generate one.",
      }),
    ),
    response: Type.Optional(
      booleanField({
        default: true,
        description: 'Send the id on the response too (proxied and local answers).',
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Gives each request an id (a UUID unless the client sent a usable one), sent upstream, on the response and in the access log (request_id).',
    'x-expected': 'request id settings such as {"header": "x-request-id"} or {}',
  },
);

export const HeadersConfigSchema = Type.Object(
  {
    request: Type.Optional(rules('request', 'Rules applied to the request forwarded upstream.')),
    response: Type.Optional(
      rules('response', 'Rules applied to the response sent to the client, proxied or answered locally.'),
    ),
    rewrite: Type.Optional(RewriteSchema),
    request_id: Type.Optional(RequestIdSchema),
  },
  {
    additionalProperties: false,
    description: 'Settings of a headers middleware.',
    'x-expected': `headers settings such as {"request": {"set": {"x-real-ip": "\${client_ip}"}}}`,
  },
);

/** Header rules of one side as validated. */
export interface HeaderRulesConfig {
  readonly remove?: readonly string[];
  readonly set?: Readonly<Record<string, string>>;
  readonly add?: Readonly<Record<string, string | readonly string[]>>;
}

export type RewriteConfig =
  | { readonly prefix: string; readonly replacement: string }
  | { readonly regex: string; readonly replacement: string };

export interface RequestIdConfig {
  readonly header?: string;
  readonly trust_incoming?: boolean;
  readonly response?: boolean;
}

/** The headers middleware's config as validated. */
export interface HeadersConfig {
  readonly request?: HeaderRulesConfig;
  readonly response?: HeaderRulesConfig;
  readonly rewrite?: RewriteConfig;
  readonly request_id?: RequestIdConfig;
}
