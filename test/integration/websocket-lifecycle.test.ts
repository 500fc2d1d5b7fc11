/**
 * The life of WebSocket tunnels in zproxy: the idle timeout (global and per route, separate from the
 * keep-alive timeout), the cap on open tunnels, `websocket` missing from `protocols`, and a graceful stop
 * that lets tunnels run until the drain deadline and then closes them.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import type { WebSocket } from 'ws';
import { startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { closed, nextMessage, openWs, startWsUpstream, UnexpectedResponse } from '../helpers/websocket.ts';

function errorCode(body: string): string {
  return (JSON.parse(body) as { error: { code: string } }).error.code;
}

async function echo(ws: WebSocket, text: string): Promise<void> {
  const reply = nextMessage(ws);
  ws.send(text);
  assert.equal((await reply).data.toString(), text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

test('idle timeout: per route, reset by traffic either way, separate from the keep-alive timeout', async () => {
  const upstream = await startWsUpstream();
  const proxy = await startProxy({
    connection_timeout_ms: 200,
    websocket: { idle_timeout_ms: 60_000 },
    routes: [
      { path: '/short', upstream: upstream.url, websocket_idle_timeout_ms: 400 },
      { path: '/', upstream: upstream.url },
    ],
  });
  try {
    const long = await openWs(`ws://127.0.0.1:${proxy.port}/long`);
    const idle = await openWs(`ws://127.0.0.1:${proxy.port}/short/idle`);
    const busy = await openWs(`ws://127.0.0.1:${proxy.port}/short/busy`);
    const idleConn = upstream.connections[1]!;
    const t0 = performance.now();
    const idleClosed = closed(idle).then((c) => ({ ...c, at: performance.now() - t0 }));

    // The busy tunnel sees a message every 150 ms (client to upstream and back, then upstream pings).
    for (let i = 0; i < 6; i++) {
      await sleep(150);
      if (i % 2 === 0) await echo(busy, `tick ${i}`);
      else upstream.connections[2]!.ws.ping();
    }
    const idleResult = await idleClosed;
    assert.equal(idleResult.code, 1006);
    assert.ok(idleResult.at >= 380 && idleResult.at < 900, `idle tunnel closed after ${idleResult.at} ms`);
    await waitUntil(() => idleConn.closed !== null, 1000, 'the upstream side of the idle tunnel to close');

    // 900 ms later: the busy one is still open, and the /long one outlived connection_timeout_ms (200 ms).
    await echo(busy, 'still here');
    await echo(long, 'still here too');
    assert.equal(proxy.server.tunnelCount, 2);

    // Once the busy tunnel goes quiet, it times out too.
    const busyResult = await closed(busy);
    assert.equal(busyResult.code, 1006);
    await waitUntil(() => proxy.accessLogs().length === 2, 1000, 'the log lines of both /short tunnels');
    const lines = proxy.accessLogs();
    const idleLine = lines.find((l) => l.target === '/short/idle')!;
    assert.equal(idleLine.status, 101);
    assert.equal(idleLine.error, 'ZP_ERR_TUNNEL_IDLE_TIMEOUT');
    assert.equal(lines.find((l) => l.target === '/short/busy')!.error, 'ZP_ERR_TUNNEL_IDLE_TIMEOUT');
    assert.equal(proxy.server.tunnelCount, 1);
    assert.equal(upstream.connections[0]!.closed, null, 'the /long tunnel is still open');
    long.terminate();
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('tunnel cap: beyond websocket.max_tunnels the upgrade is answered 503 and nothing is forwarded', async () => {
  const upstream = await startWsUpstream();
  const proxy = await startProxy({
    websocket: { max_tunnels: 2 },
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    // Five handshakes at once: handshakes in progress hold their place, so exactly two get through.
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => openWs(`ws://127.0.0.1:${proxy.port}/burst/${i}`)),
    );
    const open = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
    const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
    assert.equal(open.length, 2);
    assert.equal(refused.length, 3);
    for (const err of refused) {
      assert.ok(err instanceof UnexpectedResponse);
      assert.equal(err.status, 503);
      assert.equal(errorCode(err.body), 'ZP_ERR_TUNNEL_LIMIT');
    }
    assert.equal(upstream.upgradeRequests.length, 2, 'the refused upgrades never reached the upstream');
    assert.equal(proxy.server.tunnelCount, 2);

    // A place frees up when a tunnel ends.
    open[0]!.close();
    await closed(open[0]!);
    await waitUntil(() => proxy.server.tunnelCount === 1, 1000, 'the tunnel to end');
    const again = await openWs(`ws://127.0.0.1:${proxy.port}/again`);
    await echo(again, 'room again');
    assert.equal(proxy.server.tunnelCount, 2);
    assert.equal(upstream.upgradeRequests.length, 3);
    // Ordinary requests are not affected by the cap.
    assert.equal((await sendRequest(proxy.port, '/plain')).status, 200);
    again.terminate();
    open[1]!.terminate();
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('websocket not in protocols: upgrades are answered 400 and the upstream sees nothing', async () => {
  const upstream = await startWsUpstream();
  const proxy = await startProxy({
    protocols: ['http1', 'http2'],
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    await assert.rejects(openWs(`ws://127.0.0.1:${proxy.port}/off`), (err) => {
      assert.ok(err instanceof UnexpectedResponse);
      assert.equal(err.status, 400);
      assert.equal(errorCode(err.body), 'ZP_ERR_WEBSOCKET_DISABLED');
      return true;
    });
    assert.equal(upstream.upgradeRequests.length, 0);
    assert.equal(upstream.plainRequests.length, 0);
    assert.equal(proxy.server.tunnelCount, 0);
    // HTTP goes on as usual.
    const res = await sendRequest(proxy.port, '/plain');
    assert.equal(res.status, 200);
    assert.equal(upstream.plainRequests.length, 1);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

/** Resolves with the outcome of a connection attempt: refused, or accepted. */
function probe(port: number): Promise<'refused' | 'accepted'> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve('accepted');
    });
    s.on('error', () => resolve('refused'));
  });
}

