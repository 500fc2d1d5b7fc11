// Runs wrk pinned to one CPU and parses its text output.
import { type LoadResult, runPinnedTool } from './load-tool.ts';

export interface WrkOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  /** The CPU wrk is pinned to. */
  readonly cpu: number;
  /** Send `Connection: close` so that every request uses a new connection. */
  readonly closeConnections: boolean;
  /** More request fields, each `Name: value` (wrk's `-H`). */
  readonly headers?: readonly string[];
  readonly signal?: AbortSignal;
}

// A type alias (not an interface) so that it fits LoadResult's Record of error counts.
export type WrkErrors = {
  /** Responses with status >= 400 (wrk's "Non-2xx or 3xx responses"). */
  readonly status: number;
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
};

export interface WrkResult extends LoadResult {
  readonly errors: WrkErrors;
}

const TIME_UNITS_US: Record<string, number> = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };

/** "312.45us" / "1.20ms" / "2.00s" -> microseconds. */
export function parseWrkTime(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (match === null) throw new Error(`unexpected wrk time value: ${JSON.stringify(text)}`);
  return Number(match[1]) * TIME_UNITS_US[match[2]!]!;
}

/** "3.00s" / "1.00m" -> seconds. */
function parseDuration(text: string): number {
  return parseWrkTime(text) / 1e6;
}

/** Parses the output of `wrk --latency`. */
export function parseWrkOutput(raw: string): WrkResult {
  const number = (re: RegExp, what: string): RegExpExecArray => {
    const match = re.exec(raw);
    if (match === null) throw new Error(`wrk output has no ${what}:\n${raw}`);
    return match;
  };
  const percentile = (p: number): number =>
    parseWrkTime(number(new RegExp(`^\\s+${p}%\\s+(\\S+)\\s*$`, 'm'), `${p}% latency`)[1]!);
  const totals = number(/^\s*(\d+) requests in ([\d.]+\w+),/m, 'request total');
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(raw);
  const errors: WrkErrors = {
    status: status === null ? 0 : Number(status[1]),
    connect: socket === null ? 0 : Number(socket[1]),
    read: socket === null ? 0 : Number(socket[2]),
    write: socket === null ? 0 : Number(socket[3]),
    timeout: socket === null ? 0 : Number(socket[4]),
  };
  return {
    requests: Number(totals[1]),
    seconds: parseDuration(totals[2]!),
    requestsPerSecond: Number(number(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]),
    latencyUs: { p50: percentile(50), p75: percentile(75), p90: percentile(90), p99: percentile(99) },
    errors,
    errorCount: errors.status + errors.connect + errors.read + errors.write + errors.timeout,
    cpuTicks: null,
    negotiatedProtocol: null,
    tls: null,
    raw,
  };
}

/** One wrk run: `taskset -c <cpu> wrk -t1 -c<C> -d<S>s --latency [-H "Connection: close"] [-H …] <url>`. */
export async function runWrk(options: WrkOptions): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.durationS}s`, '--latency'];
  if (options.closeConnections) args.push('-H', 'Connection: close');
  for (const header of options.headers ?? []) args.push('-H', header);
  args.push(options.url);
  const run = await runPinnedTool('wrk', args, options.cpu, options.durationS, options.signal);
  return { ...parseWrkOutput(run.stdout), cpuTicks: run.cpuTicks };
}
