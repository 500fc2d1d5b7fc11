/**
 * `zproxy compare`'s command line (also `npm run bench`'s): parsing only, nothing here starts anything.
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { parseDuration } from '../options.ts';
import { PROXY_NAMES, type ProxyName } from './proxies.ts';
import { DEFAULT_SCENARIOS, SCENARIO_NAMES, type ScenarioName } from './scenarios.ts';

export type OriginChoice = 'auto' | 'nginx' | 'node';

export interface CompareOptions {
  readonly scenarios: readonly ScenarioName[];
  readonly proxies: readonly ProxyName[];
  readonly rounds: number;
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly connections: number;
  readonly h2Connections: number;
  readonly h2Streams: number;
  readonly proxyCpu: number;
  readonly loadCpu: number;
  /** --config: the user's zproxy configuration; null for the generated set-up. */
  readonly configFile: string | null;
  /** --report: the directory for report.html, report.md, report.json and the charts' SVG files. */
  readonly reportDir: string | null;
  readonly origin: OriginChoice;
  /** --note: a sentence for the report's header (how and where it was run). */
  readonly note: string | null;
  /** Keep the generated configurations and logs (the directory is printed). */
  readonly keepTmp: boolean;
  readonly json: boolean;
}

export const COMPARE_USAGE = `Usage: zproxy compare [options]

Runs zproxy and the other proxies found on the PATH (nginx, haproxy, caddy, envoy; a missing one is
reported and skipped) side by side, each with one worker pinned to one CPU, under zproxy's own load
generator on another CPU with the origin; interleaved rounds after warm-ups; req/s, req/s per core of
proxy CPU, latency percentiles, peak RSS, same-round ratios to zproxy, runs disturbed by other load.

Options:
  --all                  Every scenario: ${SCENARIO_NAMES.join(', ')}
  --scenarios LIST       Comma-separated scenarios (default: ${DEFAULT_SCENARIOS.join(',')}):
                           small, 64k, 1m  HTTP/1.1 keep-alive, 13 B, 64 KiB, 1 MiB responses
                           close           HTTP/1.1, one connection per request
                           h2c, h2         HTTP/2 with prior knowledge, HTTP/2 over TLS
                           ws              WebSocket echo, 32-byte messages
                           filters         HTTP/1.1 through a filter chain (API key, CORS)
  --proxies LIST         Comma-separated, from ${PROXY_NAMES.join(', ')} (default: all)
  --config FILE          zproxy runs this configuration (on 127.0.0.1, one thread, its upstream
                         targets pointed at the origin); the others get the same plain routes
                         (host, path prefix, targets). Default: a generated set-up.
  --report DIR           Write DIR/report.html (charts), report.md, report.json and the SVG charts
  --rounds N             Interleaved rounds (default 3)
  -d, --duration D       Each measured run: 10s, 500ms, ... (default 10s)
  --warmup D             Unrecorded warm-up before each run (default 2s; 0 for none)
  -c, --connections N    HTTP/1.1 and WebSocket connections (default 64)
  --h2-connections N     HTTP/2 connections (default 16)
  --h2-streams N         HTTP/2 streams in flight per connection (default 10)
  --proxy-cpu N          The CPU the proxies run on (default 0)
  --load-cpu N           The CPU of the generator and the origin (default 1)
  --origin O             auto (nginx when installed, else zproxy's Node origin), nginx or node
  --note TEXT            A sentence for the report's header
  --quick                1 round of 2 s runs after 500 ms warm-ups (explicit options win)
  --keep-tmp             Keep the generated configurations and logs (the directory is printed)
  --json                 Print report.json on stdout
  -h, --help             This text
`;

export type CompareCommandLine =
  | { readonly kind: 'compare'; readonly options: CompareOptions }
  | { readonly kind: 'help' }
  | { readonly kind: 'usage-error'; readonly message: string };

function list<T extends string>(name: string, text: string, known: readonly T[]): T[] | string {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  for (const item of items) {
    if (!(known as readonly string[]).includes(item))
      return `--${name}: unknown ${JSON.stringify(item)} (known: ${known.join(', ')})`;
  }
  if (items.length === 0) return `--${name} is empty`;
  return known.filter((item) => items.includes(item));
}

