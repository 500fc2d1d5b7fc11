/**
 * Upstream TLS settings compiled once per route: the files are read here (never per connection), the
 * name sent as SNI and checked against the certificate is decided here, and a key identifies the settings
 * so that pools are shared only by routes whose TLS settings are the same (same files, same contents).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { UpstreamTlsConfig } from '../config/schema.ts';
import { ZpError } from '../errors.ts';
import * as tls from '../util/node-tls.ts';

export interface UpstreamTls {
  /** Options given to tls.connect (host and port are added by the connection). */
  readonly options: tls.ConnectionOptions;
  /** Identity of these settings in pool keys. */
  readonly key: string;
  /** The name checked against the upstream's certificate. */
  readonly checkName: string;
}

/**
 * `alpn` is the protocol offered ('http/1.1' for https://, 'h2' for h2://). `host` is the upstream URL's
 * host: the default SNI and certificate name (an IP address sends no SNI and is checked as an IP SAN).
 */
export function compileUpstreamTls(
  config: UpstreamTlsConfig,
  host: string,
  alpn: string,
  where: string,
): UpstreamTls {
  const name = config.server_name ?? host;
  const hash = createHash('sha256');
  const ca = config.ca_file === null ? undefined : readTlsFile(config.ca_file, where, 'ca_file', hash);
  const cert =
    config.cert_file === null ? undefined : readTlsFile(config.cert_file, where, 'cert_file', hash);
  const key = config.key_file === null ? undefined : readTlsFile(config.key_file, where, 'key_file', hash);
  const options: tls.ConnectionOptions = {
    rejectUnauthorized: config.verify,
    ALPNProtocols: [alpn],
    checkServerIdentity: (_host, peer) => tls.checkServerIdentity(name, peer),
  };
  if (isIP(name) === 0) options.servername = name;
  if (ca !== undefined) options.ca = ca;
  if (cert !== undefined) options.cert = cert;
  if (key !== undefined) options.key = key;
  return {
    options,
    checkName: name,
    key: `${alpn}|${config.verify}|${name}|${config.ca_file}|${config.cert_file}|${config.key_file}|${hash.digest('hex')}`,
  };
}

function readTlsFile(
  path: string,
  where: string,
  field: string,
  hash: ReturnType<typeof createHash>,
): Buffer {
  try {
    const data = readFileSync(path);
    hash.update(data);
    return data;
  } catch (err) {
    throw new ZpError(
      'ZP_ERR_CONFIG',
      `${where}.${field}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

/** OpenSSL / Node codes of certificate verification failures (as seen on the client side). */
const VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** True for errors raised by TLS (handshake, alerts, verification) rather than by TCP. */
export function isTlsError(err: NodeJS.ErrnoException | null): boolean {
  if (err === null) return false;
  const code = err.code ?? '';
  return VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
}

/** A 502 naming why the TLS connection to the upstream failed. */
export function upstreamTlsError(err: NodeJS.ErrnoException, authority: string): ZpError {
  const code = err.code ?? 'unknown';
  const reason = VERIFY_CODES.has(code)
    ? `certificate verification failed: ${err.message}`
    : `TLS handshake failed: ${err.message}`;
  return new ZpError('ZP_ERR_UPSTREAM_TLS', `TLS to the upstream ${authority}: ${reason} (${code})`, {
    cause: err,
  });
}
