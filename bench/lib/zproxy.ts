// zproxy for the bench: build dist/ when it is stale, then run the CLI pinned to one CPU.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PinnedProcess, processTree } from './proc.ts';

/** The Node 24 binary: this process's when it is Node >= 24 (npm run bench), else the pinned one. */
export function nodeBinary(root: string): string {
  if (Number(process.versions.node.split('.')[0]) >= 24) return process.execPath;
  const pinned = join(root, 'node_modules', '.bin', 'node');
  if (existsSync(pinned)) return pinned;
  throw new Error(
    'Node 24 not found: run `npm ci` (node is pinned as a dev dependency) and use `npm run bench`',
  );
}

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` when dist/cli/main.js is missing or older than a file in src/. */
export function ensureBuilt(root: string): void {
  const main = join(root, 'dist', 'cli', 'main.js');
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtimeMs(join(root, 'src'))) return;
  console.error('bench: dist/ is missing or older than src/: running `npm run build`');
  const result = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0 || !existsSync(main)) {
    throw new Error('`npm run build` failed, so zproxy cannot be measured (see the compiler output above)');
  }
}

/** The TLS listener zproxy adds for the HTTP/2 scenarios. */
export interface ZproxyTlsListener {
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * The bench's zproxy configuration: one worker, no access log, everything to the origin, at most
 * `idleUpstreamConnections` idle upstream connections (nginx's `keepalive`). With `tls`, HTTP/2 is enabled
 * and a second listener accepts TLS (ALPN h2 or http/1.1, and plain HTTP/1.1 or h2c on the same port); the
 * first listener stays plain, so the HTTP/1.1 scenarios take the same path as without it. With
 * `wsOriginPort`, a route `/ws` goes to the WebSocket echo server and `protocols` names `websocket`
 * explicitly; without it the configuration is exactly what the HTTP scenarios have always measured.
 */
export function zproxyConfig(
  port: number,
  originPort: number,
  idleUpstreamConnections: number,
  tls: ZproxyTlsListener | null = null,
  wsOriginPort: number | null = null,
): object {
  const routes: object[] = [{ path: '/', upstream: `http://127.0.0.1:${originPort}` }];
  if (wsOriginPort !== null) routes.push({ path: '/ws', upstream: `http://127.0.0.1:${wsOriginPort}` });
  const common = {
    thread_count: 1,
    access_log: { enabled: false },
    upstream_defaults: { max_idle_per_target: idleUpstreamConnections },
    routes,
  };
  if (tls === null) {
    if (wsOriginPort === null) return { host: '127.0.0.1', port, ...common };
    // The default list, spelled out: the plain listener serves exactly what it serves without the route.
    return { host: '127.0.0.1', port, protocols: ['http1', 'http2', 'websocket'], ...common };
  }
  return {
    listeners: [
      { host: '127.0.0.1', port },
      {
        host: '127.0.0.1',
        port: tls.port,
        // Plain HTTP/1.1 and h2c on the TLS port too (the preflight checks one port serves all three).
        tls: { enabled: true, cert_file: tls.certFile, key_file: tls.keyFile, plain_http: 'serve' },
      },
    ],
    protocols: wsOriginPort === null ? ['http1', 'http2'] : ['http1', 'http2', 'websocket'],
    ...common,
  };
}

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

/** A running zproxy (`node <shebang flags> dist/cli/main.js run <config>`). */
export class ZproxyInstance {
  readonly process: PinnedProcess;
  readonly port: number;
  /** The TLS listener's port, null without one. */
  readonly tlsPort: number | null;
  /** True when the configuration has the WebSocket route `/ws` (on the plain listener's port). */
  readonly websocket: boolean;

  private constructor(process: PinnedProcess, port: number, tlsPort: number | null, websocket: boolean) {
    this.process = process;
    this.port = port;
    this.tlsPort = tlsPort;
    this.websocket = websocket;
  }

  static async start(
    root: string,
    dir: string,
    config: {
      port: number;
      originPort: number;
      idleUpstreamConnections: number;
      tls: ZproxyTlsListener | null;
      /** The WebSocket echo server's port (a `/ws` route to it), null when no WebSocket scenario runs. */
      wsOriginPort: number | null;
    },
    cpu: number,
  ): Promise<ZproxyInstance> {
    const { port, tls } = config;
    const configFile = join(dir, 'zproxy.json');
    const json = zproxyConfig(
      port,
      config.originPort,
      config.idleUpstreamConnections,
      tls,
      config.wsOriginPort,
    );
    writeFileSync(configFile, `${JSON.stringify(json, null, 2)}\n`);
    const main = join(root, 'dist', 'cli', 'main.js');
    // Run it the way the `zproxy` bin does: with the Node flags its shebang names.
    const args = [...shebangNodeFlags(main), main, 'run', configFile];
    const process = new PinnedProcess('zproxy', cpu, nodeBinary(root), args, join(dir, 'zproxy.log'));
    try {
      await process.waitForPort(port, 15_000);
      if (tls !== null) await process.waitForPort(tls.port, 5_000);
    } catch (error) {
      await process.stop();
      throw new Error(
        `zproxy failed to start: ${(error as Error).message}\n--- zproxy output ---\n${process.logTail()}`,
      );
    }
    return new ZproxyInstance(process, port, tls?.port ?? null, config.wsOriginPort !== null);
  }

  /** The node process and any workers it started. */
  pids(): number[] {
    return processTree(this.process.pid);
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}
