/**
 * `zproxy bench` end to end: the real CLI in a child process against real servers started here (Node's
 * http, http2 and a `ws` echo server, and raw `net` servers for the framings Node's server never sends).
 * Each test checks the bench's counts against what the server counted: every request the bench counts was
 * served, and the server served at most the bench's count plus the requests in flight when it stopped.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import type { BenchReport } from '../../src/bench/report.ts';
import { assertConsistent, BUILT_CLI, bench, close, listen, settle, zproxy } from '../helpers/bench-cli.ts';
import { CertDir } from '../helpers/certs.ts';

describe('zproxy bench over HTTP/1.1', () => {
  let served = 0;
  let connections = 0;
  const bodies = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      served++;
      if (req.method === 'POST') {
        const body = Buffer.concat(chunks).toString();
        bodies.set(body, (bodies.get(body) ?? 0) + 1);
      }
      if (req.url === '/chunked') {
        res.write('hello ');
        res.end('world');
      } else if (req.url === '/unavailable') {
        res.statusCode = 503;
        res.end('try later');
      } else {
        res.end('hello world!\n');
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', () => connections++);
  let port = 0;
  before(async () => {
    port = await listen(server);
  });
  after(() => close(server));

  const reset = (): void => {
    served = 0;
    connections = 0;
    bodies.clear();
  };

  test('keep-alive: counts match the server, each connection reused', async () => {
    reset();
    const r = await bench(['-c', '4', '-d', '1s', `http://127.0.0.1:${port}/`]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.protocol, 'http1');
    assert.equal(r.mode, 'closed-loop');
    assert.equal(r.connections_opened, 4);
    assert.equal(connections, 4);
    assert.deepEqual(r.statuses, { '200': r.requests });
    assert.equal(r.errors.total, 0);
    assert.equal(r.non_2xx_total, 0);
    assert.ok(
      r.latency_us.p50 > 0 && r.latency_us.p50 <= r.latency_us.p99 && r.latency_us.p99 <= r.latency_us.max,
    );
    assert.equal(r.latency_uncorrected_us, null);
    // Node's answer to GET / is 13 body bytes plus a head of at least 60.
    assert.ok(r.bytes_received >= r.requests * 73, `${r.bytes_received} bytes for ${r.requests} responses`);
    assert.ok(r.generator.cpu_percent > 0 && r.generator.threads.length === 1);
  });

  test('--no-keepalive: one connection per request', async () => {
    reset();
    const r = await bench(['-c', '2', '-d', '1s', '--no-keepalive', `http://127.0.0.1:${port}/`]);
    await settle();
    assertConsistent(r, served);
    assert.ok(r.requests > 20, `${r.requests} requests`);
    assert.equal(r.keepalive, false);
    // Every request had its connection (the ones in flight at the stop had theirs too).
    assert.ok(
      connections >= r.requests && connections <= r.requests + r.in_flight_at_stop,
      `${connections} connections`,
    );
    assert.ok(r.connections_opened >= r.requests, `${r.connections_opened} opened`);
    assert.equal(r.errors.total, 0);
  });

  test('chunked responses, pipelined 8 deep', async () => {
    reset();
    const r = await bench(['-c', '2', '--concurrency', '8', '-d', '1s', `http://127.0.0.1:${port}/chunked`]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.errors.total, 0);
    assert.equal(r.statuses['200'], r.requests);
  });

  test('POST with --body: every request carries the body', async () => {
    reset();
    const r = await bench(['-c', '2', '-d', '700ms', '--body', 'ping=pong', `http://127.0.0.1:${port}/`]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.method, 'POST');
    assert.deepEqual([...bodies.keys()], ['ping=pong']);
    assert.equal(bodies.get('ping=pong'), served);
  });

  test('--body-file with -H and --method PUT', async () => {
    reset();
    const dir = mkdtempSync(join(tmpdir(), 'zproxy-bench-'));
    const file = join(dir, 'body.txt');
    writeFileSync(file, 'from a file');
    const seen: string[] = [];
    const onRequest = (req: http.IncomingMessage): void => {
      seen.push(`${req.method} ${req.headers['x-bench']}`);
    };
    server.on('request', onRequest);
    try {
      const r = await bench([
        '-c',
        '1',
        '-d',
        '300ms',
        '--body-file',
        file,
        '--method',
        'put',
        '-H',
        'X-Bench: yes',
        `http://127.0.0.1:${port}/`,
      ]);
      assert.ok(r.requests > 0);
      assert.equal(r.method, 'PUT');
    } finally {
      server.off('request', onRequest);
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual([...new Set(seen)], ['PUT yes']);
  });

  test('a 503 is counted under non_2xx by status', async () => {
    reset();
    const r = await bench(['-c', '2', '-d', '500ms', `http://127.0.0.1:${port}/unavailable`]);
    await settle();
    assertConsistent(r, served);
    assert.deepEqual(r.non_2xx, { '503': r.requests });
    assert.equal(r.non_2xx_total, r.requests);
    assert.equal(r.errors.total, 0);
  });

  test('--threads 2 in the built package: both threads ran, their counts merged', async () => {
    assert.ok(existsSync(BUILT_CLI), 'dist/ is built (npm run build)');
    reset();
    const r = await bench(['-c', '4', '-t', '2', '-d', '1s', `http://127.0.0.1:${port}/`], BUILT_CLI);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.threads, 2);
    assert.equal(r.generator.threads.length, 2);
    assert.ok(r.generator.threads.every((t) => t.cpu_percent > 0));
    assert.equal(connections, 4);
    assert.equal(r.latency_us.count, r.requests);
  });

  test('the human report', async () => {
    const result = await zproxy(['bench', '-c', '1', '-d', '300ms', `http://127.0.0.1:${port}/unavailable`]);
    assert.equal(result.status, 0, result.stderr);
    for (const text of [
      'Latency',
      'p99.9',
      'Requests/sec:',
      'Transfer/sec:',
      'Non-2xx responses:',
      '503:',
      'Generator CPU:',
    ]) {
      assert.ok(result.stdout.includes(text), `${text} in:\n${result.stdout}`);
    }
  });
});

describe('zproxy bench against raw HTTP/1.1 framings', () => {
  /**
   * A server on raw sockets that answers each GET in turn with: Content-Length; chunked with an extension
   * and a trailer; a 100 Continue then Content-Length; a 204. It counts requests by their heads.
   */
  let served = 0;
  const shapes = [
    'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok',
    'HTTP/1.1 204 No Content\r\n\r\n',
  ];
  const framed = net.createServer((socket) => {
    let pending = '';
    let turn = 0;
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => {
      pending += data.toString('latin1');
      let out = '';
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        served++;
        out += shapes[turn++ % shapes.length];
      }
      if (out !== '') socket.write(out);
    });
    socket.on('error', () => {});
  });
  /** Answers with a body delimited by the end of the connection, then closes. */
  let closeServed = 0;
  const closeDelimited = net.createServer((socket) => {
    socket.once('data', () => {
      closeServed++;
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end');
    });
    socket.on('error', () => {});
  });
  const ports = { framed: 0, close: 0 };
  before(async () => {
    ports.framed = await listen(framed);
    ports.close = await listen(closeDelimited);
  });
  after(async () => {
    await close(framed);
    await close(closeDelimited);
  });

  test('Content-Length, chunked with trailers, 1xx and 204, pipelined 16 deep', async () => {
    served = 0;
    const r = await bench([
      '-c',
      '2',
      '--concurrency',
      '16',
      '-d',
      '800ms',
      `http://127.0.0.1:${ports.framed}/`,
    ]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    const { '200': ok = 0, '201': created = 0, '204': empty = 0 } = r.statuses;
    assert.equal(ok + created + empty, r.requests);
    // The four shapes take turns on each connection: each is about a quarter (the 200s are two of them).
    assert.ok(created > r.requests / 5 && empty > r.requests / 5, JSON.stringify(r.statuses));
    assert.equal(r.statuses['100'], undefined, '1xx are not responses');
  });

  test('a body delimited by the end of the connection', async () => {
    closeServed = 0;
    const r = await bench(['-c', '2', '-d', '600ms', `http://127.0.0.1:${ports.close}/`]);
    await settle();
    assertConsistent(r, closeServed);
    assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    assert.ok(r.connections_opened >= r.requests);
  });
});

