/**
 * Slow clients must not hold upstreams: `request_body_timeout_ms` is the time allowed between two pieces
 * of a request body, over HTTP/1.1 and on each HTTP/2 stream. A client that stalls mid-body gets 408 and
 * the upstream request is aborted (its connection closed); a client that keeps sending, slowly, is not
 * cut off.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const TIMEOUT_MS = 400;

let upstream: HttpUpstream;
let proxy: StartedProxy;
/** Upstream sockets whose request started, and whether each has closed. */
const upstreamSockets: { closed: boolean }[] = [];

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const body = `got ${req.body.length}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  upstream.server.on('request', (req: http.IncomingMessage) => {
    const entry = { closed: false };
    upstreamSockets.push(entry);
    req.socket.once('close', () => {
      entry.closed = true;
    });
  });
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    request_body_timeout_ms: TIMEOUT_MS,
    connection_timeout_ms: 10_000,
    routes: [{ path: '/', upstream: upstream.url }],
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

describe('request_body_timeout_ms', () => {
  test('HTTP/1.1: a body that stalls is answered 408 in time and its upstream request aborted', async () => {
    const before = upstreamSockets.length;
    const socket = net.connect(proxy.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    const started = Date.now();
    socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789');
    await waitUntil(() => text.includes('\r\n\r\n'), 5000, 'the answer');
    const elapsed = Date.now() - started;
    socket.destroy();
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /ZP_ERR_REQUEST_TIMEOUT/);
    assert.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + 1000, `answered after ${elapsed} ms`);
    await waitUntil(() => upstreamSockets.length > before, 2000, 'the request at the upstream');
    await waitUntil(() => upstreamSockets[before]!.closed, 2000, 'the upstream connection closed');
  });

  test('HTTP/2: a stream whose body stalls gets 408; the connection and its other streams go on', async () => {
    const before = upstreamSockets.length;
    const session = http2.connect(proxy.url);
    try {
      const started = Date.now();
      const stalled = session.request({ ':method': 'POST', ':path': '/upload', 'content-length': '100' });
      stalled.write('0123456789');
      const status = await new Promise<number>((resolve, reject) => {
        stalled.on('response', (h) => resolve(Number(h[':status'])));
        stalled.on('error', reject);
      });
      stalled.resume();
      const elapsed = Date.now() - started;
      assert.equal(status, 408);
      assert.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + 1000, `answered after ${elapsed} ms`);
      await waitUntil(() => upstreamSockets.length > before, 2000, 'the request at the upstream');
      await waitUntil(() => upstreamSockets[before]!.closed, 2000, 'the upstream connection closed');
      // The same connection serves another stream.
      const next = session.request({ ':path': '/after' });
      const nextStatus = await new Promise<number>((resolve) =>
        next.on('response', (h) => resolve(Number(h[':status']))),
      );
      next.resume();
      assert.equal(nextStatus, 200);
      assert.equal(session.closed, false);
    } finally {
      session.close();
    }
  });

  test('a body that keeps coming, slowly, is not cut off (the timeout is between pieces, not for the whole body)', async () => {
    const session = http2.connect(proxy.url);
    try {
      const req = session.request({ ':method': 'POST', ':path': '/slow', 'content-length': '8' });
      let body = '';
      const done = new Promise<number>((resolve) => {
        req.on('response', (h) => {
          req.on('data', (c: Buffer) => {
            body += c.toString();
          });
          req.on('end', () => resolve(Number(h[':status'])));
        });
      });
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, TIMEOUT_MS / 2));
        if (i < 7) req.write('x');
        else req.end('x');
      }
      assert.equal(await done, 200);
      assert.equal(body, 'got 8');
    } finally {
      session.close();
    }
    const socket = net.connect(proxy.port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    socket.write('POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n');
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, TIMEOUT_MS / 2));
      socket.write('y');
    }
    await waitUntil(() => text.includes('got 4'), 5000, 'the answer');
    socket.destroy();
    assert.match(text, /^HTTP\/1\.1 200 /);
  });
});
