/**
 * The `auth` filter (docs/filters.md, "auth"): one of three kinds, chosen by `kind`.
 * - api_key: a key in a header (default `x-api-key`) or a query parameter, matched against SHA-256 digests;
 * - basic: `Authorization: Basic` checked against bcrypt or scrypt hashes (users in the config or an
 *   htpasswd file); successful checks are remembered for a minute under a SHA-256 of the credentials, so a
 *   client sending the same credentials does not pay bcrypt on every request;
 * - jwt: `Authorization: Bearer` verified with jose (HS*, RS*, PS*, ES*, EdDSA; secret, key file or JWKS).
 * A refused request gets 401 with WWW-Authenticate (403 for a valid token without a required scope).
 * On success the filter sets `exchange.principal` (and `exchange.claims` for jwt), forwards the chosen
 * claims as request headers, and by default strips the credential from the forwarded request.
 * Credentials never reach a log line or an answer.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';
import type { AuthConfig } from '../../config/auth-schema.ts';
import { isManagedName } from '../../http/fields.ts';
import type {
  Filter,
  FilterContext,
  FilterFactory,
  LocalResponse,
  PhaseResult,
} from '../../pipeline/contract.ts';
import type { FilterModule } from '../../pipeline/registry.ts';
import { ApiKeySet, parseKeysFile, queryParam, withoutQueryParam } from './api-key.ts';
import { forbidden, quoted, unauthorized, unavailable } from './challenge.ts';
import { type JwtOutcome, JwtVerifier } from './jwt.ts';
import { dummyHashLike, type PasswordVerifier, parseHtpasswd, passwordVerifier } from './password-hash.ts';

/** A config the filter cannot be built from; `path` is relative to the middleware's `config`. */
export class AuthConfigError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(`config.${path}: ${message}`);
    this.name = 'AuthConfigError';
    this.path = path;
  }
}

const KIND_FIELDS: Record<string, readonly string[]> = {
  api_key: ['api_keys', 'api_keys_file', 'header', 'query_param'],
  basic: ['users', 'htpasswd_file'],
  jwt: [
    'algorithms',
    'secret',
    'key_file',
    'jwks_url',
    'jwks_cache_seconds',
    'jwks_cooldown_seconds',
    'jwks_timeout_ms',
    'issuer',
    'audience',
    'clock_skew_seconds',
    'required_claims',
    'required_scopes',
    'forward_claims',
  ],
};

/**
 * A field the filter edits on the forwarded request (the credential's header, a claim's header): never one
 * zproxy manages itself (framing, Host, hop-by-hop), which filters cannot edit (src/http/fields.ts).
 */
function checkEditedName(path: string, lowerName: string): void {
  if (isManagedName(lowerName)) {
    throw new AuthConfigError(
      path,
      `${lowerName} is a hop-by-hop or framing field that zproxy manages itself; the auth filter cannot use it`,
    );
  }
}

