/**
 * Upstream faults: nothing listening, a connect that never completes, silence, a body cut short, a
 * malformed head, stale pooled connections, a client that goes away, and the pool's reuse and bounds.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { errorCodeOf, sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { freePort, type RawUpstream, startHttpUpstream, startRawUpstream } from '../helpers/upstream.ts';

const UNACCEPTING = fileURLToPath(new URL('../fixtures/unaccepting-listener.ts', import.meta.url));

const OK_RESPONSE = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok';

function proxyTo(upstreamUrl: string, extra: Record<string, unknown> = {}): Promise<StartedProxy> {
  return startProxy({ routes: [{ path: '/', upstream: upstreamUrl }], ...extra });
}

/** Calls `onRequest(socket, n)` for the n-th request head (0-based) received on each connection. */
function onEachRequestHead(socket: net.Socket, onRequest: (n: number) => void): void {
  let seen = '';
  let count = 0;
  socket.on('data', (c: Buffer) => {
    seen += c.toString('latin1');
    let i = seen.indexOf('\r\n\r\n');
    while (i !== -1) {
      seen = seen.slice(i + 4);
      onRequest(count++);
      i = seen.indexOf('\r\n\r\n');
    }
  });
}

/** The pool of the proxy's only upstream target. */
function onlyPool(proxy: StartedProxy) {
  const pools = [...proxy.server.pools.all()];
  assert.equal(pools.length, 1);
  return pools[0]!;
}

test('upstream down: 502 ZP_ERR_UPSTREAM_CONNECT, well within the connect timeout', async () => {
  const port = await freePort();
  const proxy = await proxyTo(`http://127.0.0.1:${port}`, {
    upstream_defaults: { connect_timeout_ms: 3000 },
  });
  try {
    const t0 = performance.now();
    const res = await sendRequest(proxy.port, '/down');
    const elapsed = performance.now() - t0;
    assert.equal(res.status, 502);
    assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_CONNECT');
    assert.match(String(res.headers['content-type']), /application\/json/);
    assert.ok(elapsed < 1000, `answered after ${elapsed} ms`);
    const log = proxy.accessLogs().at(-1)!;
    assert.equal(log.status, 502);
    assert.equal(log.error, 'ZP_ERR_UPSTREAM_CONNECT');
  } finally {
    await proxy.close();
  }
});

test('connect timeout: an upstream whose accept queue is full gets 504 ZP_ERR_UPSTREAM_TIMEOUT', async () => {
  // A listener that never accepts; once its queue is full the kernel drops SYNs and connects hang.
  const child = spawn(process.execPath, [UNACCEPTING], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: net.Socket[] = [];
  let proxy: StartedProxy | null = null;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(Number(out.trim()));
      });
      child.on('exit', () => reject(new Error('the unaccepting listener exited')));
    });
    // Backlog 1 holds two established connections; the rest of these hang in SYN-SENT.
    let established = 0;
    for (let i = 0; i < 4; i++) {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('error', () => {});
      s.on('connect', () => established++);
      fillers.push(s);
    }
    await waitUntil(() => established >= 2, 2000, 'the accept queue to fill');
    await new Promise((r) => setTimeout(r, 100));
    proxy = await proxyTo(`http://127.0.0.1:${port}`, { upstream_defaults: { connect_timeout_ms: 300 } });
    const t0 = performance.now();
    const res = await sendRequest(proxy.port, '/hang');
    const elapsed = performance.now() - t0;
    assert.equal(res.status, 504);
    assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_TIMEOUT');
    assert.ok(elapsed >= 250 && elapsed < 1500, `answered after ${elapsed} ms`);
  } finally {
    await proxy?.close();
    for (const s of fillers) s.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    }
  }
});

