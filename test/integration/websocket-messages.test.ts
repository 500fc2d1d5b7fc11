/**
 * WebSocket through zproxy over HTTP/1.1 with the real `ws` package on both sides: messages of every
 * kind and size, order, control frames, close codes both ways, sub-protocol and permessage-deflate
 * negotiated end to end, bytes sent right after the heads, wss on a TLS listener and an https:// upstream.
 * Every test checks what the upstream saw as well as what the client got.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { CertDir } from '../helpers/certs.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { type RawUpstream, startRawUpstream } from '../helpers/upstream.ts';
import {
  closed,
  nextMessage,
  openWs,
  startWsUpstream,
  toBuffer,
  type WsUpstream,
} from '../helpers/websocket.ts';

/** The RFC 6455 §1.3 example key and its accept value. */
const SAMPLE_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const SAMPLE_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

function accept(key: string): string {
  return createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
}

/** A masked client text frame (payload under 126 bytes), as a client writes it. */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const mask = [0x11, 0x22, 0x33, 0x44];
  const frame = Buffer.alloc(6 + payload.length);
  frame[0] = 0x81;
  frame[1] = 0x80 | payload.length;
  for (let i = 0; i < 4; i++) frame[2 + i] = mask[i]!;
  for (let i = 0; i < payload.length; i++) frame[6 + i] = payload[i]! ^ mask[i % 4]!;
  return frame;
}

/** An unmasked server text frame (payload under 126 bytes). */
function serverTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([0x81, payload.length]), payload]);
}

