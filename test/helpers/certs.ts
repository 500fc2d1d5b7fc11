/**
 * Self-signed certificates for tests, made by the real `openssl` into a temporary directory.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export class CertDir {
  readonly dir = mkdtempSync(join(tmpdir(), 'zproxy-certs-'));

  /** Writes `<file>.crt` and `<file>.key` for the names (first = CN, all in subjectAltName). */
  make(file: string, names: string[]): CertFiles {
    const cert = join(this.dir, `${file}.crt`);
    const key = join(this.dir, `${file}.key`);
    const san = names.map((n) => `DNS:${n}`).join(',');
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2'].concat([
        '-subj',
        `/CN=${names[0]}`,
        '-addext',
        `subjectAltName=${san}`,
      ]),
      { stdio: 'ignore' },
    );
    return { cert, key };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
