/**
 * Worker processes (`worker_mode: processes`, the fallback where SO_REUSEPORT is missing): the real CLI
 * with thread_count 2 on a fixed free port. (Worker threads, the default: worker-threads.test.ts.) The supervisor starts two
 * workers, replaces one that dies, and on SIGTERM stops them all and exits 0. Access log lines carry the
 * PID of the worker that answered.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { type CliProcess, type LogLine, pidAlive, startCli } from '../helpers/cli-process.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
let cli: CliProcess;
let port: number;

before(async () => {
  // Paths under /slow/ are answered after 500 ms (exchanges in flight during a stop).
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url });
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url.startsWith('/slow/')) setTimeout(answer, 500);
    else answer();
  });
  port = await freePort();
  cli = startCli({
    host: '127.0.0.1',
    port,
    thread_count: 2,
    worker_mode: 'processes',
    protocols: ['http1'],
    shutdown_grace_ms: 2000,
    access_log: { enabled: true },
    routes: [{ path: '/', upstream: upstream.url }],
  });
});

after(async () => {
  await cli.cleanup();
  await upstream.close();
});

const accessLines = (): LogLine[] => cli.logs.filter((l) => l.kind === 'access');

/** Sends requests on new connections until `count` have succeeded; returns the PIDs that answered them. */
async function requestsSucceed(count: number, tag: string): Promise<Set<number>> {
  for (let i = 0; i < count; i++) {
    const res = await sendRequest(port, `/${tag}/${i}`);
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).url, `/${tag}/${i}`);
  }
  const targets = new Set(Array.from({ length: count }, (_, i) => `/${tag}/${i}`));
  await waitUntil(
    () => accessLines().filter((l) => targets.has(String(l.target))).length === count,
    3000,
    `the access lines of ${tag}`,
  );
  return new Set(
    accessLines()
      .filter((l) => targets.has(String(l.target)))
      .map((l) => l.pid as number),
  );
}

test('both workers start, report ready and answer requests', async () => {
  await cli.waitForLog((l) => l.msg === 'ready', 15_000, 'ready');
  const started = cli.logs.filter((l) => l.msg === 'worker started');
  assert.equal(started.length, 2);
  assert.deepEqual(started.map((l) => l.worker).sort(), [1, 2]);
  assert.equal(new Set(cli.workerPids()).size, 2);
  for (const l of started) assert.equal(l.pid, cli.pid, 'logged by the supervisor');
  assert.ok(cli.workerPids().every(pidAlive));
  // Every worker logs its own listener, on the same port.
  for (const wpid of cli.workerPids()) {
    const listening = await cli.waitForLog((l) => l.msg === 'listening' && l.pid === wpid, 3000, 'listening');
    assert.equal(listening.port, port);
  }

  // The kernel spreads connections over both workers (SO_REUSEPORT); with 40 connections both answer.
  const pids = await requestsSucceed(40, 'start');
  for (const pid of pids) assert.ok(cli.workerPids().includes(pid), `pid ${pid} is not a worker`);
  assert.equal(pids.size, 2, 'only one worker answered 40 connections');
});

test('a worker killed with SIGKILL is replaced and requests keep succeeding', async () => {
  const [victim, survivor] = cli.workerPids();
  const victimWorker = cli.logs.find((l) => l.msg === 'worker started' && l.worker_pid === victim)!.worker;
  process.kill(victim!, 'SIGKILL');
  const exited = await cli.waitForLog(
    (l) => l.msg === 'worker exited' && l.worker_pid === victim,
    5000,
    'worker exited',
  );
  assert.equal(exited.signal, 'SIGKILL');
  assert.equal(exited.worker, victimWorker);
  assert.equal(pidAlive(victim!), false);
  // The surviving worker answers meanwhile.
  const during = await requestsSucceed(5, 'during');
  for (const pid of during) assert.notEqual(pid, victim);

  const replaced = await cli.waitForLog(
    (l) => l.msg === 'worker started' && l.worker === victimWorker && l.worker_pid !== victim,
    5000,
    'the replacement worker',
  );
  const replacement = replaced.worker_pid as number;
  assert.notEqual(replacement, survivor);
  await cli.waitForLog(
    (l) => l.msg === 'listening' && l.pid === replacement,
    10_000,
    'the replacement listening',
  );
  assert.ok(pidAlive(replacement));
  assert.ok(pidAlive(survivor!));

  const pids = await requestsSucceed(40, 'after');
  assert.ok(!pids.has(victim!));
  for (const pid of pids) assert.ok(pid === survivor || pid === replacement, `pid ${pid} answered`);
  assert.equal(pids.size, 2, 'the replacement worker answered none of 40 connections');
});

