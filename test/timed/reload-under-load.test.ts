/**
 * The acceptance run of reload: an instance of two worker threads serves HTTP/1.1 keep-alive, HTTP/2 and
 * open WebSocket tunnels without pause while its config is reloaded 20 times (a route added and one
 * removed each time, the upstream of a route changed), with a bad file in the middle. No request fails,
 * no tunnel closes, each change serves within a second on every worker, and the bad file changes nothing
 * and is reported.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import { after, before, test } from 'node:test';
import type { WebSocket } from 'ws';
import { startCli } from '../helpers/cli-process.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startNamedUpstream } from '../helpers/upstream.ts';
import { nextMessage, openWs, startWsUpstream, type WsUpstream } from '../helpers/websocket.ts';

const RELOADS = 20;
const BAD_AT = 10;
const TUNNELS = 4;

let a: HttpUpstream;
let b: HttpUpstream;
let echo: WsUpstream;

before(async () => {
  a = await startNamedUpstream('a');
  b = await startNamedUpstream('b');
  echo = await startWsUpstream();
});

after(async () => {
  await a.close();
  await b.close();
  await echo.close();
});

test('20 reloads under HTTP/1.1, HTTP/2 and WebSocket load: nothing fails, nothing closes, each change serves within a second', async (t) => {
  const port = await freePort();
  /** Generation `i`: /stable goes to a or b by turn, /v<i> is added and /v<i-1> removed. */
  const config = (i: number) => ({
    host: '127.0.0.1',
    port,
    thread_count: 2,
    worker_mode: 'threads',
    protocols: ['http1', 'http2', 'websocket'],
    routes: [
      { path: '/stable', upstream: [i % 2 === 0 ? a.url : b.url] },
      { path: '/ws', upstream: [echo.url] },
      { path: `/v${i}`, upstream: [a.url] },
    ],
  });
  const cli = startCli(config(0));
  const failures: string[] = [];
  let served = 0;
  let running = true;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let h2: http2.ClientHttp2Session | null = null;
  const tunnels: WebSocket[] = [];
  let tunnelsClosed = 0;
  try {
    await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
    const session = http2.connect(`http://127.0.0.1:${port}`);
    h2 = session;
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    for (let t = 0; t < TUNNELS; t++) {
      const ws = await openWs(`ws://127.0.0.1:${port}/ws`);
      ws.on('close', () => tunnelsClosed++);
      tunnels.push(ws);
    }

    // The load: 4 HTTP/1.1 keep-alive loops, 4 HTTP/2 stream loops, the tunnels echoing; each loop
    // pauses a little between requests so that the load does not take all the CPU the reload needs.
    const pause = () => new Promise((r) => setTimeout(r, 3));
    const check = (what: string, status: number, text: string) => {
      if (status === 200 && /^[ab] \/stable/.test(text)) served++;
      else failures.push(`${what}: ${status} ${text.slice(0, 80)}`);
    };
    const http1Loop = async () => {
      while (running) {
        try {
          const res = await sendRequest(port, '/stable/h1', { agent });
          check('http1', res.status, res.text);
          await pause();
        } catch (error) {
          failures.push(`http1: ${(error as Error).message}`);
        }
      }
    };
    const http2Loop = async () => {
      while (running) {
        try {
          const res = await h2Request(session, { ':path': '/stable/h2' });
          check('http2', res.status, res.body.toString());
          await pause();
        } catch (error) {
          failures.push(`http2: ${(error as Error).message}`);
        }
      }
    };
    let echoes = 0;
    const tunnelLoop = async (ws: WebSocket, n: number) => {
      while (running) {
        const message = `t${n}-${echoes}`;
        const echoed = nextMessage(ws);
        ws.send(message);
        const reply = await Promise.race([
          echoed,
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000)),
        ]);
        if (reply === null || reply.data.toString() !== message) failures.push(`tunnel ${n}: no echo`);
        else echoes++;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const loops = [
      ...Array.from({ length: 4 }, http1Loop),
      ...Array.from({ length: 4 }, http2Loop),
      ...tunnels.map((ws, n) => tunnelLoop(ws, n)),
    ];

    let reloaded = 0;
    let failedReloads = 0;
    const visibleMs: number[] = [];
    for (let i = 1; i <= RELOADS; i++) {
      if (i === BAD_AT) {
        // A bad file: nothing changes, the failure is logged; /v<i-1> keeps serving.
        writeFileSync(
          cli.configFile,
          JSON.stringify({ ...config(i), routes: [{ path: '/x', upstream: ['ftp://nowhere'] }] }),
        );
        process.kill(cli.pid, 'SIGHUP');
        failedReloads++;
        await cli.waitForLog(
          () =>
            cli.logs.filter((l) => l.msg === 'reload failed; the running config keeps serving').length ===
            failedReloads,
          10_000,
          'the failed reload',
        );
        assert.equal((await sendRequest(port, `/v${i - 1}/still`)).status, 200);
        continue;
      }
      writeFileSync(cli.configFile, JSON.stringify(config(i)));
      const sent = performance.now();
      process.kill(cli.pid, 'SIGHUP');
      // Visible when several new connections (spread over both workers) all see the change.
      for (;;) {
        const results = await Promise.all(
          Array.from({ length: 4 }, () => sendRequest(port, `/v${i}/new`).then((r) => r.status)),
        );
        if (results.every((s) => s === 200)) break;
        assert.ok(performance.now() - sent < 1000, `generation ${i} not visible within a second: ${results}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      visibleMs.push(performance.now() - sent);
      reloaded++;
      await cli.waitForLog(
        () => cli.logs.filter((l) => l.msg === 'reloaded').length === reloaded,
        10_000,
        `reload ${i}`,
      );
      const gone = await Promise.all(
        Array.from({ length: 4 }, () => sendRequest(port, `/v${i - 1}/old`).then((r) => r.status)),
      );
      assert.deepEqual(gone, [404, 404, 404, 404], `/v${i - 1} removed on every worker`);
    }
    running = false;
    await Promise.all(loops);

    assert.deepEqual(failures, []);
    assert.equal(tunnelsClosed, 0, 'no tunnel closed');
    assert.equal(reloaded, RELOADS - 1);
    assert.ok(served > 200, `load ran throughout (${served} requests)`);
    assert.ok(echoes > 50, `tunnels carried messages throughout (${echoes})`);
    const failed = cli.logs.find((l) => l.msg === 'reload failed; the running config keeps serving')!;
    assert.match(JSON.stringify(failed.errors), /routes\[0\]\.upstream\[0\]/);
    // Both upstreams of /stable served: the changed upstream took effect.
    assert.ok(
      a.requests.some((r) => r.url === '/stable/h1') && b.requests.some((r) => r.url === '/stable/h2'),
    );
    assert.ok(Math.max(...visibleMs) < 1000);
    const sorted = [...visibleMs].sort((x, y) => x - y);
    t.diagnostic(
      `change visible after: median ${sorted[sorted.length >> 1]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms; ${served} requests, ${echoes} echoes`,
    );
  } finally {
    running = false;
    for (const ws of tunnels) ws.terminate();
    h2?.close();
    agent.destroy();
    await cli.cleanup();
  }
});
