/**
 * What a comparison records (report.json): every measured run, the summary per scenario and proxy (medians
 * over the rounds, same-round ratios to zproxy), peak memory, the proxies that were missing or skipped, and
 * the figures each chart draws. Figures are rounded here, once: the report's pages show them as they are.
 */
import type { ProxyName } from './proxies.ts';
import type { ScenarioName } from './scenarios.ts';

/** Runs where other work took more than this fraction of a CPU the run used are marked as disturbed. */
export const DISTURBANCE_LIMIT = 0.1;

export interface LatencyFigures {
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly p99_9: number;
}

export const PERCENTILES: readonly (keyof LatencyFigures)[] = ['p50', 'p90', 'p99', 'p99_9'];
export const PERCENTILE_LABELS: Record<keyof LatencyFigures, string> = {
  p50: 'p50',
  p90: 'p90',
  p99: 'p99',
  p99_9: 'p99.9',
};

export interface RunRecord {
  readonly round: number;
  readonly scenario: ScenarioName;
  readonly proxy: ProxyName;
  readonly requests: number;
  readonly seconds: number;
  readonly requests_per_second: number;
  /** Latency in milliseconds. */
  readonly latency_ms: LatencyFigures & { readonly max: number };
  readonly errors: number;
  readonly non_2xx: number;
  /** The proxy's CPU time over the run's duration (1 = one core busy all the time). */
  readonly proxy_cpu: number;
  /** requests_per_second / proxy_cpu; null when no CPU time was measured. */
  readonly requests_per_core: number | null;
  /** The origin's (or echo server's) CPU, on the load CPU. */
  readonly origin_cpu: number;
  /** The generator's process CPU, on the load CPU. */
  readonly generator_cpu: number;
  /** The generator said it was the limit (a thread busy ≥ 90 %). */
  readonly generator_limited: boolean;
  /** CPU time on each CPU that no process of the comparison used (other load, steal), fraction of a core. */
  readonly other_load: { readonly proxy_cpu: number | null; readonly load_cpu: number | null };
  readonly disturbed: boolean;
}

export interface ResultSummary {
  readonly scenario: ScenarioName;
  readonly proxy: ProxyName;
  readonly rounds: number;
  readonly disturbed_rounds: number;
  /** Medians over the rounds. */
  readonly requests_per_second: number;
  readonly requests_per_core: number | null;
  readonly proxy_cpu: number;
  readonly latency_ms: LatencyFigures;
  /** Totals over the rounds. */
  readonly errors: number;
  readonly non_2xx: number;
  /** Median over the rounds of (this proxy's req/s per core ÷ zproxy's in the same round); null for zproxy. */
  readonly per_core_vs_zproxy: number | null;
  readonly generator_limited_rounds: number;
}

export interface ProxyStatus {
  readonly name: ProxyName;
  /** measured; missing (binary not on the PATH); failed (it did not start). */
  readonly status: 'measured' | 'missing' | 'failed';
  readonly binary: string | null;
  readonly version: string | null;
  readonly reason: string | null;
}

export interface Skip {
  readonly scenario: ScenarioName;
  readonly proxy: ProxyName | null;
  readonly reason: string;
}

export interface MemoryFigure {
  readonly proxy: ProxyName;
  /** Sum of VmHWM over the proxy's processes over all the measured runs, in MiB. */
  readonly peak_rss_mib: number;
}

export interface ChartFigure {
  readonly scenario: ScenarioName | null;
  readonly proxy: ProxyName;
  /** The latency percentile, for latency charts. */
  readonly series: string | null;
  readonly value: number;
}

export interface ChartRecord {
  readonly id: string;
  readonly title: string;
  /** What `value` is, with its unit. */
  readonly measure: string;
  readonly figures: readonly ChartFigure[];
  /** The committed SVG, next to report.html. */
  readonly svg_file: string;
}

export interface CompareResult {
  readonly title: string;
  readonly command: string;
  readonly note: string | null;
  readonly started_at: string;
  readonly finished_at: string;
  readonly machine: {
    readonly cpu_model: string;
    readonly cpus: number;
    readonly kernel: string;
    readonly node: string;
  };
  readonly method: {
    readonly rounds: number;
    readonly duration_s: number;
    readonly warmup_s: number;
    readonly connections: number;
    readonly h2_connections: number;
    readonly h2_streams: number;
    readonly proxy_cpu: number;
    readonly load_cpu: number;
    readonly idle_upstream: number;
    readonly origin: string;
    readonly plan: string;
    readonly generator: string;
  };
  readonly proxies: readonly ProxyStatus[];
  readonly scenarios: readonly {
    readonly name: ScenarioName;
    readonly title: string;
    readonly unit: string;
  }[];
  readonly skipped: readonly Skip[];
  readonly results: readonly ResultSummary[];
  readonly memory: readonly MemoryFigure[];
  readonly charts: readonly ChartRecord[];
  readonly notes: readonly string[];
  readonly runs: readonly RunRecord[];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export const roundTo = (value: number, digits: number): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

/** Other load over the limit on a CPU the run used. */
export function isDisturbed(otherLoad: RunRecord['other_load']): boolean {
  return (otherLoad.proxy_cpu ?? 0) > DISTURBANCE_LIMIT || (otherLoad.load_cpu ?? 0) > DISTURBANCE_LIMIT;
}

/** Medians per scenario and proxy, with the same-round ratio of req/s per core to zproxy's. */
export function summarise(runs: readonly RunRecord[]): ResultSummary[] {
  const out: ResultSummary[] = [];
  const keys: [ScenarioName, ProxyName][] = [];
  for (const run of runs) {
    if (!keys.some(([s, p]) => s === run.scenario && p === run.proxy)) keys.push([run.scenario, run.proxy]);
  }
  for (const [scenario, proxy] of keys) {
    const mine = runs.filter((run) => run.scenario === scenario && run.proxy === proxy);
    const perCore = mine.map((run) => run.requests_per_core).filter((v): v is number => v !== null);
    const ratios: number[] = [];
    if (proxy !== 'zproxy') {
      for (const run of mine) {
        const reference = runs.find(
          (r) => r.scenario === scenario && r.proxy === 'zproxy' && r.round === run.round,
        );
        if (
          reference?.requests_per_core != null &&
          run.requests_per_core !== null &&
          reference.requests_per_core > 0
        )
          ratios.push(run.requests_per_core / reference.requests_per_core);
      }
    }
    const latency = (key: keyof LatencyFigures): number =>
      roundTo(median(mine.map((run) => run.latency_ms[key])), 3);
    out.push({
      scenario,
      proxy,
      rounds: mine.length,
      disturbed_rounds: mine.filter((run) => run.disturbed).length,
      requests_per_second: Math.round(median(mine.map((run) => run.requests_per_second))),
      requests_per_core: perCore.length === 0 ? null : Math.round(median(perCore)),
      proxy_cpu: roundTo(median(mine.map((run) => run.proxy_cpu)), 3),
      latency_ms: { p50: latency('p50'), p90: latency('p90'), p99: latency('p99'), p99_9: latency('p99_9') },
      errors: mine.reduce((sum, run) => sum + run.errors, 0),
      non_2xx: mine.reduce((sum, run) => sum + run.non_2xx, 0),
      per_core_vs_zproxy: ratios.length === 0 ? null : roundTo(median(ratios), 3),
      generator_limited_rounds: mine.filter((run) => run.generator_limited).length,
    });
  }
  return out;
}
