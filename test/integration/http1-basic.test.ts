/**
 * HTTP/1.1 end to end through a real proxy: methods and bodies, body-less statuses, large uploads and
 * downloads checked by sha256, chunked pass-through, re-chunking and de-chunking, a real curl client and
 * the access log.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Client } from 'undici';
import {
  eventually,
  parseResponses,
  type ScriptedUpstream,
  startScriptedUpstream,
  WireClient,
} from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, type RecordedRequest, startHttpUpstream } from '../helpers/upstream.ts';

const run = promisify(execFile);

const DOWNLOAD = randomBytes(50 * 1024 * 1024);
const DOWNLOAD_SHA = createHash('sha256').update(DOWNLOAD).digest('hex');

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Writes `data` in 64 KiB slices, honouring backpressure. */
function stream(res: http.ServerResponse, data: Buffer): void {
  let offset = 0;
  const pump = () => {
    while (offset < data.length) {
      const slice = data.subarray(offset, offset + 65536);
      offset += slice.length;
      if (!res.write(slice)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

function handler(req: RecordedRequest, res: http.ServerResponse): void {
  const path = req.url.split('?')[0];
  switch (path) {
    case '/text':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 11 });
      res.end(req.method === 'HEAD' ? undefined : 'hello world');
      return;
    case '/204':
      res.writeHead(204, { 'x-kind': 'no-content' });
      res.end();
      return;
    case '/304':
      res.writeHead(304, { etag: '"v1"' });
      res.end();
      return;
    case '/chunked':
      // No length: node sends each write as one chunk.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first,');
      setTimeout(() => {
        res.write('second,');
        setTimeout(() => res.end('third'), 5);
      }, 5);
      return;
    case '/download':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': DOWNLOAD.length });
      stream(res, DOWNLOAD);
      return;
    default: {
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        bytes: req.body.length,
        sha: req.bodySha256,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
  }
}

const CLOSE_BODY = 'this body ends when the upstream closes the connection';

function scripted(req: { target: string }, socket: import('node:net').Socket): string | undefined {
  if (req.target === '/raw/close') {
    // No Content-Length, no Transfer-Encoding: the body is delimited by the close.
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    socket.write(CLOSE_BODY.slice(0, 20));
    setTimeout(() => socket.end(CLOSE_BODY.slice(20)), 20);
    return undefined;
  }
  if (req.target === '/raw/chunks') {
    socket.write(
      'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n',
    );
    setTimeout(() => socket.write('a\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n'), 20);
    return undefined;
  }
  if (req.target === '/raw/interim') {
    // Interim responses from the upstream, the second split across packets, then the final one.
    socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 100 Con');
    setTimeout(() => socket.write('tinue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal'), 20);
    return undefined;
  }
  return 'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n';
}

let upstream: HttpUpstream;
let raw: ScriptedUpstream;
let proxy: StartedProxy;
let client: Client;

before(async () => {
  upstream = await startHttpUpstream(handler);
  raw = await startScriptedUpstream(scripted);
  proxy = await startProxy({
    routes: [
      { path: '/raw', upstream: raw.url },
      { path: '/', upstream: upstream.url },
    ],
  });
  client = new Client(proxy.url, { pipelining: 0 });
});
after(async () => {
  await client.close();
  await proxy.close();
  await upstream.close();
  await raw.close();
});

describe('methods and bodies', () => {
  test('GET is forwarded and answered with the upstream body', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /text?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 200);
      assert.equal(r.header('content-length'), '11');
      assert.equal(r.body.toString(), 'hello world');
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.method, 'GET');
      assert.equal(seen.url, '/text?x=1');
      assert.equal(seen.headers.host, 'example.test');
      assert.equal(seen.body.length, 0);
    } finally {
      c.close();
    }
  });

  test('HEAD keeps Content-Length and carries no body (the next response follows the head directly)', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('HEAD /text HTTP/1.1\r\nHost: a\r\n\r\nGET /text HTTP/1.1\r\nHost: a\r\n\r\n');
      const head = await c.next({ noBody: true });
      assert.equal(head.status, 200);
      assert.equal(head.header('content-length'), '11');
      assert.equal(head.raw.length, head.head.length);
      const get = await c.next();
      assert.equal(get.status, 200);
      assert.equal(get.body.toString(), 'hello world');
      assert.equal(c.unread.length, 0);
      assert.equal(upstream.requests.at(-2)!.method, 'HEAD');
    } finally {
      c.close();
    }
  });

  test('POST with Content-Length reaches the upstream with the same length and bytes', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write(
        'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world',
      );
      const r = await c.next();
      assert.equal(r.status, 200);
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.method, 'POST');
      assert.equal(seen.headers['content-length'], '11');
      assert.equal(seen.headers['transfer-encoding'], undefined);
      assert.equal(seen.body.toString(), 'hello world');
      assert.deepEqual(JSON.parse(r.body.toString()), {
        method: 'POST',
        url: '/echo',
        bytes: 11,
        sha: sha256(Buffer.from('hello world')),
      });
    } finally {
      c.close();
    }
  });

  test('POST with a chunked body reaches the upstream chunked and complete', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      await new Promise((r) => setTimeout(r, 30));
      c.write('6;ext=1\r\n world\r\n0\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 200);
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.headers['transfer-encoding'], 'chunked');
      assert.equal(seen.headers['content-length'], undefined);
      assert.equal(seen.body.toString(), 'hello world');
      // The connection stays usable after a chunked request.
      c.write('GET /text HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await c.next()).body.toString(), 'hello world');
    } finally {
      c.close();
    }
  });

  test('a chunked body trickled one byte per packet is reassembled exactly', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      const body = '3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n';
      c.write('POST /trickle HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n');
      for (const ch of body) {
        c.write(ch);
        await new Promise((r) => setTimeout(r, 1));
      }
      const r = await c.next();
      assert.equal(r.status, 200);
      const seen = upstream.requests.at(-1)!;
      assert.equal(seen.url, '/trickle');
      assert.equal(seen.body.toString(), 'abcdefg');
    } finally {
      c.close();
    }
  });

  test('204 and 304 responses carry no body', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write(
        'GET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\nIf-None-Match: "v1"\r\n\r\nGET /text HTTP/1.1\r\nHost: a\r\n\r\n',
      );
      const r204 = await c.next();
      assert.equal(r204.status, 204);
      assert.equal(r204.header('x-kind'), 'no-content');
      assert.equal(r204.has('transfer-encoding'), false);
      assert.equal(r204.raw.length, r204.head.length);
      const r304 = await c.next();
      assert.equal(r304.status, 304);
      assert.equal(r304.header('etag'), '"v1"');
      assert.equal(r304.has('transfer-encoding'), false);
      assert.equal(r304.raw.length, r304.head.length);
      // The bytes right after the 304 head are the next response's status line.
      const next = await c.next();
      assert.equal(next.status, 200);
      assert.equal(next.body.toString(), 'hello world');
    } finally {
      c.close();
    }
  });
});

