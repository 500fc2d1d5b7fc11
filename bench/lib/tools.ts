// Checks for the external tools the bench groups (metrics, filters, trace, worker-model) need, and installs them on Debian/Ubuntu when asked to.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { nginxBinary } from '../../src/bench/compare/nginx.ts';
import { findOnPath } from '../../src/bench/compare/proxies.ts';

/** The scenario groups of the bench groups' load tools: HTTP/1.1 (wrk) and HTTP/2 (h2load). */
export type GroupName = 'h1' | 'h2';

/** Always needed: nginx (the HTTP origin and the reference proxy) and taskset. */
const APT_PACKAGES = ['nginx-light', 'util-linux'];
/** Also needed by the HTTP/1.1 scenarios: wrk. */
const APT_PACKAGES_HTTP1 = ['wrk'];
/** Also needed by the HTTP/2 scenarios: h2load and openssl (for a self-signed certificate). */
const APT_PACKAGES_HTTP2 = ['nghttp2-client', 'openssl'];

/** The absolute path of an executable found on PATH, or null. */
export const findExecutable = (name: string): string | null => findOnPath(name);

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Names of the missing tools: nginx (at /usr/sbin/nginx) and taskset; with the HTTP/1.1 group, wrk; with
 * the HTTP/2 group, h2load and openssl.
 */
export function missingTools(groups: readonly GroupName[]): string[] {
  const http2 = groups.includes('h2');
  const missing: string[] = [];
  if (!isExecutable(nginxBinary())) missing.push(`nginx (${nginxBinary()})`);
  if (groups.includes('h1') && findExecutable('wrk') === null) missing.push('wrk');
  if (findExecutable('taskset') === null) missing.push('taskset');
  if (http2 && findExecutable('h2load') === null) missing.push('h2load (nghttp2-client)');
  if (http2 && findExecutable('openssl') === null) missing.push('openssl');
  return missing;
}

/**
 * Makes sure the tools the scenario groups need are present (see missingTools). When one is missing:
 * installs them with apt-get if the bench runs as root on a system with apt-get and `install` (the
 * --install flag or the CI variable) is set; otherwise prints the command to run and returns false.
 */
export function ensureTools(install: boolean, groups: readonly GroupName[]): boolean {
  const http2 = groups.includes('h2');
  const missing = missingTools(groups);
  if (missing.length === 0) return true;
  const isRoot = process.getuid?.() === 0;
  const apt = findExecutable('apt-get');
  const packages = [
    ...APT_PACKAGES,
    ...(groups.includes('h1') ? APT_PACKAGES_HTTP1 : []),
    ...(http2 ? APT_PACKAGES_HTTP2 : []),
  ];
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
    const still = missingTools(groups);
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
      `Install nginx (the binary must be ${nginxBinary()}), taskset (util-linux)` +
        `${groups.includes('h1') ? ', wrk' : ''}` +
        `${http2 ? ', h2load (nghttp2) and openssl' : ''} with your package manager.`,
    );
  }
  return false;
}
