/**
 * Circuit breaking (`circuit_breaking`, docs/upstreams.md): each limit, reached with real upstreams that
 * hold their answers, is answered 503 ZP_ERR_UPSTREAM_OVERLOADED at once (long before any timeout), the
 * upstream never sees more than the limit lets through, and the limit is free again once the exchanges
 * end. A retry over circuit_breaking.max_retries is not sent: the first failure is the answer. HTTP/2
 * upstreams queue on their streams the same way. Through the real CLI with two worker threads, /status
 * lists the limits, the load and the refusals, and /metrics counts every 503 (the limits are per worker).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { LIMIT_PENDING, LIMIT_REQUESTS, LIMIT_RETRIES } from '../../src/upstream/circuit-breaker.ts';
import { startCli } from '../helpers/cli-process.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { errorCodeOf, type SimpleResponse, sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort } from '../helpers/upstream.ts';

/** Longest a refusal may take: far below every timeout of the configs here (connect 5 s, response 60 s). */
const PROMPT_MS = 500;

/**
 * An upstream that holds every request until release(): it counts the requests and connections it has at
 * once (and the most of each it ever had). A path starting with /reset-first has its connection closed
 * the first time it is seen, without an answer (a `reset` failure, retried for GET).
 */
interface Gate {
  readonly url: string;
  readonly port: number;
  inFlight: number;
  maxInFlight: number;
  connections: number;
  maxConnections: number;
  /** Paths of the requests seen, in order. */
  readonly seen: string[];
  /** Requests held now (release() answers them all at once: 0 right after). */
  readonly holding: number;
  /** Answers every request held so far with 200. */
  release(): void;
  close(): Promise<void>;
}