test('graceful stop: tunnels keep running until websocket.drain_timeout_ms, then are closed', async () => {
  const upstream = await startWsUpstream();
  const proxy = await startProxy({
    websocket: { drain_timeout_ms: 600 },
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    const clients = await Promise.all(
      [0, 1, 2].map((i) => openWs(`ws://127.0.0.1:${proxy.port}/drain/${i}`)),
    );
    assert.equal(proxy.server.tunnelCount, 3);
    const t0 = performance.now();
    const ends = clients.map((ws) => closed(ws).then((c) => ({ ...c, at: performance.now() - t0 })));
    const stopped = proxy.close(5000).then(() => performance.now() - t0);
    assert.equal(await probe(proxy.port), 'refused', 'no new connections once stopping');

    // During the drain the tunnels still carry messages both ways.
    await sleep(250);
    for (const ws of clients) await echo(ws, 'during the drain');
    upstream.connections[0]!.ws.send('upstream during the drain');
    assert.equal(clients.length, 3);
    assert.equal(proxy.server.tunnelCount, 3);

    const results = await Promise.all(ends);
    for (const r of results) {
      assert.equal(r.code, 1006);
      assert.ok(r.at >= 550 && r.at < 1500, `a tunnel closed after ${r.at} ms`);
    }
    const stopMs = await stopped;
    assert.ok(stopMs < 2000, `stop took ${stopMs} ms`);
    await waitUntil(
      () => upstream.connections.every((c) => c.closed !== null),
      1000,
      'the upstream sides to close',
    );
    await waitUntil(() => proxy.server.tunnelCount === 0, 1000, 'the tunnels to end');
    assert.equal(proxy.server.connectionCount, 0);
    const lines = proxy.accessLogs().filter((l) => String(l.target).startsWith('/drain/'));
    assert.equal(lines.length, 3);
    for (const l of lines) assert.equal(l.error, 'ZP_ERR_SHUTTING_DOWN');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('graceful stop: a grace period shorter than the drain cuts the tunnels at the grace', async () => {
  const upstream = await startWsUpstream();
  const proxy = await startProxy({
    websocket: { drain_timeout_ms: 10_000 },
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    const ws = await openWs(`ws://127.0.0.1:${proxy.port}/cut`);
    const t0 = performance.now();
    const end = closed(ws).then(() => performance.now() - t0);
    await proxy.close(300);
    const at = await end;
    assert.ok(at >= 250 && at < 1000, `closed after ${at} ms`);
    await waitUntil(() => upstream.connections[0]!.closed !== null, 1000, 'the upstream side to close');
    await waitUntil(() => proxy.server.tunnelCount === 0, 1000, 'the tunnel to end');
    assert.equal(proxy.accessLogs()[0]!.error, 'ZP_ERR_SHUTTING_DOWN');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
