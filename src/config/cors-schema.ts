/**
 * The `config` schema of the `cors` middleware (the Fetch standard's CORS protocol, answered by zproxy).
 */
import { Type } from '@sinclair/typebox';
import { annotate, booleanField, integerField } from './fields.ts';

const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
const METHOD_PATTERN = '^[A-Z]+$';
/** `*`, a serialized origin, or one with `*` standing for one or more host labels. */
const ORIGIN_PATTERN =
  '^(?:\\*|null|[a-z][a-z0-9+.-]*://(?:\\*\\.)?[A-Za-z0-9*.-]+|[a-z][a-z0-9+.-]*://\\[[0-9A-Fa-f:.]+\\])(?::[0-9]{1,5})?$';

function headerNameList(description: string) {
  return Type.Array(
    Type.String({
      pattern: HEADER_NAME_PATTERN,
      'x-expected': 'a header name such as Content-Type',
    }),
    annotate({ description, expected: 'a list of header names such as ["Content-Type"]' }),
  );
}

export const CorsConfigSchema = Type.Object(
  {
    allowed_origins: Type.Array(
      Type.String({
        pattern: ORIGIN_PATTERN,
        'x-expected': 'an origin such as https://example.com, a pattern such as https://*.example.com, or *',
      }),
      annotate({
        description:
          'Origins allowed to make cross-origin requests (required): exact origins (scheme://host[:port]), patterns where * stands for one or more host labels (https://*.example.com), or "*" for any.',
        expected: 'a list of origins such as ["https://example.com"] or ["*"]',
      }),
    ),
    allow_credentials: Type.Optional(
      booleanField({
        default: false,
        description:
          'Answer with Access-Control-Allow-Credentials: true; the request origin is then echoed, never "*".',
      }),
    ),
    allowed_methods: Type.Optional(
      Type.Array(
        Type.String({
          pattern: METHOD_PATTERN,
          'x-expected': 'an HTTP method in uppercase letters, such as GET',
        }),
        annotate({
          description:
            'Methods allowed in preflight answers. Default: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"].',
          expected: 'a list of HTTP methods such as ["GET", "POST"]',
        }),
      ),
    ),
    allowed_headers: Type.Optional(
      headerNameList(
        'Request headers allowed in preflight answers; ["*"] allows any. Default: the headers the preflight asks for are allowed.',
      ),
    ),
    exposed_headers: Type.Optional(headerNameList('Response headers exposed to the browser.')),
    max_age_seconds: Type.Optional(
      integerField({
        minimum: 0,
        description:
          'How long browsers may cache a preflight answer (Access-Control-Max-Age); not sent when absent.',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of a cors middleware.',
    'x-expected': 'cors settings such as {"allowed_origins": ["*"]}',
  },
);

/** The cors middleware's config as validated. */
export interface CorsConfig {
  readonly allowed_origins: readonly string[];
  readonly allow_credentials?: boolean;
  readonly allowed_methods?: readonly string[];
  readonly allowed_headers?: readonly string[];
  readonly exposed_headers?: readonly string[];
  readonly max_age_seconds?: number;
}
