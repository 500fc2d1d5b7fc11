/**
 * Files that ship with the package (package.json, the demo config), found from this module's URL.
 * The same relative path works from src/cli/ (running the TypeScript) and dist/cli/ (built).
 */
import { fileURLToPath } from 'node:url';

export { packageVersion } from '../observe/version.ts';

const PACKAGE_ROOT = new URL('../../', import.meta.url);

/** Absolute path of the built-in demo configuration. */
export function demoConfigPath(): string {
  return fileURLToPath(new URL('examples/demo.json', PACKAGE_ROOT));
}