describe('zproxy bench over TLS: HTTP/2 and HTTP/1.1', () => {
  const certs = new CertDir();
  let served = 0;
  const handler = (_req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): void => {
    served++;
    res.end('hello h2\n');
  };
  const h2c = http2.createServer(handler);
  let tlsServer: http2.Http2SecureServer;
  let h1TlsServer: https.Server;
  let h1Served = 0;
  const ports = { h2c: 0, tls: 0, h1Tls: 0 };
  before(async () => {
    const { cert, key } = certs.make('localhost', ['localhost']);
    const pem = { cert: readFileSync(cert), key: readFileSync(key) };
    tlsServer = http2.createSecureServer(pem, handler);
    h1TlsServer = https.createServer(pem, (_req, res) => {
      h1Served++;
      res.end('hello tls\n');
    });
    h1TlsServer.keepAliveTimeout = 30_000;
    ports.h2c = await listen(h2c);
    ports.tls = await listen(tlsServer);
    ports.h1Tls = await listen(h1TlsServer);
  });
  after(async () => {
    await close(h2c);
    await close(tlsServer);
    await close(h1TlsServer);
    certs.remove();
  });

  test('HTTP/1.1 over TLS with -k', async () => {
    h1Served = 0;
    const r = await bench([
      '-k',
      '-c',
      '2',
      '--concurrency',
      '2',
      '-d',
      '700ms',
      `https://localhost:${ports.h1Tls}/`,
    ]);
    await settle();
    assertConsistent(r, h1Served);
    assert.equal(r.protocol, 'http1');
    assert.equal(r.connections_opened, 2);
    assert.equal(r.errors.total, 0);
  });

  test('h2c: streams per session, counts match', async () => {
    served = 0;
    const r = await bench([
      '--protocol',
      'http2',
      '-c',
      '2',
      '--concurrency',
      '5',
      '-d',
      '1s',
      `http://127.0.0.1:${ports.h2c}/`,
    ]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.protocol, 'http2');
    assert.equal(r.concurrency, 5);
    assert.equal(r.connections_opened, 2);
    assert.equal(r.errors.total, 0);
    assert.equal(r.statuses['200'], r.requests);
    assert.ok(r.bytes_received > r.requests * 9, 'frames counted');
  });

  test('h2 over TLS with --insecure', async () => {
    served = 0;
    const r = await bench([
      '--protocol',
      'http2',
      '-k',
      '-c',
      '2',
      '-d',
      '1s',
      `https://localhost:${ports.tls}/`,
    ]);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.errors.total, 0);
    assert.equal(r.connections_opened, 2);
  });

  test('h2 over TLS without --insecure: the self-signed certificate is a tls error', async () => {
    const result = await zproxy([
      'bench',
      '--json',
      '--protocol',
      'http2',
      '-c',
      '1',
      '-d',
      '300ms',
      `https://localhost:${ports.tls}/`,
    ]);
    assert.equal(result.status, 1, 'no request completed');
    const r = JSON.parse(result.stdout) as BenchReport;
    assert.equal(r.requests, 0);
    assert.ok(r.errors.tls > 0, JSON.stringify(r.errors));
  });
});

