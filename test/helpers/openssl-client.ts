/**
 * The real `openssl s_client`, spawned with a pipe on its stdin so that a test can type what a person
 * would: HTTP requests, and the interactive commands s_client reads at the start of a line (`R`
 * renegotiates the TLS 1.2 session). Its output is collected as it arrives. Every wait has a timeout, and
 * `close()` kills the process by its PID when it is still running. A missing `openssl` fails the test
 * that asks for it (CI installs it), it is never skipped.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

/** Fails with a clear message when the openssl command is not installed. */
export function requireOpenssl(): void {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  assert.ok(
    probe.status === 0,
    `the openssl command is missing (${probe.error?.message ?? probe.stderr}): install Debian's openssl (.ci/run does)`,
  );
}

/** Never let a stuck s_client outlive its test by more than this. */
const HARD_LIMIT_MS = 30_000;

export class SClient {
  readonly child: ChildProcess;
  readonly pid: number;
  stdout = '';
  stderr = '';
  /** Set once the process has exited. */
  exitCode: number | null = null;
  exited = false;
  private readonly waiters = new Set<() => void>();
  private readonly hardLimit: NodeJS.Timeout;

  /** `args` follow `s_client`, e.g. ['-tls1_2', '-connect', '127.0.0.1:8443', '-alpn', 'h2']. */
  constructor(args: string[]) {
    requireOpenssl();
    this.child = spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) throw new Error('could not spawn openssl s_client');
    this.pid = this.child.pid;
    this.child.stdin!.on('error', () => {}); // EPIPE once s_client has gone
    this.child.stdout!.setEncoding('latin1');
    this.child.stdout!.on('data', (text: string) => {
      this.stdout += text;
      this.notify();
    });
    this.child.stderr!.setEncoding('latin1');
    this.child.stderr!.on('data', (text: string) => {
      this.stderr += text;
      this.notify();
    });
    this.child.on('exit', (code) => {
      this.exited = true;
      this.exitCode = code;
      clearTimeout(this.hardLimit);
      this.notify();
    });
    this.hardLimit = setTimeout(() => this.close(), HARD_LIMIT_MS);
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** Resolves true as soon as `check()` holds, false after `timeoutMs`. */
  private until(check: () => boolean, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (result: boolean): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(result);
      };
      const waiter = (): void => {
        if (check()) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      this.waiters.add(waiter);
      waiter();
    });
  }

  /** Waits until stdout matches `pattern`; fails (with what was printed) when it does not in time. */
  async waitForOutput(pattern: RegExp, timeoutMs = 5000, what = String(pattern)): Promise<void> {
    const found = await this.until(() => pattern.test(this.stdout), timeoutMs);
    assert.ok(found, `s_client did not print ${what} within ${timeoutMs} ms.\n${this.transcript()}`);
  }

  /** True when the process exited within `timeoutMs`. */
  waitForExit(timeoutMs: number): Promise<boolean> {
    return this.until(() => this.exited, timeoutMs);
  }

  /** Types `text` into s_client (one write, so that a command letter stays at the start of a read). */
  write(text: string): void {
    this.child.stdin!.write(text);
  }

  /** What s_client printed, for assertion messages. */
  transcript(): string {
    return `--- stdout ---\n${this.stdout.slice(-2000)}\n--- stderr ---\n${this.stderr.slice(-2000)}`;
  }

  close(): void {
    clearTimeout(this.hardLimit);
    if (!this.exited) {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // exited in the meantime
      }
    }
  }
}
