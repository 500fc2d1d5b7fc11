// An instance of `thread_count` workers as worker threads of one process, for the worker-model measurement
// (bench/worker-model.ts): `node bench/lib/thread-instance.ts CONFIG N`. Each thread runs the compiled
// ProxyServer (dist/) bound with SO_REUSEPORT, as a worker process of `zproxy run` does; the main thread
// starts them, restarts one that ends (an uncaught exception, an out-of-memory), and on SIGTERM asks each
// to stop gracefully. It logs one JSON line per event on stderr (worker started / exited, ready).
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { loadConfigFile as LoadConfigFile } from '../../src/config/load.ts';
import type { createLogger as CreateLogger } from '../../src/observe/logger.ts';
import type { ProxyServer as ProxyServerClass } from '../../src/server/proxy-server.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function event(fields: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: Date.now(), ...fields })}\n`);
}

async function dist<T>(path: string): Promise<T> {
  return (await import(pathToFileURL(join(ROOT, 'dist', path)).href)) as T;
}

interface WorkerInput {
  readonly configPath: string;
  readonly id: number;
  readonly count: number;
}

async function runWorker(input: WorkerInput): Promise<void> {
  const { loadConfigFile } = await dist<{ loadConfigFile: typeof LoadConfigFile }>('config/load.js');
  const { createLogger } = await dist<{ createLogger: typeof CreateLogger }>('observe/logger.js');
  const { ProxyServer } = await dist<{ ProxyServer: typeof ProxyServerClass }>('server/proxy-server.js');
  const config = loadConfigFile(input.configPath);
  const server = new ProxyServer(config, {
    logger: createLogger('warn', { worker: input.id }),
    reusePort: true,
    maxConnections: Math.floor(config.max_connections / input.count),
    baseDir: dirname(resolve(input.configPath)),
  });
  await server.start();
  parentPort!.postMessage('listening');
  parentPort!.on('message', (message) => {
    if (message === 'stop') void server.stop().then(() => process.exit(0));
  });
}

function runMain(configPath: string, count: number): void {
  const workers = new Map<number, Worker>();
  let stopping = false;
  let listening = 0;
  const start = (id: number): void => {
    const worker = new Worker(fileURLToPath(import.meta.url), {
      workerData: { configPath, id, count } satisfies WorkerInput,
    });
    workers.set(id, worker);
    event({ msg: 'worker started', worker: id });
    worker.on('message', (message) => {
      if (message === 'listening' && ++listening === count) event({ msg: 'ready', workers: count });
    });
    worker.on('error', (err: Error & { code?: string }) => {
      event({ msg: 'worker error', worker: id, code: err.code ?? null, error: err.message.slice(0, 120) });
    });
    worker.on('exit', (code) => {
      workers.delete(id);
      if (stopping) {
        if (workers.size === 0) process.exit(0);
        return;
      }
      event({ msg: 'worker exited', worker: id, code });
      start(id);
    });
  };
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const worker of workers.values()) worker.postMessage('stop');
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  for (let id = 1; id <= count; id++) start(id);
}

if (isMainThread) {
  const [configPath, countText] = process.argv.slice(2);
  const count = Number(countText);
  if (configPath === undefined || !Number.isInteger(count) || count < 1) {
    process.stderr.write('usage: node bench/lib/thread-instance.ts CONFIG N\n');
    process.exit(2);
  }
  runMain(resolve(configPath), count);
} else {
  await runWorker(workerData as WorkerInput);
}
