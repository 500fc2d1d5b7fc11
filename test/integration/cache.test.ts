/**
 * The cache filter through zproxy itself (the engines' filter runner, HTTP/1.1) in front of a real
 * upstream that counts requests, clients on node:http. RFC 9111 cases as a table, then coalescing,
 * streaming while storing, size limits, aborted bodies, purge and Cache-Status.
 *
 * The memory store is one per process and `max_bytes` (its identity): each zproxy here gets its own store
 * through a `max_bytes` of its own.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CacheConfig } from '../../src/filters/cache/filter.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type SimpleResponse, sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, type RecordedRequest, startHttpUpstream } from '../helpers/upstream.ts';

type Responder = (req: RecordedRequest, res: http.ServerResponse) => void;

const responders = new Map<string, Responder>();
let upstream: HttpUpstream;

function countFor(path: string): number {
  return upstream.requests.filter((r) => r.url === path).length;
}

function answer(headers: Record<string, string>, body = 'hello'): Responder {
  return (_req, res) => {
    res.writeHead(200, {
      'content-type': 'text/plain',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  };
}

/** A responder that answers 304 to a matching If-None-Match, else 200 with the ETag. */
function withEtag(etag: string, cacheControl: string, body = 'tagged'): Responder {
  return (req, res) => {
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag, 'cache-control': cacheControl });
      res.end();
      return;
    }
    res.writeHead(200, { etag, 'cache-control': cacheControl, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
}

const PURGE_TOKEN = 'purge-token-0123456789';

/** zproxy with one route for every path whose only middleware is `cache` with `config`. */
function startProxyWith(config: CacheConfig): Promise<StartedProxy> {
  return startProxy({
    routes: [{ path: '/', upstream: upstream.url, middlewares: [{ type: 'cache', config }] }],
  });
}

let proxy: StartedProxy;

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const responder = responders.get(req.url);
    if (responder === undefined) {
      res.writeHead(404, { 'content-length': '0' });
      res.end();
      return;
    }
    responder(req, res);
  });
  proxy = await startProxyWith({
    ttl_seconds: 60,
    max_bytes: 8 * 1024 * 1024 + 1,
    purge: { token: PURGE_TOKEN },
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<SimpleResponse> {
  return sendRequest(proxy.port, path, { headers, method });
}

interface Step {
  readonly headers?: Record<string, string>;
  /** Wait this long before the request (to let an entry go stale). */
  readonly waitMs?: number;
  readonly status: number;
  /** Cache-Status must start with this. */
  readonly cacheStatus: string;
  readonly body?: string;
  /** Upstream requests for the path after this step. */
  readonly upstreamCount: number;
}

interface RfcCase {
  readonly name: string;
  readonly responder: Responder;
  readonly steps: readonly Step[];
}

const HIT = 'zproxy; hit';
const MISS_STORED = 'zproxy; fwd=uri-miss; fwd-status=200; stored';

const cases: RfcCase[] = [
  {
    name: 'max-age: fresh for its lifetime',
    responder: answer({ 'cache-control': 'max-age=60' }),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, body: 'hello', upstreamCount: 1 },
      { status: 200, cacheStatus: HIT, body: 'hello', upstreamCount: 1 },
    ],
  },
  {
    name: 's-maxage wins over max-age=0 in a shared cache',
    responder: answer({ 'cache-control': 'max-age=0, s-maxage=60' }),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { status: 200, cacheStatus: HIT, upstreamCount: 1 },
    ],
  },
  {
    name: 'Expires in the future',
    responder: (_req, res) => {
      res.writeHead(200, {
        date: new Date().toUTCString(),
        expires: new Date(Date.now() + 60_000).toUTCString(),
        'content-length': '2',
      });
      res.end('ok');
    },
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { status: 200, cacheStatus: HIT, body: 'ok', upstreamCount: 1 },
    ],
  },
  {
    name: 'Expires in the past: stored never, served never',
    responder: (_req, res) => {
      res.writeHead(200, { date: new Date().toUTCString(), expires: 'Thu, 01 Jan 1970 00:00:00 GMT' });
      res.end('old');
    },
    steps: [
      { status: 200, cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=expired', upstreamCount: 1 },
      { status: 200, cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=expired', upstreamCount: 2 },
    ],
  },
  {
    name: 'no freshness from the upstream: ttl_seconds applies',
    responder: answer({}),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { status: 200, cacheStatus: HIT, upstreamCount: 1 },
    ],
  },
  {
    name: 'no-store',
    responder: answer({ 'cache-control': 'no-store' }),
    steps: [
      {
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=not-storable',
        upstreamCount: 1,
      },
      {
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=not-storable',
        upstreamCount: 2,
      },
    ],
  },
  {
    name: 'private is not stored by a shared cache',
    responder: answer({ 'cache-control': 'private, max-age=60' }),
    steps: [
      {
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=not-storable',
        upstreamCount: 1,
      },
      { status: 200, cacheStatus: 'zproxy; fwd=uri-miss', upstreamCount: 2 },
    ],
  },
  {
    name: 'Set-Cookie responses are not stored',
    responder: answer({ 'cache-control': 'max-age=60', 'set-cookie': 'a=1' }),
    steps: [
      {
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=set-cookie',
        upstreamCount: 1,
      },
      { status: 200, cacheStatus: 'zproxy; fwd=uri-miss', upstreamCount: 2 },
    ],
  },
  {
    name: 'no-cache: stored, revalidated each time (304 answers with the stored body)',
    responder: withEtag('"v1"', 'no-cache'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, body: 'tagged', upstreamCount: 1 },
      { status: 200, cacheStatus: 'zproxy; fwd=stale; fwd-status=304', body: 'tagged', upstreamCount: 2 },
      { status: 200, cacheStatus: 'zproxy; fwd=stale; fwd-status=304', body: 'tagged', upstreamCount: 3 },
    ],
  },
  {
    name: 'client no-cache forces a revalidation of a fresh entry',
    responder: withEtag('"v2"', 'max-age=60'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      {
        headers: { 'cache-control': 'no-cache' },
        status: 200,
        cacheStatus: 'zproxy; fwd=request; fwd-status=304',
        body: 'tagged',
        upstreamCount: 2,
      },
      { status: 200, cacheStatus: HIT, upstreamCount: 2 },
    ],
  },
  {
    name: 'a client conditional that matches a fresh entry gets 304 from the cache',
    responder: withEtag('"v3"', 'max-age=60'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { headers: { 'if-none-match': '"v3"' }, status: 304, cacheStatus: HIT, body: '', upstreamCount: 1 },
      {
        headers: { 'if-none-match': '"other"' },
        status: 200,
        cacheStatus: HIT,
        body: 'tagged',
        upstreamCount: 1,
      },
    ],
  },
  {
    name: 'Vary: one entry per Accept-Language',
    responder: (req, res) => {
      const body = `lang=${req.headers['accept-language']}`;
      res.writeHead(200, {
        'cache-control': 'max-age=60',
        vary: 'Accept-Language',
        'content-length': body.length,
      });
      res.end(body);
    },
    steps: [
      {
        headers: { 'accept-language': 'en' },
        status: 200,
        cacheStatus: MISS_STORED,
        body: 'lang=en',
        upstreamCount: 1,
      },
      {
        headers: { 'accept-language': 'fr' },
        status: 200,
        cacheStatus: 'zproxy; fwd=vary-miss; fwd-status=200; stored',
        body: 'lang=fr',
        upstreamCount: 2,
      },
      {
        headers: { 'accept-language': 'en' },
        status: 200,
        cacheStatus: HIT,
        body: 'lang=en',
        upstreamCount: 2,
      },
      {
        headers: { 'accept-language': 'fr' },
        status: 200,
        cacheStatus: HIT,
        body: 'lang=fr',
        upstreamCount: 2,
      },
    ],
  },
  {
    name: 'Authorization: a response without public/s-maxage is not stored',
    responder: answer({ 'cache-control': 'max-age=60' }),
    steps: [
      {
        headers: { authorization: 'Bearer a' },
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss; fwd-status=200; detail=not-storable',
        upstreamCount: 1,
      },
      {
        headers: { authorization: 'Bearer a' },
        status: 200,
        cacheStatus: 'zproxy; fwd=uri-miss',
        upstreamCount: 2,
      },
      // Stored for a request without credentials, then not served to one with them.
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 3 },
      {
        headers: { authorization: 'Bearer a' },
        status: 200,
        cacheStatus: 'zproxy; fwd=request; fwd-status=200',
        upstreamCount: 4,
      },
      { status: 200, cacheStatus: HIT, upstreamCount: 4 },
    ],
  },
  {
    name: 'Authorization: a public response is stored and served',
    responder: answer({ 'cache-control': 'public, max-age=60' }),
    steps: [
      { headers: { authorization: 'Bearer a' }, status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { headers: { authorization: 'Bearer b' }, status: 200, cacheStatus: HIT, upstreamCount: 1 },
    ],
  },
  {
    name: 'revalidation: a 304 refreshes the stale entry, which is fresh again',
    responder: withEtag('"r1"', 'max-age=1'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      {
        waitMs: 1100,
        status: 200,
        cacheStatus: 'zproxy; fwd=stale; fwd-status=304',
        body: 'tagged',
        upstreamCount: 2,
      },
      { status: 200, cacheStatus: HIT, body: 'tagged', upstreamCount: 2 },
    ],
  },
  {
    name: 'must-revalidate: revalidated once stale',
    responder: withEtag('"m1"', 'max-age=1, must-revalidate'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { status: 200, cacheStatus: HIT, body: 'tagged', upstreamCount: 1 },
      {
        waitMs: 1100,
        status: 200,
        cacheStatus: 'zproxy; fwd=stale; fwd-status=304',
        body: 'tagged',
        upstreamCount: 2,
      },
    ],
  },
  {
    name: 'only-if-cached: 504 without an entry, the entry when there is one',
    responder: answer({ 'cache-control': 'max-age=60' }),
    steps: [
      {
        headers: { 'cache-control': 'only-if-cached' },
        status: 504,
        cacheStatus: 'zproxy; fwd=uri-miss; detail=only-if-cached',
        upstreamCount: 0,
      },
      { status: 200, cacheStatus: MISS_STORED, upstreamCount: 1 },
      { headers: { 'cache-control': 'only-if-cached' }, status: 200, cacheStatus: HIT, upstreamCount: 1 },
    ],
  },
  {
    name: 'HEAD is answered from a stored GET, without a body',
    responder: answer({ 'cache-control': 'max-age=60' }, 'twelve bytes'),
    steps: [
      { status: 200, cacheStatus: MISS_STORED, body: 'twelve bytes', upstreamCount: 1 },
      { headers: { 'x-method': 'HEAD' }, status: 200, cacheStatus: HIT, body: '', upstreamCount: 1 },
    ],
  },
];

