/**
 * The race between a worker's lookup and its claim (src/filters/cache/filter.ts, storedSinceLookup): two
 * cache filters, each with its own view of one real shared store (SharedArrayBuffer) and claims' table, as
 * two worker threads of an instance have, and a real upstream that counts the requests it gets. The
 * interleaving is forced, not timed: worker B's lookup misses, then, just before B's claim (a hook on B's
 * view of the table, which then claims for real), worker A stores the entry and releases its claim. B's
 * claim then finds the key free; B must look in the store again and answer from A's entry, not go
 * upstream a second time.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, beforeEach, test } from 'node:test';
import { CLAIMED, type SharedClaims } from '../../src/filters/cache/claims-shared.ts';
import { CacheFilter, clearCacheStores } from '../../src/filters/cache/filter.ts';
import { createCacheBuffer } from '../../src/filters/cache/store-shared.ts';
import type { FilterContext, LocalResponse } from '../../src/pipeline/contract.ts';
import { FieldEditList } from '../../src/pipeline/field-edits.ts';
import { ObjectFieldReader } from '../../src/pipeline/field-readers.ts';
import { installInstanceShared } from '../../src/util/instance.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const MAX_BYTES = 1 << 20;
const CONFIG = { ttl_seconds: 60, coalesce_timeout_ms: 5000, max_bytes: MAX_BYTES };

let upstream: HttpUpstream;

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url, n: upstream.requests.length });
    const fields: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'public, max-age=300',
    };
    if (req.url!.startsWith('/vary/')) fields.vary = 'accept-language';
    res.writeHead(200, fields);
    res.end(body);
  });
});
after(async () => {
  clearCacheStores();
  installInstanceShared(null);
  await upstream.close();
});

/** Two workers of one instance: one shared cache buffer, each worker its own store view and filter. */
function twoWorkers(): { a: CacheFilter; b: CacheFilter } {
  clearCacheStores();
  installInstanceShared({
    rateLimit: new SharedArrayBuffer(8),
    health: new SharedArrayBuffer(8),
    connections: new SharedArrayBuffer(8),
    caches: { [`memory:${MAX_BYTES}`]: createCacheBuffer(MAX_BYTES) },
    seed: 0x5eed,
  });
  const a = new CacheFilter(CONFIG, { index: 0, route: '/' });
  // A new store handle for the second worker: its own view of the same buffer, its own waiters.
  clearCacheStores();
  const b = new CacheFilter(CONFIG, { index: 0, route: '/' });
  assert.notEqual(a.handle, b.handle);
  assert.ok(a.handle.claims !== null && b.handle.claims !== null);
  return { a, b };
}

beforeEach(() => {
  upstream.requests.length = 0;
});

function context(path: string, headers: Record<string, string> = {}): FilterContext {
  return {
    exchange: { route: null } as never,
    request: {
      method: 'GET',
      path,
      query: '',
      host: '127.0.0.1',
      scheme: 'http',
      clientAddress: '127.0.0.1',
      httpVersion: '1.1',
      params: null,
      websocket: false,
      headers: new ObjectFieldReader(headers),
    },
    upstreamHeaders: new FieldEditList(),
    setUpstreamTarget() {},
    upstreamTarget: path,
    responseHeaders: new FieldEditList(),
    state: [],
  };
}

interface Fetched {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** What the filter forwards: the request to the real upstream. */
function forward(ctx: FilterContext): Promise<Fetched> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port: upstream.port,
        path: ctx.upstreamTarget,
        headers: ctx.request.headers as never,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.on('error', reject);
  });
}

/** The response phases of an exchange that went upstream: records, stores, and (onLog) releases its claim. */
function finish(filter: CacheFilter, ctx: FilterContext, answer: Fetched): void {
  assert.equal(
    filter.onResponse(ctx, { status: answer.status, headers: new ObjectFieldReader(answer.headers) }),
    undefined,
  );
  filter.onResponseBody(ctx, answer.body);
  filter.onResponseEnd(ctx, false);
  filter.onLog(ctx);
}

/** Makes B's next claim run `before` first (the interleaving), then claim in the real table. */
function beforeNextClaim(claims: SharedClaims, before: () => void): void {
  const claim = claims.claim;
  claims.claim = function hooked(key: string, timeoutMs: number): number {
    claims.claim = claim;
    before();
    return claim.call(this, key, timeoutMs);
  };
}

async function race(path: string, aHeaders: Record<string, string>, bHeaders: Record<string, string>) {
  const { a, b } = twoWorkers();
  // Worker A: a miss; it claims the key and goes upstream.
  const ctxA = context(path, aHeaders);
  assert.equal(a.onRequest(ctxA), undefined, 'A goes upstream');
  const answerA = await forward(ctxA);
  // Worker B's lookup misses (A has not stored yet); between it and B's claim, A stores and releases.
  const ctxB = context(path, bHeaders);
  let interleaved = false;
  beforeNextClaim(b.handle.claims!, () => {
    assert.equal(b.store.get(`127.0.0.1${path}\nE`), undefined);
    finish(a, ctxA, answerA);
    interleaved = true;
  });
  let resultB = b.onRequest(ctxB);
  assert.ok(interleaved, 'A stored and released between B’s lookup and B’s claim');
  if (resultB === undefined) {
    // B goes upstream.
    finish(b, ctxB, await forward(ctxB));
  } else {
    resultB = await resultB;
  }
  return { a, b, answerA, ctxB, resultB: resultB as LocalResponse | undefined };
}

test('an entry stored and released between a worker’s lookup and its claim is served, not fetched again', async () => {
  const path = '/race/plain';
  const { b, answerA, ctxB, resultB } = await race(path, {}, {});
  assert.equal(upstream.requests.length, 1, 'the upstream saw one request');
  assert.ok(resultB !== undefined, 'B answered from the store');
  assert.equal(resultB.status, 200);
  assert.equal(Buffer.from(resultB.body as Uint8Array).toString(), answerA.body.toString());
  assert.equal(ctxB.state[0] !== undefined && (ctxB.state[0] as { leaderKey: string }).leaderKey, '');
  // B let go of its claim: the key is free in the instance's table.
  const claims = b.handle.claims!;
  assert.equal(claims.claim(`127.0.0.1${path}\nE`, 1000), CLAIMED);
  claims.release(claims.slot, claims.generation);
  assert.equal(b.handle.inflight.size, 0);
});

test('with Vary: B finds the new recipe and A’s variant when it matches', async () => {
  const { answerA, resultB } = await race(
    '/vary/same',
    { 'accept-language': 'fr' },
    { 'accept-language': 'fr' },
  );
  assert.equal(upstream.requests.length, 1, 'the upstream saw one request');
  assert.ok(resultB !== undefined);
  assert.equal(Buffer.from(resultB.body as Uint8Array).toString(), answerA.body.toString());
});

test('with Vary and another variant: B goes upstream once, holding the claim of its own variant', async () => {
  const path = '/vary/other';
  const { b, resultB, ctxB } = await race(path, { 'accept-language': 'fr' }, { 'accept-language': 'de' });
  assert.equal(resultB, undefined);
  assert.equal(upstream.requests.length, 2, 'A’s and B’s variants');
  assert.equal((ctxB.state[0] as { variantKey: string }).variantKey, `127.0.0.1${path}\nEde\n`);
  // Both variants are stored now.
  assert.ok(b.store.get(`127.0.0.1${path}\nEfr\n`) !== undefined);
  assert.ok(b.store.get(`127.0.0.1${path}\nEde\n`) !== undefined);
  assert.equal(b.handle.inflight.size, 0, 'B released its claim at onLog');
});
