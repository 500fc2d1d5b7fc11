/**
 * Password hashes accepted by Basic auth (htpasswd-style):
 * - bcrypt: `$2a$`, `$2b$` or `$2y$` (what `htpasswd -B` writes), checked with bcryptjs;
 * - scrypt: `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>` (the PHC string form passlib writes), salt and
 *   key in base64 (standard or passlib's `.` for `+`, padding optional); the derived key has the length of
 *   the stored one (16 to 128 bytes); N up to 2^20.
 * Both are checked asynchronously (bcryptjs yields between rounds, scrypt runs on the thread pool).
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';

export interface PasswordVerifier {
  verify(password: string): Promise<boolean>;
}

const BCRYPT = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const SCRYPT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/.=]+)\$([A-Za-z0-9+/.=]+)$/;

class BcryptVerifier implements PasswordVerifier {
  readonly #hash: string;
  constructor(hash: string) {
    // bcryptjs understands $2a$ and $2b$; $2y$ (PHP, htpasswd) is the same algorithm.
    this.#hash = hash.startsWith('$2y$') ? `$2b$${hash.slice(4)}` : hash;
  }
  verify(password: string): Promise<boolean> {
    return bcrypt.compare(password, this.#hash);
  }
}

class ScryptVerifier implements PasswordVerifier {
  readonly #salt: Buffer;
  readonly #key: Buffer;
  readonly #options: { N: number; r: number; p: number; maxmem: number };
  constructor(ln: number, r: number, p: number, salt: Buffer, key: Buffer) {
    this.#salt = salt;
    this.#key = key;
    const N = 2 ** ln;
    this.#options = { N, r, p, maxmem: 256 * N * r + 1024 * 1024 };
  }
  verify(password: string): Promise<boolean> {
    const expected = this.#key;
    return new Promise((resolve) => {
      scrypt(password, this.#salt, expected.length, this.#options, (error, derived) => {
        resolve(error === null && timingSafeEqual(derived, expected));
      });
    });
  }
}

function base64(text: string): Buffer {
  return Buffer.from(text.replace(/\./g, '+'), 'base64');
}

/** A verifier for `hash`, or a message saying why the hash is not accepted. */
export function passwordVerifier(hash: string): PasswordVerifier | string {
  if (BCRYPT.test(hash)) return new BcryptVerifier(hash);
  const m = SCRYPT.exec(hash);
  if (m !== null) {
    const ln = Number(m[1]);
    const r = Number(m[2]);
    const p = Number(m[3]);
    const salt = base64(m[4] as string);
    const key = base64(m[5] as string);
    if (ln < 1 || ln > 20 || r < 1 || p < 1)
      return 'scrypt parameters out of range (ln 1..20, r >= 1, p >= 1)';
    if (key.length < 16 || key.length > 128 || salt.length < 8) return 'scrypt salt or key too short';
    return new ScryptVerifier(ln, r, p, salt, key);
  }
  return 'a bcrypt ($2a$, $2b$, $2y$) or scrypt ($scrypt$ln=..,r=..,p=..$salt$key) hash';
}

/**
 * The algorithm and cost of an accepted hash, as text (`bcrypt cost=10`, `scrypt ln=15,r=8,p=1 key=32
 * salt=16`): two hashes with the same parameters cost the same to check. Null for any other string.
 */
export function hashParameters(hash: string): string | null {
  if (BCRYPT.test(hash)) return `bcrypt cost=${Number(hash.slice(4, 6))}`;
  const m = SCRYPT.exec(hash);
  if (m === null) return null;
  const salt = base64(m[4] as string).length;
  const key = base64(m[5] as string).length;
  return `scrypt ln=${Number(m[1])},r=${Number(m[2])},p=${Number(m[3])} key=${key} salt=${salt}`;
}

/** The characters of bcrypt's base64 (64 of them, so `byte & 63` picks one uniformly). */
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A hash with the algorithm and parameters of `hash` (an accepted one, see passwordVerifier) that no
 * password matches: a random salt and digest under the same bcrypt cost, or the same scrypt N, r, p and
 * lengths with a random salt and key. Checking a password against it costs what checking it against `hash`
 * does, which is what an unknown user must cost (nothing is hashed to build it).
 */
export function dummyHashLike(hash: string): string {
  if (BCRYPT.test(hash)) {
    let tail = '';
    for (const b of randomBytes(53)) tail += BCRYPT_ALPHABET[b & 63];
    return `$2b$${hash.slice(4, 6)}$${tail}`;
  }
  const m = SCRYPT.exec(hash);
  if (m === null) throw new TypeError('not a bcrypt or scrypt hash');
  const salt = randomBytes(base64(m[4] as string).length).toString('base64');
  const key = randomBytes(base64(m[5] as string).length).toString('base64');
  return `$scrypt$ln=${m[1]},r=${m[2]},p=${m[3]}$${salt}$${key}`;
}

/** `user:hash` lines of an htpasswd file (blank lines and `#` comments skipped). */
export function parseHtpasswd(text: string): [string, string][] {
  const out: [string, string][] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon), line.slice(colon + 1)]);
  }
  return out;
}
