/**
 * `zproxy bench`: runs the plan in this thread (one thread) or in worker threads (each its share of the
 * connections and of the rate), then merges their results into one report.
 */
import { readFile } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import { type BenchOptions, planThreads, type ThreadPlan } from './options.ts';
import { type BenchReport, buildReport } from './report.ts';
import { runThread } from './runner.ts';
import type { ThreadResult } from './stats.ts';

/** The worker module next to this one: worker.ts from a checkout, worker.js when built. */
const WORKER = new URL(import.meta.url.endsWith('.ts') ? './worker.ts' : './worker.js', import.meta.url);

function runWorker(plan: ThreadPlan): Promise<ThreadResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER, { workerData: plan });
    let result: ThreadResult | null = null;
    worker.once('message', (message: ThreadResult) => {
      result = message;
    });
    worker.once('error', reject);
    worker.once('exit', (code) => {
      if (result !== null) resolve(result);
      else reject(new Error(`a bench worker thread exited with code ${code} before its result`));
    });
  });
}

/** The request body the options name: `--body` text, the bytes of `--body-file`, or null. */
export async function loadBody(options: BenchOptions): Promise<Uint8Array | null> {
  if (options.bodyFile !== null) return new Uint8Array(await readFile(options.bodyFile));
  if (options.body !== null) return new Uint8Array(Buffer.from(options.body, 'utf8'));
  return null;
}

export async function runBench(options: BenchOptions, body: Uint8Array | null): Promise<BenchReport> {
  const plans = planThreads(options, body);
  const cpu0 = process.cpuUsage();
  const results =
    plans.length === 1
      ? [await runThread(plans[0]!)]
      : await Promise.all(plans.map((plan) => runWorker(plan)));
  const cpu = process.cpuUsage(cpu0);
  return buildReport(options, results, cpu.user + cpu.system);
}
