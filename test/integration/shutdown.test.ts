/**
 * Graceful shutdown: in process (ProxyServer.stop through the test helper) and of the real CLI process
 * on SIGTERM. Exchanges in flight complete; new connections are refused; idle connections close at once.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { startCli } from '../helpers/cli-process.ts';
import { startProxy } from '../helpers/proxy.ts';
import { type SimpleResponse, sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const BODY_BYTES = 64 * 1024;

/** An upstream that answers every request after `delayMs` with BODY_BYTES of the path's last character. */
function slowUpstream(delayMs: number): { upstream: Promise<HttpUpstream>; received: () => number } {
  let received = 0;
  const upstream = startHttpUpstream((req, res) => {
    received++;
    setTimeout(() => {
      const body = Buffer.alloc(BODY_BYTES, req.url.at(-1)!);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    }, delayMs);
  });
  return { upstream, received: () => received };
}

function assertFullBodies(results: SimpleResponse[]): void {
  results.forEach((res, i) => {
    assert.equal(res.status, 200, `request ${i}`);
    assert.equal(res.body.length, BODY_BYTES, `request ${i}`);
    assert.ok(res.body.equals(Buffer.alloc(BODY_BYTES, String(i))), `request ${i} body`);
  });
}

/** Connects and resolves with what happened: refused, or closed by the server without a byte, or an answer. */
function probeConnect(port: number): Promise<'refused' | 'closed' | 'answered'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let answered = false;
    s.on('data', () => {
      answered = true;
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve('refused');
    });
    s.on('connect', () => s.write('GET /late HTTP/1.1\r\nHost: a\r\n\r\n'));
    s.on('close', () => resolve(answered ? 'answered' : 'closed'));
    setTimeout(() => s.destroy(), 2000).unref();
  });
}

test('graceful stop in process: 10 exchanges in flight complete, new connections refused, idle ones closed', async () => {
  const slow = slowUpstream(500);
  const upstream = await slow.upstream;
  const proxy = await startProxy({
    routes: [{ path: '/', upstream: upstream.url }],
    connection_timeout_ms: 10_000,
  });
  const idle = net.connect({ host: '127.0.0.1', port: proxy.port });
  try {
    // An idle keep-alive connection (one exchange done) and one that never sent anything.
    let idleText = '';
    let idleEndedAt = 0;
    idle.on('data', (c: Buffer) => {
      idleText += c.toString('latin1');
    });
    idle.on('end', () => {
      idleEndedAt = performance.now();
    });
    idle.on('error', () => {});
    idle.write('GET /0 HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => idleText.length >= BODY_BYTES, 3000, 'the idle connection exchange');
    const silent = net.connect({ host: '127.0.0.1', port: proxy.port });
    let silentEndedAt = 0;
    silent.on('end', () => {
      silentEndedAt = performance.now();
    });
    silent.on('error', () => {});
    await new Promise((r) => silent.once('connect', r));
    const before = slow.received();

    const inFlight = Array.from({ length: 10 }, (_, i) => sendRequest(proxy.port, `/${i}`));
    await waitUntil(() => slow.received() === before + 10, 3000, 'the 10 requests to reach the upstream');
    const t0 = performance.now();
    const stopped = proxy.close(5000);
    assert.equal(await probeConnect(proxy.port), 'refused');
    await waitUntil(() => idleEndedAt > 0 && silentEndedAt > 0, 1000, 'the idle connections to close');
    assert.ok(idleEndedAt - t0 < 300, `idle connection closed after ${idleEndedAt - t0} ms`);
    assert.ok(silentEndedAt - t0 < 300, `silent connection closed after ${silentEndedAt - t0} ms`);
    silent.destroy();

    const results = await Promise.all(inFlight);
    assertFullBodies(results);
    for (const res of results) assert.equal(res.headers.connection, 'close');
    await stopped;
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 2000, `stop took ${elapsed} ms`);
    assert.equal(proxy.server.connectionCount, 0);
    const ok = proxy.accessLogs().filter((l) => l.status === 200);
    assert.equal(ok.length, 11);
  } finally {
    idle.destroy();
    await proxy.close();
    await upstream.close();
  }
});

test('graceful stop in process: exchanges still running when the grace ends are cut off', async () => {
  const slow = slowUpstream(3000);
  const upstream = await slow.upstream;
  const proxy = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
  try {
    const pending = sendRequest(proxy.port, '/0').then(
      () => 'completed',
      () => 'cut',
    );
    await waitUntil(() => slow.received() === 1, 2000, 'the request to reach the upstream');
    const t0 = performance.now();
    await proxy.close(300);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed >= 250 && elapsed < 1500, `stop took ${elapsed} ms`);
    assert.equal(await pending, 'cut');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('the CLI process: SIGTERM lets exchanges in flight complete and exits 0 within the grace period', async () => {
  const slow = slowUpstream(500);
  const upstream = await slow.upstream;
  const port = await freePort();
  const cli = startCli({
    host: '127.0.0.1',
    port,
    thread_count: 1,
    protocols: ['http1'],
    shutdown_grace_ms: 3000,
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    await cli.waitForLog((l) => l.msg === 'listening', 10_000, 'listening');
    const inFlight = Array.from({ length: 5 }, (_, i) => sendRequest(port, `/${i}`));
    await waitUntil(() => slow.received() === 5, 3000, 'the 5 requests to reach the upstream');
    const t0 = performance.now();
    process.kill(cli.pid, 'SIGTERM');
    const results = await Promise.all(inFlight);
    assertFullBodies(results);
    const exit = await cli.exited;
    const elapsed = performance.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(elapsed < 3000, `exited after ${elapsed} ms`);
    const stopping = cli.logs.find((l) => l.msg === 'stopping');
    assert.equal(stopping?.signal, 'SIGTERM');
    assert.ok(cli.logs.some((l) => l.msg === 'stopped'));
    assert.equal(cli.logs.filter((l) => l.kind === 'access' && l.status === 200).length, 5);
    assert.equal(await probeConnect(port), 'refused');
  } finally {
    await cli.cleanup();
    await upstream.close();
  }
});