describe('RFC 9111 cases', () => {
  cases.forEach((rfcCase, index) => {
    test(rfcCase.name, async () => {
      const path = `/rfc/${index}`;
      responders.set(path, rfcCase.responder);
      for (const [n, step] of rfcCase.steps.entries()) {
        if (step.waitMs !== undefined) await sleep(step.waitMs);
        const headers = { ...step.headers };
        const method = headers['x-method'] ?? 'GET';
        delete headers['x-method'];
        const res = await get(path, headers, method);
        const where = `step ${n}: ${res.headers['cache-status']}`;
        assert.equal(res.status, step.status, where);
        assert.ok(String(res.headers['cache-status']).startsWith(step.cacheStatus), where);
        if (step.body !== undefined) assert.equal(res.text, step.body, where);
        assert.equal(countFor(path), step.upstreamCount, where);
        if (step.cacheStatus === HIT) {
          assert.match(String(res.headers.age), /^\d+$/, where);
          if (method === 'HEAD') {
            // RFC 9110 §8.6: a Content-Length on a HEAD answer is the length a GET would have had.
            assert.equal(res.headers['content-length'], '12', `${where}: HEAD Content-Length`);
          }
        }
      }
    });
  });
});

test('Age grows with the time an entry spent in the cache', async () => {
  const path = '/age';
  responders.set(path, answer({ 'cache-control': 'max-age=60', age: '10' }));
  await get(path);
  await sleep(1100);
  const hit = await get(path);
  assert.ok(Number(hit.headers.age) >= 11, `age ${hit.headers.age}`);
});

