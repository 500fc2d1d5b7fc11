// What the load generators (wrk, h2load) have in common: the result shape the report records, and a
// bounded, pinned run that also measures the generator's own CPU time.
import { spawn } from 'node:child_process';

/** Latency percentiles in microseconds. */
export interface Latency {
  readonly p50: number;
  readonly p75: number;
  readonly p90: number;
  readonly p99: number;
}

export interface LoadResult {
  /** Completed requests. */
  readonly requests: number;
  /** The measured duration the generator reports, in seconds. */
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly latencyUs: Latency;
  /** Error counts by kind (the kinds depend on the generator), all zero in a clean run. */
  readonly errors: Readonly<Record<string, number>>;
  readonly errorCount: number;
  /** CPU time the generator itself used (utime + stime, clock ticks), null if it could not be read. */
  readonly cpuTicks: number | null;
  /** The protocol the generator reports its connections used (h2load: h2 or h2c); null when it does not say. */
  readonly negotiatedProtocol: string | null;
  /** The TLS version and cipher the generator reports; null in clear or when it does not say. */
  readonly tls: string | null;
  readonly raw: string;
}

const CHILD_TIMES_MARK = 'zproxy-bench-child-times';

/**
 * The tool runs under a small shell that, once the tool has exited, prints its own /proc stat line: its
 * cutime and cstime fields are then the tool's CPU time (the shell has waited for it, which Node cannot
 * observe itself).
 */
const WRAPPER = `"$@"; status=$?; echo "${CHILD_TIMES_MARK} $(cat /proc/$$/stat)" >&2; exit $status`;

function childTicks(stderr: string): number | null {
  const line = stderr.split('\n').find((l) => l.startsWith(CHILD_TIMES_MARK));
  if (line === undefined) return null;
  const rest = line.slice(line.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 (cutime, cstime) are rest[13] and rest[14].
  const ticks = Number(rest[13]) + Number(rest[14]);
  return Number.isFinite(ticks) ? ticks : null;
}

export interface ToolRun {
  readonly stdout: string;
  /** stderr without the wrapper's line. */
  readonly stderr: string;
  readonly cpuTicks: number | null;
}

/**
 * Runs `taskset -c <cpu> <command> <args>` and resolves with its output once it exits with status 0.
 * The run is bounded: the process group is killed `durationS + 30` seconds after the start, or when
 * `signal` aborts.
 */
export function runPinnedTool(
  command: string,
  args: readonly string[],
  cpu: number,
  durationS: number,
  signal?: AbortSignal,
): Promise<ToolRun> {
  const taskset = ['-c', String(cpu), 'sh', '-c', WRAPPER, 'sh', command, ...args];
  return new Promise((resolve, reject) => {
    // Its own process group, so that stopping it early stops the tool too, not only the shell.
    const child = spawn('taskset', taskset, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    if (signal?.aborted) killGroup();
    signal?.addEventListener('abort', killGroup);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // The tool stops itself after the duration; this guards against a hung process.
    const guard = setTimeout(killGroup, (durationS + 30) * 1000);
    const done = (): void => {
      clearTimeout(guard);
      signal?.removeEventListener('abort', killGroup);
    };
    child.once('error', (error) => {
      done();
      reject(error);
    });
    child.once('close', (code, exitSignal) => {
      done();
      const messages = stderr
        .split('\n')
        .filter((line) => !line.startsWith(CHILD_TIMES_MARK))
        .join('\n')
        .trim();
      if (code !== 0) {
        reject(
          new Error(`${command} failed (${exitSignal ?? `exit code ${code}`}): ${messages || stdout.trim()}`),
        );
        return;
      }
      resolve({ stdout, stderr: messages, cpuTicks: childTicks(stderr) });
    });
  });
}
