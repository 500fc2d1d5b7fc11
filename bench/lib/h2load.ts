// Runs h2load (nghttp2's HTTP/2 load generator) pinned to one CPU, parses its summary, and computes the
// latency percentiles from its per-request log (h2load prints only min/max/mean/sd itself).
import { readFileSync, rmSync } from 'node:fs';
import { type Latency, type LoadResult, runPinnedTool } from './load-tool.ts';

export interface H2loadOptions {
  /** http://… for HTTP/2 with prior knowledge (h2c), https://… for HTTP/2 over TLS (ALPN h2). */
  readonly url: string;
  /** Connections (`-c`). */
  readonly clients: number;
  /** Concurrent streams per connection (`-m`). */
  readonly streams: number;
  readonly durationS: number;
  /** The CPU h2load is pinned to. */
  readonly cpu: number;
  /** Where h2load writes its per-request log; removed after it is read. null: no latency figures. */
  readonly logFile: string | null;
  readonly signal?: AbortSignal;
}

// A type alias (not an interface) so that it fits LoadResult's Record of error counts.
export type H2loadErrors = {
  /** Responses with status >= 400. */
  readonly status: number;
  /** Requests that failed for another reason than their status (stream or connection errors). */
  readonly errored: number;
  /** Requests that timed out. */
  readonly timeout: number;
};

export interface H2loadResult extends LoadResult {
  readonly errors: H2loadErrors;
}

const TIME_UNITS_S: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

/** "3.00s" / "250.12ms" -> seconds. */
function parseDuration(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (match === null) throw new Error(`unexpected h2load duration: ${JSON.stringify(text)}`);
  return Number(match[1]) * TIME_UNITS_S[match[2]!]!;
}

const NO_LATENCY: Latency = { p50: 0, p75: 0, p90: 0, p99: 0 };

/** Parses h2load's summary (`finished in …`, `requests: …`, `status codes: …`). */
export function parseH2loadOutput(raw: string, latencyUs: Latency = NO_LATENCY): H2loadResult {
  const match = (re: RegExp, what: string): RegExpExecArray => {
    const m = re.exec(raw);
    if (m === null) throw new Error(`h2load output has no ${what}:\n${raw}`);
    return m;
  };
  const finished = match(/^finished in (\S+), ([\d.]+) req\/s/m, 'summary');
  const requests = match(
    /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored(?:, (\d+) timeout)?/m,
    'request counts',
  );
  const status = match(/^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m, 'status codes');
  const errors: H2loadErrors = {
    status: Number(status[3]) + Number(status[4]),
    errored: Number(requests[6]),
    timeout: Number(requests[7] ?? 0),
  };
  // "failed" counts every request that did not succeed (errored, timed out, status >= 400).
  const failed = Number(requests[5]);
  const protocol = /^Application protocol: (\S+)/m.exec(raw)?.[1] ?? null;
  const tlsVersion = /^TLS Protocol: (\S+)/m.exec(raw)?.[1];
  const cipher = /^Cipher: (\S+)/m.exec(raw)?.[1];
  return {
    requests: Number(requests[3]),
    seconds: parseDuration(finished[1]!),
    requestsPerSecond: Number(finished[2]),
    latencyUs,
    errors,
    errorCount: Math.max(failed, errors.status + errors.errored + errors.timeout),
    cpuTicks: null,
    raw,
    negotiatedProtocol: protocol,
    tls: tlsVersion === undefined ? null : `${tlsVersion} ${cipher ?? ''}`.trim(),
  };
}

/** Nearest-rank percentiles of the third column (µs until the end of the response) of h2load's log. */
export function latencyFromLog(text: string): Latency {
  const lines = text.split('\n');
  const values = new Float64Array(lines.length);
  let n = 0;
  for (const line of lines) {
    const first = line.indexOf('\t');
    if (first === -1) continue;
    const second = line.indexOf('\t', first + 1);
    if (second === -1) continue;
    const end = line.indexOf('\t', second + 1);
    const value = Number(line.slice(second + 1, end === -1 ? undefined : end));
    if (Number.isFinite(value)) values[n++] = value;
  }
  if (n === 0) throw new Error('the h2load log has no requests');
  const sorted = values.subarray(0, n).sort();
  const at = (p: number): number => sorted[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)]!;
  return { p50: at(50), p75: at(75), p90: at(90), p99: at(99) };
}

/** One h2load run: `taskset -c <cpu> h2load -t1 -c<C> -m<M> -D<S> [--log-file F] <url>`. */
export async function runH2load(options: H2loadOptions): Promise<H2loadResult> {
  const args = [
    '-t1',
    `-c${options.clients}`,
    `-m${options.streams}`,
    `-D${options.durationS}`,
    ...(options.logFile === null ? [] : [`--log-file=${options.logFile}`]),
    options.url,
  ];
  const run = await runPinnedTool('h2load', args, options.cpu, options.durationS, options.signal);
  let latency = NO_LATENCY;
  if (options.logFile !== null) {
    try {
      latency = latencyFromLog(readFileSync(options.logFile, 'latin1'));
    } finally {
      rmSync(options.logFile, { force: true });
    }
  }
  const result = parseH2loadOutput(run.stdout, latency);
  const expected = options.url.startsWith('https:') ? 'h2' : 'h2c';
  if (result.negotiatedProtocol !== expected) {
    throw new Error(
      `h2load used ${result.negotiatedProtocol ?? 'no protocol'} instead of ${expected} for ${options.url}:\n${run.stdout}`,
    );
  }
  return { ...result, cpuTicks: run.cpuTicks };
}