describe('WebSocket over HTTP/1.1 through zproxy', () => {
  let upstream: WsUpstream;
  /** Answers the handshake with 101 and a first frame in the same write. */
  let eager: RawUpstream;
  let proxy: StartedProxy;
  let base: string;

  before(async () => {
    upstream = await startWsUpstream({
      server: {
        perMessageDeflate: { threshold: 0 },
        handleProtocols: (offered) => (offered.has('chat.v2') ? 'chat.v2' : false),
        maxPayload: 4 * 1024 * 1024,
      },
    });
    eager = await startRawUpstream((socket) => {
      let head = '';
      socket.on('data', (chunk: Buffer) => {
        head += chunk.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        const key = /sec-websocket-key: *(\S+)/i.exec(head)![1]!;
        socket.write(
          Buffer.concat([
            Buffer.from(
              `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n\r\n`,
              'latin1',
            ),
            serverTextFrame('hello from the upstream'),
          ]),
        );
        head = '';
      });
    });
    proxy = await startProxy({
      routes: [
        { path: '/eager', upstream: eager.url },
        { path: '/', upstream: upstream.url },
      ],
    });
    base = `ws://127.0.0.1:${proxy.port}`;
  });

  after(async () => {
    await proxy.close();
    await upstream.close();
    await eager.close();
  });

  test('text and binary messages, including 1 MB, come back unchanged', async () => {
    const ws = await openWs(`${base}/echo`);
    try {
      ws.send('héllo, wörld ✓');
      const text = await nextMessage(ws);
      assert.equal(text.isBinary, false);
      assert.equal(text.data.toString('utf8'), 'héllo, wörld ✓');

      const small = randomBytes(1000);
      ws.send(small);
      const bin = await nextMessage(ws);
      assert.equal(bin.isBinary, true);
      assert.ok(bin.data.equals(small));

      const big = randomBytes(1024 * 1024);
      ws.send(big);
      const echoed = await nextMessage(ws);
      assert.equal(echoed.isBinary, true);
      assert.equal(echoed.data.length, big.length);
      assert.ok(echoed.data.equals(big), '1 MB message unchanged');
      const conn = upstream.connections.at(-1)!;
      assert.equal(conn.messages.length, 3);
      assert.ok(toBuffer(conn.messages[2]!).equals(big), 'the upstream got the 1 MB message whole');
    } finally {
      ws.terminate();
    }
  });

  test('1000 small messages arrive in order, at the upstream and back at the client', async () => {
    const ws = await openWs(`${base}/order`);
    try {
      const got: string[] = [];
      const all = new Promise<void>((resolve) => {
        ws.on('message', (data) => {
          got.push(toBuffer(data as Buffer).toString());
          if (got.length === 1000) resolve();
        });
      });
      for (let i = 0; i < 1000; i++) ws.send(`message ${i}`);
      await all;
      const expected = Array.from({ length: 1000 }, (_, i) => `message ${i}`);
      assert.deepEqual(got, expected);
      const conn = upstream.connections.at(-1)!;
      assert.deepEqual(
        conn.messages.map((m) => toBuffer(m).toString()),
        expected,
      );
    } finally {
      ws.terminate();
    }
  });

  test('ping and pong both ways', async () => {
    const ws = await openWs(`${base}/ping`);
    try {
      const pong = new Promise<Buffer>((resolve) => ws.once('pong', resolve));
      ws.ping('are you there');
      assert.equal((await pong).toString(), 'are you there');

      const conn = upstream.connections.at(-1)!;
      const clientPing = new Promise<Buffer>((resolve) => ws.once('ping', resolve));
      const upstreamPong = new Promise<Buffer>((resolve) => conn.ws.once('pong', resolve));
      conn.ws.ping('and you?');
      assert.equal((await clientPing).toString(), 'and you?');
      assert.equal((await upstreamPong).toString(), 'and you?', 'the client answered the upstream ping');
    } finally {
      ws.terminate();
    }
  });

  test('close code and reason from the client reach the upstream, and its answer comes back', async () => {
    const ws = await openWs(`${base}/close-from-client`);
    const conn = upstream.connections.at(-1)!;
    const done = closed(ws);
    ws.close(4001, 'client says bye');
    assert.deepEqual(await done, { code: 4001, reason: 'client says bye' });
    await waitUntil(() => conn.closed !== null, 2000, 'the upstream to see the close');
    assert.equal(conn.closed!.code, 4001);
    assert.equal(conn.closed!.reason, 'client says bye');
    await waitUntil(() => proxy.server.tunnelCount === 0, 2000, 'the tunnel to end');
  });

  test('close code and reason from the upstream reach the client', async () => {
    const ws = await openWs(`${base}/close-from-upstream`);
    const conn = upstream.connections.at(-1)!;
    const done = closed(ws);
    conn.ws.close(4002, 'upstream says bye');
    assert.deepEqual(await done, { code: 4002, reason: 'upstream says bye' });
    await waitUntil(() => conn.closed !== null, 2000, 'the upstream close to complete');
    assert.equal(conn.closed!.code, 4002);
    await waitUntil(() => proxy.server.tunnelCount === 0, 2000, 'the tunnel to end');
  });

  test('a sub-protocol is negotiated between client and upstream', async () => {
    const ws = await openWs(`${base}/proto`, ['chat.v1', 'chat.v2']);
    try {
      assert.equal(ws.protocol, 'chat.v2');
      const conn = upstream.connections.at(-1)!;
      assert.equal(conn.request.headers['sec-websocket-protocol'], 'chat.v1,chat.v2', 'the offer as sent');
      ws.send('in chat.v2');
      assert.equal((await nextMessage(ws)).data.toString(), 'in chat.v2');
    } finally {
      ws.terminate();
    }
  });

  test('permessage-deflate is negotiated end to end and compressed messages round-trip', async () => {
    const ws = await openWs(`${base}/deflate`, [], { perMessageDeflate: { threshold: 0 } });
    const conn = upstream.connections.at(-1)!;
    try {
      assert.match(
        ws.extensions,
        /^permessage-deflate/,
        'the client sees the extension the upstream accepted',
      );
      assert.match(String(conn.request.headers['sec-websocket-extensions']), /permessage-deflate/);
      const text = 'compress me, '.repeat(20_000);
      ws.send(text);
      assert.equal((await nextMessage(ws)).data.toString(), text);
      assert.equal(toBuffer(conn.messages[0]!).toString(), text);
    } finally {
      ws.close();
      await closed(ws);
    }
    // The tunnel carried the compressed frames: far fewer bytes than the 260 kB message, each way.
    await waitUntil(
      () => proxy.accessLogs().some((l) => l.target === '/deflate'),
      2000,
      'the tunnel log line',
    );
    const line = proxy.accessLogs().find((l) => l.target === '/deflate')!;
    assert.equal(line.status, 101);
    assert.ok((line.bytes_in as number) < 20_000, `bytes_in ${line.bytes_in}`);
    assert.ok((line.bytes_out as number) < 20_000, `bytes_out ${line.bytes_out}`);
  });

  test('the handshake is forwarded with the upgrade fields, end-to-end fields untouched', async () => {
    const before = upstream.connections.length;
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    try {
      let text = '';
      socket.on('data', (c: Buffer) => {
        text += c.toString('latin1');
      });
      socket.write(
        `GET /raw?x=1 HTTP/1.1\r\nHost: chat.test\r\nConnection: keep-alive, Upgrade, X-Secret\r\nX-Secret: 1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${SAMPLE_KEY}\r\nOrigin: https://app.test\r\n\r\n`,
      );
      await waitUntil(() => text.includes('\r\n\r\n'), 2000, 'the 101');
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
      assert.match(head, /\r\nUpgrade: websocket\r\n/i);
      assert.match(head, /\r\nConnection: Upgrade\r\n/);
      assert.match(head, /\r\nVia: 1\.1 zproxy(\r\n|$)/);
      assert.match(
        head,
        new RegExp(`\\r\\nSec-WebSocket-Accept: ${SAMPLE_ACCEPT.replace(/[+/]/g, '\\$&')}`, 'i'),
      );
      await waitUntil(() => upstream.connections.length === before + 1, 2000, 'the upstream connection');
      const headers = upstream.connections.at(-1)!.request.headers;
      assert.equal(upstream.connections.at(-1)!.request.url, '/raw?x=1');
      assert.equal(headers.upgrade, 'websocket');
      assert.equal(headers.connection, 'Upgrade');
      assert.equal(headers['sec-websocket-key'], SAMPLE_KEY);
      assert.equal(headers['sec-websocket-version'], '13');
      assert.equal(headers.origin, 'https://app.test');
      assert.equal(headers.host, 'chat.test');
      assert.equal(headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(headers['x-forwarded-proto'], 'http');
      assert.equal(headers.via, '1.1 zproxy');
      assert.equal(headers['x-secret'], undefined, 'a field named by Connection is hop-by-hop');
    } finally {
      socket.destroy();
    }
  });

  test('bytes sent right after the heads are forwarded first, on both sides', async () => {
    // Client side: the handshake and a first frame in one write, before any 101.
    const before = upstream.connections.length;
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    try {
      let data = Buffer.alloc(0);
      socket.on('data', (c: Buffer) => {
        data = Buffer.concat([data, c]);
      });
      socket.write(
        Buffer.concat([
          Buffer.from(
            `GET /early HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${SAMPLE_KEY}\r\n\r\n`,
            'latin1',
          ),
          maskedTextFrame('sent with the head'),
        ]),
      );
      await waitUntil(() => upstream.connections.length === before + 1, 2000, 'the upstream connection');
      const conn = upstream.connections.at(-1)!;
      await waitUntil(() => conn.messages.length === 1, 2000, 'the early message at the upstream');
      assert.equal(toBuffer(conn.messages[0]!).toString(), 'sent with the head');
      const echo = serverTextFrame('sent with the head');
      await waitUntil(() => data.includes(echo), 2000, 'the echo');
    } finally {
      socket.destroy();
    }

    // Upstream side: a frame in the same write as the 101 reaches the client as its first message.
    const ws = new WebSocket(`${base}/eager`, { perMessageDeflate: false });
    try {
      const first = nextMessage(ws);
      assert.equal((await first).data.toString(), 'hello from the upstream');
    } finally {
      ws.terminate();
    }
  });

  test('backpressure: a client that stops reading stalls the upstream instead of filling the proxy', async () => {
    const before = upstream.connections.length;
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    try {
      let head = '';
      let frameBytes = 0;
      socket.on('data', (c: Buffer) => {
        if (!head.includes('\r\n\r\n')) {
          head += c.toString('latin1');
          const end = head.indexOf('\r\n\r\n');
          if (end !== -1) frameBytes += Buffer.byteLength(head.slice(end + 4), 'latin1');
          return;
        }
        frameBytes += c.length;
      });
      socket.write(
        `GET /slow-reader HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${SAMPLE_KEY}\r\n\r\n`,
      );
      await waitUntil(() => upstream.connections.length === before + 1, 2000, 'the upstream connection');
      await waitUntil(() => head.includes('\r\n\r\n'), 2000, 'the 101');
      socket.pause();
      const conn = upstream.connections.at(-1)!;
      const chunk = randomBytes(4 * 1024 * 1024);
      const messages = 24;
      for (let i = 0; i < messages; i++) conn.ws.send(chunk);
      // 96 MB sent while the client reads nothing: what the kernel buffers on two loopback hops holds is
      // a fraction of it; the rest must wait in the upstream, not in zproxy.
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok(
        conn.ws.bufferedAmount > 48 * 1024 * 1024,
        `the upstream still holds ${conn.ws.bufferedAmount} bytes (zproxy stopped reading it)`,
      );
      socket.resume();
      // Each 4 MiB binary frame has a 10-byte header.
      const expected = messages * (chunk.length + 10);
      await waitUntil(() => frameBytes >= expected, 20_000, 'every byte at the client');
      assert.equal(frameBytes, expected);
      assert.equal(conn.ws.bufferedAmount, 0);
    } finally {
      socket.destroy();
    }
  });

  test('the tunnel writes one access log line when it ends, with bytes each way and its duration', async () => {
    const ws = await openWs(`${base}/logged`);
    ws.send(Buffer.alloc(10_000, 1));
    await nextMessage(ws);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(
      proxy.accessLogs().filter((l) => l.target === '/logged').length,
      0,
      'nothing is logged while the tunnel is open',
    );
    ws.close(1000);
    await closed(ws);
    await waitUntil(() => proxy.accessLogs().some((l) => l.target === '/logged'), 2000, 'the log line');
    const lines = proxy.accessLogs().filter((l) => l.target === '/logged');
    assert.equal(lines.length, 1);
    const line = lines[0]!;
    assert.equal(line.status, 101);
    assert.equal(line.error, null);
    assert.equal(line.method, 'GET');
    assert.equal(line.upstream, `127.0.0.1:${upstream.port}`);
    // 10 000 bytes of payload each way plus the heads and frame headers.
    assert.ok(
      (line.bytes_in as number) > 10_000 && (line.bytes_in as number) < 11_000,
      `in ${line.bytes_in}`,
    );
    assert.ok(
      (line.bytes_out as number) > 10_000 && (line.bytes_out as number) < 11_000,
      `out ${line.bytes_out}`,
    );
    assert.ok((line.duration_ms as number) >= 150, `duration ${line.duration_ms}`);
    // What the tunnel itself carried: a 10 000-byte frame each way (masked from the client: 8 bytes of
    // frame header and mask, 4 from the server), the close frames, and how many tunnels are still open.
    const tunnel = line.tunnel as {
      bytes_up: number;
      bytes_down: number;
      duration_ms: number;
      active: number;
    };
    assert.ok(tunnel.bytes_up >= 10_008 && tunnel.bytes_up < 10_100, `up ${tunnel.bytes_up}`);
    assert.ok(tunnel.bytes_down >= 10_004 && tunnel.bytes_down < 10_100, `down ${tunnel.bytes_down}`);
    assert.ok(tunnel.duration_ms >= 150 && tunnel.duration_ms <= (line.duration_ms as number));
    assert.equal(tunnel.active, proxy.server.tunnelCount);
  });
});

describe('wss: WebSocket over a TLS listener, and to an https:// upstream', () => {
  const certs = new CertDir();
  after(() => certs.remove());

  test('wss:// on a TLS listener, forwarded to a plain upstream', async () => {
    const cert = certs.make('proxy', ['proxy.test']);
    const upstream = await startWsUpstream();
    const proxy = await startProxy({
      // ws:// on the same port too, asked for explicitly.
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key, plain_http: 'serve' },
      routes: [{ path: '/', upstream: upstream.url }],
    });
    try {
      const ws = await openWs(`wss://127.0.0.1:${proxy.port}/secure`, [], { rejectUnauthorized: false });
      try {
        ws.send('over TLS');
        assert.equal((await nextMessage(ws)).data.toString(), 'over TLS');
        const big = randomBytes(256 * 1024);
        ws.send(big);
        assert.ok((await nextMessage(ws)).data.equals(big));
        const conn = upstream.connections.at(-1)!;
        assert.equal(conn.request.headers['x-forwarded-proto'], 'https');
        const done = closed(ws);
        conn.ws.close(4003, 'tls bye');
        assert.deepEqual(await done, { code: 4003, reason: 'tls bye' });
      } finally {
        ws.terminate();
      }
      // ws:// still works on the same port.
      const plain = await openWs(`ws://127.0.0.1:${proxy.port}/plain`);
      plain.send('plain');
      assert.equal((await nextMessage(plain)).data.toString(), 'plain');
      plain.terminate();
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });

  test('an https:// upstream is reached over TLS with the route settings (CA, server name)', async () => {
    const ca = certs.makeCa('ca', 'Test CA');
    const leaf = certs.makeSigned('origin', ['origin.internal'], ca);
    const upstream = await startWsUpstream({
      tls: { cert: readFileSync(leaf.cert), key: readFileSync(leaf.key) },
    });
    const proxy = await startProxy({
      routes: [
        {
          path: '/',
          upstream: upstream.url,
          upstream_tls: { ca_file: ca.cert, server_name: 'origin.internal' },
        },
      ],
    });
    try {
      const ws = await openWs(`ws://127.0.0.1:${proxy.port}/to-tls`);
      ws.send('to a TLS upstream');
      assert.equal((await nextMessage(ws)).data.toString(), 'to a TLS upstream');
      assert.equal(upstream.connections.length, 1);
      assert.equal((upstream.connections[0]!.socket as unknown as { encrypted?: boolean }).encrypted, true);
      ws.terminate();
    } finally {
      await proxy.close();
      await upstream.close();
    }
  });
});
