// Runs wrk pinned to one CPU and parses its text output.
import { spawn } from 'node:child_process';

export interface WrkOptions {
  readonly url: string;
  readonly connections: number;
  readonly durationS: number;
  /** The CPU wrk is pinned to. */
  readonly cpu: number;
  /** Send `Connection: close` so that every request uses a new connection. */
  readonly closeConnections: boolean;
  readonly signal?: AbortSignal;
}

export interface WrkErrors {
  /** Responses with status >= 400 (wrk's "Non-2xx or 3xx responses"). */
  readonly status: number;
  readonly connect: number;
  readonly read: number;
  readonly write: number;
  readonly timeout: number;
}

export interface WrkResult {
  readonly requests: number;
  /** The measured duration wrk reports, in seconds. */
  readonly seconds: number;
  readonly requestsPerSecond: number;
  /** Latency percentiles in microseconds. */
  readonly latencyUs: {
    readonly p50: number;
    readonly p75: number;
    readonly p90: number;
    readonly p99: number;
  };
  readonly errors: WrkErrors;
  readonly errorCount: number;
  /** CPU time wrk itself used (utime + stime, clock ticks), null if it could not be read. */
  readonly cpuTicks: number | null;
  readonly raw: string;
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
    raw,
  };
}

const CHILD_TIMES_MARK = 'zproxy-bench-child-times';

/**
 * wrk runs under a small shell that, once wrk has exited, prints its own /proc stat line: its cutime and
 * cstime fields are then wrk's CPU time (the shell has waited for wrk, which Node cannot observe itself).
 */
const WRAPPER = `wrk "$@"; status=$?; echo "${CHILD_TIMES_MARK} $(cat /proc/$$/stat)" >&2; exit $status`;

function childTicks(stderr: string): number | null {
  const line = stderr.split('\n').find((l) => l.startsWith(CHILD_TIMES_MARK));
  if (line === undefined) return null;
  const rest = line.slice(line.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 (cutime, cstime) are rest[13] and rest[14].
  const ticks = Number(rest[13]) + Number(rest[14]);
  return Number.isFinite(ticks) ? ticks : null;
}

/** One wrk run: `taskset -c <cpu> wrk -t1 -c<C> -d<S>s --latency [-H "Connection: close"] <url>`. */
export function runWrk(options: WrkOptions): Promise<WrkResult> {
  const wrkArgs = ['-t1', `-c${options.connections}`, `-d${options.durationS}s`, '--latency'];
  if (options.closeConnections) wrkArgs.push('-H', 'Connection: close');
  wrkArgs.push(options.url);
  const args = ['-c', String(options.cpu), 'sh', '-c', WRAPPER, 'sh', ...wrkArgs];
  return new Promise((resolve, reject) => {
    // Its own process group, so that stopping it early stops wrk too, not only the shell.
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    if (options.signal?.aborted) killGroup();
    options.signal?.addEventListener('abort', killGroup);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // A bounded run: wrk stops itself after the duration; this guards against a hung process.
    const guard = setTimeout(killGroup, (options.durationS + 30) * 1000);
    const done = (): void => {
      clearTimeout(guard);
      options.signal?.removeEventListener('abort', killGroup);
    };
    child.once('error', (error) => {
      done();
      reject(error);
    });
    child.once('close', (code, signal) => {
      done();
      const messages = stderr
        .split('\n')
        .filter((line) => !line.startsWith(CHILD_TIMES_MARK))
        .join('\n')
        .trim();
      if (code !== 0) {
        reject(new Error(`wrk failed (${signal ?? `exit code ${code}`}): ${messages || stdout.trim()}`));
        return;
      }
      try {
        resolve({ ...parseWrkOutput(stdout), cpuTicks: childTicks(stderr) });
      } catch (error) {
        reject(error);
      }
    });
  });
}
