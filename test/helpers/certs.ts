/**
 * Certificates for tests (self-signed, or a CA and leaves signed by it), made by the real `openssl` into a
 * temporary directory.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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

  /** A certificate authority (`<file>.crt`, `<file>.key`) for signing leaves with `makeSigned`. */
  makeCa(file: string, commonName: string): CertFiles {
    const cert = join(this.dir, `${file}.crt`);
    const key = join(this.dir, `${file}.key`);
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2'].concat([
        '-subj',
        `/CN=${commonName}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ]),
      { stdio: 'ignore' },
    );
    return { cert, key };
  }

  /**
   * A leaf certificate signed by `ca` for the names (first = CN; DNS names and IP addresses both go into
   * subjectAltName), usable for servers and for clients (mTLS).
   */
  makeSigned(file: string, names: string[], ca: CertFiles): CertFiles {
    const cert = join(this.dir, `${file}.crt`);
    const key = join(this.dir, `${file}.key`);
    const csr = join(this.dir, `${file}.csr`);
    const ext = join(this.dir, `${file}.ext`);
    const san = names.map((n) => (/^[0-9.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
    writeFileSync(
      ext,
      `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`,
    );
    execFileSync(
      'openssl',
      ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${names[0]}`],
      { stdio: 'ignore' },
    );
    execFileSync(
      'openssl',
      ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert].concat([
        '-days',
        '2',
        '-extfile',
        ext,
      ]),
      { stdio: 'ignore' },
    );
    return { cert, key };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
