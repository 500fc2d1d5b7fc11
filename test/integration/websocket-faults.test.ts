/**
 * WebSocket faults through zproxy: malformed handshakes refused before anything is forwarded, an upstream
 * that refuses the upgrade, is down, answers a 101 that is not WebSocket, or goes away mid-stream, and a
 * client that disappears. Assertions cover the upstream's side too (what reached it, when it was closed).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { freePort, startRawUpstream } from '../helpers/upstream.ts';
import {
  closed,
  nextMessage,
  openWs,
  startWsUpstream,
  UnexpectedResponse,
  type WsUpstream,
} from '../helpers/websocket.ts';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A complete upgrade request head with `fields` replacing or adding to the valid ones. */
function upgradeRequest(
  options: { method?: string; version?: string; fields?: Record<string, string | null>; body?: string } = {},
): string {
  const fields: Record<string, string | null> = {
    Host: 'ws.test',
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': KEY,
    ...options.fields,
  };
  let head = `${options.method ?? 'GET'} /chat HTTP/${options.version ?? '1.1'}\r\n`;
  for (const [name, value] of Object.entries(fields)) if (value !== null) head += `${name}: ${value}\r\n`;
  return `${head}\r\n${options.body ?? ''}`;
}

interface Answer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** The socket, still open unless the server closed it (the caller destroys it). */
  readonly socket: net.Socket;
  /** Resolves true when the server closes the connection within `ms`. */
  closedWithin(ms: number): Promise<boolean>;
}

/** Sends raw bytes and reads one response with a Content-Length body. */
function exchange(port: number, payload: string, socket?: net.Socket): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = socket ?? net.connect({ host: '127.0.0.1', port });
    let data = '';
    let ended = false;
    const endWaiters: (() => void)[] = [];
    s.on('close', () => {
      ended = true;
      for (const w of endWaiters) w();
    });
    s.on('error', () => {});
    const onData = (chunk: Buffer) => {
      data += chunk.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = data.slice(0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (data.length < end + 4 + length) return;
      s.off('data', onData);
      resolve({
        status: Number(head.slice(9, 12)),
        head,
        body: data.slice(end + 4, end + 4 + length),
        socket: s,
        closedWithin: (ms) =>
          new Promise((r) => {
            if (ended) return r(true);
            const t = setTimeout(() => r(false), ms);
            endWaiters.push(() => {
              clearTimeout(t);
              r(true);
            });
          }),
      });
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(payload, 'latin1');
  });
}

function errorCode(body: string): string {
  return (JSON.parse(body) as { error: { code: string } }).error.code;
}

