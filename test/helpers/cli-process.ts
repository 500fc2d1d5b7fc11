/**
 * startCli(config): the real `zproxy run CONFIG` command in a child process (this Node binary running
 * src/cli/main.ts), with the config written to a temporary file. Its stdout JSON log lines are parsed as
 * they arrive; `waitForLog()` waits for one. `cleanup()` kills the process and every worker it logged (by
 * PID) if they are still alive, and removes the temporary directory.
 * startCommand(): the same for any command line that writes zproxy's log lines (the demo, an installed bin).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));

export type LogLine = Record<string, unknown>;

export interface CliProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Every JSON line written to stdout so far. */
  readonly logs: LogLine[];
  /** stdout lines that are not JSON, and everything written to stderr. */
  readonly otherOutput: string[];
  /** Resolves with the exit code and signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first log line (already written or still to come) matching `match`. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** Worker PIDs named in `worker started` lines. */
  workerPids(): number[];
  cleanup(): Promise<void>;
}

/** `zproxy run CONFIG` started by startCli. */
export interface CliRun extends CliProcess {
  /** The config file the process runs (rewrite it, then SIGHUP, to reload). */
  readonly configFile: string;
}

/**
 * True when a process with this PID exists and has not exited (signal 0 probes without sending; on Linux
 * a zombie, exited but not yet reaped by its new parent, counts as gone).
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return process.platform !== 'linux';
  }
}

/** `nodeFlags` go before the CLI's script (V8 flags such as --max-old-space-size). */
export function startCli(
  config: Record<string, unknown>,
  extraArgs: string[] = [],
  nodeFlags: string[] = [],
): CliRun {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-cli-'));
  const file = join(dir, 'zproxy.json');
  writeFileSync(file, JSON.stringify(config, null, 2));
  // Without the bin's own V8 flags (src/cli/v8-flags.ts, which the bin now applies however it is
  // started), unless given in nodeFlags: the tests that use this helper were written on Node's defaults,
  // as they ran before. rolling-restart.test.ts passes the flags (as zproxy runs in production).
  const cli = startCommand(
    process.execPath,
    [...nodeFlags, CLI_MAIN, 'run', file, ...extraArgs],
    REPO,
    () => rmSync(dir, { recursive: true, force: true }),
    { ZPROXY_V8_FLAGS: 'off' },
  );
  return { ...cli, configFile: file };
}

/**
 * Any command that writes zproxy's JSON log lines (`zproxy run` from source, an installed `zproxy`
 * bin, ...), started in `cwd`; `removeFiles` runs at cleanup.
 */
export function startCommand(
  command: string,
  args: readonly string[],
  cwd: string,
  removeFiles: () => void = () => {},
  extraEnv: Record<string, string> = {},
): CliProcess {
  const env = { ...process.env, ...extraEnv };
  delete env.NODE_TEST_CONTEXT;
  delete env.ZPROXY_WORKER_ID;
  const child = spawn(command, args, {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${command}`);
  const pid = child.pid;
  const logs: LogLine[] = [];
  const otherOutput: string[] = [];
  const listeners = new Set<() => void>();
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        otherOutput.push(line);
      }
    }
    for (const l of [...listeners]) l();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (text: string) => otherOutput.push(text));
  let hasExited = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => {
      hasExited = true;
      resolve({ code, signal });
      for (const l of [...listeners]) l();
    });
  });

  const workerPids = (): number[] =>
    logs
      .filter((l) => l.msg === 'worker started' && typeof l.worker_pid === 'number')
      .map((l) => l.worker_pid as number);

  const waitForLog = (
    match: (line: LogLine) => boolean,
    timeoutMs = 10_000,
    what = 'a log line',
  ): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match);
        if (found !== undefined) {
          done();
          resolve(found);
        } else if (hasExited) {
          done();
          reject(new Error(`zproxy exited before ${what}; output: ${otherOutput.join('\n')}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output: ${otherOutput.join('\n')}`),
        );
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        listeners.delete(check);
      };
      listeners.add(check);
      check();
    });

  const cleanup = async (): Promise<void> => {
    if (!hasExited) {
      child.kill('SIGKILL');
      await exited;
    }
    for (const wpid of workerPids()) {
      if (pidAlive(wpid)) {
        try {
          process.kill(wpid, 'SIGKILL');
        } catch {
          // gone in the meantime
        }
      }
    }
    removeFiles();
  };

  return { child, pid, logs, otherOutput, exited, waitForLog, workerPids, cleanup };
}
