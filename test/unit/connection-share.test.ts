import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectionShare } from '../../src/server/workers.ts';

test('worker shares of max_connections add up to the total and differ by at most one', () => {
  for (let workers = 1; workers <= 16; workers++) {
    for (const total of [1, 2, 3, 5, 7, 10, 99, 100, 101, 10_000, 10_007]) {
      const shares = Array.from({ length: workers }, (_, i) => connectionShare(total, i + 1, workers));
      assert.equal(
        shares.reduce((a, b) => a + b, 0),
        total,
        `${total} over ${workers} workers: ${shares}`,
      );
      assert.ok(Math.max(...shares) - Math.min(...shares) <= 1, `${shares}`);
      assert.ok(shares.every((s) => s >= 0 && s <= total));
    }
  }
  assert.deepEqual(
    [1, 2, 3].map((id) => connectionShare(10, id, 3)),
    [4, 3, 3],
  );
  assert.deepEqual(
    [1, 2, 3, 4].map((id) => connectionShare(2, id, 4)),
    [1, 1, 0, 0],
  );
});

test('a worker id outside 1..workers gets the smaller share, never more', () => {
  for (const id of [0, 4, Number.NaN, 1.5]) assert.equal(connectionShare(10, id, 3), 3);
});