describe('malformed WebSocket handshakes are refused and never reach the upstream', () => {
  let upstream: WsUpstream;
  let proxy: StartedProxy;

  before(async () => {
    upstream = await startWsUpstream();
    proxy = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  const cases: { name: string; request: string; status: number; code: string }[] = [
    {
      name: 'not GET',
      request: upgradeRequest({ method: 'POST' }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'a request body',
      request: upgradeRequest({ fields: { 'Content-Length': '5' }, body: 'hello' }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'a chunked request body',
      request: upgradeRequest({
        fields: { 'Transfer-Encoding': 'chunked' },
        body: '5\r\nhello\r\n0\r\n\r\n',
      }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'no Sec-WebSocket-Key',
      request: upgradeRequest({ fields: { 'Sec-WebSocket-Key': null } }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'a key that is not 16 bytes of base64',
      request: upgradeRequest({ fields: { 'Sec-WebSocket-Key': 'c2hvcnQ=' } }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'a key that is not base64',
      request: upgradeRequest({ fields: { 'Sec-WebSocket-Key': 'not base64 at all, 24 ch' } }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'no Sec-WebSocket-Version',
      request: upgradeRequest({ fields: { 'Sec-WebSocket-Version': null } }),
      status: 400,
      code: 'ZP_ERR_WEBSOCKET_HANDSHAKE',
    },
    {
      name: 'Sec-WebSocket-Version 8',
      request: upgradeRequest({ fields: { 'Sec-WebSocket-Version': '8' } }),
      status: 426,
      code: 'ZP_ERR_WEBSOCKET_VERSION',
    },
  ];

  for (const c of cases) {
    test(`${c.name}: ${c.status}`, async () => {
      const answer = await exchange(proxy.port, c.request);
      try {
        assert.equal(answer.status, c.status, answer.head);
        assert.equal(errorCode(answer.body), c.code);
        if (c.status === 426) {
          assert.match(answer.head, /\r\nSec-WebSocket-Version: 13\r\n/);
          assert.match(answer.head, /\r\nUpgrade: websocket\r\n/);
        }
        if (c.status === 400) assert.ok(await answer.closedWithin(1000), 'a 400 closes the connection');
      } finally {
        answer.socket.destroy();
      }
      assert.equal(upstream.upgradeRequests.length, 0, 'nothing reached the upstream');
      assert.equal(upstream.plainRequests.length, 0, 'nothing reached the upstream');
    });
  }

  test('the ws client gets the 426 and no connection is made', async () => {
    await assert.rejects(openWs(`ws://127.0.0.1:${proxy.port}/v8`, [], { protocolVersion: 8 }), (err) => {
      assert.ok(err instanceof UnexpectedResponse);
      assert.equal(err.status, 426);
      assert.equal(err.headers['sec-websocket-version'], '13');
      return true;
    });
    assert.equal(upstream.upgradeRequests.length, 0);
  });

  test('an HTTP/1.0 request with Upgrade: websocket is an ordinary request (RFC 9110 §7.8)', async () => {
    const answer = await exchange(
      proxy.port,
      upgradeRequest({ version: '1.0' }).replace('/chat', '/plain10'),
    );
    answer.socket.destroy();
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'a plain request\n');
    assert.equal(upstream.upgradeRequests.length, 0);
    assert.equal(upstream.plainRequests.length, 1);
    assert.equal(upstream.plainRequests[0]!.headers.upgrade, undefined);
    upstream.plainRequests.length = 0;
  });

  test('Connection: upgrade with another protocol (h2c) is served as an ordinary request', async () => {
    const answer = await exchange(
      proxy.port,
      'GET /plain HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n',
    );
    answer.socket.destroy();
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'a plain request\n');
    assert.equal(upstream.plainRequests.length, 1);
    const headers = upstream.plainRequests[0]!.headers;
    assert.equal(headers.upgrade, undefined, 'Upgrade is hop-by-hop for a request that is not a tunnel');
    assert.equal(headers['http2-settings'], undefined);
    upstream.plainRequests.length = 0;
  });
});

describe('the upstream refuses, is down, or answers a 101 that is not WebSocket', () => {
  test('a refused upgrade (403 with a body) reaches the client as is; the connection goes on', async () => {
    const upstream = await startWsUpstream({
      onUpgrade: (request, socket) => {
        if (request.url !== '/forbidden') return true;
        const body = 'no WebSocket for you\n';
        socket.end(
          `HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nX-Reason: policy\r\n\r\n${body}`,
        );
        return false;
      },
    });
    const proxy = await startProxy({
      routes: [{ path: '/', upstream: upstream.url }],
      websocket: { max_tunnels: 1 },
    });
    try {
      // The ws client sees the upstream's answer.
      await assert.rejects(openWs(`ws://127.0.0.1:${proxy.port}/forbidden`), (err) => {
        assert.ok(err instanceof UnexpectedResponse);
        assert.equal(err.status, 403);
        assert.equal(err.body, 'no WebSocket for you\n');
        assert.equal(err.headers['x-reason'], 'policy');
        return true;
      });
      // On a raw keep-alive connection: the 403, then an ordinary request on the same connection.
      const refused = await exchange(
        proxy.port,
        upgradeRequest({ fields: { Host: 'a' } }).replace('/chat', '/forbidden'),
      );
      assert.equal(refused.status, 403);
      assert.equal(refused.body, 'no WebSocket for you\n');
      assert.doesNotMatch(refused.head, /\r\nConnection: close/i);
      const next = await exchange(proxy.port, 'GET /after HTTP/1.1\r\nHost: a\r\n\r\n', refused.socket);
      assert.equal(next.status, 200);
      assert.equal(next.body, 'a plain request\n');
      refused.socket.destroy();
      assert.equal(upstream.upgradeRequests.length, 2, 'both upgrades reached the upstream');
      assert.equal(proxy.server.tunnelCount, 0);
      // The refused upgrades gave their tunnel places back (max_tunnels is 1).
      const ws = await openWs(`ws://127.0.0.1:${proxy.port}/allowed`);
      ws.send('now open');
      assert.equal((await nextMessage(ws)).data.toString(), 'now open');
      assert.equal(proxy.server.tunnelCount, 1);
      ws.terminate();
      const statuses = proxy.accessLogs().map((l) => l.status);
      assert.deepEqual(statuses.slice(0, 3), [403, 403, 200]);
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });

  test('upstream down: 502 with the error body, logged', async () => {
    const port = await freePort();
    const proxy = await startProxy({ routes: [{ path: '/', upstream: `http://127.0.0.1:${port}` }] });
    try {
      await assert.rejects(openWs(`ws://127.0.0.1:${proxy.port}/down`), (err) => {
        assert.ok(err instanceof UnexpectedResponse);
        assert.equal(err.status, 502);
        assert.equal(errorCode(err.body), 'ZP_ERR_UPSTREAM_CONNECT');
        return true;
      });
      await waitUntil(() => proxy.accessLogs().length === 1, 1000, 'the log line');
      assert.equal(proxy.accessLogs()[0]!.status, 502);
      assert.equal(proxy.accessLogs()[0]!.error, 'ZP_ERR_UPSTREAM_CONNECT');
      assert.equal(proxy.server.tunnelCount, 0);
    } finally {
      await proxy.close();
    }
  });

  test('a 101 that does not switch to websocket is a 502', async () => {
    const raw = await startRawUpstream((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
      });
    });
    const proxy = await startProxy({ routes: [{ path: '/', upstream: raw.url }] });
    try {
      const answer = await exchange(proxy.port, upgradeRequest());
      answer.socket.destroy();
      assert.equal(answer.status, 502);
      assert.equal(errorCode(answer.body), 'ZP_ERR_UPSTREAM_BAD_RESPONSE');
      await waitUntil(() => raw.sockets[0]?.destroyed === true, 1000, 'the upstream connection to be closed');
    } finally {
      await proxy.close();
      await raw.close();
    }
  });

  test('an HTTP/2 upstream (h2c://) is not supported yet: 502, nothing forwarded', async () => {
    const raw = await startRawUpstream(() => {});
    const proxy = await startProxy({ routes: [{ path: '/', upstream: `h2c://127.0.0.1:${raw.port}` }] });
    try {
      const answer = await exchange(proxy.port, upgradeRequest());
      answer.socket.destroy();
      assert.equal(answer.status, 502);
      assert.equal(errorCode(answer.body), 'ZP_ERR_WEBSOCKET_UPSTREAM_UNSUPPORTED');
      assert.equal(raw.sockets.length, 0);
    } finally {
      await proxy.close();
      await raw.close();
    }
  });
});

describe('one side goes away mid-stream', () => {
  let upstream: WsUpstream;
  let proxy: StartedProxy;
  let base: string;

  before(async () => {
    upstream = await startWsUpstream();
    proxy = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
    base = `ws://127.0.0.1:${proxy.port}`;
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  async function openTunnel(path: string) {
    const ws = await openWs(`${base}${path}`);
    ws.on('error', () => {});
    ws.send('warm up');
    await nextMessage(ws);
    return { ws, conn: upstream.connections.at(-1)! };
  }

  function logLine(path: string) {
    return proxy.accessLogs().find((l) => l.target === path);
  }

  test('the upstream closes its socket: the client sees the connection close', async () => {
    const { ws, conn } = await openTunnel('/upstream-fin');
    const done = closed(ws);
    const t0 = performance.now();
    conn.ws.terminate();
    assert.equal((await done).code, 1006);
    assert.ok(performance.now() - t0 < 1000);
    await waitUntil(() => logLine('/upstream-fin') !== undefined, 2000, 'the log line');
    assert.equal(logLine('/upstream-fin')!.status, 101);
    assert.equal(proxy.server.tunnelCount, 0);
  });

  test('the upstream resets its socket: the client is closed at once, logged as an upstream reset', async () => {
    const { ws, conn } = await openTunnel('/upstream-rst');
    const done = closed(ws);
    const t0 = performance.now();
    conn.socket.resetAndDestroy();
    assert.equal((await done).code, 1006);
    assert.ok(performance.now() - t0 < 1000);
    await waitUntil(() => logLine('/upstream-rst') !== undefined, 2000, 'the log line');
    assert.equal(logLine('/upstream-rst')!.error, 'ZP_ERR_UPSTREAM_RESET');
  });

  test('the client disappears: the upstream socket is closed within a second', async () => {
    const { ws, conn } = await openTunnel('/client-gone');
    const upstreamClosed = new Promise<number>((resolve) =>
      conn.socket.once('close', () => resolve(performance.now())),
    );
    const t0 = performance.now();
    ws.terminate();
    const at = await upstreamClosed;
    assert.ok(at - t0 < 1000, `closed after ${at - t0} ms`);
    await waitUntil(() => conn.closed !== null, 1000, 'the upstream WebSocket to close');
    assert.equal(conn.closed!.code, 1006);
    await waitUntil(() => proxy.server.tunnelCount === 0, 1000, 'the tunnel to end');
  });

  test('the client resets its connection: the upstream socket is closed at once, logged as 499-style abort', async () => {
    const before = upstream.connections.length;
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    socket.on('error', () => {});
    let text = '';
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    socket.write(upgradeRequest().replace('/chat', '/client-rst'));
    await waitUntil(() => text.includes('\r\n\r\n'), 2000, 'the 101');
    await waitUntil(() => upstream.connections.length === before + 1, 2000, 'the upstream connection');
    const conn = upstream.connections.at(-1)!;
    const upstreamClosed = new Promise<number>((resolve) =>
      conn.socket.once('close', () => resolve(performance.now())),
    );
    const t0 = performance.now();
    socket.resetAndDestroy();
    const at = await upstreamClosed;
    assert.ok(at - t0 < 1000, `closed after ${at - t0} ms`);
    await waitUntil(() => logLine('/client-rst') !== undefined, 2000, 'the log line');
    assert.equal(logLine('/client-rst')!.error, 'ZP_ERR_CLIENT_ABORTED');
  });
});
