/**
 * API keys: held as SHA-256 digests (plain keys from the config are hashed once, at load); a presented key
 * is hashed and compared with every digest with `crypto.timingSafeEqual`, so neither the comparison nor
 * the position of the match tells anything about a key.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const DIGEST_FORM = /^sha256:([0-9a-fA-F]{64})$/;

/** A configured key entry ("sha256:<hex>" or the plain key) -> its 32-byte digest. */
export function keyDigest(entry: string): Buffer {
  const m = DIGEST_FORM.exec(entry);
  if (m !== null) return Buffer.from(m[1] as string, 'hex');
  return createHash('sha256').update(entry, 'utf8').digest();
}

/** The lines of a keys file: blank lines and `#` comments skipped. */
export function parseKeysFile(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line !== '' && !line.startsWith('#')) out.push(line);
  }
  return out;
}

/** Accepted keys remembered by an ApiKeySet. */
const ACCEPTED_MEMO = 1024;

export class ApiKeySet {
  readonly #digests: readonly Buffer[];
  readonly #principals: readonly string[];

  constructor(entries: readonly string[]) {
    this.#digests = entries.map(keyDigest);
    this.#principals = this.#digests.map((d) => `key:${d.toString('hex').slice(0, 16)}`);
  }

  get size(): number {
    return this.#digests.length;
  }

  /**
   * Keys recently accepted -> their principal, so that a client repeating its key skips the hash (at
   * most ACCEPTED_MEMO entries, then it starts over). Only accepted keys are kept: a wrong key always
   * costs the full check, and a hit only says what the 200 would say anyway.
   */
  readonly #accepted = new Map<string, string>();

  /** The principal (`key:<16 hex digits of the digest>`) of the matching key, or null. */
  match(key: string): string | null {
    const known = this.#accepted.get(key);
    if (known !== undefined) return known;
    const principal = this.#check(key);
    if (principal !== null) {
      if (this.#accepted.size >= ACCEPTED_MEMO) this.#accepted.clear();
      this.#accepted.set(key, principal);
    }
    return principal;
  }

  #check(key: string): string | null {
    const digest = createHash('sha256').update(key, 'utf8').digest();
    let found = -1;
    const digests = this.#digests;
    for (let i = 0; i < digests.length; i++) {
      // Every digest is compared: the time does not depend on where (or whether) the key matches.
      if (timingSafeEqual(digests[i] as Buffer, digest)) found = i;
    }
    return found < 0 ? null : (this.#principals[found] as string);
  }
}

/** The value of query parameter `name` in `query` ('' or '?...'), undefined when absent. */
export function queryParam(query: string, name: string): string | undefined {
  if (query.length < 2) return undefined;
  let start = 1;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end < 0) end = query.length;
    const eq = query.indexOf('=', start);
    const keyEnd = eq < 0 || eq > end ? end : eq;
    if (decodeComponent(query.slice(start, keyEnd)) === name) {
      return keyEnd === end ? '' : decodeComponent(query.slice(keyEnd + 1, end));
    }
    start = end + 1;
  }
  return undefined;
}

/** `pathAndQuery` without every `name=` parameter (the '?' dropped when nothing is left). */
export function withoutQueryParam(pathAndQuery: string, name: string): string {
  const q = pathAndQuery.indexOf('?');
  if (q < 0) return pathAndQuery;
  const kept: string[] = [];
  for (const pair of pathAndQuery.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    if (decodeComponent(eq < 0 ? pair : pair.slice(0, eq)) !== name) kept.push(pair);
  }
  const path = pathAndQuery.slice(0, q);
  return kept.length === 0 ? path : `${path}?${kept.join('&')}`;
}

function decodeComponent(text: string): string {
  if (text.indexOf('%') < 0 && text.indexOf('+') < 0) return text;
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    return text;
  }
}
