/**
 * W3C Trace Context through zproxy, seen from both ends: the traceparent an upstream gets and the access
 * line of the same exchange, over the four protocol pairs (HTTP/1.1 or HTTP/2 client, HTTP/1.1 or HTTP/2
 * upstream) and for WebSocket handshakes (HTTP/1.1 Upgrade and HTTP/2 extended CONNECT). The access line's
 * `trace_id` is the upstream's trace id (the client's when it sent a valid one) and its `span_id` the
 * parent id the upstream got: zproxy's own span, new for each exchange. (What is kept, replaced or dropped
 * for each kind of traceparent is in the forwarding case table, test/fixtures/forwarding-cases.ts.)
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';
import { closed, openWs, startWsUpstream, type WsUpstream } from '../helpers/websocket.ts';

const CLIENT_TRACE = '0af7651916cd43dd8448eb211c80319c';
const CLIENT_PARENT = 'b7ad6b7169203331';
const CLIENT_TRACEPARENT = `00-${CLIENT_TRACE}-${CLIENT_PARENT}-01`;
const SHAPE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

let h1: HttpUpstream;
let h2: http2.Http2Server;
/** traceparent each upstream got, by path. */
const seen = new Map<string, string | undefined>();
let ws: WsUpstream;
let proxy: StartedProxy;
let session: http2.ClientHttp2Session;

before(async () => {
  h1 = await startHttpUpstream((req, res) => {
    seen.set(req.url, req.headers.traceparent as string | undefined);
    res.writeHead(200, { 'content-length': 2 });
    res.end('ok');
  });
  h2 = http2.createServer();
  h2.on('stream', (stream, headers) => {
    seen.set(String(headers[':path']), headers.traceparent as string | undefined);
    stream.respond({ ':status': 200 });
    stream.end('ok');
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  ws = await startWsUpstream();
  proxy = await startProxy({
    routes: [
      { path: '/h1', upstream: h1.url },
      { path: '/h2', upstream: `h2c://127.0.0.1:${(h2.address() as AddressInfo).port}` },
      { path: '/ws', upstream: ws.url },
    ],
  });
  session = http2.connect(proxy.url);
  session.on('error', () => {});
});

after(async () => {
  session.destroy();
  await proxy.close();
  await h1.close();
  await new Promise<void>((resolve) => h2.close(() => resolve()));
  await ws.close();
});

/** The access line of the exchange for `path` (waits for it). */
async function accessLine(path: string): Promise<Record<string, unknown>> {
  await waitUntil(
    () => proxy.accessLogs().some((l) => l.target === path),
    3000,
    `the access line of ${path}`,
  );
  return proxy.accessLogs().find((l) => l.target === path)!;
}

/** Checks what the upstream got against the access line; returns the upstream's trace id and span. */
async function checkExchange(path: string, upstreamGot: string | undefined, clientSent: boolean) {
  assert.ok(upstreamGot !== undefined, `${path}: the upstream got a traceparent`);
  const m = SHAPE.exec(upstreamGot);
  assert.ok(m, `${path}: a version-00 traceparent: ${upstreamGot}`);
  const [, traceId, span, flags] = m;
  if (clientSent) {
    assert.equal(traceId, CLIENT_TRACE, `${path}: the client's trace goes on`);
    assert.notEqual(span, CLIENT_PARENT, `${path}: zproxy is a new span`);
  } else {
    assert.notEqual(traceId, CLIENT_TRACE);
  }
  assert.equal(flags, '01');
  const line = await accessLine(path);
  assert.equal(line.trace_id, traceId, `${path}: the access line has the upstream's trace id`);
  assert.equal(line.span_id, span, `${path}: the access line has zproxy's span (the upstream's parent id)`);
  return { traceId: traceId!, span: span! };
}

describe('traceparent over the four protocol pairs, and its trace id in the access log', () => {
  for (const client of ['h1', 'h2'] as const) {
    for (const upstream of ['h1', 'h2'] as const) {
      test(`${client} client -> ${upstream} upstream: passed on with a new span, or started`, async () => {
        const spans = new Set<string>();
        const traces = new Set<string>();
        for (const sent of [true, false, true]) {
          const path = `/${upstream}/${client}-${sent ? 'sent' : 'none'}-${spans.size}`;
          const headers: Record<string, string> = sent ? { traceparent: CLIENT_TRACEPARENT } : {};
          if (client === 'h1') {
            assert.equal((await sendRequest(proxy.port, path, { headers })).status, 200);
          } else {
            const res = await h2Request(session, { ':path': path, ...headers });
            assert.equal(res.status, 200);
          }
          const { traceId, span } = await checkExchange(path, seen.get(path), sent);
          spans.add(span);
          traces.add(traceId);
        }
        assert.equal(spans.size, 3, 'a new span for each exchange');
        assert.equal(traces.size, 2, 'the client trace twice, one started trace');
      });
    }
  }
});

describe('traceparent on WebSocket handshakes', () => {
  test('HTTP/1.1 Upgrade: the upstream handshake gets it, the tunnel access line has the trace id', async () => {
    for (const sent of [true, false]) {
      const path = `/ws/h1-${sent ? 'sent' : 'none'}`;
      const before = ws.upgradeRequests.length;
      const client = await openWs(`ws://127.0.0.1:${proxy.port}${path}`, [], {
        headers: sent ? { traceparent: CLIENT_TRACEPARENT } : {},
      });
      assert.equal(ws.upgradeRequests.length, before + 1);
      const got = ws.upgradeRequests.at(-1)!.headers.traceparent as string | undefined;
      client.close(1000);
      await closed(client);
      const { traceId } = await checkExchange(path, got, sent);
      const line = await accessLine(path);
      assert.ok(line.tunnel, 'the line of a tunnel');
      assert.equal(line.trace_id, traceId);
    }
  });

  test('HTTP/2 extended CONNECT: the upstream handshake gets it, the tunnel access line has the trace id', async () => {
    await new Promise<void>((resolve) => {
      if (session.remoteSettings.enableConnectProtocol) resolve();
      else session.once('remoteSettings', () => resolve());
    });
    const path = '/ws/h2-sent';
    const before = ws.upgradeRequests.length;
    const stream = session.request(
      {
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'http',
        ':path': path,
        ':authority': `127.0.0.1:${proxy.port}`,
        'sec-websocket-version': '13',
        traceparent: CLIENT_TRACEPARENT,
      },
      { endStream: false },
    );
    const status = await new Promise<number>((resolve, reject) => {
      stream.once('error', reject);
      stream.once('response', (headers) => resolve(Number(headers[':status'])));
    });
    assert.equal(status, 200);
    assert.equal(ws.upgradeRequests.length, before + 1);
    const got = ws.upgradeRequests.at(-1)!.headers.traceparent as string | undefined;
    stream.close();
    await checkExchange(path, got, true);
  });
});
