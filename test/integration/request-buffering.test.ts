/**
 * Request buffering (`request_buffering.max_bytes`, docs/upstreams.md): a body up to the size is read
 * whole before an upstream connection is taken, so a client that sends it a byte every few milliseconds
 * holds no upstream meanwhile (the upstream sees the request only once the body is complete; a route that
 * streams shows the upstream seeing it long before). A buffered body goes again to another target after
 * the first one failed having received it, where the same body past retry.buffer_bytes is not retried.
 * A body longer than the size is read up to it, then streamed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { startScriptedUpstream } from '../helpers/http1-wire.ts';
import { startProxy } from '../helpers/proxy.ts';
import { errorCodeOf, sendRequest } from '../helpers/simple-request.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** An upstream that notes when each request head arrived and answers with its body's length. */
async function startTimedUpstream(): Promise<{
  url: string;
  heads: Map<string, number>;
  bodies: Map<string, number>;
}> {
  const heads = new Map<string, number>();
  const bodies = new Map<string, number>();
  const server = http.createServer((req, res) => {
    heads.set(req.url ?? '', performance.now());
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
    });
    req.on('end', () => {
      bodies.set(req.url ?? '', n);
      res.end(String(n));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, heads, bodies };
}

/**
 * A client that sends `length` body bytes one at a time, `gapMs` apart, after a Content-Length head;
 * resolves with the time its last byte was written and the response's status line and body.
 */
function slowPost(
  port: number,
  path: string,
  length: number,
  gapMs: number,
): Promise<{ lastByteAt: number; response: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let lastByteAt = 0;
    let response = '';
    socket.setEncoding('latin1');
    socket.on('data', (t: string) => {
      response += t;
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ lastByteAt, response }));
    socket.on('connect', () => {
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: test\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`,
      );
      let sent = 0;
      const timer = setInterval(() => {
        socket.write('x');
        sent++;
        if (sent === length) {
          clearInterval(timer);
          lastByteAt = performance.now();
        }
      }, gapMs);
    });
  });
}

describe('request buffering', () => {
  test('a slow body is read whole before the upstream sees the request; a streaming route shows the difference', async () => {
    const upstream = await startTimedUpstream();
    const proxy = await startProxy({
      access_log: { enabled: false },
      routes: [
        { path: '/buffered', upstream: upstream.url, request_buffering: { max_bytes: 1024 } },
        { path: '/streamed', upstream: upstream.url },
      ],
    });
    cleanups.push(() => proxy.close(200));
    const [buffered, streamed] = await Promise.all([
      slowPost(proxy.port, '/buffered', 40, 5),
      slowPost(proxy.port, '/streamed', 40, 5),
    ]);
    assert.match(buffered.response, /^HTTP\/1\.1 200 /);
    assert.ok(buffered.response.endsWith('40'), buffered.response);
    assert.match(streamed.response, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.bodies.get('/buffered'), 40);
    assert.equal(upstream.bodies.get('/streamed'), 40);
    // Buffered: the head reached the upstream only after the client's last byte.
    assert.ok(
      upstream.heads.get('/buffered')! >= buffered.lastByteAt,
      `upstream saw the head ${(buffered.lastByteAt - upstream.heads.get('/buffered')!).toFixed(0)} ms before the last byte`,
    );
    // Streamed: the upstream had the head while the client was still sending (about 200 ms of bytes).
    assert.ok(
      upstream.heads.get('/streamed')! < streamed.lastByteAt - 100,
      'a streamed body reaches the upstream as it comes',
    );
  });

  test('from an HTTP/2 client too: a stream whose body comes slowly reaches the upstream only once complete', async () => {
    const upstream = await startTimedUpstream();
    const proxy = await startProxy({
      access_log: { enabled: false },
      routes: [{ path: '/', upstream: upstream.url, request_buffering: { max_bytes: 1024 } }],
    });
    cleanups.push(() => proxy.close(200));
    const client = http2.connect(proxy.url);
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          client.close(() => resolve());
        }),
    );
    // No content-length: a body of unknown length, read whole since it stays under max_bytes.
    const req = client.request({ ':method': 'POST', ':path': '/h2-slow' });
    const answer = new Promise<string>((resolve, reject) => {
      let t = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        t += c;
      });
      req.on('end', () => resolve(t));
      req.on('error', reject);
    });
    let lastByteAt = 0;
    for (let i = 0; i < 40; i++) {
      req.write('x');
      await new Promise((r) => setTimeout(r, 5));
    }
    lastByteAt = performance.now();
    req.end();
    assert.equal(await answer, '40');
    assert.ok(upstream.heads.get('/h2-slow')! >= lastByteAt, 'the upstream saw the head after the last byte');
  });

  test('a buffered body is sent again to another target after the first failed having received it', async () => {
    const body = Buffer.alloc(200 * 1024, 'abcdefghij');
    const digest = createHash('sha256').update(body).digest('hex');
    // The first request for a path, on either target, is read whole and its connection closed unanswered
    // (a `reset`, retried for PUT); any later one is answered with its body's length and digest.
    const failed = new Set<string>();
    const seen: { target: string; path: string; bytes: number; digest: string }[] = [];
    const make = async (name: string) =>
      startScriptedUpstream((req, socket) => {
        seen.push({
          target: name,
          path: req.target,
          bytes: req.body.length,
          digest: createHash('sha256').update(req.body).digest('hex'),
        });
        if (!failed.has(req.target)) {
          failed.add(req.target);
          socket.destroy();
          return undefined;
        }
        const answer = `${name} ${req.body.length} ${createHash('sha256').update(req.body).digest('hex')}`;
        return `HTTP/1.1 200 OK\r\nContent-Length: ${answer.length}\r\n\r\n${answer}`;
      });
    const a = await make('a');
    const b = await make('b');
    cleanups.push(
      () => a.close(),
      () => b.close(),
    );
    const proxy = await startProxy({
      access_log: { enabled: false },
      upstream_defaults: { retry: { attempts: 2, on: ['reset'], buffer_bytes: 1024 } },
      routes: [
        {
          path: '/buffered',
          upstream: [a.url, b.url],
          request_buffering: { max_bytes: 1024 * 1024 },
        },
        { path: '/streamed', upstream: [a.url, b.url] },
      ],
    });
    cleanups.push(() => proxy.close(200));
    const res = await sendRequest(proxy.port, '/buffered/put', { method: 'PUT', body, timeoutMs: 10_000 });
    assert.equal(res.status, 200, res.text);
    const attempts = seen.filter((s) => s.path === '/buffered/put');
    assert.equal(attempts.length, 2);
    assert.notEqual(attempts[0]!.target, attempts[1]!.target, 'the retry went to the other target');
    for (const s of attempts) {
      assert.equal(s.bytes, body.length);
      assert.equal(s.digest, digest);
    }
    assert.equal(res.text, `${attempts[1]!.target} ${body.length} ${digest}`);
    // The same request on a route that streams: past retry.buffer_bytes, it is not sent again.
    const streamed = await sendRequest(proxy.port, '/streamed/put', {
      method: 'PUT',
      body,
      timeoutMs: 10_000,
    });
    assert.equal(streamed.status, 502, streamed.text);
    assert.equal(errorCodeOf(streamed), 'ZP_ERR_UPSTREAM_RESET');
    assert.equal(seen.filter((s) => s.path === '/streamed/put').length, 1);
  });

  test('a body longer than max_bytes is read up to it, then streamed whole', async () => {
    const upstream = await startTimedUpstream();
    const proxy = await startProxy({
      access_log: { enabled: false },
      routes: [{ path: '/', upstream: upstream.url, request_buffering: { max_bytes: 10 } }],
    });
    cleanups.push(() => proxy.close(200));
    // Content-Length above the size: streamed from the start.
    const known = await sendRequest(proxy.port, '/known', { method: 'POST', body: 'y'.repeat(5000) });
    assert.equal(known.text, '5000');
    // Chunked (length unknown): buffered up to 10 bytes, then the rest streams after them.
    const chunked = await new Promise<string>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port, path: '/chunked', method: 'POST' });
      req.on('response', (r) => {
        let t = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => {
          t += c;
        });
        r.on('end', () => resolve(t));
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('0123456789');
      req.end();
    });
    assert.equal(chunked, '200');
  });
});