describe('zproxy bench over WebSocket', () => {
  let echoed = 0;
  const server = http.createServer();
  const wss = new WebSocketServer({ server, perMessageDeflate: false });
  const sizes = new Set<number>();
  wss.on('connection', (ws) => {
    ws.on('message', (data: Buffer, binary) => {
      echoed++;
      sizes.add(data.length);
      ws.send(data, { binary });
    });
  });
  let port = 0;
  before(async () => {
    port = await listen(server);
  });
  after(async () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    await close(server);
  });

  test('echoes counted as requests, --message-bytes respected', async () => {
    const r = await bench([
      '-c',
      '3',
      '--concurrency',
      '2',
      '--message-bytes',
      '100',
      '-d',
      '1s',
      `ws://127.0.0.1:${port}/`,
    ]);
    await settle();
    assertConsistent(r, echoed);
    assert.equal(r.protocol, 'websocket');
    assert.equal(r.connections_opened, 3);
    assert.equal(r.errors.total, 0);
    assert.deepEqual([...sizes], [100]);
    assert.equal(r.bytes_received, r.requests * 100);
  });
});

describe('zproxy bench errors', () => {
  test('a refused port: connect errors, no crash, exit status 1', async () => {
    // A port that was just free: listen, note it, close it.
    const probe = net.createServer();
    const free = await listen(probe);
    await close(probe);
    const result = await zproxy(['bench', '--json', '-c', '2', '-d', '500ms', `http://127.0.0.1:${free}/`]);
    assert.equal(result.status, 1);
    const r = JSON.parse(result.stdout) as BenchReport;
    assert.equal(r.requests, 0);
    assert.ok(r.errors.connect_refused >= 2, JSON.stringify(r.errors));
    assert.equal(r.errors.total, r.errors.connect_refused);
  });

  test('a target that never answers: timeout errors', async () => {
    // It reads (so that it sees the bench go away) and never answers.
    const silent = net.createServer((socket) => socket.on('error', () => {}).resume());
    const port = await listen(silent);
    try {
      const result = await zproxy([
        'bench',
        '--json',
        '-c',
        '2',
        '-d',
        '800ms',
        '--timeout',
        '200ms',
        `http://127.0.0.1:${port}/`,
      ]);
      assert.equal(result.status, 1);
      const r = JSON.parse(result.stdout) as BenchReport;
      assert.ok(r.errors.timeout >= 2, JSON.stringify(r.errors));
    } finally {
      await close(silent);
    }
  });

  test('usage errors exit 2', async () => {
    const result = await zproxy(['bench', '--no-keepalive', '--concurrency', '4', 'http://127.0.0.1:1/']);
    assert.equal(result.status, 2);
    assert.match(result.stderr, /--concurrency must be 1/);
  });
});