test('upstream silent: 504 ZP_ERR_UPSTREAM_TIMEOUT after about response_header_timeout_ms', async () => {
  const closedAt: number[] = [];
  const upstream = await startRawUpstream((socket) => {
    socket.on('close', () => closedAt.push(performance.now()));
  });
  const proxy = await proxyTo(upstream.url, { upstream_defaults: { response_header_timeout_ms: 500 } });
  try {
    const t0 = performance.now();
    const res = await sendRequest(proxy.port, '/silent');
    const elapsed = performance.now() - t0;
    assert.equal(res.status, 504);
    assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_TIMEOUT');
    assert.ok(elapsed >= 450 && elapsed < 1500, `answered after ${elapsed} ms`);
    assert.match(Buffer.concat(upstream.received[0]!).toString('latin1'), /^GET \/silent HTTP\/1\.1\r\n/);
    // The silent connection is abandoned, not returned to the pool.
    await waitUntil(() => closedAt.length === 1, 1000, 'the upstream connection to close');
    assert.equal(onlyPool(proxy).size, 0);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('upstream closes mid-body (Content-Length): the client connection closes before the declared length', async () => {
  const upstream = await startRawUpstream((socket) => {
    onEachRequestHead(socket, () => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n${'a'.repeat(100)}`);
      setTimeout(() => socket.destroy(), 50);
    });
  });
  const proxy = await proxyTo(upstream.url);
  try {
    const r = await rawRequest(proxy.port, 'GET /cut HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 3000 });
    assert.equal(r.closedByServer, true);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.match(r.text, /\r\ncontent-length: 1000\r\n/i);
    const body = r.text.slice(r.text.indexOf('\r\n\r\n') + 4);
    assert.equal(body, 'a'.repeat(100));
    // A real client sees the failure, not a complete response.
    await assert.rejects(sendRequest(proxy.port, '/cut'));
    const log = proxy.accessLogs().at(-1)!;
    assert.equal(log.error, 'ZP_ERR_UPSTREAM_RESET');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('upstream closes mid-body (chunked): no terminating chunk reaches the client, the connection closes', async () => {
  const upstream = await startRawUpstream((socket) => {
    onEachRequestHead(socket, () => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => socket.destroy(), 50);
    });
  });
  const proxy = await proxyTo(upstream.url);
  try {
    const r = await rawRequest(proxy.port, 'GET /cut HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 3000 });
    assert.equal(r.closedByServer, true);
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.match(r.text, /\r\ntransfer-encoding: chunked\r\n/i);
    assert.ok(r.text.endsWith('\r\n\r\n5\r\nhello\r\n'), JSON.stringify(r.text));
    assert.doesNotMatch(r.text, /\r\n0\r\n\r\n$/);
    await assert.rejects(sendRequest(proxy.port, '/cut'));
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('upstream closes mid-body, HTTP/1.0 client (close-delimited): the connection is reset, not ended', async () => {
  // Toward an HTTP/1.0 client a body of unknown length ends with the connection; a clean FIN would
  // present the cut body as complete, so zproxy must reset the connection instead.
  const upstream = await startRawUpstream((socket) => {
    onEachRequestHead(socket, () => {
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => socket.destroy(), 50);
    });
  });
  const proxy = await proxyTo(upstream.url);
  try {
    const outcome = await new Promise<{ text: string; error: string | null }>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port: proxy.port });
      let text = '';
      let error: string | null = null;
      s.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      s.on('error', (err: NodeJS.ErrnoException) => {
        error = err.code ?? err.message;
      });
      s.on('close', () => resolve({ text, error }));
      s.write('GET /cut HTTP/1.0\r\nHost: a\r\n\r\n');
      setTimeout(() => s.destroy(), 3000);
    });
    assert.equal(outcome.error, 'ECONNRESET', `received ${JSON.stringify(outcome.text)}`);
    assert.doesNotMatch(outcome.text, /transfer-encoding/i);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('upstream stalls mid-body: the client connection is cut after about response_header_timeout_ms', async () => {
  let upstreamClosed = false;
  const upstream = await startRawUpstream((socket) => {
    socket.on('close', () => {
      upstreamClosed = true;
    });
    onEachRequestHead(socket, () => socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
  });
  const proxy = await proxyTo(upstream.url, { upstream_defaults: { response_header_timeout_ms: 500 } });
  try {
    const t0 = performance.now();
    const r = await rawRequest(proxy.port, 'GET /stall HTTP/1.1\r\nHost: a\r\n\r\n', { timeoutMs: 3000 });
    const elapsed = performance.now() - t0;
    assert.equal(r.closedByServer, true);
    assert.ok(r.text.endsWith('\r\n\r\nabc'), JSON.stringify(r.text));
    assert.ok(elapsed >= 450 && elapsed < 1500, `cut after ${elapsed} ms`);
    await waitUntil(() => upstreamClosed, 1000, 'the upstream connection to close');
    assert.equal(proxy.accessLogs().at(-1)?.error, 'ZP_ERR_UPSTREAM_TIMEOUT');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('upstream sends a malformed response head: 502 ZP_ERR_UPSTREAM_BAD_RESPONSE', async () => {
  const heads = ['HTTP/1.1 2x0 OK\r\n\r\n', 'NONSENSE\r\n\r\n', 'HTTP/1.1 200 OK\r\nBad Header\r\n\r\n'];
  const upstream = await startRawUpstream((socket, index) => {
    onEachRequestHead(socket, () => socket.write(heads[index % heads.length]!));
  });
  const proxy = await proxyTo(upstream.url);
  try {
    for (let i = 0; i < heads.length; i++) {
      const res = await sendRequest(proxy.port, `/bad${i}`);
      assert.equal(res.status, 502, `for ${JSON.stringify(heads[i])}`);
      assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_BAD_RESPONSE');
    }
    assert.equal(upstream.sockets.length, heads.length);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('stale pooled connection closed while idle: the next GET opens a fresh one and succeeds', async () => {
  // The upstream answers with keep-alive, then closes the connection once it is idle in zproxy's pool.
  const upstream = await startRawUpstream((socket) => {
    onEachRequestHead(socket, () => {
      socket.write(OK_RESPONSE);
      setTimeout(() => socket.end(), 50);
    });
  });
  const proxy = await proxyTo(upstream.url, { upstream_defaults: { idle_timeout_ms: 10_000 } });
  try {
    assert.equal((await sendRequest(proxy.port, '/one')).status, 200);
    await new Promise((r) => setTimeout(r, 200));
    const res = await sendRequest(proxy.port, '/two');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'ok');
    assert.equal(upstream.sockets.length, 2);
    assert.match(Buffer.concat(upstream.received[1]!).toString('latin1'), /^GET \/two HTTP\/1\.1\r\n/);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

/** A raw upstream whose first connection answers its first request and drops the connection on the second. */
function dropsSecondRequest(): Promise<RawUpstream> {
  return startRawUpstream((socket, index) => {
    onEachRequestHead(socket, (n) => {
      if (index === 0 && n === 1) socket.destroy();
      else socket.write(OK_RESPONSE);
    });
  });
}

test('stale pooled connection fails on reuse before any response byte: a GET is retried once on a fresh connection', async () => {
  const upstream = await dropsSecondRequest();
  const proxy = await proxyTo(upstream.url);
  try {
    assert.equal((await sendRequest(proxy.port, '/one')).status, 200);
    const res = await sendRequest(proxy.port, '/two');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'ok');
    assert.equal(upstream.sockets.length, 2);
    assert.match(Buffer.concat(upstream.received[0]!).toString('latin1'), /GET \/two HTTP\/1\.1\r\n/);
    assert.match(Buffer.concat(upstream.received[1]!).toString('latin1'), /^GET \/two HTTP\/1\.1\r\n/);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('stale pooled connection fails on reuse: a POST with a body is not retried and gets 502', async () => {
  const upstream = await dropsSecondRequest();
  const proxy = await proxyTo(upstream.url);
  try {
    assert.equal((await sendRequest(proxy.port, '/one')).status, 200);
    const res = await sendRequest(proxy.port, '/two', { method: 'POST', body: 'hello' });
    assert.equal(res.status, 502);
    assert.equal(errorCodeOf(res), 'ZP_ERR_UPSTREAM_RESET');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(upstream.sockets.length, 1, 'the POST was sent again on a new connection');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('client abort releases the upstream connection: closed within 1 s, logged 499, never reused', async () => {
  const closed: boolean[] = [];
  const upstream = await startRawUpstream((socket, index) => {
    closed[index] = false;
    socket.on('close', () => {
      closed[index] = true;
    });
    // The first connection holds its response; later ones answer.
    if (index > 0) onEachRequestHead(socket, () => socket.write(OK_RESPONSE));
  });
  const proxy = await proxyTo(upstream.url);
  try {
    const client = net.connect({ host: '127.0.0.1', port: proxy.port });
    client.on('error', () => {});
    client.write('GET /held HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(
      () => upstream.received[0] !== undefined && upstream.received[0].length > 0,
      2000,
      'the request',
    );
    const t0 = performance.now();
    client.destroy();
    await waitUntil(() => closed[0] === true, 1000, 'the upstream connection to close');
    assert.ok(performance.now() - t0 < 1000);
    await waitUntil(() => proxy.accessLogs().length === 1, 1000, 'the access log line');
    const log = proxy.accessLogs()[0]!;
    assert.equal(log.status, 499);
    assert.equal(log.error, 'ZP_ERR_CLIENT_ABORTED');
    assert.equal(log.target, '/held');

    const res = await sendRequest(proxy.port, '/next');
    assert.equal(res.status, 200);
    assert.equal(upstream.sockets.length, 2);
    assert.equal(onlyPool(proxy).opened, 2);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('client abort while queued for a pool slot: the waiter is withdrawn, the slot serves the next request', async () => {
  let release: (() => void) | null = null;
  const upstream = await startRawUpstream((socket) => {
    onEachRequestHead(socket, (n) => {
      // The first request is held until the test releases it; later ones are answered at once.
      if (n === 0 && release === null) release = () => socket.write(OK_RESPONSE);
      else socket.write(OK_RESPONSE);
    });
  });
  const proxy = await proxyTo(upstream.url, { upstream_defaults: { max_connections_per_target: 1 } });
  try {
    const held = sendRequest(proxy.port, '/held');
    await waitUntil(() => release !== null, 2000, 'the held request');
    const queued = net.connect({ host: '127.0.0.1', port: proxy.port });
    queued.on('error', () => {});
    queued.write('GET /queued HTTP/1.1\r\nHost: a\r\n\r\n');
    await new Promise((r) => setTimeout(r, 100));
    queued.destroy();
    await waitUntil(() => proxy.accessLogs().some((l) => l.status === 499), 1000, 'the 499 line');
    release!();
    assert.equal((await held).status, 200);
    const next = await sendRequest(proxy.port, '/next');
    assert.equal(next.status, 200);
    assert.equal(upstream.sockets.length, 1);
    const seen = Buffer.concat(upstream.received[0]!).toString('latin1');
    assert.doesNotMatch(seen, /\/queued/);
    assert.match(seen, /GET \/next /);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});

test('pool reuse: 20 sequential keep-alive requests use one upstream connection', async () => {
  const upstream = await startHttpUpstream();
  const proxy = await proxyTo(upstream.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < 20; i++) {
      const res = await sendRequest(proxy.port, `/r${i}`, { agent });
      assert.equal(res.status, 200);
      assert.equal(JSON.parse(res.text).url, `/r${i}`);
    }
    assert.equal(upstream.requests.length, 20);
    assert.equal(upstream.connections, 1);
    assert.equal(onlyPool(proxy).opened, 1);
  } finally {
    agent.destroy();
    await proxy.close();
    await upstream.close();
  }
});

test('pool bound: max_connections_per_target 2 with 5 concurrent slow requests', async () => {
  let active = 0;
  let maxActive = 0;
  const upstream = await startHttpUpstream((req, res) => {
    active++;
    maxActive = Math.max(maxActive, active);
    setTimeout(() => {
      active--;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(req.url) });
      res.end(req.url);
    }, 200);
  });
  const proxy = await proxyTo(upstream.url, { upstream_defaults: { max_connections_per_target: 2 } });
  try {
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, i) => sendRequest(proxy.port, `/slow${i}`)),
    );
    results.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(res.text, `/slow${i}`);
    });
    assert.equal(maxActive, 2);
    assert.equal(upstream.connections, 2);
    assert.equal(onlyPool(proxy).opened, 2);
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
