/**
 * The instance's count of open connections in shared memory (src/util/instance.ts): max_connections bounds
 * the instance exactly across workers, and a worker that ends gives its places back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InstanceConnections } from '../../src/util/instance.ts';

test('the total never passes the limit, whichever worker asks; releases free places', () => {
  const counter = new InstanceConnections(InstanceConnections.create(3));
  const taken = [1, 2, 3, 1, 2, 3, 1].map((id) => counter.tryAcquire(id, 5));
  assert.deepEqual(taken, [true, true, true, true, true, false, false]);
  assert.equal(counter.total, 5);
  counter.release(2);
  assert.equal(counter.total, 4);
  assert.equal(counter.tryAcquire(3, 5), true);
  assert.equal(counter.tryAcquire(1, 5), false);
});

test('reclaim gives back exactly the places of the worker that ended', () => {
  const counter = new InstanceConnections(InstanceConnections.create(2));
  for (let i = 0; i < 3; i++) assert.ok(counter.tryAcquire(1, 10));
  for (let i = 0; i < 4; i++) assert.ok(counter.tryAcquire(2, 10));
  counter.release(2);
  counter.reclaim(1);
  assert.equal(counter.total, 3, "worker 2's three remain");
  counter.reclaim(1);
  assert.equal(counter.total, 3, 'a second reclaim changes nothing');
  for (let i = 0; i < 7; i++) assert.ok(counter.tryAcquire(1, 10));
  assert.equal(counter.tryAcquire(2, 10), false);
});
