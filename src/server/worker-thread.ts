/**
 * The entry of a worker thread (src/server/thread-supervisor.ts starts it): installs the instance's shared
 * memory, then serves the config as one worker of the instance until the main thread asks it to stop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { installInstanceShared } from '../util/instance.ts';
import { serve, type WorkerRole } from './run.ts';
import type { WorkerThreadData, WorkerThreadMessage } from './thread-supervisor.ts';

const data = workerData as WorkerThreadData;
const port = parentPort!;
installInstanceShared(data.shared);
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
  onReopenRequest(reopen) {
    port.on('message', (message: WorkerThreadMessage) => {
      if (message?.type === 'reopen') reopen();
    });
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
