/**
 * Retries and failover (the route's `retry`), end to end from HTTP/1.1 and HTTP/2 clients to HTTP/1.1 and
 * HTTP/2 upstreams: a refused target leaves the request to the other target; an HTTP/2 stream the upstream
 * refused (REFUSED_STREAM) goes again, whatever the method; a POST whose bytes reached an upstream is never
 * sent twice, while a PUT whose body was kept is; an exhausted retry budget answers without retrying; an
 * attempt past its per-try timeout goes to the other target; a retried status is retried for idempotent
 * methods only. The access log gives the attempts and the targets tried.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net, { type AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type ScriptedUpstream, startScriptedUpstream } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { freePort } from '../helpers/upstream.ts';

type Side = 'h1' | 'h2';

interface Answer {
  readonly status: number;
  readonly body: string;
}

/** What an upstream does with one request, by path: answer, refuse (HTTP/2), reset, hang or answer 503. */
type Behaviour = 'ok' | 'reset' | 'hang' | 'unavailable' | 'refuse-first';

function behaviourOf(path: string): Behaviour {
  const name = path.split('/')[2] ?? 'ok';
  return (['reset', 'hang', 'unavailable', 'refuse-first'] as const).find((b) => name.startsWith(b)) ?? 'ok';
}

interface Upstreams {
  h1: ScriptedUpstream;
  h2: http2.Http2Server;
  h2port: number;
  /** Requests each upstream saw, with their bodies (path -> bodies). */
  seen: Map<string, string[]>;
  h2refused: Set<string>;
}

function record(up: Upstreams, side: Side, path: string, body: string): void {
  const key = `${side} ${path}`;
  const list = up.seen.get(key);
  if (list === undefined) up.seen.set(key, [body]);
  else list.push(body);
}

