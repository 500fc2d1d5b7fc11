/**
 * The proxies `zproxy compare` measures, one driver each (zproxy.ts, nginx.ts, haproxy.ts, caddy.ts,
 * envoy.ts): where its binary is, how it is configured from the plan, started pinned to the proxy CPU and
 * which processes count. A proxy whose binary is not on the PATH is reported missing and skipped.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { ProxyPlan } from './plan.ts';
import { freePort, type PinnedProcess } from './proc.ts';
import type { LoadProtocol } from './scenarios.ts';

export const PROXY_NAMES = ['zproxy', 'nginx', 'haproxy', 'caddy', 'envoy'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

/** The listeners a proxy opens for the scenarios that run. */
export interface ListenerNeeds {
  readonly h2c: boolean;
  /** The certificate for HTTP/2 over TLS, or null when no TLS scenario runs. */
  readonly tls: CertificateFiles | null;
}

/**
 * The ports of a proxy that serves HTTP/1.1 and WebSocket on one port, h2c on that port too or
 * (`h2cOwnPort`) on one of its own when a scenario needs it, and HTTP/2 over TLS on another.
 */
export async function listenerPorts(
  needs: ListenerNeeds,
  h2cOwnPort: boolean,
): Promise<Partial<Record<LoadProtocol, number>>> {
  const http1 = await freePort();
  const ports: Partial<Record<LoadProtocol, number>> = { http1, ws: http1 };
  if (!h2cOwnPort) ports.h2c = http1;
  else if (needs.h2c) ports.h2c = await freePort();
  if (needs.tls !== null) ports.h2 = await freePort();
  return ports;
}

export interface CertificateFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** certificate and key in one file (HAProxy's `crt`). */
  readonly pemFile: string;
}

export interface StartContext {
  /** The proxy's own directory for its configuration, logs and state. */
  readonly dir: string;
  /** The binary's absolute path. */
  readonly binary: string;
  readonly plan: ProxyPlan;
  readonly cpu: number;
  readonly needs: ListenerNeeds;
  /** zproxy only: the Node binary and the CLI entry (dist/cli/main.js, or src/cli/main.ts in a checkout). */
  readonly node: string;
  readonly zproxyMain: string;
}

export interface RunningProxy {
  /** The port for each protocol it serves in this run. */
  readonly ports: Partial<Record<LoadProtocol, number>>;
  readonly process: PinnedProcess;
  /** The processes whose CPU time and memory count (master and workers). */
  pids(): number[];
  stop(): Promise<void>;
}

export interface ProxyDriver {
  readonly name: ProxyName;
  /** The command looked up on the PATH. */
  readonly command: string;
  /** Why the proxy cannot run a scenario of this plan (null: it can). */
  unsupported(protocol: LoadProtocol, filterChain: boolean): string | null;
  /** The version line its binary reports. */
  version(binary: string): string;
  start(context: StartContext): Promise<RunningProxy>;
}

/** The absolute path of `command` on the PATH, or null. */
export function findOnPath(command: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** The first line of a command's output (stdout or stderr), for version reports. */
export function firstLine(text: string): string {
  return text.trim().split('\n', 1)[0]?.trim() ?? '';
}
