/** A worker thread of `zproxy bench --threads N`: runs its plan and posts its result to the main thread. */
import { parentPort, workerData } from 'node:worker_threads';
import type { ThreadPlan } from './options.ts';
import { runThread } from './runner.ts';

const result = await runThread(workerData as ThreadPlan);
parentPort!.postMessage(result);
