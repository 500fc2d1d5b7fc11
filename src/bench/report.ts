/**
 * The bench's result: the threads' counts merged into one report (the `--json` output, field names
 * documented in docs/cli.md), the verdict on whether the generator was the limit, and the human table.
 */
import { availableParallelism } from 'node:os';
import type { Histogram } from 'hdr-histogram-js';
import { addEncoded, type LatencySummary, newLatencyHistogram, summarise } from './histogram.ts';
import type { BenchOptions } from './options.ts';
import { ERROR_KINDS, type ErrorCounts, noErrors, type ThreadResult } from './stats.ts';

/** A thread at or above this share of one core (CPU time or event-loop busy time) limited the run. */
export const SATURATED = 0.9;

export interface GeneratorThread {
  readonly cpu_percent: number;
  readonly event_loop_utilization: number;
}

export interface BenchReport {
  readonly url: string;
  readonly protocol: string;
  readonly mode: 'closed-loop' | 'constant-rate';
  readonly connections: number;
  readonly concurrency: number;
  readonly threads: number;
  readonly keepalive: boolean;
  readonly method: string;
  readonly target_rate: number | null;
  readonly duration_s: number;
  readonly requests: number;
  readonly requests_per_second: number;
  readonly bytes_received: number;
  readonly bytes_sent: number;
  readonly bytes_received_per_second: number;
  /** Closed-loop: from send to complete response. Constant-rate: from the intended send (corrected). */
  readonly latency_us: LatencySummary;
  /** Constant-rate only: from the actual send (what a closed-loop tool would show); null otherwise. */
  readonly latency_uncorrected_us: LatencySummary | null;
  readonly statuses: Record<string, number>;
  readonly non_2xx: Record<string, number>;
  readonly non_2xx_total: number;
  readonly errors: ErrorCounts & { readonly total: number };
  readonly connections_opened: number;
  readonly in_flight_at_stop: number;
  readonly generator: {
    /** CPU time of the generator's threads ÷ (duration × threads), in %. */
    readonly cpu_percent: number;
    /** CPU time of the whole process (GC and I/O helper threads too) ÷ duration, in % of one core. */
    readonly process_cpu_percent: number;
    readonly threads: readonly GeneratorThread[];
    /** True when a thread was busy ≥ 90 % of the run: the figures then measure the generator. */
    readonly limited: boolean;
    readonly verdict: string;
  };
  readonly notes: readonly string[];
}

const round = (value: number, digits = 2): number => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};

/** Merges the threads' results. `processCpuUs`: the process's CPU time over the run. */
export function buildReport(
  options: BenchOptions,
  results: readonly ThreadResult[],
  processCpuUs: number,
): BenchReport {
  const latency = newLatencyHistogram();
  let uncorrected: Histogram | null = options.rate === null ? null : newLatencyHistogram();
  let requests = 0;
  let bytesReceived = 0;
  let bytesSent = 0;
  let opened = 0;
  let inFlight = 0;
  let elapsedMs = 0;
  const statuses: Record<string, number> = {};
  const errors = noErrors();
  const threads: GeneratorThread[] = [];
  for (const r of results) {
    requests += r.requests;
    bytesReceived += r.bytesReceived;
    bytesSent += r.bytesSent;
    opened += r.connectionsOpened;
    inFlight += r.inFlightAtStop;
    elapsedMs = Math.max(elapsedMs, r.elapsedMs);
    for (const [code, count] of Object.entries(r.statuses)) statuses[code] = (statuses[code] ?? 0) + count;
    for (const kind of ERROR_KINDS) errors[kind] += r.errors[kind];
    addEncoded(latency, r.latency);
    if (uncorrected !== null && r.uncorrected !== null) addEncoded(uncorrected, r.uncorrected);
    threads.push({
      cpu_percent: round((r.cpuUs / 1000 / r.elapsedMs) * 100, 1),
      event_loop_utilization: round(r.eventLoopUtilization, 3),
    });
  }
  const seconds = elapsedMs / 1000;
  const non2xx: Record<string, number> = {};
  let non2xxTotal = 0;
  for (const [code, count] of Object.entries(statuses)) {
    if (code[0] !== '2') {
      non2xx[code] = count;
      non2xxTotal += count;
    }
  }
  const errorTotal = ERROR_KINDS.reduce((sum, kind) => sum + errors[kind], 0);
  const threadCpu = threads.reduce((sum, t) => sum + t.cpu_percent, 0) / Math.max(1, threads.length);
  const busiest = threads.reduce((max, t) => Math.max(max, t.cpu_percent / 100, t.event_loop_utilization), 0);
  const limited = busiest >= SATURATED;
  const verdict = limited
    ? `the generator was the limit, not the target: its busiest thread was busy ${Math.round(busiest * 100)} % of the run (give it more --threads, or cores)`
    : `the generator was not the limit: its busiest thread was busy ${Math.round(busiest * 100)} % of the run`;
  const notes: string[] = [];
  const cores = availableParallelism();
  if (threads.length > cores) {
    notes.push(`${threads.length} threads on ${cores} CPUs: the threads compete for the CPUs`);
  }
  const rps = seconds > 0 ? requests / seconds : 0;
  if (options.rate !== null && rps < options.rate * 0.95) {
    notes.push(
      `the target rate (${options.rate}/s) was not reached: ${round(rps, 1)}/s; the corrected latencies show the delay`,
    );
  }
  const lat = summarise(latency);
  const unc = uncorrected === null ? null : summarise(uncorrected);
  latency.destroy();
  uncorrected?.destroy();
  uncorrected = null;
  return {
    url: options.url,
    protocol: options.protocol,
    mode: options.rate === null ? 'closed-loop' : 'constant-rate',
    connections: options.connections,
    concurrency: options.concurrency,
    threads: threads.length,
    keepalive: options.keepAlive,
    method: options.method,
    target_rate: options.rate,
    duration_s: round(seconds, 3),
    requests,
    requests_per_second: round(rps),
    bytes_received: bytesReceived,
    bytes_sent: bytesSent,
    bytes_received_per_second: round(seconds > 0 ? bytesReceived / seconds : 0),
    latency_us: lat,
    latency_uncorrected_us: unc,
    statuses,
    non_2xx: non2xx,
    non_2xx_total: non2xxTotal,
    errors: { ...errors, total: errorTotal },
    connections_opened: opened,
    in_flight_at_stop: inFlight,
    generator: {
      cpu_percent: round(threadCpu, 1),
      process_cpu_percent: round(seconds > 0 ? (processCpuUs / 1000 / elapsedMs) * 100 : 0, 1),
      threads,
      limited,
      verdict,
    },
    notes,
  };
}

