/**
 * A filter's LocalResponse as the fields and body an engine writes: the filter's fields, then the
 * chain's response edits (CORS fields set in the request phase reach a 401 or a 429 this way), and a
 * Content-Length for the body. The fields zproxy manages (framing, Host, hop-by-hop: isManagedName,
 * src/http/fields.ts) are the engine's: a LocalResponse's are left out.
 */
import { errorBody } from '../errors.ts';
import { isManagedName } from '../http/fields.ts';
import type { LocalResponse } from './contract.ts';
import type { FieldEditList } from './field-edits.ts';

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const FORBIDDEN_VALUE = /[\r\n\0]/;

/** What a LocalResponse with an invalid field (or status) is answered with instead. */
const INVALID: LocalResponse = {
  status: 500,
  headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
  body: errorBody('ZP_ERR_FILTER_FAILED', 'A filter answered with an invalid response'),
};

function valid(local: LocalResponse): boolean {
  const status = local.status;
  if (!Number.isInteger(status) || status < 200 || status > 999) return false;
  const headers = local.headers;
  if (headers === undefined) return true;
  for (const raw of Object.keys(headers)) {
    if (!TOKEN.test(raw.toLowerCase())) return false;
    const value = headers[raw];
    const values = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(values)) return false;
    for (const v of values) if (typeof v !== 'string' || FORBIDDEN_VALUE.test(v)) return false;
  }
  return true;
}

export interface RenderedLocal {
  readonly status: number;
  /** name, value, name, value... (lowercase names), Content-Length included when the status has a body. */
  readonly fields: string[];
  readonly body: Buffer | null;
}

/**
 * `local` checked (a name or value that could split the message, a bad status: a 500 instead) and rendered.
 * For a HEAD request (`head`), a local answer without a body may give the Content-Length a GET would have
 * had (RFC 9110 §9.3.2; the cache answering HEAD from a stored GET does); otherwise Content-Length is the
 * body's length.
 */
export function renderLocal(given: LocalResponse, edits: FieldEditList | null, head = false): RenderedLocal {
  const local = valid(given) ? given : INVALID;
  const status = local.status;
  const fields: string[] = [];
  const headers = local.headers;
  let headLength: string | null = null;
  if (headers !== undefined) {
    for (const raw of Object.keys(headers)) {
      const name = raw.toLowerCase();
      if (isManagedName(name)) {
        const value = headers[raw];
        if (head && name === 'content-length' && typeof value === 'string' && /^\d{1,15}$/.test(value)) {
          headLength = value;
        }
        continue;
      }
      const value = headers[raw]!;
      if (typeof value === 'string') fields.push(name, value);
      else for (const v of value) fields.push(name, v);
    }
  }
  const withEdits = edits === null ? fields : edits.applyToList(fields);
  const bodyless = status === 204 || status === 304 || status < 200;
  const body =
    bodyless || local.body === undefined
      ? null
      : typeof local.body === 'string'
        ? Buffer.from(local.body, 'utf8')
        : Buffer.from(local.body.buffer, local.body.byteOffset, local.body.byteLength);
  if (!bodyless) {
    const length = body !== null ? String(body.length) : (headLength ?? '0');
    withEdits.push('content-length', length);
  }
  return { status, fields: withEdits, body };
}
