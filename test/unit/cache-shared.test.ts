/**
 * The memory cache for worker threads (src/filters/cache/store-shared.ts): one store in a
 * SharedArrayBuffer. It answers as the per-process store does while it has room, forgets first what it
 * stored first when it has none, never returns a record that was written over or stored under another
 * key, and holds under threads storing and reading at the same moment.
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

test('bounded by its size: it forgets first what it stored first, and never answers with bytes written over', () => {
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
