/**
 * The command line every bench group shares (`npm run bench -- --only filters|metrics|trace ...`):
 * rounds, run and warm-up seconds, connections (and HTTP/2 clients and streams), the CPUs the proxy and the load are pinned to, where the
 * report goes, `--quick` (1 round of 3 s runs, 1 s warm-ups), `--install`, `--keep-tmp`. A group adds
 * options of its own (`extra`, read from `values`).
 */
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';

export interface GroupOptions {
  readonly quick: boolean;
  readonly rounds: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  /** HTTP/2 load (the groups with h2load scenarios): connections (`-c`) and streams per connection (`-m`). */
  readonly h2Clients: number;
  readonly h2Streams: number;
  readonly proxyCpu: number;
  readonly loadCpu: number;
  readonly outDir: string;
  /** Install missing tools (also in CI). */
  readonly install: boolean;
  readonly keepTmp: boolean;
  /** Every option as parsed, the group's own included. */
  readonly values: Record<string, string | boolean | undefined>;
}

export function parseGroupOptions(
  argv: readonly string[],
  root: string,
  defaults: { readonly rounds: number; readonly duration: number },
  extra: NonNullable<ParseArgsConfig['options']> = {},
): GroupOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      only: { type: 'string' },
      rounds: { type: 'string', default: String(defaults.rounds) },
      duration: { type: 'string', default: String(defaults.duration) },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      'h2-clients': { type: 'string', default: '16' },
      'h2-streams': { type: 'string', default: '10' },
      'proxy-cpu': { type: 'string', default: '0' },
      'load-cpu': { type: 'string', default: '1' },
      'out-dir': { type: 'string', default: join(root, 'docs', 'reports') },
      install: { type: 'boolean', default: false },
      'keep-tmp': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      ...extra,
    },
  });
  const v = values as Record<string, string | boolean | undefined>;
  const quick = v.quick === true;
  return {
    quick,
    rounds: quick ? 1 : Number(v.rounds),
    durationS: quick ? 3 : Number(v.duration),
    warmupS: quick ? 1 : Number(v.warmup),
    connections: Number(v.connections),
    h2Clients: Number(v['h2-clients']),
    h2Streams: Number(v['h2-streams']),
    proxyCpu: Number(v['proxy-cpu']),
    loadCpu: Number(v['load-cpu']),
    outDir: String(v['out-dir']),
    install: v.install === true || process.env.CI !== undefined,
    keepTmp: v['keep-tmp'] === true,
    values: v,
  };
}

/**
 * A new temporary folder for a group's run (configs, logs, the origin's files), readable by all: nginx's
 * worker runs as nobody when the bench runs as root and must reach the origin's files.
 */
export function groupTmp(group: string): string {
  const tmp = mkdtempSync(join(tmpdir(), `zproxy-bench-${group}-`));
  chmodSync(tmp, 0o755);
  return tmp;
}