async function startGate(): Promise<Gate> {
  const held: http.ServerResponse[] = [];
  const failedOnce = new Set<string>();
  const sockets = new Set<Socket>();
  const server = http.createServer((req, res) => {
    const path = req.url ?? '';
    gate.seen.push(path);
    if (path.startsWith('/reset-first') && !failedOnce.has(path)) {
      failedOnce.add(path);
      req.socket.destroy();
      return;
    }
    gate.inFlight++;
    gate.maxInFlight = Math.max(gate.maxInFlight, gate.inFlight);
    res.on('close', () => gate.inFlight--);
    held.push(res);
  });
  server.keepAliveTimeout = 10_000;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    gate.connections++;
    gate.maxConnections = Math.max(gate.maxConnections, gate.connections);
    socket.on('close', () => {
      sockets.delete(socket);
      gate.connections--;
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const gate: Gate = {
    url: `http://127.0.0.1:${port}`,
    port,
    inFlight: 0,
    maxInFlight: 0,
    connections: 0,
    maxConnections: 0,
    seen: [],
    get holding() {
      return held.length;
    },
    release() {
      for (const res of held.splice(0)) res.end('released');
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  return gate;
}

/** Sends a GET and times its answer. */
async function timed(port: number, path: string): Promise<{ res: SimpleResponse; ms: number }> {
  const start = performance.now();
  const res = await sendRequest(port, path, { timeoutMs: 10_000 });
  return { res, ms: performance.now() - start };
}

function assertOverloaded(r: { res: SimpleResponse; ms: number }, limit: string): void {
  assert.equal(r.res.status, 503, r.res.text);
  assert.equal(errorCodeOf(r.res), 'ZP_ERR_UPSTREAM_OVERLOADED');
  assert.match(r.res.text, new RegExp(limit));
  assert.ok(r.ms < PROMPT_MS, `answered in ${r.ms.toFixed(0)} ms`);
}

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function setup(
  routeExtra: Record<string, unknown>,
  upstreamDefaults: Record<string, unknown> = {},
): Promise<{ gate: Gate; proxy: StartedProxy }> {
  const gate = await startGate();
  const proxy = await startProxy({
    access_log: { enabled: false },
    upstream_defaults: upstreamDefaults,
    routes: [{ path: '/', upstream: gate.url, ...routeExtra }],
  });
  cleanups.push(
    () => gate.close(),
    () => proxy.close(200),
  );
  return { gate, proxy };
}

describe('circuit breaking', () => {
  test('max_requests: the request past the limit is answered 503 at once; freed when the exchanges end', async () => {
    const { gate, proxy } = await setup({ circuit_breaking: { max_requests: 3, max_pending: null } });
    const held = [1, 2, 3].map((i) => sendRequest(proxy.port, `/held/${i}`, { timeoutMs: 10_000 }));
    await waitUntil(() => gate.holding === 3, 3000, 'three requests at the upstream');
    assertOverloaded(await timed(proxy.port, '/over'), 'max_requests');
    assertOverloaded(await timed(proxy.port, '/over-again'), 'max_requests');
    assert.equal(gate.maxInFlight, 3);
    assert.ok(!gate.seen.includes('/over'), 'the refused request never reached the upstream');
    gate.release();
    for (const res of await Promise.all(held)) assert.equal(res.status, 200);
    // The limit is free again: three more go through at once.
    const again = [1, 2, 3].map((i) => sendRequest(proxy.port, `/again/${i}`, { timeoutMs: 10_000 }));
    await waitUntil(() => gate.holding === 3, 3000, 'three more at the upstream');
    gate.release();
    for (const res of await Promise.all(again)) assert.equal(res.status, 200);
    const breaker = proxy.server.runtime.routes[0]!.breaker;
    assert.equal(breaker.refused[LIMIT_REQUESTS], 2);
    assert.equal(proxy.server.runtime.routes[0]!.group.budget.inFlight, 0);
  });

  test('max_pending: requests queued behind busy connections are bounded; the next one is answered 503 at once', async () => {
    const { gate, proxy } = await setup(
      { circuit_breaking: { max_pending: 2 } },
      { max_connections_per_target: 2 },
    );
    const held = [1, 2].map((i) => sendRequest(proxy.port, `/busy/${i}`, { timeoutMs: 10_000 }));
    await waitUntil(() => gate.holding === 2, 3000, 'two connections busy');
    const queued = [1, 2].map((i) => sendRequest(proxy.port, `/queued/${i}`, { timeoutMs: 10_000 }));
    const breaker = proxy.server.runtime.routes[0]!.breaker;
    await waitUntil(() => breaker.pending === 2, 3000, 'two requests queued');
    assertOverloaded(await timed(proxy.port, '/over'), 'max_pending');
    assert.equal(gate.maxConnections, 2, 'never more connections than max_connections_per_target');
    gate.release();
    for (const res of await Promise.all(held)) assert.equal(res.status, 200);
    // The queued ones get the connections the first two free, in turn.
    const arrived = (prefix: string, n: number) => () =>
      gate.seen.filter((p) => p.startsWith(prefix)).length === n && gate.holding === 2;
    await waitUntil(arrived('/queued/', 2), 3000, 'the queued requests at the upstream');
    gate.release();
    for (const res of await Promise.all(queued)) assert.equal(res.status, 200);
    assert.equal(breaker.pending, 0);
    assert.equal(breaker.refused[LIMIT_PENDING], 1);
    assert.ok(gate.maxInFlight <= 2);
    // Freed: the queue takes two again.
    const next = [1, 2, 3, 4].map((i) => sendRequest(proxy.port, `/next/${i}`, { timeoutMs: 10_000 }));
    await waitUntil(() => gate.holding === 2 && breaker.pending === 2, 3000, 'two busy, two queued');
    gate.release();
    await waitUntil(arrived('/next/', 4), 3000, 'the queued two');
    gate.release();
    for (const res of await Promise.all(next)) assert.equal(res.status, 200);
  });

  test('max_pending 0: no queue at all, a request that would wait is refused', async () => {
    const { gate, proxy } = await setup(
      { circuit_breaking: { max_pending: 0 } },
      { max_connections_per_target: 1 },
    );
    const held = sendRequest(proxy.port, '/busy', { timeoutMs: 10_000 });
    await waitUntil(() => gate.holding === 1, 3000, 'the connection busy');
    assertOverloaded(await timed(proxy.port, '/over'), 'max_pending');
    gate.release();
    assert.equal((await held).status, 200);
    // The connection is idle again: the next request takes it.
    const next = sendRequest(proxy.port, '/next', { timeoutMs: 10_000 });
    await waitUntil(() => gate.holding === 1, 3000, 'the next request');
    gate.release();
    assert.equal((await next).status, 200);
  });

  test('max_requests_per_target and max_pending_per_target bound what one target of the route gets', async () => {
    const other = await startGate();
    cleanups.push(() => other.close());
    const first = await startGate();
    cleanups.push(() => first.close());
    const p = await startProxy({
      access_log: { enabled: false },
      upstream_defaults: { max_connections_per_target: 1 },
      routes: [
        {
          path: '/',
          upstream: [first.url, other.url],
          // One in flight per target, none queued: the route as a whole takes two.
          circuit_breaking: { max_requests_per_target: 1, max_pending_per_target: 0, max_pending: null },
        },
      ],
    });
    cleanups.push(() => p.close(200));
    const held = [1, 2].map((i) => sendRequest(p.port, `/held/${i}`, { timeoutMs: 10_000 }));
    await waitUntil(() => first.holding === 1 && other.holding === 1, 3000, 'one request at each target');
    // Round robin sends the next to one of the two busy targets: refused by that target's limit.
    assertOverloaded(await timed(p.port, '/over'), 'max_requests_per_target');
    assert.equal(first.maxInFlight, 1);
    assert.equal(other.maxInFlight, 1);
    first.release();
    other.release();
    for (const res of await Promise.all(held)) assert.equal(res.status, 200);
    const breaker = p.server.runtime.routes[0]!.breaker;
    assert.equal(breaker.targets[0]!.active + breaker.targets[1]!.active, 0);
  });

  test('max_retries: a retry over the limit is not sent, the first failure is the answer', async () => {
    const { gate, proxy } = await setup({
      retry: { attempts: 2, on: ['reset'], min_concurrent: 10, budget_percent: 100 },
      circuit_breaking: { max_retries: 1 },
    });
    // Reset, then retried on a fresh connection, where it is held: one retry in flight.
    const retried = sendRequest(proxy.port, '/reset-first/1', { timeoutMs: 10_000 });
    await waitUntil(() => gate.holding === 1, 3000, 'the retry at the upstream');
    const budget = proxy.server.runtime.routes[0]!.group.budget;
    assert.equal(budget.retries, 1);
    const start = performance.now();
    const refused = await sendRequest(proxy.port, '/reset-first/2', { timeoutMs: 10_000 });
    assert.ok(performance.now() - start < PROMPT_MS);
    assert.equal(refused.status, 502, refused.text);
    assert.equal(errorCodeOf(refused), 'ZP_ERR_UPSTREAM_RESET');
    assert.equal(gate.seen.filter((p) => p === '/reset-first/2').length, 1, 'not sent again');
    const breaker = proxy.server.runtime.routes[0]!.breaker;
    assert.equal(breaker.refused[LIMIT_RETRIES], 1);
    gate.release();
    assert.equal((await retried).status, 200);
    assert.equal(budget.retries, 0);
    // Freed: the next reset is retried again.
    const next = sendRequest(proxy.port, '/reset-first/3', { timeoutMs: 10_000 });
    await waitUntil(() => gate.holding === 1, 3000, 'the next retry at the upstream');
    gate.release();
    assert.equal((await next).status, 200);
    assert.equal(gate.seen.filter((p) => p === '/reset-first/3').length, 2);
  });

  test('HTTP/2 upstream: requests queue for its streams, bounded by max_pending', async () => {
    let inFlight = 0;
    const held: http2.ServerHttp2Stream[] = [];
    // One stream at a time on its one session.
    const h2 = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
    const sessions = new Set<http2.ServerHttp2Session>();
    h2.on('session', (s) => {
      sessions.add(s);
      s.on('error', () => {});
      s.on('close', () => sessions.delete(s));
    });
    h2.on('stream', (stream) => {
      stream.on('error', () => {});
      inFlight++;
      stream.on('close', () => inFlight--);
      held.push(stream);
    });
    await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
    const port = (h2.address() as AddressInfo).port;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          h2.close(() => resolve());
          for (const s of sessions) s.destroy();
        }),
    );
    const proxy = await startProxy({
      access_log: { enabled: false },
      upstream_defaults: { max_connections_per_target: 1 },
      routes: [{ path: '/', upstream: `h2c://127.0.0.1:${port}`, circuit_breaking: { max_pending: 1 } }],
    });
    cleanups.push(() => proxy.close(200));
    const release = () => {
      for (const s of held.splice(0)) {
        s.respond({ ':status': 200 });
        s.end('released');
      }
    };
    const first = sendRequest(proxy.port, '/one', { timeoutMs: 10_000 });
    await waitUntil(() => held.length === 1, 3000, 'the stream open');
    const second = sendRequest(proxy.port, '/two', { timeoutMs: 10_000 });
    const breaker = proxy.server.runtime.routes[0]!.breaker;
    await waitUntil(() => breaker.pending === 1, 3000, 'one queued for a stream');
    assertOverloaded(await timed(proxy.port, '/three'), 'max_pending');
    release();
    assert.equal((await first).status, 200);
    await waitUntil(() => held.length === 1, 3000, 'the queued one on the stream');
    release();
    assert.equal((await second).status, 200);
    assert.equal(breaker.pending, 0);
  });

  test('/status and /metrics with two worker threads: the limits, the load and every refusal (per worker)', async () => {
    const gate = await startGate();
    cleanups.push(() => gate.close());
    const port = await freePort();
    const admin = await freePort();
    const cli = startCli({
      host: '127.0.0.1',
      port,
      thread_count: 2,
      access_log: { enabled: false },
      shutdown_grace_ms: 500,
      admin: { port: admin },
      routes: [{ path: '/', upstream: gate.url, circuit_breaking: { max_requests: 1 } }],
    });
    cleanups.push(() => cli.cleanup());
    await cli.waitForLog(
      (l) => l.msg === 'ready' || (l.msg === 'listening' && l.worker === undefined),
      20_000,
    );
    // Six at once on new connections, spread by the kernel: each worker lets one through.
    const sent = [1, 2, 3, 4, 5, 6].map((i) => sendRequest(port, `/held/${i}`, { timeoutMs: 10_000 }));
    const settled: SimpleResponse[] = [];
    for (const p of sent) void p.then((r) => settled.push(r));
    await waitUntil(() => gate.holding + settled.length === 6, 5000, 'every request held or answered');
    const through = gate.holding;
    assert.ok(through >= 1 && through <= 2, `${through} reached the upstream (one per worker at most)`);
    for (const r of settled) {
      assert.equal(r.status, 503);
      assert.equal(errorCodeOf(r), 'ZP_ERR_UPSTREAM_OVERLOADED');
    }
    // The gauges are sampled once a second.
    let status: {
      routes: {
        circuit_breaking: {
          limits: Record<string, number | null>;
          load: Record<string, number>;
          refused: Record<string, number>;
        };
        upstream: { url: string; load: Record<string, number>; refused: Record<string, number> }[];
      }[];
    } = { routes: [] };
    for (let i = 0; i < 30; i++) {
      status = JSON.parse((await sendRequest(admin, '/status')).text);
      if (status.routes[0]?.circuit_breaking.load.in_flight === through) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const route = status.routes[0]!;
    assert.deepEqual(route.circuit_breaking.limits, {
      max_requests: 1,
      max_pending: 1024,
      max_retries: null,
      max_requests_per_target: null,
      max_pending_per_target: null,
    });
    assert.equal(route.circuit_breaking.load.in_flight, through);
    assert.equal(route.circuit_breaking.load.pending, 0);
    assert.equal(route.circuit_breaking.refused.requests, 6 - through);
    assert.equal(route.upstream[0]!.load.in_flight, through);
    assert.equal(route.upstream[0]!.refused.requests, 6 - through);
    const metrics = (await sendRequest(admin, '/metrics')).text;
    const line = metrics
      .split('\n')
      .find((l) => l.startsWith('zproxy_upstream_overload_total{') && l.includes('limit="requests"'));
    assert.ok(line !== undefined, 'the overload counter is exposed');
    assert.equal(Number(line.split(' ').pop()), 6 - through);
    gate.release();
    for (const r of await Promise.all(sent)) assert.ok(r.status === 200 || r.status === 503);
  });
});
