/**
 * WebSocket over HTTP/2 (RFC 8441) through zproxy: a Node http2 client opens extended CONNECT streams
 * (`:protocol websocket`) on an h2c connection and speaks WebSocket frames on them; the upstream is the
 * real `ws` server over HTTP/1.1. Checks what the client gets (200, the upstream's sub-protocol, frames,
 * close codes) and what the upstream saw (a proper HTTP/1.1 Upgrade with a fresh key).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { type RawUpstream, startRawUpstream } from '../helpers/upstream.ts';
import { startWsUpstream, toBuffer, type WsUpstream } from '../helpers/websocket.ts';
import { clientFrame, closePayload, FrameReader, OPCODE } from '../helpers/ws-frames.ts';

interface WsStream {
  readonly stream: http2.ClientHttp2Stream;
  readonly status: number;
  readonly headers: http2.IncomingHttpHeaders;
  readonly reader: FrameReader;
  /** The response body when the answer was not 200. */
  body(): Promise<string>;
  ended: boolean;
}

function connect(port: number): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.once('error', reject);
    session.once('remoteSettings', () => resolve(session));
  });
}

function openWsStream(
  session: http2.ClientHttp2Session,
  port: number,
  path: string,
  extra: http2.OutgoingHttpHeaders = {},
): Promise<WsStream> {
  const stream = session.request(
    {
      ':method': 'CONNECT',
      ':protocol': 'websocket',
      ':scheme': 'http',
      ':path': path,
      ':authority': `127.0.0.1:${port}`,
      'sec-websocket-version': '13',
      ...extra,
    },
    { endStream: false },
  );
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.once('response', (headers) => {
      const reader = new FrameReader();
      const chunks: Buffer[] = [];
      const ws: WsStream = {
        stream,
        status: Number(headers[':status']),
        headers,
        reader,
        ended: false,
        body: () =>
          new Promise((done) => {
            if (ws.ended) done(Buffer.concat(chunks).toString());
            else stream.once('end', () => done(Buffer.concat(chunks).toString()));
          }),
      };
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        if (ws.status === 200) reader.push(chunk);
      });
      stream.on('end', () => {
        ws.ended = true;
      });
      resolve(ws);
    });
  });
}

