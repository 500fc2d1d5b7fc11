/**
 * Downstream connection limits and timers: slow heads (slowloris), idle keep-alive connections and
 * `max_connections`.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { startProxy } from '../helpers/proxy.ts';
import { rawRequest, statusCodes } from '../helpers/raw-client.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { startHttpUpstream, startRawUpstream } from '../helpers/upstream.ts';

/** A raw keep-alive client connection that records what it receives and when the server ends it. */
class RawConnection {
  readonly socket: net.Socket;
  text = '';
  endedAt = 0;
  closed = false;
  error: string | null = null;
  readonly connected: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (c: Buffer) => {
      this.text += c.toString('latin1');
    });
    this.socket.on('end', () => {
      this.endedAt = performance.now();
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message;
    });
    this.socket.on('close', () => {
      this.closed = true;
      if (this.endedAt === 0) this.endedAt = performance.now();
    });
  }

  /** Sends a GET and waits for the n-th complete response on this connection (bodies are `ok`-sized JSON). */
  async get(path: string, timeoutMs = 2000): Promise<number> {
    const before = statusCodes(this.text).length;
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`);
    await waitUntil(
      () => statusCodes(this.text).length > before && this.text.endsWith('}'),
      timeoutMs,
      `the response to ${path}`,
    );
    return statusCodes(this.text).at(-1)!;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

test('slowloris: a head trickled slower than connection_timeout_ms gets 408 in time; others are served', async () => {
  const upstream = await startHttpUpstream();
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    connection_timeout_ms: 500,
  });
  const slow = new RawConnection(proxy.port);
  let trickle: NodeJS.Timeout | undefined;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await slow.connected;
    const t0 = performance.now();
    const head = 'GET /slow HTTP/1.1\r\nHost: a\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n';
    let i = 0;
    trickle = setInterval(() => {
      if (i < head.length && !slow.closed && slow.endedAt === 0) slow.socket.write(head[i++]!);
    }, 50);
    // Meanwhile a normal client keeps being answered on its own connection.
    let served = 0;
    while (slow.endedAt === 0 && performance.now() - t0 < 2000) {
      const res = await sendRequest(proxy.port, `/normal${served}`, { agent });
      assert.equal(res.status, 200);
      served++;
      await new Promise((r) => setTimeout(r, 50));
    }
    const elapsed = slow.endedAt - t0;
    assert.ok(slow.endedAt > 0, 'the slow connection was never closed');
    assert.ok(elapsed >= 450 && elapsed < 1100, `closed after ${elapsed} ms`);
    assert.ok(i < head.length, 'the head was complete before the timeout: the test is too slow');
    assert.match(slow.text, /^HTTP\/1\.1 408 /);
    assert.match(slow.text, /ZP_ERR_REQUEST_TIMEOUT/);
    assert.ok(served >= 3, `only ${served} normal requests were served`);
    assert.equal(upstream.requests.filter((r) => r.url === '/slow').length, 0);
    const log = proxy.accessLogs().find((l) => l.status === 408);
    assert.equal(log?.error, 'ZP_ERR_REQUEST_TIMEOUT');
  } finally {
    clearInterval(trickle);
    slow.destroy();
    agent.destroy();
    await proxy.close();
    await upstream.close();
  }
});

test('idle keep-alive connections are closed after connection_timeout_ms', async () => {
  const upstream = await startHttpUpstream();
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    connection_timeout_ms: 500,
  });
  const idle = new RawConnection(proxy.port);
  const neverUsed = new RawConnection(proxy.port);
  try {
    await Promise.all([idle.connected, neverUsed.connected]);
    const t0 = performance.now();
    assert.equal(await idle.get('/one'), 200);
    // A request before the timeout restarts the idle timer.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await idle.get('/two'), 200);
    const t1 = performance.now();
    await waitUntil(() => idle.endedAt > 0 && neverUsed.endedAt > 0, 2000, 'both connections to be ended');
    const idleFor = idle.endedAt - t1;
    assert.ok(idleFor >= 400 && idleFor < 1000, `used connection ended after ${idleFor} ms idle`);
    const neverFor = neverUsed.endedAt - t0;
    assert.ok(neverFor >= 400 && neverFor < 1000, `unused connection ended after ${neverFor} ms`);
    assert.equal(neverUsed.text, '', 'an idle connection is closed quietly');
    assert.equal(statusCodes(idle.text).length, 2);
    await waitUntil(() => proxy.server.connectionCount === 0, 3000, 'the proxy to drop the connections');
  } finally {
    idle.destroy();
    neverUsed.destroy();
    await proxy.close();
    await upstream.close();
  }
});

test('max_connections 3: a 4th connection is refused with 503 while the first 3 work; then accepted again', async () => {
  const upstream = await startHttpUpstream();
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    max_connections: 3,
    connection_timeout_ms: 5000,
  });
  const conns: RawConnection[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = new RawConnection(proxy.port);
      conns.push(c);
      await c.connected;
      assert.equal(await c.get(`/c${i}`), 200);
    }
    assert.equal(proxy.server.connectionCount, 3);

    const fourth = new RawConnection(proxy.port);
    conns.push(fourth);
    await fourth.connected;
    fourth.socket.write('GET /fourth HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => fourth.closed || fourth.endedAt > 0, 2000, 'the 4th connection to be refused');
    assert.match(fourth.text, /^HTTP\/1\.1 503 /);
    assert.match(fourth.text, /ZP_ERR_UPSTREAM_UNAVAILABLE/);
    assert.match(fourth.text, /\r\nConnection: close\r\n/i);
    assert.equal(upstream.requests.filter((r) => r.url === '/fourth').length, 0);
    fourth.destroy();

    for (let i = 0; i < 3; i++) assert.equal(await conns[i]!.get(`/again${i}`), 200);

    conns[0]!.destroy();
    await waitUntil(() => proxy.server.connectionCount === 2, 2000, 'the proxy to see the close');
    const fifth = new RawConnection(proxy.port);
    conns.push(fifth);
    await fifth.connected;
    assert.equal(await fifth.get('/fifth'), 200);
  } finally {
    for (const c of conns) c.destroy();
    await proxy.close();
    await upstream.close();
  }
});

test('max_connections: refused connections close with the client or after a linger (the proxy still stops)', async () => {
  const upstream = await startHttpUpstream();
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    max_connections: 1,
    connection_timeout_ms: 5000,
  });
  const first = new RawConnection(proxy.port);
  const refused: RawConnection[] = [];
  try {
    await first.connected;
    assert.equal(await first.get('/first'), 200);
    for (let i = 0; i < 3; i++) {
      const c = new RawConnection(proxy.port);
      refused.push(c);
      await c.connected;
      c.socket.end('GET /refused HTTP/1.1\r\nHost: a\r\n\r\n');
      await waitUntil(() => c.closed, 2000, 'the refused connection to close');
      assert.match(c.text, /^HTTP\/1\.1 503 /);
    }
    // A refused client that keeps its side open is dropped after a short linger.
    const holder = net.connect({ host: '127.0.0.1', port: proxy.port, allowHalfOpen: true });
    holder.on('error', () => {});
    let holderText = '';
    holder.on('data', (c: Buffer) => {
      holderText += c.toString('latin1');
    });
    holder.write('GET /holder HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => holderText.startsWith('HTTP/1.1 503 '), 2000, 'the 503 to the holder');
    first.destroy();
    await waitUntil(() => proxy.server.connectionCount === 0, 2000, 'the proxy to see the close');
    const t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      proxy.close(500).then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), 3000);
      }),
    ]);
    clearTimeout(timer);
    assert.ok(stopped, 'the proxy did not stop: a refused connection is still open');
    holder.destroy();
    assert.ok(performance.now() - t0 < 2500);
  } finally {
    first.destroy();
    for (const c of refused) c.destroy();
    // Bounded, so that a leaked connection fails this test instead of hanging the run.
    await Promise.race([proxy.close(), new Promise((r) => setTimeout(r, 3000).unref())]);
    await upstream.close();
  }
});

test('a request body that stalls longer than connection_timeout_ms gets 408; the upstream connection is closed', async () => {
  let upstreamClosed = false;
  const upstream = await startRawUpstream((socket) => {
    socket.on('close', () => {
      upstreamClosed = true;
    });
  });
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    connection_timeout_ms: 500,
  });
  try {
    const t0 = performance.now();
    const r = await rawRequest(
      proxy.port,
      'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc',
      {
        timeoutMs: 3000,
      },
    );
    const elapsed = performance.now() - t0;
    assert.equal(r.closedByServer, true);
    assert.match(r.text, /^HTTP\/1\.1 408 /);
    assert.match(r.text, /ZP_ERR_REQUEST_TIMEOUT/);
    assert.ok(elapsed >= 450 && elapsed < 1200, `answered after ${elapsed} ms`);
    await waitUntil(() => upstreamClosed, 1000, 'the upstream connection to close');
    assert.equal(proxy.accessLogs().at(-1)?.error, 'ZP_ERR_REQUEST_TIMEOUT');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
