// Process helpers for `zproxy compare` and the bench groups: CPU time and peak memory from /proc, free
// ports, port waits, and pinned child processes that are stopped by PID (never by name).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/** Kernel clock ticks per second (USER_HZ) as `getconf CLK_TCK` reports it; 100 when unknown. */
export function clockTicksPerSecond(): number {
  const result = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const value = Number(result.stdout?.trim());
  return Number.isInteger(value) && value > 0 ? value : 100;
}

export interface ProcStat {
  readonly pid: number;
  readonly ppid: number;
  readonly state: string;
  /** utime + stime, in clock ticks. */
  readonly cpuTicks: number;
}

/** Reads /proc/<pid>/stat; null when the process is gone. */
export function readStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  return {
    pid,
    state: rest[0]!,
    ppid: Number(rest[1]),
    cpuTicks: Number(rest[11]) + Number(rest[12]),
  };
}

/** The process and all its live descendants (found by scanning /proc for parent ids). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat === null) continue;
    const list = children.get(stat.ppid);
    if (list === undefined) children.set(stat.ppid, [pid]);
    else list.push(pid);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (readStat(pid) === null) continue;
    out.push(pid);
    for (const child of children.get(pid) ?? []) queue.push(child);
  }
  return out;
}

/** Sum of utime + stime over the given processes, in clock ticks. */
export function cpuTicks(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) total += readStat(pid)?.cpuTicks ?? 0;
  return total;
}

/**
 * CPU time (utime + stime, in clock ticks) of this process's children that have exited and been waited
 * for (cutime + cstime in /proc/self/stat): a child's whole CPU time, read after it ends.
 */
export function reapedChildrenCpuTicks(): number {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return Number(rest[13]) + Number(rest[14]);
}

/** Peak resident set size (VmHWM) of one process in KiB; null when unavailable. */
export function peakRssKiB(pid: number): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

/**
 * Resets a process's peak RSS (VmHWM) to its current RSS by writing 5 to /proc/<pid>/clear_refs (Linux
 * >= 4.0). False when that is not allowed or the process is gone.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** A child process pinned to one CPU, with its output in a log file. */
export class PinnedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  exitDescription: string | null = null;

  constructor(
    name: string,
    cpu: number,
    command: string,
    args: readonly string[],
    logFile: string,
    env?: NodeJS.ProcessEnv,
  ) {
    this.name = name;
    this.logFile = logFile;
    const fd = openSync(logFile, 'a');
    // taskset execs the command, so the child's PID is the command's PID.
    this.child = spawn('taskset', ['-c', String(cpu), command, ...args], {
      stdio: ['ignore', fd, fd],
      env: env ?? process.env,
    });
    closeSync(fd);
    if (this.child.pid === undefined) throw new Error(`${name}: could not spawn ${command}`);
    this.pid = this.child.pid;
    this.child.once('exit', (code, signal) => {
      this.exitDescription = signal === null ? `exit code ${code}` : `signal ${signal}`;
    });
  }

  get alive(): boolean {
    return this.exitDescription === null;
  }

  /** Log tail for error messages. */
  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Resolves once 127.0.0.1:port accepts connections; throws if the process exits or time runs out. */
  async waitForPort(port: number, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) {
        throw new Error(`${this.name} exited (${this.exitDescription}) before listening on ${port}`);
      }
      if (await tryConnect(port)) return;
      await sleep(100);
    }
    throw new Error(`${this.name} did not accept connections on 127.0.0.1:${port} within ${timeoutMs} ms`);
  }

  /** SIGTERM, then SIGKILL for the whole tree (by PID) if it has not gone within the grace period. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.alive) await stopProcessTree(this.child, () => this.alive, graceMs);
  }
}

/**
 * Stops a child this process started: SIGTERM, and after `graceMs` SIGKILL for it and every descendant
 * still alive, by PID (never by name). `alive` says whether the child has not exited yet.
 */
export async function stopProcessTree(
  child: ChildProcess,
  alive: () => boolean,
  graceMs: number,
): Promise<void> {
  const tree = processTree(child.pid!);
  const exited = new Promise<void>((resolve) => {
    if (!alive()) resolve();
    else child.once('exit', () => resolve());
  });
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(graceMs)]);
  for (const pid of tree) {
    if (readStat(pid) === null) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (alive()) await Promise.race([exited, sleep(1000)]);
}

export interface CpuTimes {
  /** user + nice + system: time spent running processes, comparable to their utime + stime. */
  readonly busy: number;
  /** Time the hypervisor ran something else. */
  readonly steal: number;
}

/** Per-CPU times from /proc/stat, in clock ticks, by CPU number. */
export function readCpuTimes(): Map<number, CpuTimes> {
  const times = new Map<number, CpuTimes>();
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const match = /^cpu(\d+) (.*)$/.exec(line);
    if (match === null) continue;
    const fields = match[2]!.trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user)
    times.set(Number(match[1]), { busy: fields[0]! + fields[1]! + fields[2]!, steal: fields[7] ?? 0 });
  }
  return times;
}