describe('large bodies', () => {
  test('a 10 MB upload with Content-Length arrives intact (sha256 at the upstream)', async () => {
    const body = randomBytes(10 * 1024 * 1024);
    const res = await client.request({ path: '/upload', method: 'POST', body });
    const answer = (await res.body.json()) as { bytes: number; sha: string };
    assert.equal(res.statusCode, 200);
    assert.equal(answer.bytes, body.length);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.headers['content-length'], String(body.length));
    assert.equal(seen.bodySha256, sha256(body));
  });

  test('a 10 MB chunked upload arrives intact (sha256 at the upstream)', async () => {
    const body = randomBytes(10 * 1024 * 1024);
    const parts: Buffer[] = [];
    for (let o = 0; o < body.length; o += 100_000) parts.push(body.subarray(o, o + 100_000));
    const res = await client.request({ path: '/upload-chunked', method: 'POST', body: Readable.from(parts) });
    await res.body.text();
    assert.equal(res.statusCode, 200);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.headers['transfer-encoding'], 'chunked');
    assert.equal(seen.body.length, body.length);
    assert.equal(seen.bodySha256, sha256(body));
  });

  test('a 50 MB download streamed by the upstream arrives intact (sha256 at the client)', async () => {
    const res = await client.request({ path: '/download', method: 'GET' });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(DOWNLOAD.length));
    const hash = createHash('sha256');
    let n = 0;
    for await (const chunk of res.body) {
      hash.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    assert.equal(n, DOWNLOAD.length);
    assert.equal(hash.digest('hex'), DOWNLOAD_SHA);
  });
});

