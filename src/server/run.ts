/**
 * `zproxy run`: starts the proxy for a validated config, either in this process (thread_count 1, or a
 * worker) or as a supervisor of worker processes. Handles SIGTERM/SIGINT with a graceful stop.
 */
import { dirname, resolve } from 'node:path';
import type { Config } from '../config/schema.ts';
import type { ConfigWarning } from '../config/warnings.ts';
import { startDemoOrigin } from '../demo/origin.ts';
import { createLogger, flushLogs, type Logger } from '../observe/logger.ts';
import { isWorkerProcess, WORKER_ENV } from '../util/worker.ts';
import { ProxyServer } from './proxy-server.ts';
import { connectionShare, REUSE_PORT_SUPPORTED, runSupervisor } from './supervisor.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RunOptions {
  /** pino level for the process logger. */
  readonly logLevel: LogLevel;
  /** The file the config came from (null for the built-in demo). */
  readonly configPath: string | null;
  /** Start the demo origin next to the proxy (the demo configuration routes to it). */
  readonly demo: boolean;
  /** Warnings about the config (src/config/warnings.ts), logged once at start (not by each worker). */
  readonly warnings?: readonly ConfigWarning[];
}

/** How often buffered log lines are written out at the latest. */
const LOG_FLUSH_INTERVAL_MS = 1000;

function flushLogger(logger: Logger): void {
  logger.flush();
}

export async function run(config: Config, options: RunOptions): Promise<void> {
  const worker = isWorkerProcess();
  const workerId = Number(process.env[WORKER_ENV]);
  const logger = createLogger(options.logLevel, worker ? { worker: workerId } : {});
  // The log destination buffers until 4 KiB: flush it now and then so that lines are seen while they matter.
  setInterval(flushLogger, LOG_FLUSH_INTERVAL_MS, logger).unref();
  // Workers load the same file: only the supervisor (or the single process) reports its warnings.
  if (!worker) {
    for (const { code, path, message } of options.warnings ?? []) logger.warn({ code, path }, message);
  }

  if (!worker && options.demo) {
    await startDemoOrigin();
    logger.info({ url: 'http://127.0.0.1:8001' }, 'demo origin listening');
  }

  if (!worker && config.thread_count > 1) {
    await runSupervisor(config, logger, () => {
      logger.info('stopped');
      flushLogs();
      process.exit(0);
    });
    logger.flush();
    return;
  }

  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    flushLogs();
    process.exit(1);
  });

  const server = new ProxyServer(config, {
    logger,
    reusePort: worker && REUSE_PORT_SUPPORTED,
    // max_connections bounds the instance: a worker holds its share.
    maxConnections: worker
      ? connectionShare(config.max_connections, workerId, config.thread_count)
      : config.max_connections,
    // Relative paths in filter configs (user filter modules) are the config file's.
    baseDir: options.configPath === null ? process.cwd() : dirname(resolve(options.configPath)),
  });
  await server.start();
  logger.flush();
  if (worker) process.send?.({ type: 'listening' });

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, connections: server.connectionCount }, 'stopping');
    void server.stop().then(() => {
      logger.info('stopped');
      flushLogs();
      process.exit(0);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (worker) {
    // The supervisor is gone (crashed or killed): a worker must not go on serving on its own.
    process.on('disconnect', () => {
      logger.warn('supervisor disconnected');
      stop('SIGTERM');
    });
  }
}