test('stale-while-revalidate: the stale entry is served at once while zproxy revalidates it in the background', async () => {
  const path = '/swr';
  let slow = false;
  responders.set(path, (_req, res) => {
    const send = (): void => {
      res.writeHead(200, { 'cache-control': 'max-age=1, stale-while-revalidate=30', 'content-length': '5' });
      res.end(slow ? 'newer' : 'first');
    };
    if (slow) setTimeout(send, 400);
    else send();
  });
  await get(path);
  await sleep(1100);
  slow = true;
  // The first request of the window does not wait for the (400 ms) revalidation.
  const t0 = performance.now();
  const first = await get(path);
  assert.ok(performance.now() - t0 < 300, 'answered before the revalidation finished');
  assert.equal(first.text, 'first');
  assert.match(
    String(first.headers['cache-status']),
    /^zproxy; hit; ttl=-?\d+; detail=stale-while-revalidate/,
  );
  await sleep(100);
  const stale = await get(path);
  assert.equal(stale.text, 'first');
  assert.match(String(stale.headers['cache-status']), /detail=stale-while-revalidate/);
  assert.equal(countFor(path), 2, 'one revalidation for the whole window');
  const until = performance.now() + 3000;
  while ((await get(path)).text !== 'newer') {
    assert.ok(performance.now() < until, 'the background revalidation stored the new entry');
    await sleep(50);
  }
  const hit = await get(path);
  assert.equal(hit.text, 'newer');
  assert.match(String(hit.headers['cache-status']), /^zproxy; hit/);
  assert.equal(countFor(path), 2);
});

