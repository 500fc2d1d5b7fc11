/**
 * 2000 WebSocket tunnels held open at once through one zproxy process, idle, with the proxy's memory
 * measured before and after (the proxy runs alone in a child process, so the figures are its own, not the
 * test's clients and upstream). The figures are printed and belong in docs/websocket.md.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { WebSocket } from 'ws';
import { waitUntil } from '../helpers/simple-request.ts';
import { closed, nextMessage, openWs, startWsUpstream } from '../helpers/websocket.ts';

const TUNNELS = 2000;
const BATCH = 200;
const CHILD = fileURLToPath(new URL('../fixtures/proxy-process.ts', import.meta.url));

interface Stats {
  memory: NodeJS.MemoryUsage;
  connections: number;
  tunnels: number;
}

function request(child: ChildProcess, type: string): Promise<Stats> {
  return new Promise((resolve) => {
    const onMessage = (m: { type: string } & Stats) => {
      if (m.type !== type) return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.send({ type });
  });
}

const MiB = 1024 * 1024;

test(`${TUNNELS} idle tunnels held at once: the proxy's memory per tunnel`, async (t) => {
  const upstream = await startWsUpstream();
  const child = fork(
    CHILD,
    [JSON.stringify({ host: '127.0.0.1', port: 0, routes: [{ path: '/', upstream: upstream.url }] })],
    {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  const clients: WebSocket[] = [];
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port: number }) => resolve(m.port));
      child.once('exit', (code) => reject(new Error(`the proxy process exited (${code})`)));
    });
    const url = `ws://127.0.0.1:${port}`;

    // Warm up (code compiled, pools of buffers allocated), then the baseline.
    const warm = await Promise.all(Array.from({ length: 50 }, (_, i) => openWs(`${url}/warm/${i}`)));
    for (const ws of warm) {
      ws.send('warm');
      await nextMessage(ws);
      ws.close();
      await closed(ws);
    }
    await waitUntil(
      () => upstream.connections.every((c) => c.closed !== null),
      5000,
      'the warm-up tunnels to end',
    );
    await new Promise((r) => setTimeout(r, 200));
    const before = await request(child, 'stats');
    assert.equal(before.tunnels, 0);

    const t0 = performance.now();
    for (let i = 0; i < TUNNELS; i += BATCH) {
      const batch = await Promise.all(
        Array.from({ length: BATCH }, (_, j) => openWs(`${url}/idle/${i + j}`)),
      );
      clients.push(...batch);
    }
    const openMs = performance.now() - t0;
    // Every tunnel carries a message both ways before the measurement.
    await Promise.all(
      clients.map(async (ws, i) => {
        const reply = nextMessage(ws);
        ws.send(`tunnel ${i}`);
        assert.equal((await reply).data.toString(), `tunnel ${i}`);
      }),
    );
    await waitUntil(() => upstream.connections.length === 50 + TUNNELS, 5000, 'every upstream connection');
    await new Promise((r) => setTimeout(r, 300));
    const held = await request(child, 'stats');
    assert.equal(held.tunnels, TUNNELS);
    assert.equal(held.connections, TUNNELS);

    const rss = held.memory.rss - before.memory.rss;
    const heap = held.memory.heapUsed - before.memory.heapUsed;
    const external = held.memory.external - before.memory.external;
    const report =
      `${TUNNELS} idle tunnels (opened in ${Math.round(openMs)} ms): ` +
      `RSS ${(before.memory.rss / MiB).toFixed(1)} -> ${(held.memory.rss / MiB).toFixed(1)} MiB ` +
      `(+${(rss / MiB).toFixed(1)} MiB, ${(rss / TUNNELS / 1024).toFixed(1)} KiB per tunnel), ` +
      `heap used +${(heap / MiB).toFixed(1)} MiB (${(heap / TUNNELS / 1024).toFixed(1)} KiB per tunnel), ` +
      `external +${(external / MiB).toFixed(1)} MiB`;
    t.diagnostic(report);
    console.log(report);
    // Each tunnel is two sockets in the proxy; far above this would mean something is held per tunnel
    // that should not be (a buffer per tunnel, a leak).
    assert.ok(heap / TUNNELS < 16 * 1024, `heap per tunnel ${heap / TUNNELS} bytes`);
    assert.ok(rss / TUNNELS < 64 * 1024, `RSS per tunnel ${rss / TUNNELS} bytes`);

    // Closing every client releases every tunnel and every upstream connection.
    for (const ws of clients) ws.close(1000);
    await waitUntil(
      () => upstream.connections.every((c) => c.closed !== null),
      10_000,
      'every upstream side to close',
    );
    await waitUntil(() => clients.every((ws) => ws.readyState === ws.CLOSED), 5000, 'every client to close');
    const after = await request(child, 'stats');
    assert.equal(after.tunnels, 0);
    assert.equal(after.connections, 0);
  } finally {
    for (const ws of clients) ws.terminate();
    child.kill();
    await upstream.close();
  }
});