async function startUpstreams(): Promise<Upstreams> {
  const up = { seen: new Map(), h2refused: new Set() } as unknown as Upstreams;
  // A path is answered with what its behaviour says; 'reset' and 'unavailable' only the first time each
  // (`/x/reset-1` fails once, then answers), so that a retry can succeed.
  const failedOnce = new Set<string>();
  up.h1 = await startScriptedUpstream((req, socket) => {
    record(up, 'h1', req.target, req.body.toString());
    const b = behaviourOf(req.target);
    const first = !failedOnce.has(`h1 ${req.target}`);
    failedOnce.add(`h1 ${req.target}`);
    if (b === 'hang') return undefined;
    if (b === 'reset' && first) {
      socket.destroy();
      return undefined;
    }
    if (b === 'unavailable') return 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy';
    const body = `h1 ${req.method} ${req.target}`;
    return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  });
  const h2 = http2.createServer();
  h2.on('session', (s) => s.on('error', () => {}));
  h2.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const path = String(headers[':path']);
    const method = String(headers[':method']);
    const b = behaviourOf(path);
    if (b === 'refuse-first' && !up.h2refused.has(path)) {
      // Refused before reading anything: the upstream never processed it (RFC 9113 §8.7).
      up.h2refused.add(path);
      stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      record(up, 'h2', path, Buffer.concat(chunks).toString());
      const first = !failedOnce.has(`h2 ${path}`);
      failedOnce.add(`h2 ${path}`);
      if (b === 'hang') return;
      if (b === 'reset' && first) {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      if (b === 'unavailable') {
        stream.respond({ ':status': 503 });
        stream.end('busy');
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end(`h2 ${method} ${path}`);
    });
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  up.h2 = h2;
  up.h2port = (h2.address() as AddressInfo).port;
  return up;
}

/**
 * An HTTP/2 upstream whose first connection answers the first request with GOAWAY, last stream id 0
 * (RFC 9113 §6.8: the stream was not processed); later connections are passed through to `up.h2`.
 */
async function startGoawayUpstream(h2port: number): Promise<net.Server> {
  let connections = 0;
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    if (connections++ > 0) {
      const inner = net.connect(h2port, '127.0.0.1');
      inner.on('error', () => socket.destroy());
      socket.pipe(inner).pipe(socket);
      return;
    }
    const frame = (type: number, payload: Buffer) => {
      const b = Buffer.alloc(9 + payload.length);
      b.writeUIntBE(payload.length, 0, 3);
      b[3] = type;
      payload.copy(b, 9);
      return b;
    };
    socket.write(frame(0x4, Buffer.alloc(0))); // SETTINGS
    let received = Buffer.alloc(0);
    let goneAway = false;
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      // After the 24-byte preface, frames: answer the first HEADERS with GOAWAY(last stream 0, NO_ERROR).
      for (let p = 24; !goneAway && p + 9 <= received.length; p += 9 + received.readUIntBE(p, 3)) {
        if (received[p + 3] === 0x1) {
          goneAway = true;
          socket.write(frame(0x7, Buffer.alloc(8)));
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

let up: Upstreams;
let goaway: net.Server;
let proxy: StartedProxy;
let session: http2.ClientHttp2Session;
let dead: number;

function target(side: Side): string {
  return side === 'h1' ? `http://127.0.0.1:${up.h1.port}` : `h2c://127.0.0.1:${up.h2port}`;
}

function deadTarget(side: Side): string {
  return side === 'h1' ? `http://127.0.0.1:${dead}` : `h2c://127.0.0.1:${dead}`;
}

before(async () => {
  up = await startUpstreams();
  dead = await freePort();
  goaway = await startGoawayUpstream(up.h2port);
  const routes: Record<string, unknown>[] = [
    { path: '/goaway', upstream: `h2c://127.0.0.1:${(goaway.address() as AddressInfo).port}` },
  ];
  for (const side of ['h1', 'h2'] as const) {
    // The dead target first: round-robin gives every other request to it.
    routes.push({ path: `/${side}-failover`, upstream: [deadTarget(side), target(side)] });
    routes.push({ path: `/${side}-one-dead`, upstream: deadTarget(side) });
    routes.push({
      path: `/${side}-no-budget`,
      upstream: deadTarget(side),
      retry: { budget_percent: 0, min_concurrent: 0 },
    });
    routes.push({
      path: `/${side}-per-try`,
      upstream: [target(side), target(side)],
      retry: { per_try_timeout_ms: 300, on: ['connect-failure', 'timeout'] },
    });
    routes.push({ path: `/${side}-status`, upstream: target(side), retry: { statuses: [503] } });
    routes.push({
      path: `/${side}-no-retry`,
      upstream: [deadTarget(side), target(side)],
      retry: { attempts: 1 },
    });
    routes.push({ path: `/${side}`, upstream: target(side) });
  }
  proxy = await startProxy({
    protocols: ['http1', 'http2'],
    // The dead targets stay in rotation here (this file is about retries); ejecting them is
    // health-checks.test.ts's subject.
    upstream_defaults: {
      connect_timeout_ms: 1000,
      response_header_timeout_ms: 5000,
      outlier_detection: { enabled: false },
    },
    routes,
  });
  session = http2.connect(proxy.url);
  session.on('error', () => {});
});

after(async () => {
  session.close();
  await proxy.close(200);
  await up.h1.close();
  for (const s of [up.h2, goaway]) await new Promise<void>((resolve) => s.close(() => resolve()));
});

async function send(client: Side, method: string, path: string, body?: string): Promise<Answer> {
  if (client === 'h1') {
    const res = await sendRequest(proxy.port, path, {
      method,
      ...(body === undefined ? {} : { body }),
      timeoutMs: 8000,
    });
    return { status: res.status, body: res.text };
  }
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = { ':method': method, ':path': path };
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = session.request(headers, { endStream: body === undefined });
    let status = 0;
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status, body: Buffer.concat(chunks).toString() }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

function logOf(path: string): Record<string, unknown> {
  const line = proxy.accessLogs().findLast((l) => l.target === path);
  assert.ok(line !== undefined, `an access log line for ${path}`);
  return line;
}

const unique = (() => {
  let n = 0;
  return () => ++n;
})();

for (const client of ['h1', 'h2'] as const) {
  for (const side of ['h1', 'h2'] as const) {
    describe(`${client} client, ${side} upstream`, () => {
      test('a refused target leaves the request to the other target of the route', async () => {
        let failedOver = 0;
        const paths: string[] = [];
        for (let i = 0; i < 4; i++) {
          const path = `/${side}-failover/get-${unique()}`;
          paths.push(path);
          const res = await send(client, 'POST', path, 'payload');
          assert.equal(res.status, 200, `${path}: ${res.body}`);
          assert.equal(res.body, `${side} POST ${path}`);
          const log = logOf(path);
          if (log.attempts === 2) {
            failedOver++;
            assert.deepEqual(log.upstreams, [`127.0.0.1:${dead}`, target(side).replace(/^\w+:\/\//, '')]);
          } else assert.equal(log.attempts, 1);
        }
        assert.ok(failedOver >= 1, 'at least one request met the dead target first');
        assert.deepEqual(
          paths.map((p) => up.seen.get(`${side} ${p}`)),
          [['payload'], ['payload'], ['payload'], ['payload']],
          'each request reached the live upstream once, with its body',
        );
      });

      test('a route whose only target is refused: one retry on a fresh connection, then 502', async () => {
        const path = `/${side}-one-dead/x-${unique()}`;
        const res = await send(client, 'GET', path);
        assert.equal(res.status, 502);
        assert.equal(JSON.parse(res.body).error.code, 'ZP_ERR_UPSTREAM_CONNECT');
        assert.equal(logOf(path).attempts, 2);
      });

      test('an exhausted retry budget answers at once, without a retry', async () => {
        const path = `/${side}-no-budget/x-${unique()}`;
        const res = await send(client, 'GET', path);
        assert.equal(res.status, 502);
        assert.equal(logOf(path).attempts, 1);
      });

      test('attempts: 1 turns retries off', async () => {
        let refused = 0;
        for (let i = 0; i < 2; i++) {
          const path = `/${side}-no-retry/x-${unique()}`;
          const res = await send(client, 'GET', path);
          assert.equal(logOf(path).attempts, 1);
          if (res.status === 502) refused++;
        }
        assert.equal(refused, 1, 'round-robin gave one of two requests to the dead target, unretried');
      });

      test('a POST whose request reached the upstream is never sent twice; a PUT with a kept body is', async () => {
        const post = `/${side}/reset-post-${unique()}`;
        const r1 = await send(client, 'POST', post, 'once');
        assert.equal(r1.status, 502);
        assert.deepEqual(up.seen.get(`${side} ${post}`), ['once'], 'the upstream saw the POST once');
        assert.equal(logOf(post).attempts, 1);
        const put = `/${side}/reset-put-${unique()}`;
        const r2 = await send(client, 'PUT', put, 'twice');
        assert.equal(r2.status, 200, r2.body);
        assert.deepEqual(up.seen.get(`${side} ${put}`), ['twice', 'twice'], 'the kept body went again whole');
        assert.equal(logOf(put).attempts, 2);
        // A body larger than retry.buffer_bytes (64 KiB) is not kept: once it started, no retry.
        const big = `/${side}/reset-big-${unique()}`;
        const r3 = await send(client, 'PUT', big, 'b'.repeat(100_000));
        assert.equal(r3.status, 502);
        assert.equal(up.seen.get(`${side} ${big}`)?.length, 1);
        assert.equal(logOf(big).attempts, 1);
      });

      test('an attempt past retry.per_try_timeout_ms goes to the other target', async () => {
        const path = `/${side}-per-try/hang-${unique()}`;
        const t0 = performance.now();
        const res = await send(client, 'GET', path);
        // Both targets hang on this path: two attempts of ~300 ms each, then 504.
        assert.equal(res.status, 504);
        assert.equal(JSON.parse(res.body).error.code, 'ZP_ERR_UPSTREAM_TIMEOUT');
        const elapsed = performance.now() - t0;
        assert.ok(
          elapsed >= 500 && elapsed < 3000,
          `two attempts of 300 ms each (${Math.round(elapsed)} ms)`,
        );
        assert.equal(logOf(path).attempts, 2);
        assert.equal(up.seen.get(`${side} ${path}`)?.length, 2);
      });

      test('a retried status is retried for an idempotent method only', async () => {
        const get = `/${side}-status/unavailable-${unique()}`;
        const r1 = await send(client, 'GET', get);
        // The upstream answers 503 every time: the second answer is forwarded.
        assert.equal(r1.status, 503);
        assert.equal(logOf(get).attempts, 2);
        const post = `/${side}-status/unavailable-${unique()}`;
        const r2 = await send(client, 'POST', post, 'x');
        assert.equal(r2.status, 503);
        assert.equal(logOf(post).attempts, 1);
      });
    });
  }

  test(`${client} client: an HTTP/2 stream the upstream refused goes again, whatever the method`, async () => {
    const path = `/h2/refuse-first-${unique()}`;
    const res = await send(client, 'POST', path, 'body');
    assert.equal(res.status, 200, res.body);
    assert.equal(res.body, `h2 POST ${path}`);
    assert.deepEqual(up.seen.get(`h2 ${path}`), ['body']);
    assert.equal(logOf(path).attempts, 2);
  });
}

test('a stream above the last stream id of an upstream GOAWAY goes again on a new session, whatever the method', async () => {
  const res = await send('h1', 'POST', '/goaway/first', 'after goaway');
  assert.equal(res.status, 200, res.body);
  assert.equal(res.body, 'h2 POST /goaway/first');
  assert.deepEqual(up.seen.get('h2 /goaway/first'), ['after goaway']);
  assert.equal(logOf('/goaway/first').attempts, 2);
});