function checkKindFields(config: AuthConfig, kind: string): void {
  for (const [other, fields] of Object.entries(KIND_FIELDS)) {
    if (other === kind) continue;
    for (const field of fields) {
      if ((config as Record<string, unknown>)[field] !== undefined)
        throw new AuthConfigError(field, `only for kind "${other}", this auth is kind "${kind}"`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// api_key
// ---------------------------------------------------------------------------------------------

export class ApiKeyFilter implements Filter {
  readonly keys: ApiKeySet;
  readonly #header: string | null;
  readonly #queryParam: string | null;
  readonly #strip: boolean;
  readonly #missing: LocalResponse;
  readonly #invalid: LocalResponse;

  constructor(config: AuthConfig) {
    const entries = [...(config.api_keys ?? [])];
    if (config.api_keys_file !== undefined) {
      let text: string;
      try {
        text = readFileSync(config.api_keys_file, 'utf8');
      } catch (error) {
        throw new AuthConfigError(
          'api_keys_file',
          `cannot read ${config.api_keys_file}: ${(error as Error).message}`,
        );
      }
      entries.push(...parseKeysFile(text));
    }
    if (entries.length === 0) throw new AuthConfigError('api_keys', 'at least one key is needed');
    this.keys = new ApiKeySet(entries);
    this.#queryParam = config.query_param ?? null;
    this.#header = config.header?.toLowerCase() ?? (this.#queryParam === null ? 'x-api-key' : null);
    if (this.#header !== null) checkEditedName('header', this.#header);
    this.#strip = config.strip_credentials ?? true;
    // RFC 9110 needs a challenge with a 401; API keys have no registered scheme, so one named after them.
    const challenge = `ApiKey realm=${quoted(config.realm ?? 'zproxy')}`;
    this.#missing = unauthorized(challenge, 'An API key is required');
    this.#invalid = unauthorized(challenge, 'The API key is not valid');
  }

  onRequest(ctx: FilterContext): PhaseResult {
    let key: string | undefined;
    let fromQuery = false;
    if (this.#header !== null) key = ctx.request.headers.get(this.#header);
    if (key === undefined && this.#queryParam !== null) {
      key = queryParam(ctx.request.query, this.#queryParam);
      fromQuery = key !== undefined;
      // A key in the query would be in the access log's target: the log gets the target without it.
      if (fromQuery) ctx.exchange.logTarget = withoutQueryParam(ctx.exchange.target, this.#queryParam);
    }
    if (key === undefined || key === '') return this.#missing;
    const principal = this.keys.match(key);
    if (principal === null) return this.#invalid;
    ctx.exchange.principal = principal;
    if (this.#strip) {
      if (this.#header !== null) ctx.upstreamHeaders.remove(this.#header);
      if (this.#queryParam !== null && (fromQuery || ctx.request.query.length > 1)) {
        const target = ctx.upstreamTarget;
        const stripped = withoutQueryParam(target, this.#queryParam);
        if (stripped !== target) ctx.setUpstreamTarget(stripped);
      }
    }
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// basic
// ---------------------------------------------------------------------------------------------

const BASIC_PREFIX = /^basic +/i;

export class BasicFilter implements Filter {
  /**
   * A hash no password matches, with the algorithm and cost of the first configured user's (built once,
   * here): an unknown user's password is checked against it, so that the answer takes as long as a known
   * user's and does not tell which users exist.
   */
  readonly dummyHash: string;
  readonly #dummy: PasswordVerifier;
  readonly #users: Map<string, PasswordVerifier>;
  readonly #strip: boolean;
  readonly #missing: LocalResponse;
  readonly #invalid: LocalResponse;
  /** SHA-256 of "user\0password" -> user, for credentials verified recently. */
  readonly #verified = new LRUCache<string, string>({ max: 1024, ttl: 60_000 });

  constructor(config: AuthConfig) {
    const pairs: [string, string, string][] = Object.entries(config.users ?? {}).map(([u, h]) => [
      u,
      h,
      `users.${u}`,
    ]);
    if (config.htpasswd_file !== undefined) {
      let text: string;
      try {
        text = readFileSync(config.htpasswd_file, 'utf8');
      } catch (error) {
        throw new AuthConfigError(
          'htpasswd_file',
          `cannot read ${config.htpasswd_file}: ${(error as Error).message}`,
        );
      }
      for (const [u, h] of parseHtpasswd(text)) pairs.push([u, h, `htpasswd_file (user ${u})`]);
    }
    if (pairs.length === 0) throw new AuthConfigError('users', 'at least one user is needed');
    this.#users = new Map();
    for (const [user, hash, where] of pairs) {
      const verifier = passwordVerifier(hash);
      if (typeof verifier === 'string') throw new AuthConfigError(where, `expected ${verifier}`);
      this.#users.set(user, verifier);
    }
    this.dummyHash = dummyHashLike(pairs[0]![1]);
    this.#dummy = passwordVerifier(this.dummyHash) as PasswordVerifier;
    this.#strip = config.strip_credentials ?? true;
    const challenge = `Basic realm=${quoted(config.realm ?? 'zproxy')}, charset="UTF-8"`;
    this.#missing = unauthorized(challenge, 'Credentials are required');
    this.#invalid = unauthorized(challenge, 'The credentials are not valid');
  }

  onRequest(ctx: FilterContext): PhaseResult {
    const header = ctx.request.headers.get('authorization');
    if (header === undefined || !BASIC_PREFIX.test(header)) return this.#missing;
    const decoded = Buffer.from(header.replace(BASIC_PREFIX, ''), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return this.#invalid;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const digest = createHash('sha256').update(user).update('\0').update(password).digest('hex');
    if (this.#verified.get(digest) === user) return this.#accept(ctx, user);
    const verifier = this.#users.get(user);
    if (verifier === undefined) return this.#dummy.verify(password).then(() => this.#invalid);
    return verifier.verify(password).then((ok) => {
      if (!ok) return this.#invalid;
      this.#verified.set(digest, user);
      return this.#accept(ctx, user);
    });
  }

  #accept(ctx: FilterContext, user: string): undefined {
    ctx.exchange.principal = user;
    if (this.#strip) ctx.upstreamHeaders.remove('authorization');
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// jwt
// ---------------------------------------------------------------------------------------------

const BEARER_PREFIX = /^bearer +/i;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

export class JwtFilter implements Filter {
  readonly verifier: JwtVerifier;
  readonly #realm: string;
  readonly #strip: boolean;
  readonly #forward: readonly (readonly [claim: string, header: string])[];
  readonly #scopes: readonly string[];
  readonly #missing: LocalResponse;
  readonly #insufficient: LocalResponse | null;
  readonly #unavailable: LocalResponse;
  /** reason -> answer, built once per reason. */
  readonly #invalid = new Map<string, LocalResponse>();
  /** Tokens verified recently -> their claims (checked again once exp passes). */
  readonly #verified = new LRUCache<string, JWTPayload>({ max: 4096, ttl: 300_000 });
  readonly #skew: number;

  constructor(config: AuthConfig, verifier: JwtVerifier) {
    this.verifier = verifier;
    this.#realm = config.realm ?? 'zproxy';
    this.#skew = config.clock_skew_seconds ?? 30;
    this.#strip = config.strip_credentials ?? true;
    this.#forward = Object.entries(config.forward_claims ?? {}).map(([c, h]) => {
      const header = h.toLowerCase();
      checkEditedName(`forward_claims.${c}`, header);
      return [c, header] as const;
    });
    this.#scopes = [...(config.required_scopes ?? [])];
    this.#missing = unauthorized(`Bearer realm=${quoted(this.#realm)}`, 'A bearer token is required');
    this.#insufficient =
      this.#scopes.length === 0
        ? null
        : forbidden(
            `Bearer realm=${quoted(this.#realm)}, error="insufficient_scope", scope=${quoted(this.#scopes.join(' '))}`,
            'The token lacks a required scope',
          );
    this.#unavailable = unavailable('The signing keys could not be fetched');
  }

  onRequest(ctx: FilterContext): PhaseResult {
    const header = ctx.request.headers.get('authorization');
    if (header === undefined || !BEARER_PREFIX.test(header)) return this.#missing;
    const token = header.replace(BEARER_PREFIX, '');
    if (!TOKEN68.test(token)) return this.#invalidAnswer('The token is malformed');
    const known = this.#verified.get(token);
    if (known !== undefined) {
      // A token verified before is accepted without a promise until its exp (plus the skew) passes.
      if (known.exp === undefined || Date.now() / 1000 <= known.exp + this.#skew)
        return this.#accept(ctx, known);
      this.#verified.delete(token);
    }
    return this.verifier.verify(token).then((outcome) => this.#decide(ctx, token, outcome));
  }

  #decide(ctx: FilterContext, token: string, outcome: JwtOutcome): LocalResponse | undefined {
    if (!outcome.ok) return outcome.unavailable ? this.#unavailable : this.#invalidAnswer(outcome.reason);
    this.#verified.set(token, outcome.claims);
    return this.#accept(ctx, outcome.claims);
  }

  #accept(ctx: FilterContext, claims: JWTPayload): LocalResponse | undefined {
    if (this.#insufficient !== null && !hasScopes(claims, this.#scopes)) return this.#insufficient;
    ctx.exchange.principal = typeof claims.sub === 'string' ? claims.sub : '';
    ctx.exchange.claims = claims;
    const edits = ctx.upstreamHeaders;
    if (this.#strip) edits.remove('authorization');
    for (const [claim, header] of this.#forward) {
      const value = claims[claim];
      if (value === undefined || value === null) edits.remove(header);
      else edits.set(header, headerValue(value));
    }
    return undefined;
  }

  #invalidAnswer(reason: string): LocalResponse {
    let answer = this.#invalid.get(reason);
    if (answer === undefined) {
      answer = unauthorized(
        `Bearer realm=${quoted(this.#realm)}, error="invalid_token", error_description=${quoted(reason)}`,
        reason,
      );
      this.#invalid.set(reason, answer);
    }
    return answer;
  }
}

function hasScopes(claims: Record<string, unknown>, required: readonly string[]): boolean {
  const granted = new Set<string>();
  const scope = claims.scope;
  if (typeof scope === 'string') for (const s of scope.split(' ')) granted.add(s);
  const scp = claims.scp;
  if (Array.isArray(scp)) for (const s of scp) if (typeof s === 'string') granted.add(s);
  for (const s of required) if (!granted.has(s)) return false;
  return true;
}

/** A claim as a field value: strings as they are, anything else as JSON; CR, LF and NUL never pass. */
function headerValue(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.replace(/[\r\n\0]/g, ' ');
}

// ---------------------------------------------------------------------------------------------
// the factory
// ---------------------------------------------------------------------------------------------

export const authFactory: FilterFactory<AuthConfig> = {
  type: 'auth',
  async create(config: AuthConfig): Promise<Filter> {
    const kind = config.kind ?? 'api_key';
    checkKindFields(config, kind);
    if (kind === 'api_key') return new ApiKeyFilter(config);
    if (kind === 'basic') return new BasicFilter(config);
    let verifier: JwtVerifier;
    try {
      verifier = await JwtVerifier.create(config);
    } catch (error) {
      const field =
        config.secret !== undefined ? 'secret' : config.key_file !== undefined ? 'key_file' : 'jwks_url';
      throw new AuthConfigError(field, (error as Error).message);
    }
    // Fetch the JWKS now so the first requests do not wait for it; a failure here is retried on demand.
    if (verifier.remote !== null) await verifier.remote.reload().catch(() => undefined);
    return new JwtFilter(config, verifier);
  },
};

/** The `auth` filter module (src/pipeline/registry.ts). */
export const authFilter: FilterModule<AuthConfig> = {
  type: 'auth',
  loadSchema: async () => (await import('../../config/auth-schema.ts')).AuthConfigSchema,
  factory: authFactory,
};
