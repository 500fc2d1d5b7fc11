/**
 * Debian's headless Chromium for the browser tests, driven by playwright-core. A missing browser fails
 * the test that asks for it (CI installs it), it is never skipped.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** Fails with a clear message when Chromium is not installed. */
export function requireChromium(): void {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: install Debian's chromium (.ci/run does)`);
}

/** The base64 SHA-256 of a certificate's public key, as --ignore-certificate-errors-spki-list takes it. */
function spkiHash(certFile: string): string {
  const key = new X509Certificate(readFileSync(certFile)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(key).digest('base64');
}

/** Launches Chromium; with `trustedCertFile`, that self-signed certificate is accepted for HTTPS. */
export function launchChromium(trustedCertFile?: string): Promise<Browser> {
  const args = ['--no-sandbox'];
  if (trustedCertFile !== undefined)
    args.push(`--ignore-certificate-errors-spki-list=${spkiHash(trustedCertFile)}`);
  return chromium.launch({ executablePath: CHROMIUM, args });
}