test('stale-if-error: a 5xx from the upstream is replaced by the stale entry', async () => {
  const path = '/sie';
  let failing = false;
  responders.set(path, (_req, res) => {
    if (failing) {
      res.writeHead(503, { 'content-length': '4' });
      res.end('down');
      return;
    }
    res.writeHead(200, {
      'cache-control': 'max-age=1, stale-if-error=60',
      etag: '"s"',
      'content-length': '4',
    });
    res.end('good');
  });
  await get(path);
  await sleep(1100);
  failing = true;
  const res = await get(path);
  assert.equal(res.status, 200);
  assert.equal(res.text, 'good');
  assert.equal(res.headers['cache-status'], 'zproxy; fwd=stale; fwd-status=503; detail=stale-if-error');
  // Without stale-if-error the error goes through.
  const plain = '/sie-plain';
  let plainFailing = false;
  responders.set(plain, (_req, res) => {
    res.writeHead(plainFailing ? 503 : 200, {
      'cache-control': 'max-age=1',
      etag: '"p"',
      'content-length': '2',
    });
    res.end('xx');
  });
  await get(plain);
  await sleep(1100);
  plainFailing = true;
  assert.equal((await get(plain)).status, 503);
});

test('50 concurrent misses for one key make exactly one upstream request', async () => {
  const path = '/coalesce';
  responders.set(path, (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '9' });
      res.end('coalesced');
    }, 200);
  });
  const all = await Promise.all(Array.from({ length: 50 }, () => get(path)));
  assert.equal(countFor(path), 1);
  for (const res of all) {
    assert.equal(res.status, 200);
    assert.equal(res.text, 'coalesced');
  }
  const statuses = all.map((r) => String(r.headers['cache-status']));
  assert.equal(statuses.filter((s) => s === MISS_STORED).length, 1);
  assert.equal(statuses.filter((s) => s.startsWith(HIT)).length, 49);
});

test('waiters go upstream themselves when the first response is not storable', async () => {
  const path = '/coalesce-private';
  responders.set(path, (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'private', 'content-length': '1' });
      res.end('p');
    }, 100);
  });
  const all = await Promise.all(Array.from({ length: 5 }, () => get(path)));
  for (const res of all) assert.equal(res.text, 'p');
  assert.equal(countFor(path), 5);
});

test('a large body reaches the client while the upstream is still sending it, and is stored whole', async () => {
  const path = '/stream';
  const half = Buffer.alloc(512 * 1024, 'a');
  let release: () => void = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  responders.set(path, (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' });
    res.write(half);
    void released.then(() => res.end(Buffer.alloc(512 * 1024, 'b')));
  });
  const { request } = await import('node:http');
  const firstBytes = await new Promise<{ received: number; done: Promise<Buffer> }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: proxy.port, path, agent: false });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let received = 0;
      let reported = false;
      const done = new Promise<Buffer>((r) => res.on('end', () => r(Buffer.concat(chunks))));
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (!reported && received >= half.length) {
          reported = true;
          resolve({ received, done });
        }
      });
    });
    req.end();
  });
  // The whole first half arrived while the upstream still holds the second.
  assert.equal(firstBytes.received, half.length);
  release();
  const body = await firstBytes.done;
  assert.equal(body.length, 1024 * 1024);
  const hit = await get(path);
  assert.ok(String(hit.headers['cache-status']).startsWith(HIT));
  assert.ok(hit.body.equals(body));
  assert.equal(countFor(path), 1);
});

