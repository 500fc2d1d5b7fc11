/**
 * Loads and validates a config file in a short-lived child process. The validator libraries (ajv, TypeBox)
 * and the code they generate then live only in a process that exits as soon as the config is read, so a
 * serving process never holds them: about 25 MiB less resident memory per process. (A worker thread is not
 * enough: its malloc arena keeps the pages after the thread ends.) Same result, warnings and errors as
 * `loadConfigFileWithWarnings`; it costs one Node start-up when zproxy starts and at each reload.
 */
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, type ConfigIssue } from './errors.ts';
import type { LoadedConfig } from './load.ts';
import type { Config } from './schema.ts';
import type { ConfigWarning } from './warnings.ts';

/** What the loader process prints. */
export type LoadReply =
  | { readonly ok: true; readonly config: Config; readonly warnings: readonly ConfigWarning[] }
  | { readonly ok: false; readonly issues: ConfigIssue[]; readonly source: string | null }
  | { readonly ok: false; readonly failure: string };

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
    Object.freeze(value);
  }
  return value;
}

/**
 * Node's compile cache for the loader process (its modules compiled once, then read from the cache): a
 * load, and so a reload, takes about 130 ms instead of 320 (most of it was compiling the same modules
 * each time). Per user, in the temporary directory.
 */
const COMPILE_CACHE = join(tmpdir(), `zproxy-compile-cache-${process.getuid?.() ?? 'user'}`);

export function loadConfigIsolated(path: string): Promise<LoadedConfig> {
  // The same folder holds load-worker.ts (running from source) or load-worker.js (built).
  const extension = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const script = fileURLToPath(new URL(`./load-worker${extension}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const env = { ...process.env, NODE_COMPILE_CACHE: COMPILE_CACHE };
    execFile(
      process.execPath,
      [script, path],
      { maxBuffer: 64 * 1024 * 1024, env },
      (error, stdout, stderr) => {
        let reply: LoadReply;
        try {
          reply = JSON.parse(stdout) as LoadReply;
        } catch {
          reject(new Error(`the config loader failed: ${error?.message ?? ''} ${stderr}`.trim()));
          return;
        }
        if (reply.ok) resolve(deepFreeze({ config: reply.config, warnings: reply.warnings }));
        else if ('issues' in reply) reject(new ConfigError(reply.issues, reply.source));
        else reject(new Error(reply.failure));
      },
    );
  });
}
