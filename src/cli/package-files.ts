/**
 * Files that ship with the package (package.json, the demo config), found from this module's URL.
 * The same relative path works from src/cli/ (running the TypeScript) and dist/cli/ (built).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const PACKAGE_ROOT = new URL('../../', import.meta.url);

export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('package.json', PACKAGE_ROOT), 'utf8')) as {
    version?: unknown;
  };
  return typeof manifest.version === 'string' ? manifest.version : '0.0.0';
}

/** Absolute path of the built-in demo configuration. */
export function demoConfigPath(): string {
  return fileURLToPath(new URL('examples/demo.json', PACKAGE_ROOT));
}
