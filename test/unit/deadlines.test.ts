// The coarse shared timer (src/util/deadlines.ts): deadlines fire within a sweep or two, also after the
// timer stopped for want of anything to watch, and an object unwatched before its deadline never fires.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SWEEP_INTERVAL_MS, type Timed, unwatchDeadline, watchDeadline } from '../../src/util/deadlines.ts';

class Watched implements Timed {
  deadline = 0;
  fired = 0;
  onDeadline(): void {
    this.fired++;
  }
}

test('a deadline fires; an unwatched object does not; after an idle stop the timer starts again', async () => {
  const a = new Watched();
  const gone = new Watched();
  watchDeadline(a);
  watchDeadline(gone);
  a.deadline = Date.now() + 20;
  gone.deadline = Date.now() + 20;
  unwatchDeadline(gone);
  await sleep(SWEEP_INTERVAL_MS * 3);
  assert.equal(a.fired, 1);
  assert.equal(gone.fired, 0);
  assert.equal(a.deadline, 0);
  unwatchDeadline(a);
  // Nothing watched for several sweeps: the timer has stopped; a new object must start it again.
  await sleep(SWEEP_INTERVAL_MS * 3);
  const b = new Watched();
  watchDeadline(b);
  b.deadline = Date.now() + 20;
  await sleep(SWEEP_INTERVAL_MS * 3);
  assert.equal(b.fired, 1);
  unwatchDeadline(b);
});

test('objects watched and unwatched one at a time, then a deadline: it fires', async () => {
  // Many objects come and go one at a time (a connection per request at low concurrency).
  for (let i = 0; i < 1000; i++) {
    const t = new Watched();
    watchDeadline(t);
    unwatchDeadline(t);
  }
  const last = new Watched();
  watchDeadline(last);
  last.deadline = Date.now() + 10;
  await sleep(SWEEP_INTERVAL_MS * 3);
  assert.equal(last.fired, 1);
  unwatchDeadline(last);
});
