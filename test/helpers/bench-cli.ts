/**
 * For the tests of `zproxy bench` (and `zproxy compare`): the real CLI in a child process (the servers live in the test's
 * process), servers on 127.0.0.1 port 0 whose sockets are destroyed when they close, and the check that a
 * bench's counts agree with what its server counted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type http from 'node:http';
import type http2 from 'node:http2';
import type net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchReport } from '../../src/bench/report.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI = join(ROOT, 'src/cli/main.ts');
export const BUILT_CLI = join(ROOT, 'dist/cli/main.js');

export interface CliResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI asynchronously (the servers live in this process); killed after `timeoutMs`. */
export function zproxy(
  args: readonly string[],
  cli = CLI,
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 30_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (t: string) => {
      stdout += t;
    });
    child.stderr.setEncoding('utf8').on('data', (t: string) => {
      stderr += t;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** `zproxy bench --json ARGS`, which must exit 0; its report. */
export async function bench(args: string[], cli = CLI): Promise<BenchReport> {
  const result = await zproxy(['bench', '--json', ...args], cli);
  assert.equal(result.status, 0, `exit ${result.status}\n${result.stderr}\n${result.stdout}`);
  return JSON.parse(result.stdout) as BenchReport;
}

/** Lets the server see the bench's connections close. */
export const settle = (ms = 150): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The TCP sockets each server accepted, destroyed when it closes (whatever protocol ran on them). */
const accepted = new WeakMap<net.Server, Set<net.Socket>>();

export function listen(server: net.Server | http.Server | http2.Http2Server): Promise<number> {
  const sockets = new Set<net.Socket>();
  accepted.set(server, sockets);
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

export function close(server: net.Server | http.Server | http2.Http2Server): Promise<void> {
  const done = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const socket of accepted.get(server) ?? []) socket.destroy();
  return done;
}

/** The bench counted only what the server served, and missed at most what was in flight at the stop. */
export function assertConsistent(report: BenchReport, served: number): void {
  assert.ok(report.requests > 0, 'some requests completed');
  assert.ok(
    served >= report.requests && served <= report.requests + report.in_flight_at_stop,
    `server served ${served}; bench counted ${report.requests} with ${report.in_flight_at_stop} in flight at the stop`,
  );
}
