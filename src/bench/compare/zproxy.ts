/**
 * zproxy in a comparison: the generated configuration from the plan (or the user's file, rewritten), run
 * as the `zproxy` bin runs (with the Node flags its shebang names), pinned to the proxy CPU.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { PlanRoute, ProxyPlan } from './plan.ts';
import { freePort, PinnedProcess, processTree } from './proc.ts';
import {
  type CertificateFiles,
  firstLine,
  type ProxyDriver,
  type RunningProxy,
  type StartContext,
} from './proxies.ts';
import { FILTER_API_KEY, FILTER_ORIGIN, type LoadProtocol } from './scenarios.ts';

/** The Node flags after `node` in a `#!/usr/bin/env -S node ...` shebang. */
export function shebangNodeFlags(file: string): string[] {
  const first = readFileSync(file, 'utf8').split('\n', 1)[0]!;
  const m = /^#!\S*env(?: -S)? node(.*)$/.exec(first);
  return m === null
    ? []
    : m[1]!
        .trim()
        .split(/\s+/)
        .filter((f) => f !== '');
}

function routeConfig(route: PlanRoute): object {
  return {
    path: route.pathPrefix,
    ...(route.host === null ? {} : { host: route.host }),
    upstream: route.targets.map((t) => `http://${t.host}:${t.port}`),
    ...(route.filterChain
      ? {
          middlewares: [
            { type: 'cors', config: { allowed_origins: [FILTER_ORIGIN], allow_credentials: true } },
            { type: 'auth', config: { api_keys: [FILTER_API_KEY] } },
          ],
        }
      : {}),
  };
}

/**
 * The generated configuration: one thread, no access log, the plan's routes, at most `idleUpstream` idle
 * upstream connections (nginx's `keepalive`); HTTP/1.1, h2c and WebSocket on the plain listener, and with
 * a certificate a TLS listener (ALPN h2 or http/1.1).
 */
export function zproxyConfig(
  plan: ProxyPlan,
  port: number,
  tls: { port: number; cert: CertificateFiles } | null,
): object {
  const listeners: object[] = [{ host: '127.0.0.1', port }];
  if (tls !== null) {
    listeners.push({
      host: '127.0.0.1',
      port: tls.port,
      tls: { enabled: true, cert_file: tls.cert.certFile, key_file: tls.cert.keyFile },
    });
  }
  return {
    listeners,
    protocols: ['http1', 'http2', 'websocket'],
    thread_count: 1,
    access_log: { enabled: false },
    upstream_defaults: { max_idle_per_target: plan.idleUpstream },
    routes: plan.routes.map(routeConfig),
  };
}

export const zproxyDriver: ProxyDriver = {
  name: 'zproxy',
  command: 'zproxy',
  unsupported: () => null,
  version(binary) {
    const result = spawnSync(process.execPath, [binary, '--version'], { encoding: 'utf8' });
    return `zproxy ${firstLine(result.stdout ?? '')}`;
  },
  async start(context: StartContext): Promise<RunningProxy> {
    const { dir, plan, needs } = context;
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const ports: Partial<Record<LoadProtocol, number>> = { http1: port, h2c: port, ws: port };
    let config: object;
    if (plan.zproxyConfig !== null) config = plan.zproxyConfig(port);
    else {
      const tlsPort = needs.tls === null ? null : await freePort();
      if (tlsPort !== null) ports.h2 = tlsPort;
      config = zproxyConfig(plan, port, tlsPort === null ? null : { port: tlsPort, cert: needs.tls! });
    }
    const configFile = join(dir, 'zproxy.json');
    writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
    // Run the way the `zproxy` bin runs: with the Node flags its shebang names.
    const args = [...shebangNodeFlags(context.zproxyMain), context.zproxyMain, 'run', configFile];
    const process = new PinnedProcess('zproxy', context.cpu, context.node, args, join(dir, 'zproxy.log'));
    try {
      for (const p of new Set(Object.values(ports))) await process.waitForPort(p, 15_000);
    } catch (error) {
      await process.stop();
      throw new Error(
        `zproxy failed to start: ${(error as Error).message}\n--- zproxy output ---\n${process.logTail()}`,
      );
    }
    return { ports, process, pids: () => processTree(process.pid), stop: () => process.stop() };
  },
};
