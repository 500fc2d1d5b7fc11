/**
 * The rate limiter's memory store for worker threads (src/filters/rate-limit/store-shared.ts): one table of
 * GCRA states in a SharedArrayBuffer. It must decide exactly as the in-process store does, hold across
 * real threads taking decisions at the same moment (no decision lost or doubled), and forget only what
 * its documented overflow rule says.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { ratePolicy } from '../../src/filters/rate-limit/gcra.ts';
import { MemoryRateLimitStore } from '../../src/filters/rate-limit/store-memory.ts';
import { createRateLimitTable, SharedRateLimitStore } from '../../src/filters/rate-limit/store-shared.ts';

const WORKER = fileURLToPath(new URL('../fixtures/rate-limit-shared-worker.ts', import.meta.url));

test('decides exactly as the in-process store, whatever the keys, limits and clock', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          key: fc.constantFrom('a', 'b', '10.0.0.1', '::1', 'é', ''),
          limit: fc.constantFrom([60, 0], [60, 9], [600, 50], [1, 2]),
          advanceMs: fc.nat({ max: 3000 }),
        }),
        { maxLength: 200 },
      ),
      fc.integer(),
      (steps, seed) => {
        let now = 1_700_000_000_000;
        const clock = () => now;
        const memory = new MemoryRateLimitStore(clock);
        const shared = new SharedRateLimitStore(createRateLimitTable(1024), seed, clock);
        for (const step of steps) {
          now += step.advanceMs;
          const policy = ratePolicy(step.limit[0]!, step.limit[1]!);
          const want = { ...memory.take(policy, step.key) };
          const got = { ...shared.take(policy, step.key) };
          assert.deepEqual(got, want);
        }
        memory.close();
      },
    ),
  );
});

test('two limits and a key that only differ in where the id ends are different states', () => {
  const now = () => 1_700_000_000_000;
  const store = new SharedRateLimitStore(createRateLimitTable(64), 7, now);
  const a = { intervalMs: 60_000, capacity: 1, requestsPerMinute: 1, id: '1:2' };
  const b = { intervalMs: 60_000, capacity: 1, requestsPerMinute: 1, id: '1:23' };
  assert.equal(store.take(a, '3').allowed, true);
  assert.equal(store.take(b, '').allowed, true, 'not the same state as ("1:2", "3")');
  assert.equal(store.take(a, '3').allowed, false);
});

test('a full bucket forgets the key whose bucket refills first; expired keys free their slots', () => {
  let now = 1_000_000;
  // 8 slots: one bucket, every key lands in it.
  const store = new SharedRateLimitStore(createRateLimitTable(8), 1, () => now);
  const policy = ratePolicy(1, 0); // one request a minute, no burst
  for (let i = 0; i < 8; i++) {
    now += 1;
    assert.equal(store.take(policy, `k${i}`).allowed, true);
  }
  for (let i = 0; i < 8; i++) assert.equal(store.take(policy, `k${i}`).allowed, false, `k${i} is limited`);
  // A ninth live key takes the slot of k0 (the smallest TAT): k0 is forgotten and may go again.
  assert.equal(store.take(policy, 'k8').allowed, true);
  assert.equal(store.take(policy, 'k0').allowed, true, 'the forgotten key starts afresh');
  // A minute later every state has expired: new keys take slots without forgetting anyone live.
  now += 61_000;
  for (let i = 0; i < 8; i++) assert.equal(store.take(policy, `n${i}`).allowed, true);
});

async function runThreads(threads: number, order: Record<string, number>, table: SharedArrayBuffer) {
  const workers = Array.from(
    { length: threads },
    () => new Worker(WORKER, { workerData: { ...order, table, seed: 42 } }),
  );
  try {
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
    const results = workers.map(
      (w) =>
        new Promise<{ allowed: number[]; ns: number }>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    for (const w of workers) w.postMessage('go');
    return await Promise.all(results);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

test('exact across 4 threads deciding at once: one hot key and 200 keys', async () => {
  const table = createRateLimitTable(4096);
  // One request a minute sustained, a burst of 4,999: nothing refills during the test.
  const hot = await runThreads(4, { keys: 1, takes: 20_000, rpm: 1, burst: 4_999 }, table);
  assert.equal(
    hot.reduce((n, r) => n + r.allowed[0]!, 0),
    5_000,
    'exactly the capacity across threads',
  );
  const many = await runThreads(4, { keys: 200, takes: 100, rpm: 1, burst: 49 }, createRateLimitTable(4096));
  for (let k = 0; k < 200; k++) {
    assert.equal(
      many.reduce((n, r) => n + r.allowed[k]!, 0),
      50,
      `key ${k}: exactly 50 across threads`,
    );
  }
});
