/**
 * `zproxy health [CONFIG]`: a liveness check of the zproxy that runs CONFIG, for a container's
 * HEALTHCHECK or a supervisor: GET /healthz at the admin listener the config names (with its bearer
 * token), or, for a config without an admin listener, a TCP connection to its first listener. Exit 0 when
 * it answers, 1 otherwise (said on stderr).
 */

import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { parseJsonText } from '../config/json-text.ts';
import { adminAddress, connectHost } from './admin-client.ts';
import type { Output } from './commands.ts';

const TIMEOUT_MS = 3000;

function getHealthz(host: string, port: number, token: string | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({
      host,
      port,
      path: '/healthz',
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      timeout: TIMEOUT_MS,
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
  });
}

function connects(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, timeout: TIMEOUT_MS });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => socket.destroy(new Error(`no connection within ${TIMEOUT_MS} ms`)));
    socket.once('error', reject);
  });
}

/** The first listener of a config file as written (`listeners[0]`, else `host` and `port`). */
function firstListener(path: string): { host: string; port: number } {
  const parsed = parseJsonText(readFileSync(path, 'utf8'));
  const config = (parsed.ok ? parsed.value : {}) as {
    host?: string;
    port?: number;
    listeners?: { host?: string; port?: number }[];
  };
  const first = config.listeners?.[0];
  return {
    host: first?.host ?? config.host ?? '0.0.0.0',
    port: first?.port ?? config.port ?? 8000,
  };
}

export async function healthCommand(path: string, output: Output): Promise<number> {
  const admin = adminAddress(path);
  if (typeof admin === 'string') {
    output.err(`zproxy: ${admin}\n`);
    return 1;
  }
  try {
    if (admin === null) {
      const listener = firstListener(path);
      await connects(connectHost(listener.host), listener.port);
      output.out(`ok: ${listener.host}:${listener.port} accepts connections (no admin listener to ask)\n`);
      return 0;
    }
    const status = await getHealthz(connectHost(admin.host), admin.port, admin.token);
    if (status === 200) {
      output.out(`ok: ${admin.host}:${admin.port}/healthz answered 200\n`);
      return 0;
    }
    output.err(`zproxy: ${admin.host}:${admin.port}/healthz answered ${status}\n`);
    return 1;
  } catch (error) {
    output.err(`zproxy: not healthy: ${(error as Error).message}\n`);
    return 1;
  }
}
