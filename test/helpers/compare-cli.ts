/** `zproxy compare` from the sources, for test/integration/compare*.test.ts: the CLI and tiny runs. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CliResult, zproxy } from './bench-cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
export const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';
const PROXIES = ['nginx', 'haproxy', 'caddy'] as const;

/** The proxies the test needs that are not installed (looked up as compare looks them up: on the PATH). */
export function missingProxies(): string[] {
  const path = (process.env.PATH ?? '').split(':');
  return PROXIES.filter((name) => !path.some((dir) => dir !== '' && existsSync(join(dir, name))));
}

export type { CliResult };

/** Runs `zproxy compare ...` (the CLI from the sources) with the given environment. */
export function compare(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return zproxy(['compare', ...args], CLI, env, 90_000);
}

/** Tiny runs: one round of 300 ms, no warm-up, few connections. */
export const TINY = [
  '--rounds',
  '1',
  '-d',
  '300ms',
  '--warmup',
  '0',
  '-c',
  '8',
  '--h2-connections',
  '2',
  '--h2-streams',
  '4',
];
