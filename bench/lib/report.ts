// What the bench groups' reports share: number formats, the machine line, the load averages, and writing
// the report as <out-dir>/<name>.md and .json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join, resolve } from 'node:path';
import type { GroupOptions } from './group-options.ts';
import { median } from './stats.ts';

/** `n` with `d` decimals and thousands separators; `–` for NaN (a figure with no runs). */
export function fmt(n: number, d = 0): string {
  return Number.isNaN(n)
    ? '–'
    : n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
}

/** The median and the range of a figure over runs: `median (min–max)`; `–` for none. */
export function spread(xs: readonly number[], d = 0): string {
  return xs.length === 0
    ? '–'
    : `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}–${fmt(Math.max(...xs), d)})`;
}

/** `Node <version>, <CPU model>, Linux <release>`. */
export function machine(): string {
  return `Node ${process.versions.node}, ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}`;
}

/** os.loadavg() as `1.00 / 0.50 / 0.20`. */
export function loadAverages(l: readonly number[]): string {
  return l.map((x) => x.toFixed(2)).join(' / ');
}

/** Writes `<outDir>/<name>.md` and `.json` (creating outDir); returns `<outDir>/<name>`. */
export function writeReport(outDir: string, name: string, md: string, json: object): string {
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  const base = join(dir, name);
  writeFileSync(`${base}.md`, md);
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  return base;
}

/** What every report's .json starts with: when the run started and the shape of its runs. */
export function runParameters(startedAt: Date, options: GroupOptions): object {
  const { quick, rounds, durationS, warmupS, connections, proxyCpu, loadCpu } = options;
  return { date: startedAt.toISOString(), quick, rounds, durationS, warmupS, connections, proxyCpu, loadCpu };
}