test('SIGTERM to the supervisor: exchanges in flight complete, every worker stops, exit 0', async () => {
  const workers = cli.workerPids().filter(pidAlive);
  assert.equal(workers.length, 2);
  const before = upstream.requests.length;
  const inFlight = Array.from({ length: 6 }, (_, i) => sendRequest(port, `/slow/${i}`));
  await waitUntil(
    () => upstream.requests.length === before + 6,
    3000,
    'the slow requests to reach the upstream',
  );
  const t0 = performance.now();
  process.kill(cli.pid, 'SIGTERM');
  const results = await Promise.all(inFlight);
  results.forEach((res, i) => {
    assert.equal(res.status, 200);
    assert.equal(JSON.parse(res.text).url, `/slow/${i}`);
  });
  const exit = await cli.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(performance.now() - t0 < 3000);
  await waitUntil(() => workers.every((pid) => !pidAlive(pid)), 2000, 'the workers to be gone');
  assert.ok(cli.logs.some((l) => l.msg === 'stopping workers'));
  assert.ok(cli.logs.some((l) => l.msg === 'stopped' && l.pid === cli.pid));
  for (const pid of workers) assert.ok(cli.logs.some((l) => l.msg === 'stopped' && l.pid === pid));
  await assert.rejects(sendRequest(port, '/gone'), { code: 'ECONNREFUSED' });
});

test('workers stop by themselves when the supervisor is killed', async () => {
  const orphanPort = await freePort();
  const second = startCli({
    host: '127.0.0.1',
    port: orphanPort,
    thread_count: 2,
    worker_mode: 'processes',
    protocols: ['http1'],
    shutdown_grace_ms: 1000,
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    await second.waitForLog((l) => l.msg === 'ready', 15_000, 'ready');
    const workers = second.workerPids();
    assert.equal(workers.length, 2);
    assert.equal((await sendRequest(orphanPort, '/before')).status, 200);
    process.kill(second.pid, 'SIGKILL');
    await second.exited;
    await waitUntil(() => workers.every((pid) => !pidAlive(pid)), 3000, 'the orphaned workers to stop');
    await assert.rejects(sendRequest(orphanPort, '/after'), { code: 'ECONNREFUSED' });
  } finally {
    await second.cleanup();
  }
});

test('a worker that cannot listen fails the run: exit 1, no worker left behind', async () => {
  // The port is held by a socket without SO_REUSEPORT, so no worker can bind it.
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const busyPort = (blocker.address() as net.AddressInfo).port;
  const failing = startCli({
    host: '127.0.0.1',
    port: busyPort,
    thread_count: 2,
    worker_mode: 'processes',
    protocols: ['http1'],
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    let timer: NodeJS.Timeout | undefined;
    const exit = await Promise.race([
      failing.exited,
      new Promise<'running'>((r) => {
        timer = setTimeout(() => r('running'), 10_000);
      }),
    ]);
    clearTimeout(timer);
    assert.deepEqual(exit, { code: 1, signal: null });
    assert.ok(failing.logs.some((l) => l.msg === 'worker failed to start'));
    assert.ok(!failing.logs.some((l) => l.msg === 'ready'));
    assert.match(failing.otherOutput.join(''), /EADDRINUSE/);
    await waitUntil(
      () => failing.workerPids().every((pid) => !pidAlive(pid)),
      2000,
      'the workers to be gone',
    );
  } finally {
    await failing.cleanup();
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});
