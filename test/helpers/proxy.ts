/**
 * startProxy(): a real zproxy ProxyServer on 127.0.0.1 port 0, in the test process, with its log lines
 * captured in memory. Every helper cleans up after itself through the returned `close`.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { ProxyServer } from '../../src/server/proxy-server.ts';

export interface StartedProxy {
  readonly server: ProxyServer;
  readonly config: Config;
  readonly port: number;
  /** The port of every listener, in config order (`port` is the first). */
  readonly ports: number[];
  /** 'http://127.0.0.1:PORT' */
  readonly url: string;
  /** Every JSON log line written so far (process log and access log). */
  readonly logs: Record<string, unknown>[];
  /** Access log records only. */
  accessLogs(): Record<string, unknown>[];
  /** Graceful stop (grace in ms, default 2000). */
  close(graceMs?: number): Promise<void>;
}

/**
 * `config` is a zproxy config object (seed format); host/port default to 127.0.0.1:0, thread_count to 1.
 * Routes are required, like in a real config.
 */
export async function startProxy(config: Record<string, unknown>): Promise<StartedProxy> {
  const parsed = parseConfig({ host: '127.0.0.1', port: 0, thread_count: 1, ...config });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  const logger = pino({ level: 'info' }, sink);
  const server = new ProxyServer(parsed, { logger });
  const addresses = await server.start();
  const port = addresses[0]!.port;
  return {
    server,
    config: parsed,
    port,
    ports: addresses.map((a) => a.port),
    url: `http://127.0.0.1:${port}`,
    logs,
    accessLogs: () => logs.filter((l) => l.kind === 'access'),
    close: (graceMs = 2000) => server.stop(graceMs),
  };
}
