/**
 * External servers for the differential harness (nginx, HAProxy): spawned with their own config file in
 * a temporary directory, waited for on their 127.0.0.1 ports, and stopped by PID (the process, then any
 * descendant still alive), never by name.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { stopProcessTree } from '../../src/bench/compare/proc.ts';

export const NGINX_BIN = '/usr/sbin/nginx';
export const HAPROXY_BIN = '/usr/sbin/haproxy';

export function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first line a binary prints for its version flag (nginx and HAProxy print it on stderr/stdout). */
export function versionLine(bin: string, flag: string): string {
  const r = spawnSync(bin, [flag], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]!.trim();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(500);
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

/** A server process with its output in a log file. */
export class ServerProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  exit: string | null = null;

  constructor(name: string, bin: string, args: readonly string[], logFile: string) {
    this.name = name;
    this.logFile = logFile;
    const fd = openSync(logFile, 'a');
    this.child = spawn(bin, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    if (this.child.pid === undefined) throw new Error(`${name}: could not spawn ${bin}`);
    this.pid = this.child.pid;
    this.child.once('exit', (code, signal) => {
      this.exit = signal === null ? `exit code ${code}` : `signal ${signal}`;
    });
    this.child.once('error', (error) => {
      this.exit = `spawn error: ${error.message}`;
    });
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Resolves when every port accepts connections; throws (with the log tail) when it exits or times out. */
  async waitForPorts(ports: readonly number[], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const port of ports) {
      for (;;) {
        if (this.exit !== null) {
          throw new Error(`${this.name} exited (${this.exit}) before listening:\n${this.logTail()}`);
        }
        if (await canConnect(port)) break;
        if (Date.now() > deadline) {
          throw new Error(`${this.name} did not listen on 127.0.0.1:${port} in time:\n${this.logTail()}`);
        }
        await sleep(50);
      }
    }
  }

  /** SIGTERM; after the grace period SIGKILL for the process and its descendants, by PID. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exit === null) await stopProcessTree(this.child, () => this.exit === null, graceMs);
  }
}
