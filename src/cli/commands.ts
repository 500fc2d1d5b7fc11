/** What each command does once the command line is parsed. Server logic stays in src/server. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError } from '../config/errors.ts';
import { loadConfigIsolated } from '../config/load-isolated.ts';
import type { Config } from '../config/schema.ts';
import type { LogLevel } from '../server/run.ts';
import { demoConfigPath } from './package-files.ts';

/** Where output goes (the process streams, or buffers in tests). */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** `zproxy check CONFIG`: exit code 0 when valid, 1 otherwise. */
export async function checkCommand(file: string, json: boolean, output: Output): Promise<number> {
  const { checkConfigFile } = await import('../config/load.ts');
  const { config, issues } = checkConfigFile(file);
  if (json) {
    const result =
      config === null
        ? { ok: false, file, issues }
        : { ok: true, file, routes: config.routes.length, listeners: config.listeners.length, issues };
    output.out(`${JSON.stringify(result, null, 2)}\n`);
  } else if (config !== null) {
    output.out(
      `ok: ${file} (${plural(config.routes.length, 'route')}, ${plural(config.listeners.length, 'listener')})\n`,
    );
  } else {
    output.err(issues.map((issue) => `${issue.message}\n`).join(''));
  }
  return config === null ? 1 : 0;
}

/** The config `run` uses: the given file, else ./zproxy.json, else the built-in demo. */
export function resolveRunConfig(given: string | null, cwd: string): { path: string; demo: boolean } {
  if (given !== null) return { path: resolve(cwd, given), demo: false };
  const local = resolve(cwd, 'zproxy.json');
  if (existsSync(local)) return { path: local, demo: false };
  return { path: demoConfigPath(), demo: true };
}

/** `zproxy run [CONFIG]`: resolves once the server is up; returns an exit code on failure. */
export async function runCommand(given: string | null, logLevel: LogLevel, output: Output): Promise<number> {
  const { path, demo } = resolveRunConfig(given, process.cwd());
  let config: Config;
  try {
    // Validated in a worker thread: the serving process never loads the validator libraries.
    config = await loadConfigIsolated(path);
  } catch (error) {
    if (error instanceof ConfigError) {
      output.err(`zproxy: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
  // Loaded on demand so that `check` and `--help` never load the server.
  const { run } = await import('../server/run.ts');
  try {
    await run(config, { logLevel, configPath: demo ? null : path, demo });
  } catch (error) {
    output.err(`zproxy: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  return 0;
}
