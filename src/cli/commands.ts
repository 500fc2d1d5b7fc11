/** What each command does once the command line is parsed. Server logic stays in src/server. */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { CompareOptions } from '../bench/compare/options.ts';
import type { BenchOptions } from '../bench/options.ts';
import { ConfigError } from '../config/errors.ts';
import { loadConfigIsolated } from '../config/load-isolated.ts';
import type { Config } from '../config/schema.ts';
import type { ConfigWarning } from '../config/warnings.ts';
import type { LogLevel } from '../server/run.ts';
import type { ExplainRequest } from './explain-request.ts';
import { demoConfigPath } from './package-files.ts';

/** Where output goes (the process streams, or buffers in tests). */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

/** A warning as `check` prints it: `warning: <path>: <message> (<code>)`. */
export function formatWarning(warning: ConfigWarning): string {
  return `warning: ${warning.path}: ${warning.message} (${warning.code})`;
}

/** `zproxy check CONFIG`: exit code 0 when valid (warnings or not), 1 otherwise. */
export async function checkCommand(file: string, json: boolean, output: Output): Promise<number> {
  const { checkConfigFile } = await import('../config/load.ts');
  const checked = checkConfigFile(file);
  let config = checked.config;
  const issues = [...checked.issues];
  let warnings = checked.warnings;
  if (config !== null) {
    // The filters are built as `run` builds them: a broken user module or filter config fails here.
    const problem = await buildFilters(config, file);
    if (problem !== null) {
      // The message starts with the entry's JSON path (`routes[1].middlewares[0] (module): ...`).
      const path = /^[^\s:(]+/.exec(problem)?.[0] ?? '(root)';
      issues.push({ path, expected: 'a filter that can be built', found: 'an error', message: problem });
      config = null;
      // Warnings are about valid configurations only.
      warnings = [];
    }
  }
  if (json) {
    const result =
      config === null
        ? { ok: false, file, issues, warnings }
        : {
            ok: true,
            file,
            routes: config.routes.length,
            listeners: config.listeners.length,
            issues,
            warnings,
          };
    output.out(`${JSON.stringify(result, null, 2)}\n`);
  } else if (config !== null) {
    output.err(warnings.map((warning) => `${formatWarning(warning)}\n`).join(''));
    const counts = [plural(config.routes.length, 'route'), plural(config.listeners.length, 'listener')];
    if (warnings.length > 0) counts.push(plural(warnings.length, 'warning'));
    output.out(`ok: ${file} (${counts.join(', ')})\n`);
  } else {
    output.err(issues.map((issue) => `${issue.message}\n`).join(''));
  }
  return config === null ? 1 : 0;
}

/** Builds the config's filters (then lets go of what they opened); the error message, or null. */
async function buildFilters(config: Config, file: string): Promise<string | null> {
  if (config.middlewares.length === 0 && config.routes.every((r) => r.middlewares.length === 0)) return null;
  const { buildChains } = await import('../pipeline/chain.ts');
  const { FilterRegistry } = await import('../pipeline/registry.ts');
  const { BUILT_IN_FILTERS } = await import('../filters/index.ts');
  const filters = new FilterRegistry(BUILT_IN_FILTERS);
  try {
    const chains = await buildChains(config, { filters, baseDir: dirname(resolve(file)) });
    const { disposeChains } = await import('../runtime/compile.ts');
    await disposeChains(chains);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  } finally {
    // What the filters keep for the whole process (Redis clients) would keep `check` from exiting.
    await filters.close();
  }
}

/** The config `run` uses: the given file, else ./zproxy.json, else the built-in demo. */
export function resolveRunConfig(given: string | null, cwd: string): { path: string; demo: boolean } {
  if (given !== null) return { path: resolve(cwd, given), demo: false };
  const local = resolve(cwd, 'zproxy.json');
  if (existsSync(local)) return { path: local, demo: false };
  return { path: demoConfigPath(), demo: true };
}

/** `zproxy reload [CONFIG]` (src/cli/reload.ts), for the config `run` would use. */
export async function reloadCommand(given: string | null, json: boolean, output: Output): Promise<number> {
  const { path, demo } = resolveRunConfig(given, process.cwd());
  if (demo) {
    output.err(
      'zproxy: no CONFIG given and no ./zproxy.json here: the built-in demo has no admin listener to reload\n',
    );
    return 1;
  }
  const { reloadCommand: reload } = await import('./reload.ts');
  return reload(path, json, output);
}

/** `zproxy health [CONFIG]` (src/cli/health.ts), for the config `run` would use. */
export async function healthCommand(given: string | null, output: Output): Promise<number> {
  const { path } = resolveRunConfig(given, process.cwd());
  const { healthCommand: health } = await import('./health.ts');
  return health(path, output);
}

/** `zproxy run [CONFIG]`: resolves once the server is up; returns an exit code on failure. */
export async function runCommand(
  given: string | null,
  logLevel: LogLevel,
  output: Output,
  watch = false,
): Promise<number> {
  let { path, demo } = resolveRunConfig(given, process.cwd());
  if (demo) {
    // The demo runs a copy of examples/demo.json pointing at a throw-away certificate made now.
    const { prepareDemo } = await import('../demo/prepare.ts');
    try {
      path = prepareDemo(path);
    } catch (error) {
      output.err(
        `zproxy: the demo could not start: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      return 1;
    }
  }
  let config: Config;
  let warnings: readonly ConfigWarning[];
  try {
    // Validated in a child process: the serving process never loads the validator libraries.
    ({ config, warnings } = await loadConfigIsolated(path));
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
    await run(config, { logLevel, configPath: path, demo, warnings, watch });
  } catch (error) {
    output.err(`zproxy: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  return 0;
}

/**
 * `zproxy bench URL`: runs the load and prints the report (a table, or JSON with `--json`). Exit status 0
 * when at least one request completed, 1 when none did (every one failed) or the body file is unreadable.
 */
export async function benchCommand(options: BenchOptions, output: Output): Promise<number> {
  // Loaded on demand: the other commands never load the generator.
  const { loadBody, runBench } = await import('../bench/bench.ts');
  const { formatReport } = await import('../bench/report.ts');
  let body: Uint8Array | null;
  try {
    body = await loadBody(options);
  } catch (error) {
    output.err(
      `zproxy: cannot read --body-file: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    return 1;
  }
  const report = await runBench(options, body);
  output.out(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  if (report.requests === 0) {
    if (!options.json) output.err('zproxy: no request completed\n');
    return 1;
  }
  return 0;
}

/** A command-line word as a shell takes it back: as it is when it is plain, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * `zproxy compare`: runs the comparison (src/bench/compare), prints the summary (or report.json with
 * `--json`) and with `--report DIR` writes the report there. Exit status 0 when it ran (missing proxies and
 * skipped scenarios are reported, not failures), 1 when it could not run or a run had errors.
 */
export async function compareCommand(
  options: CompareOptions,
  argv: readonly string[],
  output: Output,
  zproxyMain?: string,
): Promise<number> {
  const { DEFAULT_ZPROXY_MAIN, runCompare } = await import('../bench/compare/compare.ts');
  const { formatSummary, writeReport } = await import('../bench/compare/report.ts');
  const { loadCompareConfig, makeDemoCertificate } = await import('./compare-config.ts');
  const abort = new AbortController();
  const stop = (): void => abort.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    let result = await runCompare(options, {
      node: process.execPath,
      zproxyMain: zproxyMain ?? DEFAULT_ZPROXY_MAIN,
      command: ['zproxy', ...argv].map(shellWord).join(' '),
      log: (line) => output.err(`${line}\n`),
      signal: abort.signal,
      loadUserConfig: loadCompareConfig,
      makeCertificate: () => makeDemoCertificate(),
    });
    if (options.reportDir !== null) {
      result = await writeReport(result, resolve(options.reportDir));
      output.err(
        `compare: report written to ${options.reportDir}/report.html (and report.md, report.json)\n`,
      );
    }
    output.out(options.json ? `${JSON.stringify(result, null, 2)}\n` : formatSummary(result));
    const failed = result.results.some((r) => r.errors > 0 || r.non_2xx > 0);
    return failed ? 1 : 0;
  } catch (error) {
    output.err(`zproxy compare: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

/**
 * `zproxy explain CONFIG METHOD URL`: what zproxy would do with the request, without sending anything
 * (src/cli/explain.ts). Exit status 0 whatever the answer would be (404 included), 1 when the config is
 * invalid or cannot be compiled.
 */
export async function explainCommand(
  file: string,
  request: ExplainRequest,
  json: boolean,
  output: Output,
): Promise<number> {
  const { checkConfigFile } = await import('../config/load.ts');
  const checked = checkConfigFile(file);
  if (checked.config === null) {
    output.err(checked.issues.map((issue) => `${issue.message}\n`).join(''));
    return 1;
  }
  const { explainConfig, formatExplanation } = await import('./explain.ts');
  let explanation: Awaited<ReturnType<typeof explainConfig>>;
  try {
    explanation = await explainConfig(checked.config, file, request);
  } catch (error) {
    output.err(`zproxy: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  output.out(json ? `${JSON.stringify(explanation, null, 2)}\n` : formatExplanation(explanation));
  return 0;
}
