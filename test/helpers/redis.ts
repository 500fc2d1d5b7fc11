/**
 * A real redis-server for tests: started on a free loopback port with its own temporary directory, no
 * persistence, and stopped by PID afterwards. A missing redis-server is an error (install Debian's
 * `redis-server`; `.ci/run` does), never a skip.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './upstream.ts';

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  readonly pid: number;
  readonly process: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL after 3 s) and removes its directory. */
  stop(): Promise<void>;
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(500);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString();
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(data.startsWith('+PONG'));
      }
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(false));
  });
}

export async function startRedis(): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-redis-'));
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const failed = await Promise.race([spawnError, new Promise<null>((r) => setTimeout(r, 50, null))]);
    if (failed !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`cannot start redis-server (apt-get install redis-server): ${failed.message}`);
    }
    if (child.exitCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server exited with ${child.exitCode}: ${output}`);
    }
    if (await ping(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server did not answer on port ${port}: ${output}`);
    }
  }
  const pid = child.pid as number;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid,
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        process.kill(pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (child.exitCode === null) process.kill(pid, 'SIGKILL');
        }, 3000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
