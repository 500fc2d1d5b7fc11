/**
 * How an HTTP/1.x connection ends after its last response (RFC 9112 §9.6): closed at once when the client
 * asked for the close and everything it sent was read; otherwise a half-close and a lingering read, so a
 * client that is still sending gets the whole answer and no reset.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const BIG = 4 * 1024 * 1024;

/**
 * A client that keeps its own side open (allowHalfOpen): what it received, whether the proxy ended the
 * connection (FIN) and any error (a reset).
 */
class HalfOpenClient {
  readonly socket: net.Socket;
  readonly chunks: Buffer[] = [];
  ended = false;
  error: string | null = null;
  readonly connected: Promise<void>;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    this.connected = new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (c: Buffer) => this.chunks.push(c));
    this.socket.on('end', () => {
      this.ended = true;
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error = err.code ?? err.message;
    });
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  get received(): number {
    let n = 0;
    for (const c of this.chunks) n += c.length;
    return n;
  }
}

describe('the end of a connection after its last response', () => {
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    upstream = await startHttpUpstream((req, res) => {
      if (req.url === '/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG });
        res.end(Buffer.alloc(BIG, 0x61));
        return;
      }
      const body = JSON.stringify({ url: req.url, bytes: req.body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    proxy = await startProxy({
      limits: { max_body_bytes: 1000 },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });

  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  for (const [name, request] of [
    ['HTTP/1.1 Connection: close', 'GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'],
    ['HTTP/1.0 without keep-alive', 'GET /a HTTP/1.0\r\nHost: a\r\n\r\n'],
    ['with a body', 'POST /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello'],
  ] as const) {
    test(`${name}: the whole response, then the proxy closes at once without waiting for the client`, async () => {
      const client = new HalfOpenClient(proxy.port);
      await client.connected;
      client.socket.write(request);
      await waitUntil(() => client.ended, 2000, 'the end of the connection');
      assert.equal(client.error, null);
      assert.match(client.text, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(client.text, /\r\nConnection: close\r\n/i);
      assert.ok(
        client.text.endsWith(`{"url":"/a","bytes":${request.startsWith('POST') ? 5 : 0}}`),
        client.text,
      );
      // The client keeps its side open: the proxy did not wait for its FIN (nor linger) to let go of the
      // connection.
      await waitUntil(() => proxy.server.connectionCount === 0, 500, 'the proxy closing the connection');
      client.socket.destroy();
    });
  }

  test('a close the client did not ask for lingers: a client still sending its body gets the answer, no reset', async () => {
    const open = proxy.server.connectionCount;
    const client = new HalfOpenClient(proxy.port);
    await client.connected;
    // Connection: close, but a body over max_body_bytes that is answered 413 before it is read: the proxy
    // must not close with the body's bytes still arriving (the kernel would reset the connection).
    client.socket.write(
      'POST /up HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 200000\r\n\r\n',
    );
    await waitUntil(() => client.text.includes('\r\n\r\n'), 2000, 'the 413');
    for (let i = 0; i < 20; i++) {
      client.socket.write(Buffer.alloc(10_000, 0x62));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await waitUntil(() => client.ended, 2000, 'the end of the connection');
    assert.match(client.text, /^HTTP\/1\.1 413 /);
    assert.equal(client.error, null);
    // Still lingering: the proxy reads until the client ends its side.
    assert.equal(proxy.server.connectionCount, open + 1);
    client.socket.end();
    await waitUntil(() => proxy.server.connectionCount === open, 2000, 'the proxy closing the connection');
  });

  test('Connection: close with a client slow to read a large response: every byte arrives, then the end', async () => {
    const client = new HalfOpenClient(proxy.port);
    await client.connected;
    client.socket.pause();
    client.socket.write('GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    // The response fills the socket buffers while the client does not read.
    await new Promise((resolve) => setTimeout(resolve, 300));
    client.socket.resume();
    await waitUntil(() => client.ended, 5000, 'the end of the connection');
    assert.equal(client.error, null);
    const text = client.text;
    const headEnd = text.indexOf('\r\n\r\n') + 4;
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(client.received - headEnd, BIG);
    client.socket.destroy();
  });

  test('keep-alive: the connection stays open after the response', async () => {
    const open = proxy.server.connectionCount;
    const client = new HalfOpenClient(proxy.port);
    await client.connected;
    client.socket.write('GET /a HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => client.text.endsWith('}'), 2000, 'the response');
    client.socket.write('GET /b HTTP/1.1\r\nHost: a\r\n\r\n');
    await waitUntil(() => client.text.endsWith('{"url":"/b","bytes":0}'), 2000, 'the second response');
    assert.equal(client.ended, false);
    assert.equal(proxy.server.connectionCount, open + 1);
    client.socket.destroy();
    await waitUntil(() => proxy.server.connectionCount === open, 2000, 'the proxy closing the connection');
  });
});
