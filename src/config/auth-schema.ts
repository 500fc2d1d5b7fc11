/**
 * The `config` schema of the `auth` middleware: one object with a `kind` (api_key, basic, jwt) and the
 * fields of that kind. The seed's form (`{"api_keys": [...], "header": "x-api-key"}`) is the api_key kind,
 * which is the default. Which fields each kind requires is checked by if/then clauses; fields of another
 * kind are refused by the filter when it is built (src/filters/auth/compile.ts), naming the JSON path.
 */
import { Type } from '@sinclair/typebox';
import { annotate, booleanField, integerField, stringEnum } from './fields.ts';

const HEADER_NAME_PATTERN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export const AUTH_KINDS = ['api_key', 'basic', 'jwt'] as const;
export type AuthKind = (typeof AUTH_KINDS)[number];

export const JWT_ALGORITHMS = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;

const stringOrList = (description: string, expected: string) =>
  Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1 })], {
    ...annotate({ description, expected }),
  });

const headerName = (description: string) =>
  Type.String({ pattern: HEADER_NAME_PATTERN, description, 'x-expected': 'a header name such as x-api-key' });

/** `name` is present (declared, for ajv's strictRequired). */
function has(name: string) {
  return { properties: { [name]: { description: `The ${name} field, given.` } }, required: [name] };
}

/** A JSON Schema `if`/`then` pair. */
function clause(condition: Record<string, unknown>, then: Record<string, unknown>) {
  return { if: condition, then };
}

