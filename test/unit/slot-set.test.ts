import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SlotSet } from '../../src/util/slot-set.ts';

test('SlotSet behaves as a Set under any sequence of adds and deletes', () => {
  const members = Array.from({ length: 8 }, (_, i) => ({ i }));
  const op = fc.record({ add: fc.boolean(), member: fc.integer({ min: 0, max: members.length - 1 }) });
  fc.assert(
    fc.property(fc.array(op, { minLength: 20, maxLength: 200, size: 'max' }), (ops) => {
      const slots = new SlotSet<{ i: number }>();
      const reference = new Set<{ i: number }>();
      for (const { add, member } of ops) {
        const m = members[member]!;
        if (add) {
          slots.add(m);
          reference.add(m);
        } else assert.equal(slots.delete(m), reference.delete(m));
        assert.equal(slots.size, reference.size);
      }
      for (const m of members) assert.equal(slots.has(m), reference.has(m));
      assert.deepEqual(new Set(slots), reference);
    }),
  );
});

test('a member may be in several SlotSets at once', () => {
  const a = new SlotSet<object>();
  const b = new SlotSet<object>();
  const x = {};
  const y = {};
  a.add(x).add(y);
  b.add(y).add(x);
  assert.equal(a.delete(x), true);
  assert.equal(b.has(x), true);
  assert.equal(a.has(y), true);
  assert.deepEqual([...b], [y, x]);
});

test('forEachMember visits every member once when the visitor deletes the one it is given', () => {
  const set = new SlotSet<{ i: number }>();
  for (let i = 0; i < 10; i++) set.add({ i });
  const seen: number[] = [];
  set.forEachMember((m) => {
    seen.push(m.i);
    if (m.i % 2 === 0) set.delete(m);
  });
  assert.deepEqual(
    seen.sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(
    [...set].map((m) => m.i).sort((x, y) => x - y),
    [1, 3, 5, 7, 9],
  );
});

test('iterating and forEach run over a copy: the body may delete every member', () => {
  const set = new SlotSet<object>();
  const members = [{}, {}, {}];
  for (const m of members) set.add(m);
  let visited = 0;
  for (const m of set) {
    visited++;
    set.delete(m);
  }
  assert.equal(visited, 3);
  assert.equal(set.size, 0);
  for (const m of members) set.add(m);
  set.forEach((m, again, self) => {
    assert.equal(m, again);
    self.delete(members[2]!);
    self.delete(m);
  });
  assert.equal(set.size, 0);
});