describe('constant rate: coordinated omission', () => {
  test('a target that stalls for 1 s: uncorrected p99 stays low, corrected p99 is high', async () => {
    // 200 requests/s on 2 connections for 3 s; from 1 s to 2 s after the first request the server holds
    // every response back, then answers them all.
    let first = 0;
    const held: http.ServerResponse[] = [];
    let served = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      served++;
      const now = Date.now();
      if (first === 0) first = now;
      if (now - first >= 1000 && now - first < 2000) {
        if (held.length === 0) {
          setTimeout(
            () => {
              for (const r of held.splice(0)) r.end('late\n');
            },
            2000 - (now - first),
          );
        }
        held.push(res);
      } else {
        res.end('ok\n');
      }
    });
    server.keepAliveTimeout = 30_000;
    const port = await listen(server);
    try {
      const r = await bench(['-c', '2', '--rate', '200', '-d', '3s', `http://127.0.0.1:${port}/`]);
      await settle();
      assertConsistent(r, served);
      assert.equal(r.mode, 'constant-rate');
      assert.equal(r.target_rate, 200);
      const corrected = r.latency_us;
      const uncorrected = r.latency_uncorrected_us!;
      assert.ok(uncorrected.p99 < 100_000, `uncorrected p99 ${uncorrected.p99} µs`);
      assert.ok(corrected.p99 >= 500_000, `corrected p99 ${corrected.p99} µs`);
      assert.ok(uncorrected.max >= 500_000, 'the requests in flight during the stall waited');
      // The schedule kept its rate: about 600 requests, the ones held back sent once the stall ended.
      assert.ok(r.requests >= 560 && r.requests <= 602, `${r.requests} requests`);
    } finally {
      await close(server);
    }
  });
});