export const AuthConfigSchema = Type.Object(
  {
    kind: Type.Optional(
      stringEnum(AUTH_KINDS, {
        default: 'api_key',
        description:
          'How clients authenticate: "api_key", "basic" (RFC 7617) or "jwt" (a Bearer token, RFC 6750).',
        expected: '"api_key", "basic" or "jwt"',
      }),
    ),
    realm: Type.Optional(
      Type.String({
        minLength: 1,
        pattern: '^[^"\\\\\\u0000-\\u001f]+$',
        description: 'The realm named in WWW-Authenticate. Default: "zproxy".',
        'x-expected': 'a non-empty string without quotes or backslashes',
      }),
    ),
    strip_credentials: Type.Optional(
      booleanField({
        default: true,
        description:
          'Remove the credential (the header, or the query parameter) from the request forwarded upstream.',
      }),
    ),
    // api_key
    api_keys: Type.Optional(
      Type.Array(
        Type.String({ minLength: 1, 'x-expected': 'an API key, or sha256:<64 hex digits>' }),
        annotate({
          description:
            'api_key: accepted keys, each as "sha256:<hex digest of the key>" or as the plain key (hashed at load).',
          expected: 'a list of API keys or sha256:<hex> digests',
        }),
      ),
    ),
    api_keys_file: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'api_key: a file of accepted keys, one per line in the same forms as api_keys (blank lines and lines starting with # are ignored).',
        'x-expected': 'a file path',
      }),
    ),
    header: Type.Optional(
      headerName(
        'api_key: the request header carrying the key. Default: "x-api-key" (unless query_param is set).',
      ),
    ),
    query_param: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'api_key: the query parameter carrying the key (checked when the header is absent).',
        'x-expected': 'a non-empty string',
      }),
    ),
    // basic
    users: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[^:]+$' }),
        Type.String({ minLength: 1 }),
        annotate({
          description:
            'basic: user name -> password hash (bcrypt $2a$/$2b$/$2y$, or $scrypt$ln=..,r=..,p=..$salt$hash).',
          expected: 'an object of user names to password hashes',
        }),
      ),
    ),
    htpasswd_file: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'basic: an htpasswd-style file (user:hash per line) with bcrypt or scrypt hashes.',
        'x-expected': 'a file path',
      }),
    ),
    // jwt
    algorithms: Type.Optional(
      Type.Array(
        stringEnum(JWT_ALGORITHMS),
        annotate({
          description:
            'jwt: accepted signature algorithms. Default: the HS* ones with secret, the asymmetric ones otherwise.',
          expected: `a list of ${JWT_ALGORITHMS.join(', ')}`,
        }),
      ),
    ),
    secret: Type.Optional(
      Type.String({
        minLength: 32,
        description: 'jwt: the HMAC secret for HS256/HS384/HS512 (at least 32 characters).',
        'x-expected': 'a secret of at least 32 characters',
      }),
    ),
    key_file: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'jwt: a public key file: PEM (SPKI or X.509 certificate), a JWK or a JWK Set (JSON).',
        'x-expected': 'a file path',
      }),
    ),
    jwks_url: Type.Optional(
      Type.String({
        pattern: '^https?://',
        description:
          'jwt: a JWKS URL; fetched at start, cached, refetched when a token names an unknown kid (at most once per jwks_cooldown_seconds).',
        'x-expected': 'an http:// or https:// URL',
      }),
    ),
    jwks_cache_seconds: Type.Optional(
      integerField({
        minimum: 1,
        default: 600,
        description: 'jwt: how long a fetched JWKS is used before it is fetched again.',
      }),
    ),
    jwks_cooldown_seconds: Type.Optional(
      integerField({
        minimum: 0,
        default: 30,
        description: 'jwt: the least time between two fetches of the JWKS.',
      }),
    ),
    jwks_timeout_ms: Type.Optional(
      integerField({ minimum: 1, default: 5000, description: 'jwt: how long a JWKS fetch may take.' }),
    ),
    issuer: Type.Optional(
      stringOrList('jwt: the accepted `iss` value(s).', 'an issuer or a list of issuers'),
    ),
    audience: Type.Optional(
      stringOrList(
        'jwt: the accepted `aud` value(s) (one must match).',
        'an audience or a list of audiences',
      ),
    ),
    clock_skew_seconds: Type.Optional(
      integerField({ minimum: 0, default: 30, description: 'jwt: tolerance applied to exp and nbf.' }),
    ),
    required_claims: Type.Optional(
      Type.Array(
        Type.String({ minLength: 1 }),
        annotate({ description: 'jwt: claims a token must carry.', expected: 'a list of claim names' }),
      ),
    ),
    required_scopes: Type.Optional(
      Type.Array(
        Type.String({ pattern: '^[!#-\\[\\]-~]+$' }),
        annotate({
          description:
            'jwt: scopes the token must grant (in its space-separated `scope` claim or its `scp` list); a valid token without them gets 403 insufficient_scope.',
          expected: 'a list of scope names such as ["orders:read"]',
        }),
      ),
    ),
    forward_claims: Type.Optional(
      Type.Record(
        Type.String({ minLength: 1 }),
        Type.String({ pattern: HEADER_NAME_PATTERN }),
        annotate({
          description:
            'jwt: claim name -> request header set on the forwarded request (strings as is, other values as JSON; any header of that name from the client is removed).',
          expected: 'an object of claim names to header names, such as {"sub": "x-user-id"}',
        }),
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'Settings of an auth middleware.',
    'x-expected': 'auth settings such as {"api_keys": ["sha256:..."], "header": "x-api-key"}',
    allOf: [
      clause(
        { properties: { kind: { const: 'basic' } }, required: ['kind'] },
        {
          anyOf: [has('users'), has('htpasswd_file')],
          'x-expected': 'basic settings with users or htpasswd_file',
        },
      ),
      clause(
        { properties: { kind: { const: 'jwt' } }, required: ['kind'] },
        {
          anyOf: [has('secret'), has('key_file'), has('jwks_url')],
          'x-expected': 'jwt settings with secret, key_file or jwks_url',
        },
      ),
      clause(
        { anyOf: [{ not: has('kind') }, { properties: { kind: { const: 'api_key' } } }] },
        {
          anyOf: [has('api_keys'), has('api_keys_file')],
          'x-expected': 'api_key settings with api_keys or api_keys_file',
        },
      ),
    ],
  },
);

/** The auth middleware's config as validated (every field optional; defaults applied by the filter). */
export interface AuthConfig {
  readonly kind?: AuthKind;
  readonly realm?: string;
  readonly strip_credentials?: boolean;
  readonly api_keys?: readonly string[];
  readonly api_keys_file?: string;
  readonly header?: string;
  readonly query_param?: string;
  readonly users?: Readonly<Record<string, string>>;
  readonly htpasswd_file?: string;
  readonly algorithms?: readonly (typeof JWT_ALGORITHMS)[number][];
  readonly secret?: string;
  readonly key_file?: string;
  readonly jwks_url?: string;
  readonly jwks_cache_seconds?: number;
  readonly jwks_cooldown_seconds?: number;
  readonly jwks_timeout_ms?: number;
  readonly issuer?: string | readonly string[];
  readonly audience?: string | readonly string[];
  readonly clock_skew_seconds?: number;
  readonly required_claims?: readonly string[];
  readonly required_scopes?: readonly string[];
  readonly forward_claims?: Readonly<Record<string, string>>;
}
