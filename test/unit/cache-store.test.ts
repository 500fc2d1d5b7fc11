import assert from 'node:assert/strict';
import { test } from 'node:test';
import CachePolicy from 'http-cache-semantics';
import {
  type CacheEntry,
  decodeEntry,
  encodeEntry,
  entrySize,
  MemoryCacheStore,
} from '../../src/filters/cache/store.ts';

function entry(bytes: number, fill = 'x'): CacheEntry {
  const policy = new CachePolicy(
    { method: 'GET', url: '/', headers: {} },
    { status: 200, headers: { 'cache-control': 'max-age=60' } },
  );
  return {
    status: 200,
    headers: [
      ['content-type', 'text/plain'],
      ['set-later', 'a'],
      ['set-later', 'b'],
    ],
    body: Buffer.alloc(bytes, fill),
    policy: policy.toObject(),
  };
}

test('an entry survives encoding and decoding (repeated fields, binary body, policy)', () => {
  const original = entry(1000, '\u00ff');
  const decoded = decodeEntry(encodeEntry(original));
  assert.ok(decoded !== undefined);
  assert.equal(decoded.status, 200);
  assert.deepEqual(decoded.headers, original.headers);
  assert.ok(Buffer.from(decoded.body).equals(Buffer.from(original.body)));
  assert.deepEqual(decoded.policy, JSON.parse(JSON.stringify(original.policy)));
  assert.equal(decodeEntry(Buffer.from([0, 0, 0, 99, 1])), undefined);
  assert.equal(decodeEntry(Buffer.from([0, 0, 0, 2, 0x7b, 0x7b])), undefined);
});

test('the memory store is bounded in bytes: least recently used entries go first', () => {
  const size = entrySize(entry(10_000));
  const store = new MemoryCacheStore(size * 3 + 500);
  for (const name of ['a', 'b', 'c']) store.set(`h/${name}`, '', `h/${name}\nE`, entry(10_000), 60_000);
  assert.ok(store.get('h/a\nE') !== undefined); // a is now the most recent
  store.set('h/d', '', 'h/d\nE', entry(10_000), 60_000);
  assert.equal(store.get('h/b\nE'), undefined);
  assert.ok(store.get('h/a\nE') !== undefined);
  assert.ok(store.get('h/d\nE') !== undefined);
  assert.ok(store.lru.calculatedSize <= size * 3 + 500);
  // An entry larger than the whole store is not kept.
  store.set('h/huge', '', 'h/huge\nE', entry(size * 4), 60_000);
  assert.equal(store.get('h/huge\nE'), undefined);
});

test('the memory store: Vary names, TTL and purge by URL or prefix', async () => {
  const store = new MemoryCacheStore(1_000_000);
  store.set('h/p/a', 'accept-language', 'h/p/a\nEen\n', entry(10), 60_000);
  store.set('h/p/a', 'accept-language', 'h/p/a\nEfr\n', entry(10), 60_000);
  store.set('h/p/ab', '', 'h/p/ab\nE', entry(10), 60_000);
  store.set('h/q', '', 'h/q\nE', entry(10), 30);
  assert.equal(store.getVary('h/p/a'), 'accept-language');
  assert.equal(store.getVary('h/p/ab'), '');
  assert.equal(store.getVary('h/none'), undefined);
  assert.equal(store.purge('h/p/a\n'), 2);
  assert.equal(store.getVary('h/p/a'), undefined);
  assert.ok(store.get('h/p/ab\nE') !== undefined);
  assert.equal(store.purge('h/p/'), 1);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(store.get('h/q\nE'), undefined);
});
