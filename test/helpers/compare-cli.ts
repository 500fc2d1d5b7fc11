/** `zproxy compare` from the sources, for test/integration/compare*.test.ts: the CLI and tiny runs. */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');
export const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';
const PROXIES = ['nginx', 'haproxy', 'caddy'] as const;

/** The proxies the test needs that are not installed (looked up as compare looks them up: on the PATH). */
export function missingProxies(): string[] {
  const path = (process.env.PATH ?? '').split(':');
  return PROXIES.filter((name) => !path.some((dir) => dir !== '' && existsSync(join(dir, name))));
}

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `zproxy compare ...` (the CLI from the sources) with the given environment. */
export function compare(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'compare', ...args], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      stdout += t;
    });
    child.stderr.setEncoding('utf8').on('data', (t: string) => {
      stderr += t;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
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
