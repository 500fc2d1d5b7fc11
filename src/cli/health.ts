/**
 * `zproxy health [CONFIG]`: a liveness check of the zproxy that runs CONFIG, for a container's
 * HEALTHCHECK or a supervisor: GET /healthz at the admin listener the config names (with its bearer
 * token), or, for a config without an admin listener, a TCP connection to its first listener. Exit 0 when
 * it answers, 1 otherwise (said on stderr).
 */

import http from 'node:http';
import net from 'node:net';
import { connectHost, instanceAddresses } from './admin-client.ts';
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

export async function healthCommand(path: string, output: Output): Promise<number> {
  const addresses = instanceAddresses(path);
  if (typeof addresses === 'string') {
    output.err(`zproxy: ${addresses}\n`);
    return 1;
  }
  const admin = addresses.admin;
  try {
    if (admin === null) {
      const listener = addresses.listener;
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
