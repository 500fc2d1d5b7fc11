/**
 * Connections carrying many requests: pipelining (responses in request order), backpressure toward a
 * client that does not read, keep-alive and Connection: close, Expect: 100-continue, and upstream
 * connection reuse through the pool.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually, parseResponses, WireClient } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
let proxy: StartedProxy;

const MEGABYTE = Buffer.alloc(1024 * 1024, 0x6d);

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    if (req.url.startsWith('/mb/')) {
      res.writeHead(200, { 'content-length': MEGABYTE.length, 'x-url': req.url });
      res.end(MEGABYTE);
      return;
    }
    const body = JSON.stringify({ method: req.method, url: req.url, bytes: req.body.length });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  proxy = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
});
after(async () => {
  await proxy.close();
  await upstream.close();
});

interface Planned {
  bytes: string;
  method: string;
  url: string;
  bodyLength: number;
}

/** Request i: GET, POST with Content-Length, POST chunked, or HEAD, in turn. */
function plan(i: number, bodySize: number): Planned {
  const url = `/p/${i}?n=${i}`;
  const body = `body-${i}-`.padEnd(bodySize, String.fromCharCode(97 + (i % 26)));
  switch (i % 4) {
    case 0:
      return { bytes: `GET ${url} HTTP/1.1\r\nHost: pipe.test\r\n\r\n`, method: 'GET', url, bodyLength: 0 };
    case 1:
      return {
        bytes: `POST ${url} HTTP/1.1\r\nHost: pipe.test\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        method: 'POST',
        url,
        bodyLength: body.length,
      };
    case 2: {
      const half = body.length >> 1;
      const a = body.slice(0, half);
      const b = body.slice(half);
      return {
        bytes: `POST ${url} HTTP/1.1\r\nHost: pipe.test\r\nTransfer-Encoding: chunked\r\n\r\n${a.length.toString(16)}\r\n${a}\r\n${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`,
        method: 'POST',
        url,
        bodyLength: body.length,
      };
    }
    default:
      return { bytes: `HEAD ${url} HTTP/1.1\r\nHost: pipe.test\r\n\r\n`, method: 'HEAD', url, bodyLength: 0 };
  }
}

async function pipeline(count: number, bodySize: number): Promise<void> {
  const planned = Array.from({ length: count }, (_, i) => plan(i, bodySize));
  const before = upstream.requests.length;
  const c = await WireClient.connect(proxy.port);
  try {
    // Every request in one write.
    c.write(planned.map((p) => p.bytes).join(''));
    for (let i = 0; i < count; i++) {
      const p = planned[i]!;
      const r = await c.next({ noBody: p.method === 'HEAD', timeoutMs: 5000 });
      assert.equal(r.status, 200, `response ${i}`);
      if (p.method === 'HEAD') {
        assert.equal(r.raw.length, r.head.length, `HEAD response ${i} has no body`);
        continue;
      }
      assert.deepEqual(
        JSON.parse(r.body.toString()),
        { method: p.method, url: p.url, bytes: p.bodyLength },
        `response ${i}`,
      );
    }
    assert.equal(await c.quietFor(50), true, 'nothing after the last response');
  } finally {
    c.close();
  }
  const seen = upstream.requests.slice(before);
  assert.deepEqual(
    seen.map((r) => `${r.method} ${r.url} ${r.body.length}`),
    planned.map((p) => `${p.method} ${p.url} ${p.bodyLength}`),
  );
}

test('50 pipelined requests in one packet (some with bodies) get 50 responses in request order', async () => {
  await pipeline(50, 40);
});

test('50 pipelined requests with 4 KB bodies (more than the read-ahead buffer) stay in order', async () => {
  await pipeline(50, 4096);
});

test('pipelined requests split at awkward places still parse', async () => {
  const text = [0, 1, 2, 3, 4, 5].map((i) => plan(i, 30).bytes).join('');
  const c = await WireClient.connect(proxy.port);
  try {
    for (let o = 0; o < text.length; o += 7) {
      c.write(text.slice(o, o + 7));
      if (o % 70 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    const urls: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await c.next({ noBody: i % 4 === 3 });
      assert.equal(r.status, 200);
      if (i % 4 !== 3) urls.push(JSON.parse(r.body.toString()).url);
    }
    assert.deepEqual(urls, ['/p/0?n=0', '/p/1?n=1', '/p/2?n=2', '/p/4?n=4', '/p/5?n=5']);
  } finally {
    c.close();
  }
});

test('Expect: 100-continue: 100 Continue before the body, then the final response; the upstream never sees Expect', async () => {
  const c = await WireClient.connect(proxy.port);
  try {
    c.write('POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n');
    const interim = await c.next();
    assert.equal(interim.status, 100);
    assert.equal(interim.raw.toString('latin1'), interim.head);
    assert.equal(await c.quietFor(50), true, 'no final response before the body is sent');
    c.write('hello world');
    const final = await c.next();
    assert.equal(final.status, 200);
    assert.deepEqual(JSON.parse(final.body.toString()), { method: 'POST', url: '/upload', bytes: 11 });
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.headers.expect, undefined);
    assert.equal(
      seen.rawHeaders.some((h) => h.toLowerCase() === 'expect'),
      false,
    );
    assert.equal(seen.body.toString(), 'hello world');
    // The connection is reusable afterwards.
    c.write('GET /after HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(JSON.parse((await c.next()).body.toString()).url, '/after');
  } finally {
    c.close();
  }
});

test('Expect: 100-continue with a chunked body', async () => {
  const c = await WireClient.connect(proxy.port);
  try {
    c.write('PUT /chunky HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n');
    assert.equal((await c.next()).status, 100);
    c.write('4\r\nabcd\r\n0\r\n\r\n');
    const final = await c.next();
    assert.equal(final.status, 200);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.method, 'PUT');
    assert.equal(seen.body.toString(), 'abcd');
    assert.equal(seen.headers.expect, undefined);
  } finally {
    c.close();
  }
});

test('Expect: 100-continue on a request without a body gets no 100', async () => {
  const c = await WireClient.connect(proxy.port);
  try {
    c.write('GET /nobody HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(parseResponses(c.received).length, 1);
  } finally {
    c.close();
  }
});

test('a client that does not read its responses stops the proxy from reading further pipelined requests', async () => {
  const before = upstream.requests.length;
  const c = await WireClient.connect(proxy.port);
  try {
    c.socket.pause();
    let requests = '';
    for (let i = 0; i < 30; i++) requests += `GET /mb/${i} HTTP/1.1\r\nHost: a\r\n\r\n`;
    c.write(requests);
    assert.ok(
      await eventually(() => upstream.requests.length > before, 3000),
      'the first request is forwarded',
    );
    await new Promise((r) => setTimeout(r, 400));
    const whilePaused = upstream.requests.length - before;
    assert.ok(
      whilePaused >= 1 && whilePaused <= 20,
      `${whilePaused} of 30 requests forwarded while the client read nothing`,
    );
    c.socket.resume();
    for (let i = 0; i < 30; i++) {
      const r = await c.next({ timeoutMs: 5000 });
      assert.equal(r.header('x-url'), `/mb/${i}`);
      assert.equal(r.body.length, MEGABYTE.length);
      assert.equal(r.body.equals(MEGABYTE), true);
    }
  } finally {
    c.close();
  }
  assert.equal(upstream.requests.length - before, 30);
});

test('Connection: close: the answer says so, the connection ends, and pipelined requests after it are not forwarded', async () => {
  const before = upstream.requests.length;
  const c = await WireClient.connect(proxy.port);
  try {
    c.write(
      'GET /closing HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: a\r\n\r\n',
    );
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.header('connection'), 'close');
    assert.equal(await c.waitClosed(), true);
    assert.equal(c.unread.length, 0);
  } finally {
    c.close();
  }
  assert.deepEqual(
    upstream.requests.slice(before).map((r) => r.url),
    ['/closing'],
  );
});

test('an HTTP/1.0 request without keep-alive is answered with Connection: close and the connection ends', async () => {
  const c = await WireClient.connect(proxy.port);
  try {
    c.write('GET /ten HTTP/1.0\r\nHost: a\r\n\r\n');
    const r = await c.next();
    assert.equal(r.status, 200);
    assert.equal(r.header('connection'), 'close');
    assert.equal(await c.waitClosed(), true);
  } finally {
    c.close();
  }
});

test('sequential requests from several clients reuse one upstream connection', async () => {
  const solo = await startHttpUpstream();
  const p = await startProxy({ routes: [{ path: '/', upstream: solo.url }] });
  try {
    for (let i = 0; i < 5; i++) {
      const c = await WireClient.connect(p.port);
      try {
        c.write(
          `GET /seq/${i} HTTP/1.1\r\nHost: a\r\n\r\nPOST /seq/${i} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi`,
        );
        assert.equal((await c.next()).status, 200);
        assert.equal((await c.next()).status, 200);
      } finally {
        c.close();
      }
    }
    assert.equal(solo.requests.length, 10);
    assert.equal(solo.connections, 1, 'one pooled upstream connection served every request');
  } finally {
    await p.close();
    await solo.close();
  }
});

test('with max_connections_per_target: 1, concurrent clients queue for the one upstream connection', async () => {
  const slow = await startHttpUpstream((req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-length': Buffer.byteLength(req.url) });
      res.end(req.url);
    }, 15);
  });
  const p = await startProxy({
    upstream_defaults: { max_connections_per_target: 1 },
    routes: [{ path: '/', upstream: slow.url }],
  });
  const clients: WireClient[] = [];
  try {
    for (let i = 0; i < 8; i++) clients.push(await WireClient.connect(p.port));
    clients.forEach((c, i) => {
      c.write(`GET /q/${i} HTTP/1.1\r\nHost: a\r\n\r\n`);
    });
    const bodies = await Promise.all(clients.map(async (c) => (await c.next()).body.toString()));
    assert.deepEqual(
      bodies,
      clients.map((_, i) => `/q/${i}`),
    );
    assert.equal(slow.connections, 1);
    assert.equal(slow.requests.length, 8);
  } finally {
    for (const c of clients) c.close();
    await p.close();
    await slow.close();
  }
});

test('20000 pipelined requests answered by the proxy itself (404) in one write: all answered in order, the proxy survives', async () => {
  // Regression: each local answer used to re-enter the parser recursively, and a few hundred KB of
  // pipelined 404s overflowed the stack (an uncaught exception that ends the worker process).
  const count = 20000;
  const before = upstream.requests.length;
  const p = await startProxy({ routes: [{ path: '/api', upstream: upstream.url }] });
  const c = await WireClient.connect(p.port);
  try {
    const one = 'GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n';
    c.write(`${one.repeat(count)}GET /api/after-many HTTP/1.1\r\nHost: a\r\n\r\n`);
    for (let i = 0; i < count; i++) {
      const r = await c.next({ timeoutMs: 10000 });
      if (r.status !== 404) assert.fail(`response ${i}: ${r.status}`);
    }
    const last = await c.next({ timeoutMs: 10000 });
    assert.equal(last.status, 200);
    assert.equal(JSON.parse(last.body.toString()).url, '/api/after-many');
  } finally {
    c.close();
    await p.close();
  }
  assert.deepEqual(
    upstream.requests.slice(before).map((r) => r.url),
    ['/api/after-many'],
  );
});

test('empty lines before a request-line are ignored, also when the request arrives in pieces after them', async () => {
  // Regression: a blank line found among the leading empty lines made an incomplete head a 400.
  const before = upstream.requests.length;
  const c = await WireClient.connect(proxy.port);
  try {
    // A POST followed by extra CRLFs (some clients send them after a body), then the next request split.
    c.write(
      'POST /crlf-a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi\r\n\r\nGET /crlf-b HTTP/1.1\r\nHo',
    );
    assert.equal((await c.next()).status, 200);
    await new Promise((r) => setTimeout(r, 30));
    c.write('st: a\r\n\r\n');
    const r2 = await c.next();
    assert.equal(r2.status, 200);
    assert.equal(JSON.parse(r2.body.toString()).url, '/crlf-b');
    c.write('\r\n\r\n\r\n');
    await new Promise((r) => setTimeout(r, 30));
    c.write('GET /crlf-c HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(JSON.parse((await c.next()).body.toString()).url, '/crlf-c');
  } finally {
    c.close();
  }
  assert.deepEqual(
    upstream.requests.slice(before).map((r) => r.url),
    ['/crlf-a', '/crlf-b', '/crlf-c'],
  );
});
