/**
 * The filter runner in the engines, with a user filter that records what it sees (fixtures/filters/
 * probe.ts): the phases in order and once each, over HTTP/1.1 and HTTP/2 clients to HTTP/1.1 and HTTP/2
 * (h2c) upstreams; edits to the forwarded request and the response; a target rewrite; body observers on
 * decoded data; a filter that waits (the request body held and forwarded whole); a client that leaves
 * while a filter waits; failures answered 500; local answers and replaced responses; an upstream that
 * aborts the body; response filters that wait (the upstream's response held, then sent whole or replaced,
 * large bodies included, to both kinds of upstream).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { journal } from '../fixtures/filters/probe.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const PROBE = new URL('../fixtures/filters/probe.ts', import.meta.url).pathname;
const BODY = Buffer.alloc(100_000, 'z');
/** Larger than what a held response keeps before it pauses the upstream (HOLD_LIMIT, 256 KiB). */
const BIG = Buffer.from(Array.from({ length: 700_000 }, (_, i) => i % 251));

function probe(name: string, config: Record<string, unknown> = {}) {
  return { type: 'module', path: PROBE, config: { name, ...config } };
}

let h1up: HttpUpstream;
let h2up: http2.Http2Server;
let h2seen: http2.IncomingHttpHeaders[];
let proxy: StartedProxy;

function respondH1(req: { url: string }, res: http.ServerResponse): void {
  if (req.url.startsWith('/abort')) {
    res.writeHead(200, { 'content-length': String(BODY.length) });
    res.write(BODY.subarray(0, 1000));
    setTimeout(() => res.socket?.destroy(), 20);
    return;
  }
  if (req.url.includes('/big')) {
    res.writeHead(200, { 'content-length': String(BIG.length), 'x-upstream-secret': 's' });
    res.end(BIG);
    return;
  }
  if (req.url.includes('/chunked')) {
    // No content-length: node sends a chunked body, in three chunks.
    res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream-secret': 's' });
    res.write(BODY.subarray(0, 30_000));
    setTimeout(() => {
      res.write(BODY.subarray(30_000, 60_000));
      res.end(BODY.subarray(60_000));
    }, 5);
    return;
  }
  const body = JSON.stringify({ url: req.url });
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-upstream-secret': 's',
  });
  res.end(body);
}

before(async () => {
  h1up = await startHttpUpstream((req, res) => respondH1(req, res));
  h2seen = [];
  h2up = http2.createServer();
  h2up.on('stream', (stream, headers) => {
    h2seen.push(headers);
    stream.resume();
    stream.on('end', () => {
      if (String(headers[':path']).includes('/big')) {
        stream.respond({ ':status': 200, 'x-upstream-secret': 's' });
        stream.end(BIG);
        return;
      }
      const body = JSON.stringify({ url: headers[':path'] });
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-upstream-secret': 's' });
      stream.end(body);
    });
  });
  await new Promise<void>((resolve) => h2up.listen(0, '127.0.0.1', resolve));
  const h2port = (h2up.address() as net.AddressInfo).port;
  const edits = {
    set_upstream: { 'x-probe': 'on' },
    remove_upstream: ['x-drop'],
    set_response: { 'x-probe-response': 'yes' },
    remove_response: ['x-upstream-secret'],
    target: '/rewritten?q=1',
  };
  const responseWait = {
    response_delay_ms: 30,
    response_set: { 'x-late': 'yes' },
    remove_response: ['x-upstream-secret'],
  };
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [
      { path: '/h1', upstream: h1up.url, middlewares: [probe('h1', edits)] },
      { path: '/h2', upstream: `h2c://127.0.0.1:${h2port}`, middlewares: [probe('h2', edits)] },
      { path: '/chunked', upstream: h1up.url, middlewares: [probe('chunked')] },
      { path: '/wait', upstream: h1up.url, middlewares: [probe('wait', { delay_ms: 40 })] },
      { path: '/leave', upstream: h1up.url, middlewares: [probe('leave', { delay_ms: 300 })] },
      { path: '/throw', upstream: h1up.url, middlewares: [probe('throw', { throw_in: 'request' })] },
      {
        path: '/throw-later',
        upstream: h1up.url,
        middlewares: [probe('throw-later', { delay_ms: 5, throw_in: 'request-async' })],
      },
      { path: '/throw-response', upstream: h1up.url, middlewares: [probe('tr', { throw_in: 'response' })] },
      {
        path: '/answer',
        upstream: h1up.url,
        middlewares: [
          probe('first', { set_response: { 'x-first': '1' } }),
          probe('answer', {
            answer: { status: 418, body: 'teapot\n', headers: { 'content-type': 'text/plain' } },
          }),
          probe('never'),
        ],
      },
      { path: '/replace', upstream: h1up.url, middlewares: [probe('replace', { replace_status: 203 })] },
      { path: '/abort', upstream: h1up.url, middlewares: [probe('abort')] },
      { path: '/rwait-h1', upstream: h1up.url, middlewares: [probe('rwait-h1', responseWait)] },
      {
        path: '/rwait-h2',
        upstream: `h2c://127.0.0.1:${h2port}`,
        middlewares: [probe('rwait-h2', responseWait)],
      },
      {
        path: '/rwait-replace',
        upstream: h1up.url,
        middlewares: [probe('rwait-replace', { response_delay_ms: 20, replace_status: 203 })],
      },
      {
        path: '/rwait-throw',
        upstream: h1up.url,
        middlewares: [probe('rwait-throw', { response_delay_ms: 5, throw_in: 'response-async' })],
      },
    ],
  });
});