describe('response framing', () => {
  test('a chunked response passes through to an HTTP/1.1 client with its chunks intact', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/chunks HTTP/1.1\r\nHost: a\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 200);
      assert.equal(r.framing, 'chunked');
      assert.deepEqual(r.chunkSizes, [3, 10, 1]);
      assert.equal(r.body.toString(), 'abc0123456789!');
      assert.equal(r.headerAll('transfer-encoding').length, 1);
    } finally {
      c.close();
    }
  });

  test('node-chunked responses keep their chunk boundaries', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /chunked HTTP/1.1\r\nHost: a\r\n\r\n');
      const r = await c.next();
      assert.equal(r.framing, 'chunked');
      assert.deepEqual(r.chunkSizes, [6, 7, 5]);
      assert.equal(r.body.toString(), 'first,second,third');
    } finally {
      c.close();
    }
  });

  test('a close-delimited upstream response is re-chunked for an HTTP/1.1 client', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/close HTTP/1.1\r\nHost: a\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 200);
      assert.equal(r.framing, 'chunked');
      assert.equal(r.header('transfer-encoding'), 'chunked');
      assert.equal(r.has('content-length'), false);
      assert.equal(r.body.toString(), CLOSE_BODY);
      assert.ok(r.chunkSizes.length >= 1);
      // The client connection is still usable: the framing told it where the body ended.
      c.write('GET /text HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal((await c.next()).body.toString(), 'hello world');
    } finally {
      c.close();
    }
  });

  test('a close-delimited upstream response is delivered until close to an HTTP/1.0 client', async () => {
    const r = await rawRequest(proxy.port, 'GET /raw/close HTTP/1.0\r\n\r\n');
    assert.equal(r.closedByServer, true);
    const [res] = parseResponses(r.data, { closed: true });
    assert.ok(res);
    assert.equal(res.status, 200);
    assert.equal(res.framing, 'close');
    assert.equal(res.has('transfer-encoding'), false);
    assert.equal(res.body.toString(), CLOSE_BODY);
  });

  test("the upstream's interim responses are consumed: the client gets only the final one", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /raw/interim HTTP/1.1\r\nHost: a\r\n\r\n');
      const r = await c.next();
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'final');
      assert.equal(c.received.includes('103'), false);
      assert.equal(c.received.includes('100 Continue'), false);
    } finally {
      c.close();
    }
  });

  test('an HTTP/1.0 client gets a chunked upstream response de-chunked', async () => {
    const r = await rawRequest(proxy.port, 'GET /chunked HTTP/1.0\r\n\r\n');
    assert.equal(r.closedByServer, true);
    const [res] = parseResponses(r.data, { closed: true });
    assert.ok(res);
    assert.equal(res.status, 200);
    assert.equal(res.has('transfer-encoding'), false);
    assert.equal(res.body.toString(), 'first,second,third');
    assert.equal(upstream.requests.at(-1)!.url, '/chunked');
  });

  test('an HTTP/1.0 keep-alive client keeps its connection for a Content-Length response', async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('GET /text HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
      const r = await c.next();
      assert.equal(r.body.toString(), 'hello world');
      assert.equal(r.header('connection')?.toLowerCase(), 'keep-alive');
      c.write('GET /text HTTP/1.0\r\n\r\n');
      const r2 = await c.next();
      assert.equal(r2.body.toString(), 'hello world');
      assert.equal(await c.waitClosed(), true);
    } finally {
      c.close();
    }
  });
});

