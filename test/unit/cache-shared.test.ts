/**
 * The memory cache for worker threads (src/filters/cache/store-shared.ts): one store in a
 * SharedArrayBuffer. It answers as the per-process store does while it has room; when it has none, it
 * evicts by CLOCK (an entry read since it was stored gets a second chance, one never read goes first in,
 * first out); it never returns a record that was written over or stored under another key, and holds
 * under threads storing and reading at the same moment.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { type CacheEntry, MemoryCacheStore } from '../../src/filters/cache/store.ts';
import { createCacheBuffer, SharedCacheStore } from '../../src/filters/cache/store-shared.ts';

const WORKER = fileURLToPath(new URL('../fixtures/cache-shared-worker.ts', import.meta.url));

function entry(tag: string, size = 10): CacheEntry {
  return {
    status: 200,
    headers: [
      ['content-type', 'text/plain'],
      ['x-tag', tag],
    ],
    body: new Uint8Array(size).fill(tag.charCodeAt(0)),
    policy: {
      v: 1,
      t: 0,
      sh: true,
      ch: 0,
      imm: 0,
      st: 200,
      resh: {},
      rescc: {},
      m: 'GET',
      u: '/',
      h: 'a',
      a: true,
      reqh: {},
      reqcc: {},
    } as never,
  };
}

const plain = (e: CacheEntry | undefined) =>
  e === undefined ? undefined : { ...e, body: Buffer.from(e.body).toString('hex') };

test('with room to spare, it answers as the per-process store does', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({
            op: fc.constant('set' as const),
            url: fc.constantFrom('/a', '/a/b', '/c', '/é'),
            vary: fc.constantFrom('', 'accept'),
            tag: fc.constantFrom('x', 'y', 'z'),
            size: fc.nat({ max: 2000 }),
          }),
          fc.record({ op: fc.constant('get' as const), url: fc.constantFrom('/a', '/a/b', '/c', '/é') }),
          fc.record({ op: fc.constant('purge' as const), prefix: fc.constantFrom('/a', '/', '/c', '/zz') }),
        ),
        { maxLength: 60 },
      ),
      (ops) => {
        const memory = new MemoryCacheStore(1 << 22);
        const shared = new SharedCacheStore(createCacheBuffer(1 << 22), 1 << 22, 99);
        for (const o of ops) {
          if (o.op === 'set') {
            const e = entry(o.tag, o.size);
            memory.set(o.url, o.vary, `${o.url}\nE${o.vary}`, e, 60_000);
            shared.set(o.url, o.vary, `${o.url}\nE${o.vary}`, e, 60_000);
          } else if (o.op === 'get') {
            assert.equal(shared.getVary(o.url), memory.getVary(o.url));
            for (const v of ['', 'accept']) {
              assert.deepEqual(plain(shared.get(`${o.url}\nE${v}`)), plain(memory.get(`${o.url}\nE${v}`)));
            }
          } else {
            assert.equal(shared.purge(o.prefix), memory.purge(o.prefix));
          }
        }
      },
    ),
  );
});

test('entries expire at their ttl', () => {
  let now = 1_000_000;
  const store = new SharedCacheStore(createCacheBuffer(1 << 16), 1 << 16, 1, () => now);
  store.set('/a', '', '/a\nE', entry('a'), 1000);
  assert.equal(store.get('/a\nE')?.headers[1]?.[1], 'a');
  now += 999;
  assert.ok(store.get('/a\nE'));
  now += 2;
  assert.equal(store.get('/a\nE'), undefined);
  assert.equal(store.getVary('/a'), undefined);
});

test('bounded by its size: entries never read go first in, first out, and never answers with bytes written over', () => {
  const size = 64 * 1024;
  const store = new SharedCacheStore(createCacheBuffer(size), size, 5);
  // 100 entries of about 4 KiB: the arena holds the last 15 or so.
  for (let i = 0; i < 100; i++) store.set(`/k${i}`, '', `/k${i}\nE`, entry(String(i % 10), 4000), 60_000);
  const present = Array.from({ length: 100 }, (_, i) => store.get(`/k${i}\nE`) !== undefined);
  const first = present.indexOf(true);
  assert.ok(first > 80, `the oldest entries are gone (first present: ${first})`);
  assert.ok(present.slice(first).every(Boolean), 'every entry after it is still there');
  for (let i = first; i < 100; i++) assert.equal(store.get(`/k${i}\nE`)!.headers[1]![1], String(i % 10));
  // A record larger than a quarter of the store is not stored.
  store.set('/big', '', '/big\nE', entry('b', size / 2), 60_000);
  assert.equal(store.get('/big\nE'), undefined);
});

test('CLOCK: an entry read since it was stored (or last kept) stays; entries read once pass through', () => {
  const size = 64 * 1024;
  const store = new SharedCacheStore(createCacheBuffer(size), size, 8);
  store.set('/hot', '', '/hot\nE', entry('h', 4000), 60_000);
  store.set('/cold', '', '/cold\nE', entry('c', 4000), 60_000);
  // 200 entries of about 4 KiB through a store that holds about 15; /hot is read between two of them.
  for (let i = 0; i < 200; i++) {
    store.set(`/k${i}`, '', `/k${i}\nE`, entry(String(i % 10), 4000), 60_000);
    if (i % 5 === 0) assert.equal(store.get('/hot\nE')?.headers[1]?.[1], 'h', `/hot after ${i}`);
  }
  assert.equal(store.get('/cold\nE'), undefined, 'the entry never read went');
  assert.equal(store.get('/hot\nE')?.body.byteLength, 4000);
  assert.equal(store.getVary('/hot'), undefined, 'its Vary record, never read, went');
  const present = Array.from({ length: 200 }, (_, i) => store.get(`/k${i}\nE`) !== undefined);
  assert.ok(present.indexOf(true) > 180, 'the entries read once went in the order they came');
  // Not read any more: its second chance used, it goes too.
  for (let i = 200; i < 240; i++) store.set(`/k${i}`, '', `/k${i}\nE`, entry('x', 4000), 60_000);
  assert.equal(store.get('/hot\nE'), undefined);
});

test('under pressure: a read answers the last value stored under its key or nothing, and the last stored is there', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.record({
            op: fc.constant('set' as const),
            k: fc.nat({ max: 12 }),
            size: fc.integer({ min: 1, max: 3000 }),
          }),
          fc.record({ op: fc.constant('get' as const), k: fc.nat({ max: 12 }) }),
          fc.record({ op: fc.constant('purge' as const), k: fc.nat({ max: 12 }) }),
        ),
        { maxLength: 120 },
      ),
      fc.integer(),
      (ops, seed) => {
        const size = 16 * 1024;
        const store = new SharedCacheStore(createCacheBuffer(size), size, seed);
        const last = new Map<number, string>();
        let version = 0;
        for (const o of ops) {
          const key = `/u${o.k}\nE`;
          if (o.op === 'set') {
            const tag = `v${version++}`;
            store.set(`/u${o.k}`, '', key, { ...entry('s', o.size), headers: [['x-tag', tag]] }, 60_000);
            last.set(o.k, tag);
            assert.equal(store.get(key)?.headers[0]?.[1], tag, 'the entry just stored');
          } else if (o.op === 'get') {
            const got = store.get(key);
            if (got !== undefined) assert.equal(got.headers[0]?.[1], last.get(o.k));
          } else {
            store.purge(`/u${o.k}\n`);
            last.delete(o.k);
            assert.equal(store.get(key), undefined);
          }
        }
        let held = 0;
        for (let k = 0; k <= 12; k++) held += store.get(`/u${k}\nE`)?.body.byteLength ?? 0;
        assert.ok(held <= size, `${held} bytes of bodies held`);
      },
    ),
  );
});

test('an entry stored by one thread is a hit in another, and a purge reaches every thread', async () => {
  const size = 1 << 20;
  const buffer = createCacheBuffer(size);
  const here = new SharedCacheStore(buffer, size, 3);
  // The other thread: a real worker running the store's module, storing one entry.
  const worker = new Worker(
    `import { workerData, parentPort } from 'node:worker_threads';
     const { SharedCacheStore } = await import(${JSON.stringify(new URL('../../src/filters/cache/store-shared.ts', import.meta.url).href)});
     const store = new SharedCacheStore(workerData.buffer, workerData.size, 3);
     store.set('/t', 'accept', '/t\\nEtext/html', { status: 203, headers: [['x-from', 'thread']], body: new Uint8Array([1, 2, 3]), policy: {} }, 60000);
     parentPort.postMessage('stored');
     parentPort.once('message', () => parentPort.postMessage(store.get('/t\\nEtext/html') === undefined ? 'gone' : 'still'));`,
    { eval: true, workerData: { buffer, size }, type: 'module' } as never,
  );
  try {
    assert.equal(await new Promise((r) => worker.once('message', r)), 'stored');
    assert.equal(here.getVary('/t'), 'accept');
    const got = here.get('/t\nEtext/html')!;
    assert.equal(got.status, 203);
    assert.deepEqual(got.headers, [['x-from', 'thread']]);
    assert.deepEqual([...got.body], [1, 2, 3]);
    assert.equal(here.purge('/t'), 1);
    worker.postMessage('check');
    assert.equal(await new Promise((r) => worker.once('message', r)), 'gone');
  } finally {
    await worker.terminate();
  }
});

test('4 threads storing and reading at once: no read ever returns another key’s or a torn entry', async () => {
  // A small store, so that writers come round over records while others read them.
  const size = 256 * 1024;
  const buffer = createCacheBuffer(size);
  const workers = [1, 2, 3, 4].map(
    (id) => new Worker(WORKER, { workerData: { buffer, maxBytes: size, seed: 11, id, ops: 20_000 } }),
  );
  try {
    await Promise.all(workers.map((w) => new Promise((r) => w.once('message', r))));
    const results = workers.map(
      (w) =>
        new Promise<{ hits: number; misses: number; wrong: number }>((resolve, reject) => {
          w.once('message', resolve);
          w.once('error', reject);
        }),
    );
    for (const w of workers) w.postMessage('go');
    const all = await Promise.all(results);
    assert.equal(
      all.reduce((n, r) => n + r.wrong, 0),
      0,
      JSON.stringify(all),
    );
    assert.ok(all.reduce((n, r) => n + r.hits, 0) > 1000, `reads hit: ${JSON.stringify(all)}`);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
});
