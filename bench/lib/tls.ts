// A throw-away self-signed certificate for the HTTP/2-over-TLS scenarios, made by openssl.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** The name the certificate is for (also in subjectAltName, with 127.0.0.1). */
  readonly serverName: string;
}

/** Writes `cert.pem` and `key.pem` (ECDSA P-256, valid 2 days, CN=localhost) into `dir`. */
export function makeSelfSignedCertificate(dir: string): CertificateFiles {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const serverName = 'localhost';
  const args = [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-days',
    '2',
    '-subj',
    `/CN=${serverName}`,
    '-addext',
    `subjectAltName=DNS:${serverName},IP:127.0.0.1`,
    '-keyout',
    keyFile,
    '-out',
    certFile,
  ];
  const result = spawnSync('openssl', args, { encoding: 'utf8' });
  if (result.status !== 0) {
    throw new Error(`openssl could not make a certificate: ${(result.stderr || result.stdout).trim()}`);
  }
  // nginx workers run as `nobody` when the bench runs as root; the key is a throw-away one.
  chmodSync(dir, 0o755);
  chmodSync(keyFile, 0o644);
  return { certFile, keyFile, serverName };
}
