// zproxy for the bench groups: build dist/ when it is stale, find the Node 24 binary, and run a build's
// `zproxy run CONFIG` pinned to a CPU.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PinnedProcess } from '../../src/bench/compare/proc.ts';
import { shebangNodeFlags } from '../../src/bench/compare/zproxy.ts';

/** The Node 24 binary: this process's when it is Node >= 24 (npm run bench), else the pinned one. */
export function nodeBinary(root: string): string {
  if (Number(process.versions.node.split('.')[0]) >= 24) return process.execPath;
  const pinned = join(root, 'node_modules', '.bin', 'node');
  if (existsSync(pinned)) return pinned;
  throw new Error(
    'Node 24 not found: run `npm ci` (node is pinned as a dev dependency) and use `npm run bench`',
  );
}

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` when dist/cli/main.js is missing or older than a file in src/. */
export function ensureBuilt(root: string): void {
  const main = join(root, 'dist', 'cli', 'main.js');
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtimeMs(join(root, 'src'))) return;
  console.error('bench: dist/ is missing or older than src/: running `npm run build`');
  const result = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0 || !existsSync(main)) {
    throw new Error('`npm run build` failed, so zproxy cannot be measured (see the compiler output above)');
  }
}

/**
 * `zproxy run <configFile>` of the build whose CLI entry is `main` (dist/cli/main.js), run as the `zproxy`
 * bin runs (with the Node flags its shebang names) on the Node 24 binary, pinned to `cpu`, its output in
 * `logFile`.
 */
export function startZproxy(
  root: string,
  name: string,
  cpu: number,
  main: string,
  configFile: string,
  logFile: string,
): PinnedProcess {
  return new PinnedProcess(
    name,
    cpu,
    nodeBinary(root),
    [...shebangNodeFlags(main), main, 'run', configFile],
    logFile,
  );
}