test('an aborted body is never stored', async () => {
  const path = '/aborted';
  let cut = true;
  responders.set(path, (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '100000' });
    if (cut) {
      res.write(Buffer.alloc(1000));
      setTimeout(() => res.destroy(), 50);
    } else res.end(Buffer.alloc(100000));
  });
  await assert.rejects(get(path));
  cut = false;
  const res = await get(path);
  assert.equal(res.headers['cache-status'], MISS_STORED);
  assert.equal(countFor(path), 2);
});

describe('max_entry_bytes', () => {
  let small: StartedProxy;
  before(async () => {
    small = await startProxyWith({ ttl_seconds: 60, max_entry_bytes: 1000, max_bytes: 1_000_003 });
  });
  after(() => small.close());

  test('a larger Content-Length is not stored', async () => {
    const path = '/big-known';
    responders.set(path, answer({ 'cache-control': 'max-age=60' }, 'x'.repeat(2000)));
    const first = await sendRequest(small.port, path);
    assert.equal(first.headers['cache-status'], 'zproxy; fwd=uri-miss; fwd-status=200; detail=too-large');
    assert.equal(first.text.length, 2000);
    await sendRequest(small.port, path);
    assert.equal(countFor(path), 2);
  });

  test('a body of unknown length stops being stored past the limit', async () => {
    const path = '/big-chunked';
    responders.set(path, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.write('y'.repeat(800));
      res.end('y'.repeat(800));
    });
    const first = await sendRequest(small.port, path);
    assert.equal(first.text.length, 1600);
    const second = await sendRequest(small.port, path);
    assert.equal(second.text.length, 1600);
    assert.equal(countFor(path), 2);
    const fits = '/small-chunked';
    responders.set(fits, (_req, res) => {
      res.writeHead(200, { 'cache-control': 'max-age=60' });
      res.end('z'.repeat(900));
    });
    await sendRequest(small.port, fits);
    const hit = await sendRequest(small.port, fits);
    assert.ok(String(hit.headers['cache-status']).startsWith(HIT));
    assert.equal(hit.text.length, 900);
  });
});

test('methods other than GET and HEAD are forwarded with fwd=method', async () => {
  const path = '/post';
  responders.set(path, answer({ 'cache-control': 'max-age=60' }));
  const res = await sendRequest(proxy.port, path, { method: 'POST', body: 'x' });
  assert.equal(res.headers['cache-status'], 'zproxy; fwd=method');
  await sendRequest(proxy.port, path, { method: 'POST', body: 'x' });
  assert.equal(countFor(path), 2);
});

test('PURGE by URL and by prefix, with the token', async () => {
  for (const p of ['/p/a', '/p/b', '/p/b?x=1', '/q/c'])
    responders.set(p, answer({ 'cache-control': 'max-age=60' }));
  for (const p of ['/p/a', '/p/b', '/p/b?x=1', '/q/c']) await get(p);
  const denied = await get('/p/a', { 'x-cache-purge-token': 'wrong' }, 'PURGE');
  assert.equal(denied.status, 403);
  const none = await get('/p/a', {}, 'PURGE');
  assert.equal(none.status, 403);
  assert.ok(String((await get('/p/a')).headers['cache-status']).startsWith(HIT));

  const one = await get('/p/a', { 'x-cache-purge-token': PURGE_TOKEN }, 'PURGE');
  assert.equal(one.status, 200);
  assert.deepEqual(JSON.parse(one.text), { purged: 1 });
  assert.equal((await get('/p/a')).headers['cache-status'], MISS_STORED);
  assert.ok(String((await get('/p/b')).headers['cache-status']).startsWith(HIT));

  const prefix = await get('/p/*', { 'x-cache-purge-token': PURGE_TOKEN }, 'PURGE');
  assert.deepEqual(JSON.parse(prefix.text), { purged: 3 });
  for (const p of ['/p/a', '/p/b', '/p/b?x=1'])
    assert.equal((await get(p)).headers['cache-status'], MISS_STORED);
  assert.ok(String((await get('/q/c')).headers['cache-status']).startsWith(HIT));
});
