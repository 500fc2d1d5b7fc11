/**
 * The answers of the auth filter when a request is refused: 401 with the scheme's WWW-Authenticate
 * challenge (RFC 9110 §11.6.1, RFC 7617, RFC 6750), 403 for a valid token without the required scope,
 * 503 when the keys needed to decide could not be fetched. Built once per filter: they never depend on
 * what the client sent, so no credential can leak into an answer (or a log line).
 */
import { errorBody } from '../../errors.ts';
import type { LocalResponse } from '../../pipeline/contract.ts';

const JSON_TYPE = 'application/json';

export function unauthorized(challenge: string, message: string): LocalResponse {
  return Object.freeze({
    status: 401,
    headers: Object.freeze({
      'www-authenticate': challenge,
      'content-type': JSON_TYPE,
      'cache-control': 'no-store',
    }),
    body: errorBody('ZP_ERR_UNAUTHORIZED', message),
  });
}

export function forbidden(challenge: string, message: string): LocalResponse {
  return Object.freeze({
    status: 403,
    headers: Object.freeze({
      'www-authenticate': challenge,
      'content-type': JSON_TYPE,
      'cache-control': 'no-store',
    }),
    body: errorBody('ZP_ERR_FORBIDDEN', message),
  });
}

export function unavailable(message: string): LocalResponse {
  return Object.freeze({
    status: 503,
    headers: Object.freeze({ 'content-type': JSON_TYPE, 'cache-control': 'no-store', 'retry-after': '5' }),
    body: errorBody('ZP_ERR_AUTH_UNAVAILABLE', message),
  });
}

/** A quoted-string for an auth-param (the values are config text, checked to hold no quote or backslash). */
export function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, '\\$&')}"`;
}
