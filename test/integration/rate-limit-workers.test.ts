/**
 * The memory store across worker processes: two forked workers (ZPROXY_WORKER_ID set, as the supervisor
 * starts them) take decisions at the same time; the parent answers them the way the supervisor does
 * (answerRateLimitMessage), so the workers share one exact limit. Also measures the cost of one
 * cross-worker decision (round trip over the IPC channel).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { answerRateLimitMessage } from '../../src/filters/rate-limit/store-ipc.ts';
import { WORKER_ENV } from '../../src/util/worker.ts';

const WORKER = fileURLToPath(new URL('../fixtures/rate-limit-worker.ts', import.meta.url));

interface Worker {
  readonly child: ChildProcess;
  readonly replies: Record<string, unknown>[];
  next(): Promise<Record<string, unknown>>;
}

const workers: Worker[] = [];

after(() => {
  for (const worker of workers)
    if (worker.child.exitCode === null) process.kill(worker.child.pid!, 'SIGKILL');
});

function startWorker(id: number): Worker {
  const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_ENV]: String(id) };
  delete env.NODE_TEST_CONTEXT;
  const child = fork(WORKER, [], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies: Record<string, unknown>[] = [];
  const waiting: ((reply: Record<string, unknown>) => void)[] = [];
  child.on('message', (message: Record<string, unknown>) => {
    if (answerRateLimitMessage(child, message)) return;
    const resolve = waiting.shift();
    if (resolve === undefined) replies.push(message);
    else resolve(message);
  });
  const worker: Worker = {
    child,
    replies,
    next: () =>
      replies.length > 0
        ? Promise.resolve(replies.shift()!)
        : new Promise((resolve) => {
            waiting.push(resolve);
          }),
  };
  workers.push(worker);
  return worker;
}

test('two workers share one exact limit through the supervisor', { timeout: 30_000 }, async () => {
  const [a, b] = [startWorker(1), startWorker(2)];
  assert.deepEqual(await a.next(), { ready: true });
  assert.deepEqual(await b.next(), { ready: true });
  // 2 x 150 decisions at once against a limit of 100 at once (burst 99, 1 a minute): exactly 100 allowed.
  const order = { run: 150, key: 'ip:192.0.2.1', rpm: 1, burst: 99 };
  a.child.send(order);
  b.child.send(order);
  const [ra, rb] = await Promise.all([a.next(), b.next()]);
  const allowedA = ra.allowed as number;
  const allowedB = rb.allowed as number;
  assert.equal(allowedA + allowedB, 100, `worker 1 allowed ${allowedA}, worker 2 ${allowedB}`);
  // Another key has its own bucket; the first one stays empty.
  a.child.send({ run: 3, key: 'ip:192.0.2.2', rpm: 1, burst: 1 });
  assert.deepEqual(await a.next(), { allowed: 2 });
  b.child.send({ ...order, run: 5 });
  assert.deepEqual(await b.next(), { allowed: 0 });

  // The cost of a cross-worker decision, one at a time (both workers at once).
  const timing = { time: 5000, key: 'ip:timing', rpm: 1_000_000, burst: 1_000_000 };
  a.child.send(timing);
  b.child.send(timing);
  const [ta, tb] = await Promise.all([a.next(), b.next()]);
  const perDecision = [ta.microseconds as number, tb.microseconds as number];
  console.log(
    `cross-worker decision: ${perDecision.map((us) => us.toFixed(1)).join(' / ')} µs (round trip, sequential)`,
  );
  assert.ok(perDecision.every((us) => us > 0 && us < 10_000));
});