after(async () => {
  await proxy.close();
  await h1up.close();
  await new Promise<void>((resolve) => h2up.close(() => resolve()));
});

beforeEach(() => {
  for (const key of Object.keys(journal())) delete journal()[key];
});

interface Answer {
  readonly status: number;
  readonly headers: Record<string, unknown>;
  readonly body: Buffer;
}

async function viaH1(method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) {
  const res = await sendRequest(proxy.port, path, { method, headers, ...(body ? { body } : {}) });
  return { status: res.status, headers: res.headers, body: res.body } as Answer;
}

async function viaH2(method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) {
  const session = http2.connect(proxy.url);
  try {
    const res = await h2Request(session, { ':method': method, ':path': path, ...headers }, body);
    return { status: res.status, headers: res.headers, body: res.body } as Answer;
  } finally {
    session.close();
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

for (const [client, send] of [
  ['HTTP/1.1', viaH1],
  ['HTTP/2', viaH2],
] as const) {
  describe(`${client} client`, () => {
    for (const upstream of ['h1', 'h2'] as const) {
      test(`to an ${upstream === 'h1' ? 'HTTP/1.1' : 'HTTP/2'} upstream: phases once in order, edits and rewrite`, async () => {
        const res = await send('GET', `/${upstream}/x?a=b`, { 'x-drop': 'gone', 'x-keep': 'kept' });
        assert.equal(res.status, 200);
        assert.deepEqual(JSON.parse(res.body.toString()), { url: '/rewritten?q=1' });
        assert.equal(res.headers['x-probe-response'], 'yes');
        assert.equal(res.headers['x-upstream-secret'], undefined);
        const seen = upstream === 'h1' ? h1up.requests.at(-1)!.headers : h2seen.at(-1)!;
        assert.equal(seen['x-probe'], 'on');
        assert.equal(seen['x-drop'], undefined);
        assert.equal(seen['x-keep'], 'kept');
        await waitUntil(() => journal()[upstream]?.[0]?.phases.includes('log') === true, 3000);
        const [record] = journal()[upstream]!;
        assert.deepEqual(record!.phases, ['request', 'upstream', 'response', 'body', 'end', 'log']);
        assert.equal(record!.aborted, false);
        assert.equal(record!.bodyBytes, res.body.length);
      });
    }

    test('a chunked upstream body reaches observers decoded and the client whole', async () => {
      const res = await send('GET', '/chunked/x');
      assert.equal(res.status, 200);
      assert.equal(sha(res.body), sha(BODY));
      await waitUntil(() => journal().chunked?.[0]?.phases.includes('log') === true, 3000);
      const record = journal().chunked![0]!;
      assert.equal(sha(Buffer.concat(record.body)), sha(BODY));
      assert.equal(record.aborted, false);
    });

    test('a filter that waits: the request body is held and forwarded whole', async () => {
      const seen = h1up.requests.length;
      const res = await send('POST', '/wait/upload', { 'content-type': 'application/octet-stream' }, BODY);
      assert.equal(res.status, 200);
      assert.equal(h1up.requests.length, seen + 1);
      assert.equal(h1up.requests.at(-1)!.bodySha256, sha(BODY));
    });

    test('a filter that throws answers 500 ZP_ERR_FILTER_FAILED, logged with the phase', async () => {
      const seen = h1up.requests.length;
      for (const path of ['/throw/x', '/throw-later/x', '/throw-response/x']) {
        const res = await send('GET', path);
        assert.equal(res.status, 500, path);
        assert.equal(JSON.parse(res.body.toString()).error.code, 'ZP_ERR_FILTER_FAILED');
      }
      assert.equal(h1up.requests.length, seen + 1, 'only the response-phase failure reached the upstream');
      const lines = proxy.logs.filter((l) => l.msg === 'filter failed');
      const phases = lines.slice(-3).map((l) => l.phase);
      assert.deepEqual(phases, ['onRequest', 'onRequest', 'onResponse']);
      assert.ok(lines.slice(-3).every((l) => l.filter === 'module'));
    });

    test("a local answer skips the later filters and carries earlier filters' response edits", async () => {
      const seen = h1up.requests.length;
      const res = await send('GET', '/answer/x');
      assert.equal(res.status, 418);
      assert.equal(res.body.toString(), 'teapot\n');
      assert.equal(res.headers['x-first'], '1');
      assert.equal(res.headers['content-length'], '7');
      assert.equal(h1up.requests.length, seen);
      await waitUntil(() => journal().answer?.[0]?.phases.includes('log') === true, 3000);
      assert.deepEqual(journal().first![0]!.phases, ['request', 'log']);
      assert.deepEqual(journal().answer![0]!.phases, ['request', 'log']);
      // The filter after the answer saw no request phase; onLog runs for every filter of the chain.
      assert.deepEqual(journal().never![0]!.phases, ['log']);
    });

    test('onResponse may replace the upstream response', async () => {
      const res = await send('GET', '/replace/x');
      assert.equal(res.status, 203);
      assert.equal(res.body.toString(), 'replaced 200\n');
    });

    for (const upstream of ['h1', 'h2'] as const) {
      const kind = upstream === 'h1' ? 'HTTP/1.1' : 'HTTP/2';
      test(`onResponse that waits, to an ${kind} upstream: the response is held, then sent whole with its edits`, async () => {
        for (const [path, expected] of [
          [`/rwait-${upstream}/small`, null],
          [`/rwait-${upstream}/big`, BIG],
          ...(upstream === 'h1' ? [[`/rwait-h1/chunked`, BODY] as const] : []),
        ] as const) {
          for (const r of Object.keys(journal())) delete journal()[r];
          const t0 = performance.now();
          const res = await send('GET', path);
          assert.equal(res.status, 200, path);
          assert.ok(performance.now() - t0 >= 25, 'the filter waited');
          assert.equal(res.headers['x-late'], 'yes', path);
          assert.equal(res.headers['x-upstream-secret'], undefined, path);
          if (expected === null) assert.equal(JSON.parse(res.body.toString()).url, path);
          else assert.equal(sha(res.body), sha(expected), path);
          const name = `rwait-${upstream}`;
          await waitUntil(() => journal()[name]?.[0]?.phases.includes('log') === true, 3000);
          const record = journal()[name]![0]!;
          assert.deepEqual(record.phases, ['request', 'upstream', 'response', 'body', 'end', 'log'], path);
          assert.equal(record.bodyBytes, res.body.length, path);
          assert.equal(record.aborted, false, path);
        }
      });
    }

    test('onResponse that waits may replace the response or fail (500)', async () => {
      const replaced = await send('GET', '/rwait-replace/x');
      assert.equal(replaced.status, 203);
      assert.equal(replaced.body.toString(), 'replaced 200\n');
      const failed = await send('GET', '/rwait-throw/x');
      assert.equal(failed.status, 500);
      assert.equal(JSON.parse(failed.body.toString()).error.code, 'ZP_ERR_FILTER_FAILED');
      // The connection still serves the next exchange.
      const again = await send('GET', '/rwait-replace/y');
      assert.equal(again.status, 203);
    });

    test('an upstream that aborts the body: onResponseEnd says aborted, onLog once', async () => {
      await assert.rejects(send('GET', '/abort/x'));
      await waitUntil(() => journal().abort?.[0]?.phases.includes('log') === true, 3000);
      const record = journal().abort![0]!;
      assert.equal(record.aborted, true);
      assert.equal(record.phases.filter((p) => p === 'log').length, 1);
      assert.equal(record.phases.filter((p) => p === 'end').length, 1);
    });
  });
}

test('a client that leaves while a filter waits: nothing is forwarded, onLog once', async () => {
  const seen = h1up.requests.length;
  const socket = net.connect(proxy.port, '127.0.0.1');
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write('GET /leave/x HTTP/1.1\r\nHost: a\r\n\r\n');
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.destroy();
  const session = http2.connect(proxy.url);
  const req = session.request({ ':path': '/leave/y' });
  req.on('error', () => {});
  await new Promise((resolve) => setTimeout(resolve, 50));
  req.close(http2.constants.NGHTTP2_CANCEL);
  await new Promise((resolve) => setTimeout(resolve, 500));
  session.close();
  assert.equal(h1up.requests.length, seen);
  const records = journal().leave ?? [];
  assert.equal(records.length, 2);
  for (const r of records) assert.deepEqual(r.phases, ['request', 'log']);
  const lines = proxy.accessLogs().filter((l) => String(l.target).startsWith('/leave'));
  assert.deepEqual(
    lines.map((l) => l.status),
    [499, 499],
  );
});

test('a filter that does not finish within connection_timeout_ms: 504 ZP_ERR_FILTER_TIMEOUT, its late result dropped', async () => {
  const slow = await startProxy({
    protocols: ['http1', 'http2'],
    connection_timeout_ms: 200,
    routes: [
      {
        path: '/late-response',
        upstream: h1up.url,
        middlewares: [probe('slow-response', { response_delay_ms: 700, response_set: { 'x-late': 'y' } })],
      },
      {
        path: '/late-response-h2',
        upstream: `h2c://127.0.0.1:${(h2up.address() as net.AddressInfo).port}`,
        middlewares: [probe('slow-response', { response_delay_ms: 700, response_set: { 'x-late': 'y' } })],
      },
      { path: '/', upstream: h1up.url, middlewares: [probe('slow', { delay_ms: 700 })] },
    ],
  });
  try {
    const seen = h1up.requests.length;
    const t0 = performance.now();
    const res = await sendRequest(slow.port, '/x');
    assert.equal(res.status, 504);
    assert.equal(JSON.parse(res.text).error.code, 'ZP_ERR_FILTER_TIMEOUT');
    const session = http2.connect(slow.url);
    try {
      const r2 = await h2Request(session, { ':path': '/y' });
      assert.equal(r2.status, 504);
    } finally {
      session.close();
    }
    assert.ok(performance.now() - t0 < 650, 'answered before the filter finished');
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(h1up.requests.length, seen, 'the late result did not forward the request');
    for (const r of journal().slow ?? []) assert.deepEqual(r.phases, ['request', 'log']);
    assert.equal(journal().slow?.length, 2);

    // A response filter that takes too long: 504 before it finishes, over both clients and upstream kinds.
    const t1 = performance.now();
    for (const path of ['/late-response/x', '/late-response-h2/x']) {
      const r1 = await sendRequest(slow.port, path);
      assert.equal(r1.status, 504, path);
      assert.equal(JSON.parse(r1.text).error.code, 'ZP_ERR_FILTER_TIMEOUT');
      assert.equal(r1.headers['x-late'], undefined);
      const s2 = http2.connect(slow.url);
      try {
        const r2 = await h2Request(s2, { ':path': path });
        assert.equal(r2.status, 504, path);
      } finally {
        s2.close();
      }
    }
    assert.ok(performance.now() - t1 < 4 * 650, 'each answered before its filter finished');
    await new Promise((resolve) => setTimeout(resolve, 800));
    // The HTTP/1.1 connection is usable after such a 504.
    const after504 = await sendRequest(slow.port, '/late-response/again');
    assert.equal(after504.status, 504);
  } finally {
    await slow.close();
  }
});