/** Microseconds as wrk shows times: `850.00us`, `1.20ms`, `2.05s`. */
export function formatMicros(us: number): string {
  if (us < 1000) return `${us.toFixed(2)}us`;
  if (us < 1_000_000) return `${(us / 1000).toFixed(2)}ms`;
  return `${(us / 1_000_000).toFixed(2)}s`;
}

/** Bytes in binary units, as wrk shows them: `12.34MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 2)}${units[unit]}`;
}

function latencyRow(label: string, s: LatencySummary): string {
  const cells = [s.p50, s.p90, s.p99, s.p99_9, s.max, s.mean].map((v) => formatMicros(v).padStart(10));
  return `  ${label.padEnd(22)}${cells.join('')}`;
}

/** The human report, in the spirit of wrk's. */
export function formatReport(r: BenchReport): string {
  const lines: string[] = [];
  const shape =
    r.protocol === 'http1' && !r.keepalive
      ? `${r.connections} connections, one connection per request`
      : `${r.connections} connections × ${r.concurrency} in flight`;
  const mode = r.mode === 'constant-rate' ? `constant rate ${r.target_rate}/s` : 'closed loop';
  lines.push(`zproxy bench ${r.url}`);
  lines.push(
    `  ${r.protocol}, ${shape}, ${r.threads} thread${r.threads === 1 ? '' : 's'}, ${mode}, ${r.duration_s.toFixed(2)}s`,
  );
  lines.push(
    `  ${''.padEnd(22)}${['p50', 'p90', 'p99', 'p99.9', 'max', 'mean'].map((h) => h.padStart(10)).join('')}`,
  );
  if (r.latency_uncorrected_us === null) {
    lines.push(latencyRow('Latency', r.latency_us));
  } else {
    lines.push(latencyRow('Latency (corrected)', r.latency_us));
    lines.push(latencyRow('Latency (uncorrected)', r.latency_uncorrected_us));
  }
  const unit = r.protocol === 'websocket' ? 'messages' : 'requests';
  lines.push(
    `  ${r.requests} ${unit} in ${r.duration_s.toFixed(2)}s, ${formatBytes(r.bytes_received)} read, ${formatBytes(r.bytes_sent)} written`,
  );
  lines.push(
    `${(r.protocol === 'websocket' ? 'Messages/sec:' : 'Requests/sec:').padEnd(14)}${r.requests_per_second.toFixed(2).padStart(12)}`,
  );
  lines.push(`${'Transfer/sec:'.padEnd(14)}${formatBytes(r.bytes_received_per_second).padStart(12)}`);
  if (r.non_2xx_total > 0) {
    const list = Object.entries(r.non_2xx)
      .map(([code, count]) => `${code}: ${count}`)
      .join(', ');
    lines.push(`  Non-2xx responses: ${r.non_2xx_total} (${list})`);
  }
  if (r.errors.total > 0) {
    const list = ERROR_KINDS.filter((k) => r.errors[k] > 0)
      .map((k) => `${k} ${r.errors[k]}`)
      .join(', ');
    lines.push(`  Errors: ${r.errors.total} (${list})`);
  }
  const perThread = r.generator.threads.map((t) => `${t.cpu_percent.toFixed(0)} %`).join(', ');
  lines.push(
    `  Generator CPU: ${r.generator.cpu_percent.toFixed(0)} % of its ${r.threads === 1 ? 'thread' : `${r.threads} threads (${perThread})`}, process ${r.generator.process_cpu_percent.toFixed(0)} % of a core`,
  );
  lines.push(`  ${r.generator.limited ? 'WARNING: ' : ''}${r.generator.verdict}`);
  for (const note of r.notes) lines.push(`  Note: ${note}`);
  return `${lines.join('\n')}\n`;
}