describe('WebSocket over HTTP/2 (RFC 8441) through zproxy', () => {
  let upstream: WsUpstream;
  /** Answers an Upgrade request with a plain 200 (an upstream that does not speak WebSocket). */
  let plain: RawUpstream;
  let proxy: StartedProxy;
  let session: http2.ClientHttp2Session;

  before(async () => {
    upstream = await startWsUpstream({
      server: {
        handleProtocols: (offered) => (offered.has('chat.v2') ? 'chat.v2' : false),
        maxPayload: 4 * 1024 * 1024,
      },
      onUpgrade: (request, socket) => {
        if (request.url !== '/forbidden') return true;
        socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nforbidden');
        return false;
      },
    });
    plain = await startRawUpstream((socket) => {
      socket.once('data', () => {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
      });
    });
    proxy = await startProxy({
      routes: [
        { path: '/plain', upstream: plain.url },
        { path: '/', upstream: upstream.url },
      ],
    });
    session = await connect(proxy.port);
  });

  after(async () => {
    session.destroy();
    await proxy.close();
    await upstream.close();
    await plain.close();
  });

  test('the proxy announces SETTINGS_ENABLE_CONNECT_PROTOCOL', () => {
    assert.equal(session.remoteSettings.enableConnectProtocol, true);
  });

  test('an extended CONNECT becomes an HTTP/1.1 Upgrade with a fresh key; 200 with the sub-protocol', async () => {
    const before = upstream.upgradeRequests.length;
    const ws = await openWsStream(session, proxy.port, '/chat?room=1', {
      'sec-websocket-protocol': 'chat.v1, chat.v2',
    });
    try {
      assert.equal(ws.status, 200);
      assert.equal(ws.headers['sec-websocket-protocol'], 'chat.v2');
      assert.equal(ws.headers['sec-websocket-accept'], undefined);
      assert.equal(ws.headers.upgrade, undefined);
      assert.equal(upstream.upgradeRequests.length, before + 1);
      const req = upstream.upgradeRequests.at(-1)!;
      assert.equal(req.method, 'GET');
      assert.equal(req.url, '/chat?room=1');
      assert.equal(req.httpVersion, '1.1');
      assert.equal(req.headers.upgrade, 'websocket');
      assert.match(String(req.headers.connection), /upgrade/i);
      assert.match(String(req.headers['sec-websocket-key']), /^[A-Za-z0-9+/]{22}==$/);
      assert.equal(req.headers['sec-websocket-version'], '13');
      assert.equal(req.headers['sec-websocket-protocol'], 'chat.v1, chat.v2');
      assert.equal(req.headers['x-forwarded-for'], '127.0.0.1');
    } finally {
      ws.stream.close();
    }
  });

  test('text and binary frames (up to 1 MB) go both ways; several WebSockets share one connection', async () => {
    const streams = await Promise.all([1, 2, 3].map((i) => openWsStream(session, proxy.port, `/multi/${i}`)));
    try {
      // An ordinary request on the same connection meanwhile.
      const plainGet = await h2Request(session, { ':path': '/ordinary' });
      assert.equal(plainGet.status, 200);
      const big = randomBytes(1024 * 1024);
      for (const [i, ws] of streams.entries()) {
        assert.equal(ws.status, 200);
        ws.stream.write(clientFrame(OPCODE.text, `hello ${i}`));
        ws.stream.write(clientFrame(OPCODE.binary, big));
      }
      for (const [i, ws] of streams.entries()) {
        await waitUntil(() => ws.reader.frames.length >= 2, 10_000);
        const [text, bin] = ws.reader.frames;
        assert.equal(text!.opcode, OPCODE.text);
        assert.equal(text!.payload.toString(), `hello ${i}`);
        assert.equal(bin!.opcode, OPCODE.binary);
        assert.ok(bin!.payload.equals(big), 'the 1 MB message came back unchanged');
      }
      const seen = upstream.connections.filter((c) => c.request.url?.startsWith('/multi/'));
      assert.equal(seen.length, 3);
      for (const c of seen) assert.ok(toBuffer(c.messages[1]!).equals(big));
    } finally {
      for (const ws of streams) ws.stream.close();
    }
  });

  test('close codes and reasons cross both ways', async () => {
    const ws = await openWsStream(session, proxy.port, '/close-from-client');
    ws.stream.write(clientFrame(OPCODE.close, closePayload(4001, 'client says bye')));
    await waitUntil(
      () => upstream.connections.some((c) => c.request.url === '/close-from-client' && c.closed),
      5000,
    );
    const conn = upstream.connections.find((c) => c.request.url === '/close-from-client')!;
    assert.deepEqual([conn.closed!.code, conn.closed!.reason], [4001, 'client says bye']);
    // The upstream echoes the close frame and ends: the client sees it, then the end of the stream.
    await waitUntil(() => ws.ended, 5000);
    const close = ws.reader.frames.find((f) => f.opcode === OPCODE.close)!;
    assert.equal(close.payload.readUInt16BE(0), 4001);
    ws.stream.end();

    const ws2 = await openWsStream(session, proxy.port, '/close-from-upstream');
    await waitUntil(() => upstream.connections.some((c) => c.request.url === '/close-from-upstream'), 5000);
    upstream.connections
      .find((c) => c.request.url === '/close-from-upstream')!
      .ws.close(4002, 'server says bye');
    await waitUntil(() => ws2.reader.frames.some((f) => f.opcode === OPCODE.close), 5000);
    const close2 = ws2.reader.frames.find((f) => f.opcode === OPCODE.close)!;
    assert.equal(close2.payload.readUInt16BE(0), 4002);
    assert.equal(close2.payload.subarray(2).toString(), 'server says bye');
    ws2.stream.close();
  });

  test('a refused upgrade reaches the client as the upstream answered it', async () => {
    const ws = await openWsStream(session, proxy.port, '/forbidden');
    assert.equal(ws.status, 403);
    assert.equal(await ws.body(), 'forbidden');
    ws.stream.close();
  });

  test('an upstream that answers 200 without switching is a 502 (a 2xx would mean the tunnel is open)', async () => {
    const ws = await openWsStream(session, proxy.port, '/plain');
    assert.equal(ws.status, 502);
    assert.match(await ws.body(), /ZP_ERR_UPSTREAM_BAD_RESPONSE/);
    ws.stream.close();
  });

  test('a version other than 13 is 426 with sec-websocket-version: 13, and nothing is forwarded', async () => {
    const before = upstream.upgradeRequests.length;
    const ws = await openWsStream(session, proxy.port, '/old', { 'sec-websocket-version': '8' });
    assert.equal(ws.status, 426);
    assert.equal(ws.headers['sec-websocket-version'], '13');
    ws.stream.close();
    const missing = await openWsStream(session, proxy.port, '/old', { 'sec-websocket-version': undefined });
    assert.equal(missing.status, 400);
    missing.stream.close();
    assert.equal(upstream.upgradeRequests.length, before);
  });

  test('a client that resets its stream releases the upstream connection within a second', async () => {
    const ws = await openWsStream(session, proxy.port, '/reset-by-client');
    await waitUntil(() => upstream.connections.some((c) => c.request.url === '/reset-by-client'), 5000);
    const conn = upstream.connections.find((c) => c.request.url === '/reset-by-client')!;
    const started = performance.now();
    ws.stream.close(http2.constants.NGHTTP2_CANCEL);
    await waitUntil(() => conn.closed !== null, 1000);
    assert.ok(performance.now() - started < 1000);
    await waitUntil(() => proxy.server.tunnelCount === 0, 1000);
  });

  test('the tunnel is logged when it ends: protocol 2, bytes each way', async () => {
    const ws = await openWsStream(session, proxy.port, '/logged');
    ws.stream.write(clientFrame(OPCODE.text, 'x'.repeat(100)));
    await waitUntil(() => ws.reader.frames.length === 1, 5000);
    ws.stream.write(clientFrame(OPCODE.close, closePayload(1000)));
    await waitUntil(() => ws.ended, 5000);
    ws.stream.close();
    await waitUntil(() => proxy.accessLogs().some((l) => l.target === '/logged'), 5000);
    const line = proxy.accessLogs().find((l) => l.target === '/logged')!;
    assert.equal(line.status, 200);
    assert.equal(line.method, 'CONNECT');
    assert.equal(line.version, '2');
    assert.ok(Number(line.bytes_in) >= 106, JSON.stringify(line));
    assert.ok(Number(line.bytes_out) >= 102, JSON.stringify(line));
    const tunnel = line.tunnel as { bytes_up: number; bytes_down: number };
    // A 100-byte masked text frame (106 bytes) and a masked close frame (8) up; the echo (102) and the
    // close frame (4) down.
    assert.equal(tunnel.bytes_up, 114);
    assert.equal(tunnel.bytes_down, 106);
  });
});

describe('WebSocket over HTTP/2 with websocket not in protocols', () => {
  test('no SETTINGS_ENABLE_CONNECT_PROTOCOL, so clients do not send extended CONNECT', async () => {
    const upstream = await startWsUpstream();
    const proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: upstream.url }],
    });
    const session = await connect(proxy.port);
    try {
      assert.notEqual(session.remoteSettings.enableConnectProtocol, true);
      // Sent anyway, the extended CONNECT is malformed to the proxy: the stream is reset, nothing forwarded.
      const stream = session.request(
        {
          ':method': 'CONNECT',
          ':protocol': 'websocket',
          ':path': '/',
          ':scheme': 'http',
          'sec-websocket-version': '13',
        },
        { endStream: false },
      );
      let status = 0;
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.on('error', () => {});
      await new Promise((resolve) => stream.once('close', resolve));
      assert.equal(status, 0);
      assert.equal(stream.rstCode, http2.constants.NGHTTP2_PROTOCOL_ERROR);
      assert.equal(upstream.upgradeRequests.length, 0);
    } finally {
      session.destroy();
      await proxy.close();
      await upstream.close();
    }
  });
});
