/** The comparison's throw-away certificate (made by the cli with the demo's maker) written as files. */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CertificateFiles } from './proxies.ts';

export function writeCertificate(dir: string, made: { cert: string; key: string }): CertificateFiles {
  mkdirSync(dir, { recursive: true });
  const { cert, key } = made;
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const pemFile = join(dir, 'cert-and-key.pem');
  writeFileSync(certFile, cert);
  writeFileSync(keyFile, key);
  writeFileSync(pemFile, `${cert.trimEnd()}\n${key}`);
  // nginx workers run as `nobody` when compare runs as root; the key is a throw-away one.
  chmodSync(dir, 0o755);
  for (const file of [keyFile, pemFile]) chmodSync(file, 0o644);
  return { certFile, keyFile, pemFile };
}