describe('a real client', () => {
  test('curl GET', async () => {
    const { stdout } = await run('curl', [
      '-s',
      '-i',
      '--max-time',
      '10',
      '--noproxy',
      '*',
      `${proxy.url}/curl?q=1`,
    ]);
    assert.match(stdout, /^HTTP\/1\.1 200 /);
    assert.match(stdout, /\r\nvia: 1\.1 zproxy\r\n/i);
    const body = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(body, { method: 'GET', url: '/curl?q=1', bytes: 0, sha: sha256(Buffer.alloc(0)) });
    assert.match(String(upstream.requests.at(-1)!.headers['user-agent']), /^curl\//);
  });

  test('curl POST', async () => {
    const { stdout } = await run('curl', [
      '-s',
      '-i',
      '--max-time',
      '10',
      '--noproxy',
      '*',
      '-H',
      'Content-Type: text/plain',
      '--data-binary',
      'hello from curl',
      `${proxy.url}/curl-post`,
    ]);
    assert.match(stdout, /^HTTP\/1\.1 200 /);
    const body = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4));
    assert.equal(body.method, 'POST');
    assert.equal(body.bytes, 15);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.body.toString(), 'hello from curl');
    assert.equal(seen.headers['content-type'], 'text/plain');
  });
});

describe('access log', () => {
  test('one JSON line per exchange with method, target, status, bytes, duration, route, upstream, error', async () => {
    const before = proxy.accessLogs().length;
    const c = await WireClient.connect(proxy.port);
    const get = 'GET /text?log=1 HTTP/1.1\r\nHost: log.test\r\n\r\n';
    const post = 'POST /logged HTTP/1.1\r\nHost: log.test\r\nContent-Length: 4\r\n\r\nbody';
    let r1: Awaited<ReturnType<WireClient['next']>>;
    let r2: typeof r1;
    try {
      c.write(get);
      r1 = await c.next();
      c.write(post);
      r2 = await c.next();
    } finally {
      c.close();
    }
    const bad = 'GET /x HTTP/1.1\r\nHost: log.test\r\nBad Header: 1\r\n\r\n';
    const r3 = await rawRequest(proxy.port, bad);
    assert.ok(await eventually(() => proxy.accessLogs().length >= before + 3));
    await new Promise((r) => setTimeout(r, 50));
    const lines = proxy.accessLogs().slice(before);
    assert.equal(lines.length, 3, 'exactly one line per exchange');
    const [l1, l2, l3] = lines as Record<string, unknown>[];
    for (const l of lines) {
      for (const key of [
        'method',
        'target',
        'status',
        'bytes_in',
        'bytes_out',
        'duration_ms',
        'route',
        'upstream',
        'error',
      ]) {
        assert.ok(key in l, `access log line has ${key}`);
      }
      assert.equal(typeof l.duration_ms, 'number');
      assert.ok((l.duration_ms as number) >= 0);
    }
    assert.equal(l1!.method, 'GET');
    assert.equal(l1!.target, '/text?log=1');
    assert.equal(l1!.status, 200);
    assert.equal(l1!.bytes_in, Buffer.byteLength(get));
    assert.equal(l1!.bytes_out, r1.raw.length);
    assert.equal(l1!.route, '/');
    assert.equal(l1!.upstream, `127.0.0.1:${upstream.port}`);
    assert.equal(l1!.error, null);
    assert.equal(l2!.method, 'POST');
    assert.equal(l2!.target, '/logged');
    assert.equal(l2!.status, 200);
    assert.equal(l2!.bytes_in, Buffer.byteLength(post));
    assert.equal(l2!.bytes_out, r2.raw.length);
    assert.equal(l3!.status, 400);
    assert.equal(l3!.bytes_out, r3.data.length);
    assert.equal(l3!.route, null);
    assert.equal(l3!.upstream, null);
    assert.equal(l3!.error, 'ZP_ERR_BAD_REQUEST');
  });
});