function whole(name: string, text: string | undefined, fallback: number, min: number): number | string {
  if (text === undefined) return fallback;
  const n = Number(text);
  return /^\d+$/.test(text) && Number.isSafeInteger(n) && n >= min
    ? n
    : `--${name} must be a whole number ≥ ${min}, got ${text}`;
}

/** Parses compare's arguments (after the word `compare`). */
export function parseCompareArgs(args: readonly string[]): CompareCommandLine {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...args],
      strict: true,
      allowPositionals: false,
      options: {
        all: { type: 'boolean', default: false },
        scenarios: { type: 'string' },
        proxies: { type: 'string' },
        config: { type: 'string' },
        report: { type: 'string' },
        rounds: { type: 'string' },
        duration: { type: 'string', short: 'd' },
        warmup: { type: 'string' },
        connections: { type: 'string', short: 'c' },
        'h2-connections': { type: 'string' },
        'h2-streams': { type: 'string' },
        'proxy-cpu': { type: 'string' },
        'load-cpu': { type: 'string' },
        origin: { type: 'string', default: 'auto' },
        note: { type: 'string' },
        quick: { type: 'boolean', default: false },
        'keep-tmp': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (error) {
    return { kind: 'usage-error', message: (error as Error).message };
  }
  const error = (message: string): CompareCommandLine => ({ kind: 'usage-error', message });
  if (values.help === true) return { kind: 'help' };
  const text = (key: string): string | undefined => values[key] as string | undefined;
  const quick = values.quick === true;
  if (values.all === true && text('scenarios') !== undefined)
    return error('--all and --scenarios exclude each other');
  const scenarios =
    values.all === true
      ? [...SCENARIO_NAMES]
      : text('scenarios') === undefined
        ? [...DEFAULT_SCENARIOS]
        : list('scenarios', text('scenarios')!, SCENARIO_NAMES);
  if (typeof scenarios === 'string') return error(scenarios);
  const proxies =
    text('proxies') === undefined ? [...PROXY_NAMES] : list('proxies', text('proxies')!, PROXY_NAMES);
  if (typeof proxies === 'string') return error(proxies);
  const numbers = {
    rounds: whole('rounds', text('rounds'), quick ? 1 : 3, 1),
    connections: whole('connections', text('connections'), 64, 1),
    h2Connections: whole('h2-connections', text('h2-connections'), 16, 1),
    h2Streams: whole('h2-streams', text('h2-streams'), 10, 1),
    proxyCpu: whole('proxy-cpu', text('proxy-cpu'), 0, 0),
    loadCpu: whole('load-cpu', text('load-cpu'), 1, 0),
  };
  for (const value of Object.values(numbers)) if (typeof value === 'string') return error(value);
  const n = numbers as Record<keyof typeof numbers, number>;
  const durationMs = parseDuration(text('duration') ?? (quick ? '2s' : '10s'));
  if (durationMs === null)
    return error(`--duration must be a duration such as 10s or 500ms, got ${text('duration')}`);
  const warmupText = text('warmup') ?? (quick ? '500ms' : '2s');
  const warmupMs = warmupText.trim() === '0' ? 0 : parseDuration(warmupText);
  if (warmupMs === null) return error(`--warmup must be a duration such as 2s or 0, got ${warmupText}`);
  const origin = text('origin')!;
  if (origin !== 'auto' && origin !== 'nginx' && origin !== 'node')
    return error(`--origin must be auto, nginx or node, got ${origin}`);
  if (n.proxyCpu === n.loadCpu) return error('--proxy-cpu and --load-cpu must differ');
  const cpus = availableParallelism();
  if (Math.max(n.proxyCpu, n.loadCpu) >= cpus)
    return error(`CPUs ${n.proxyCpu} and ${n.loadCpu} are needed, this machine has ${cpus}`);
  return {
    kind: 'compare',
    options: {
      scenarios,
      proxies,
      rounds: n.rounds,
      durationMs,
      warmupMs,
      connections: n.connections,
      h2Connections: n.h2Connections,
      h2Streams: n.h2Streams,
      proxyCpu: n.proxyCpu,
      loadCpu: n.loadCpu,
      configFile: text('config') ?? null,
      reportDir: text('report') ?? null,
      origin,
      note: text('note') ?? null,
      keepTmp: values['keep-tmp'] === true,
      json: values.json === true,
    },
  };
}
