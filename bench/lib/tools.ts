// Checks for the external tools the bench needs, and installs them on Debian/Ubuntu when asked to.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { NGINX_BIN } from './nginx.ts';

const APT_PACKAGES = ['nginx-light', 'wrk', 'util-linux'];
/** Also needed by the HTTP/2 scenarios: h2load and openssl (for a self-signed certificate). */
const APT_PACKAGES_HTTP2 = ['nghttp2-client', 'openssl'];

/** The absolute path of an executable found on PATH, or null. */
export function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir === '') continue;
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Names of the missing tools: nginx (at /usr/sbin/nginx), wrk, taskset; with `http2`, h2load and openssl. */
export function missingTools(http2: boolean): string[] {
  const missing: string[] = [];
  if (!isExecutable(NGINX_BIN)) missing.push(`nginx (${NGINX_BIN})`);
  if (findExecutable('wrk') === null) missing.push('wrk');
  if (findExecutable('taskset') === null) missing.push('taskset');
  if (http2 && findExecutable('h2load') === null) missing.push('h2load (nghttp2-client)');
  if (http2 && findExecutable('openssl') === null) missing.push('openssl');
  return missing;
}

/**
 * Makes sure nginx, wrk and taskset (and for `http2`, h2load and openssl) are present. When one is
 * missing: installs them with apt-get if the bench runs as root on a system with apt-get and `install` (the
 * --install flag or the CI variable) is set; otherwise prints the command to run and returns false.
 */
export function ensureTools(install: boolean, http2: boolean): boolean {
  const missing = missingTools(http2);
  if (missing.length === 0) return true;
  const isRoot = process.getuid?.() === 0;
  const apt = findExecutable('apt-get');
  const packages = http2 ? [...APT_PACKAGES, ...APT_PACKAGES_HTTP2] : APT_PACKAGES;
  const command = `apt-get update && apt-get install -y ${packages.join(' ')}`;
  if (isRoot && apt !== null && install) {
    console.error(`bench: missing ${missing.join(', ')}; installing: ${command}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const args of [['update'], ['install', '-y', ...packages]]) {
      const result = spawnSync(apt, args, { stdio: 'inherit', env });
      if (result.status !== 0) {
        console.error(`bench: apt-get ${args.join(' ')} failed`);
        return false;
      }
    }
    const still = missingTools(http2);
    if (still.length === 0) return true;
    console.error(`bench: still missing after install: ${still.join(', ')}`);
    return false;
  }
  console.error(`bench: missing ${missing.join(', ')}.`);
  if (apt !== null) {
    console.error(`Install them with:\n  ${isRoot ? command : `sudo sh -c '${command}'`}`);
    if (isRoot) console.error('or run the bench with --install (also automatic when CI is set).');
  } else {
    console.error(
      `Install nginx (the binary must be ${NGINX_BIN}), wrk and taskset (util-linux)` +
        `${http2 ? ', h2load (nghttp2) and openssl' : ''} with your package manager.`,
    );
  }
  return false;
}
