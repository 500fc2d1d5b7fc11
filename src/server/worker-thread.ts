/**
 * The entry of a worker thread (src/server/thread-supervisor.ts starts it): installs the instance's shared
 * memory, then serves the config as one worker of the instance until the main thread asks it to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { installInstanceShared, instanceShared } from '../util/instance.ts';
import { isReloadMessage } from './reload.ts';
import { serve, type WorkerRole } from './run.ts';
import type { WorkerThreadData, WorkerThreadMessage } from './thread-supervisor.ts';

const data = workerData as WorkerThreadData;
const port = parentPort!;
installInstanceShared(data.shared);
/** Announcements of metric slots posted so far: a scrape waits for those the main thread has not read yet. */
const announced = data.metricSeries === null ? null : new Int32Array(data.metricSeries);
const role: WorkerRole = {
  id: data.id,
  count: data.count,
  kind: 'thread',
  listening() {
    const message: WorkerThreadMessage = { type: 'listening' };
    port.postMessage(message);
  },
  onStopRequest(stop) {
    port.on('message', (message: WorkerThreadMessage) => {
      if (message?.type === 'stop') stop('stop');
    });
  },
  publishMetrics(series, chunk) {
    // Counted before the message leaves: a scrape that follows anything counted in these slots sees it.
    if (announced !== null) Atomics.add(announced, 0, 1);
    const message: WorkerThreadMessage = { type: 'metric-series', series, chunk };
    port.postMessage(message);
  },
  onReopenRequest(reopen) {
    port.on('message', (message: WorkerThreadMessage) => {
      if (message?.type === 'reopen') reopen();
    });
  },
  onReloadMessage(handle) {
    port.on('message', (message: WorkerThreadMessage) => {
      if (!isReloadMessage(message)) return;
      // A reload that adds a memory cache brings its shared memory, installed before the filters are built.
      if (message.type === 'reload-prepare' && message.caches !== undefined) {
        installInstanceShared({ ...instanceShared()!, caches: message.caches });
      }
      handle(message);
    });
  },
  sendReloadMessage(message) {
    port.postMessage(message);
  },
};
try {
  await serve(data.config, data.options, role);
} catch (error) {
  // Failed before listening (a port in use, a filter that cannot be built): the main thread reports why.
  const message: WorkerThreadMessage = {
    type: 'failed',
    message: error instanceof Error ? error.message : String(error),
  };
  port.postMessage(message);
  process.exit(1);
}
