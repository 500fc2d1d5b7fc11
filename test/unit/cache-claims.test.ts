/**
 * The running misses' claims for worker threads (src/filters/cache/claims-shared.ts): a key is held by at
 * most one live claim; a claim ends when its holder releases it or at its deadline; a late release of a
 * claim that expired (and was claimed again) leaves the new one alone; a waiter in another thread is woken
 * by the release, or by the deadline when nobody releases.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { CLAIMED, HELD } from '../../src/filters/cache/claims-shared.ts';
import { createCacheBuffer, SharedCacheStore } from '../../src/filters/cache/store-shared.ts';

const SIZE = 1 << 16;

test('against a model: one live claim per key, ended by its release or its deadline', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({
            op: fc.constant('claim' as const),
            key: fc.constantFrom('a', 'b', 'c', 'd\n', 'é'),
            timeout: fc.integer({ min: 1, max: 100 }),
          }),
          // Releases the n-th claim made so far (perhaps expired, released already, or claimed again since).
          fc.record({ op: fc.constant('release' as const), n: fc.nat() }),
          fc.record({ op: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 60 }) }),
        ),
        { maxLength: 80 },
      ),
      fc.integer(),
      (ops, seed) => {
        let now = 1_000;
        // Two workers' views of one buffer.
        const buffer = createCacheBuffer(SIZE);
        const views = [
          new SharedCacheStore(buffer, SIZE, seed, () => now).claims,
          new SharedCacheStore(buffer, SIZE, seed, () => now).claims,
        ];
        const live = new Map<string, { deadline: number; id: number }>();
        const made: { key: string; slot: number; generation: number; id: number }[] = [];
        for (const [i, o] of ops.entries()) {
          const claims = views[i % 2]!;
          if (o.op === 'tick') {
            now += o.ms;
          } else if (o.op === 'claim') {
            const held = live.get(o.key);
            const outcome = claims.claim(o.key, o.timeout);
            if (held !== undefined && held.deadline > now) {
              assert.equal(outcome, HELD);
              assert.equal(claims.deadline, held.deadline);
            } else {
              assert.equal(outcome, CLAIMED);
              assert.equal(claims.deadline, now + o.timeout);
              live.set(o.key, { deadline: now + o.timeout, id: made.length });
              made.push({ key: o.key, slot: claims.slot, generation: claims.generation, id: made.length });
            }
          } else if (made.length > 0) {
            const claim = made[o.n % made.length]!;
            claims.release(claim.slot, claim.generation);
            // Only the key's current claim ends (an earlier one of the key no longer holds anything).
            if (live.get(claim.key)?.id === claim.id) live.delete(claim.key);
          }
        }
      },
    ),
  );
});

test('a waiter in another thread wakes at the release, or at the deadline when nobody releases', async () => {
  const buffer = createCacheBuffer(SIZE);
  const claims = new SharedCacheStore(buffer, SIZE, 7).claims;
  const worker = new Worker(
    `import { workerData, parentPort } from 'node:worker_threads';
     const { SharedCacheStore } = await import(${JSON.stringify(new URL('../../src/filters/cache/store-shared.ts', import.meta.url).href)});
     const claims = new SharedCacheStore(workerData.buffer, workerData.size, 7).claims;
     parentPort.on('message', async (key) => {
       const outcome = claims.claim(key, 60000);
       const started = Date.now();
       const waiting = claims.wait(claims.slot, claims.generation, Math.min(claims.deadline, started + 400));
       parentPort.postMessage({ outcome, waiting: waiting !== null });
       const how = await waiting;
       parentPort.postMessage({ how, ms: Date.now() - started });
     });`,
    { eval: true, workerData: { buffer, size: SIZE }, type: 'module' } as never,
  );
  const next = () =>
    new Promise<{ outcome?: number; waiting?: boolean; how?: string; ms: number }>((r) =>
      worker.once('message', r),
    );
  try {
    assert.equal(claims.claim('/k', 60_000), CLAIMED);
    const mine = { slot: claims.slot, generation: claims.generation };
    worker.postMessage('/k');
    assert.deepEqual(await next(), { outcome: HELD, waiting: true });
    await new Promise((r) => setTimeout(r, 50));
    claims.release(mine.slot, mine.generation);
    const woken = await next();
    assert.equal(woken.how, 'ok');
    assert.ok(woken.ms < 300, `woken ${woken.ms} ms after it started waiting`);
    // The key is free again; claimed here and never released, the waiter ends at its (shortened) deadline.
    assert.equal(claims.claim('/k', 60_000), CLAIMED);
    worker.postMessage('/k');
    assert.deepEqual(await next(), { outcome: HELD, waiting: true });
    const expired = await next();
    assert.equal(expired.how, 'timed-out');
    assert.ok(expired.ms >= 350, `ended after ${expired.ms} ms`);
  } finally {
    await worker.terminate();
  }
});
