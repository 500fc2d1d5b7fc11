/**
 * JWT verification with `jose`: the key is a secret (HS*), a local public key (PEM or JWK file) or a local
 * JWK Set, or a remote JWKS (`createRemoteJWKSet`: cached, refetched when a token names an unknown `kid`,
 * at most once per cooldown).
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  type JWK,
  type JWTPayload,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose';
import type { AuthConfig } from '../../config/auth-schema.ts';

export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
export const ASYMMETRIC_ALGORITHMS = [
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
];

/** What a token check ended with. */
export type JwtOutcome =
  | { readonly ok: true; readonly claims: JWTPayload }
  /** `unavailable`: the keys could not be fetched (not the client's fault). */
  | { readonly ok: false; readonly unavailable: boolean; readonly reason: string };

export class JwtVerifier {
  readonly #key: KeyObject | JWTVerifyGetKey;
  readonly #options: JWTVerifyOptions;
  /** The remote JWKS (for prefetching), null for local keys. */
  readonly remote: ReturnType<typeof createRemoteJWKSet> | null;

  private constructor(
    key: KeyObject | JWTVerifyGetKey,
    options: JWTVerifyOptions,
    remote: ReturnType<typeof createRemoteJWKSet> | null,
  ) {
    this.#key = key;
    this.#options = options;
    this.remote = remote;
  }

  static async create(config: AuthConfig): Promise<JwtVerifier> {
    let key: KeyObject | JWTVerifyGetKey;
    let remote: ReturnType<typeof createRemoteJWKSet> | null = null;
    let defaults: string[];
    if (config.secret !== undefined) {
      key = createSecretKey(Buffer.from(config.secret, 'utf8'));
      defaults = HMAC_ALGORITHMS;
    } else if (config.key_file !== undefined) {
      const text = await readFile(config.key_file, 'utf8');
      const trimmed = text.trim();
      if (trimmed.startsWith('{')) {
        const json = JSON.parse(trimmed) as JWK | { keys: JWK[] };
        if ('keys' in json && Array.isArray(json.keys)) key = createLocalJWKSet(json as { keys: JWK[] });
        else key = createPublicKey({ key: json as import('node:crypto').JsonWebKey, format: 'jwk' });
      } else {
        key = createPublicKey(trimmed);
      }
      defaults = ASYMMETRIC_ALGORITHMS;
    } else if (config.jwks_url !== undefined) {
      remote = createRemoteJWKSet(new URL(config.jwks_url), {
        cacheMaxAge: (config.jwks_cache_seconds ?? 600) * 1000,
        cooldownDuration: (config.jwks_cooldown_seconds ?? 30) * 1000,
        timeoutDuration: config.jwks_timeout_ms ?? 5000,
      });
      key = remote;
      defaults = ASYMMETRIC_ALGORITHMS;
    } else {
      throw new Error('jwt needs secret, key_file or jwks_url');
    }
    const options: JWTVerifyOptions = {
      algorithms: config.algorithms === undefined ? defaults : [...config.algorithms],
      clockTolerance: config.clock_skew_seconds ?? 30,
    };
    if (config.issuer !== undefined)
      options.issuer = typeof config.issuer === 'string' ? config.issuer : [...config.issuer];
    if (config.audience !== undefined)
      options.audience = typeof config.audience === 'string' ? config.audience : [...config.audience];
    if (config.required_claims !== undefined) options.requiredClaims = [...config.required_claims];
    return new JwtVerifier(key, options, remote);
  }

  /** Verifies `token`; never rejects. */
  verify(token: string): Promise<JwtOutcome> {
    const key = this.#key;
    const verified =
      typeof key === 'function' ? jwtVerify(token, key, this.#options) : jwtVerify(token, key, this.#options);
    return verified.then(onVerified, onFailed);
  }
}

function onVerified(result: { payload: JWTPayload }): JwtOutcome {
  return { ok: true, claims: result.payload };
}

/** jose's error codes -> a short reason for error_description (never the token itself). */
function onFailed(error: unknown): JwtOutcome {
  const code = (error as { code?: unknown }).code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return { ok: false, unavailable: false, reason: 'The token has expired' };
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': {
      const claim = (error as { claim?: unknown }).claim;
      const name = typeof claim === 'string' ? claim : 'a claim';
      if (name === 'nbf') return { ok: false, unavailable: false, reason: 'The token is not valid yet' };
      return { ok: false, unavailable: false, reason: `The token's ${name} claim is not accepted` };
    }
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return { ok: false, unavailable: false, reason: 'The token signature is invalid' };
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return { ok: false, unavailable: false, reason: 'No key matches the token' };
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return { ok: false, unavailable: false, reason: 'The token algorithm is not accepted' };
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return { ok: false, unavailable: true, reason: 'The signing keys could not be fetched' };
    case 'ERR_JWS_INVALID':
    case 'ERR_JWT_INVALID':
    case 'ERR_JOSE_NOT_SUPPORTED':
    case 'ERR_JWK_INVALID':
      return { ok: false, unavailable: false, reason: 'The token is malformed' };
    default:
      // A failed fetch of the JWKS (connection refused, bad status) surfaces as a plain error.
      if (code === undefined || code === 'ERR_JOSE_GENERIC')
        return { ok: false, unavailable: true, reason: 'The signing keys could not be fetched' };
      return { ok: false, unavailable: false, reason: 'The token is invalid' };
  }
}
