/**
 * HTTP/2 downstream hardening with raw frames (test/helpers/h2-frames.ts): the SETTINGS zproxy announces,
 * malformed requests refused and never forwarded, Rapid Reset (CVE-2023-44487) answered with GOAWAY
 * ENHANCE_YOUR_CALM while another client keeps its latency, and floods that close the connection with
 * the proxy's memory flat (measured on a `zproxy run` child process).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import type { ConnectionContext } from '../../src/http1/downstream-connection.ts';
import { Http2Downstream } from '../../src/http2/downstream.ts';
import { compileRuntime } from '../../src/runtime/compile.ts';
import { PoolRegistry } from '../../src/runtime/pools.ts';
import { SlotSet } from '../../src/util/slot-set.ts';
import { startCli } from '../helpers/cli-process.ts';
import {
  continuationFrame,
  dataFrame,
  ERROR,
  FRAME,
  getFields,
  headersFrame,
  hpack,
  pingFrame,
  RawH2Client,
  rstStreamFrame,
  SETTING,
  settingsFrame,
} from '../helpers/h2-frames.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const HTTP2 = {
  max_concurrent_streams: 50,
  max_header_list_bytes: 8192,
  stream_window_bytes: 262144,
  connection_window_bytes: 1048576,
  max_resets_per_second: 50,
};

type Fields = [string, string | Buffer][];
const post = (path: string, extra: Fields = []): Fields => [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', path],
  [':authority', 'localhost'],
  ...extra,
];

describe('HTTP/2 hardening', () => {
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  /** Upstream sockets still open (requests to /hold are never answered). */
  const openUpstreamSockets = new Set<net.Socket>();

  before(async () => {
    upstream = await startHttpUpstream((req, res) => {
      if (req.url.startsWith('/hold')) return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`ok ${req.url}`);
    });
    upstream.server.on('connection', (s: net.Socket) => {
      openUpstreamSockets.add(s);
      s.once('close', () => openUpstreamSockets.delete(s));
    });
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      http2: HTTP2,
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await proxy.close(500);
    await upstream.close();
  });

  /** Requests the upstream received whose path starts with `prefix`. */
  const seen = (prefix: string) => upstream.requests.filter((r) => r.url.startsWith(prefix));

  test('SETTINGS carry the configured limits and the connection window is opened', async () => {
    const c = await RawH2Client.connect(proxy.port);
    try {
      await c.waitUntil(
        () => c.frames.some((f) => f.type === FRAME.WINDOW_UPDATE && f.streamId === 0),
        2000,
        'a connection WINDOW_UPDATE',
      );
      const s = c.serverSettings!;
      assert.equal(s.get(SETTING.MAX_CONCURRENT_STREAMS), HTTP2.max_concurrent_streams);
      assert.equal(s.get(SETTING.INITIAL_WINDOW_SIZE), HTTP2.stream_window_bytes);
      assert.equal(s.get(SETTING.MAX_HEADER_LIST_SIZE), HTTP2.max_header_list_bytes);
      const wu = c.frames.find((f) => f.type === FRAME.WINDOW_UPDATE && f.streamId === 0)!;
      // The connection window starts at 65535 (RFC 9113 §6.9.2) and is raised to the configured size.
      assert.equal(wu.payload.readUInt32BE(0), HTTP2.connection_window_bytes - 65535);
    } finally {
      c.close();
    }
  });

  test('a header list over max_header_list_bytes is refused, also before SETTINGS are acknowledged', async () => {
    const big: Fields = [...getFields('/toolarge'), ['x-big', 'a'.repeat(HTTP2.max_header_list_bytes)]];
    // Sent at once, before the client's ACK of the proxy's SETTINGS: answered 431.
    const early = await RawH2Client.connect(proxy.port);
    const early1 = early.request(big);
    const e = await early.outcome(early1);
    early.close();
    assert.equal(e.status, 431, JSON.stringify(e));
    // The same after the ACK.
    const c = await RawH2Client.connect(proxy.port);
    try {
      await c.waitUntil(() => c.serverSettings !== null);
      await new Promise((r) => setTimeout(r, 50));
      const o = await c.outcome(c.request(big));
      assert.equal(o.status, 431, JSON.stringify(o));
      const ok = await c.outcome(c.request([...getFields('/fits'), ['x-big', 'a'.repeat(4000)]]));
      assert.equal(ok.status, 200);
      assert.equal(seen('/toolarge').length, 0);
      assert.equal(seen('/fits').length, 1);
    } finally {
      c.close();
    }
  });

  const G = (path: string) => getFields(path);
  const malformed: [name: string, fields: (path: string) => Fields][] = [
    ['an uppercase header name', (p) => [...G(p), ['X-Upper', 'a']]],
    ['connection', (p) => [...G(p), ['connection', 'close']]],
    ['transfer-encoding', (p) => [...G(p), ['transfer-encoding', 'chunked']]],
    ['keep-alive', (p) => [...G(p), ['keep-alive', '5']]],
    ['upgrade', (p) => [...G(p), ['upgrade', 'websocket']]],
    ['proxy-connection', (p) => [...G(p), ['proxy-connection', 'keep-alive']]],
    ['te other than trailers', (p) => [...G(p), ['te', 'gzip']]],
    ['no :method', (p) => G(p).filter(([n]) => n !== ':method')],
    ['no :scheme', (p) => G(p).filter(([n]) => n !== ':scheme')],
    ['no :path', () => G('/').filter(([n]) => n !== ':path')],
    ['an empty :path', () => G('')],
    ['a duplicated :path', (p) => [...G(p), [':path', p]]],
    ['a duplicated :method', (p) => [[':method', 'GET'], ...G(p)]],
    [
      'a pseudo-header after a regular one',
      (p) => [
        [':method', 'GET'],
        [':scheme', 'http'],
        ['x-a', '1'],
        [':path', p],
        [':authority', 'localhost'],
      ],
    ],
    ['an unknown pseudo-header', (p) => [...G(p), [':foo', 'bar']]],
    ['a :status in a request', (p) => [...G(p), [':status', '200']]],
    ['a host that differs from :authority', (p) => [...G(p), ['host', 'elsewhere.example']]],
    // The request-target and Host grammar of HTTP/1.1 (docs/security.md): each of these used to reach
    // the HTTP/1.1 upstream, the first as the request line `GET <path> HTTP/1.0 HTTP/1.1`.
    ['a :path with a space and a version', (p) => G(`${p} HTTP/1.0`)],
    ['a :path with a backslash', (p) => G(`${p}\\x`)],
    ['a :path with a fragment', (p) => G(`${p}#f`)],
    ['a :path with a byte above 0x7f', (p) => G(`${p}\xe9`)],
    ['a :path with a control character', (p) => G(`${p}\x01`)],
    ['a :path in absolute-form', (p) => G(`http://localhost${p}`)],
    ['an :authority with userinfo', (p) => getFields(p, 'user@a.test')],
    ['an :authority with a path', (p) => getFields(p, 'a.test/x')],
    ['an :authority with a port that is not digits', (p) => getFields(p, 'a:b')],
    ['an :authority with a control character', (p) => getFields(p, '\x01ctl')],
    [
      'a host with userinfo and no :authority',
      (p) => [...G(p).filter(([n]) => n !== ':authority'), ['host', 'user@a.test']],
    ],
    ['an invalid content-length', (p) => post(p, [['content-length', 'abc']])],
    [
      'two different content-lengths',
      (p) =>
        post(p, [
          ['content-length', '1'],
          ['content-length', '2'],
        ]),
    ],
  ];

  for (const [name, fields] of malformed) {
    test(`malformed: ${name} is RST_STREAM PROTOCOL_ERROR, never forwarded; the connection still serves`, async () => {
      const path = `/malformed-${name.replace(/\W+/g, '-')}`;
      const c = await RawH2Client.connect(proxy.port);
      const before = upstream.requests.length;
      try {
        const o = await c.outcome(c.request(fields(path)));
        assert.equal(o.status, 0);
        assert.equal(o.resetCode, ERROR.PROTOCOL_ERROR);
        assert.equal(c.goaway, null);
        const ok = await c.outcome(c.request(G(`/after${path}`)));
        assert.equal(ok.status, 200);
        assert.equal(seen(path).length, 0);
        assert.equal(seen(`/after${path}`).length, 1);
        assert.equal(upstream.requests.length, before + 1, 'only the request after it reached the upstream');
      } finally {
        c.close();
      }
    });
  }

  test('malformed: a body shorter than content-length is a stream error; the upstream never gets a complete request', async () => {
    const c = await RawH2Client.connect(proxy.port);
    try {
      const id = c.request(post('/cl-short', [['content-length', '10']]), { endStream: false });
      await c.write(dataFrame(id, '12345', true));
      const o = await c.outcome(id);
      assert.equal(o.resetCode, ERROR.PROTOCOL_ERROR);
      assert.equal((await c.outcome(c.request(G('/after-cl-short')))).status, 200);
      assert.equal(seen('/cl-short').length, 0);
    } finally {
      c.close();
    }
  });

  test('malformed: a body longer than content-length is a stream error (RST_STREAM PROTOCOL_ERROR); the upstream never gets a complete request', async () => {
    const c = await RawH2Client.connect(proxy.port);
    try {
      const id = c.request(post('/cl-long', [['content-length', '10']]), { endStream: false });
      await new Promise((r) => setTimeout(r, 100));
      await c.write(dataFrame(id, '12345678901234', true));
      await c.waitUntil(() => c.stream(id).ended || c.goaway !== null || c.closed, 3000);
      // The frame layer resets the stream (RFC 9113 §8.1.1); the connection goes on serving.
      assert.equal(c.stream(id).resetCode, ERROR.PROTOCOL_ERROR);
      assert.equal(c.goaway, null);
      assert.equal((await c.outcome(c.request(G('/after-cl-long')))).status, 200);
      assert.equal(seen('/cl-long').length, 0);
    } finally {
      c.close();
    }
  });

  test('a field value with CR, LF or NUL, or whitespace at either end, is RST_STREAM PROTOCOL_ERROR, never forwarded', async () => {
    const c = await RawH2Client.connect(proxy.port);
    try {
      const values: Fields = [
        ['x-cr', 'a\rb'],
        ['x-lf', 'a\nInjected: 1'],
        ['x-crlf', 'a\r\nInjected: 1'],
        ['x-nul', 'a\0b'],
        ['x-lead', ' a'],
        ['x-trail', 'a\t'],
        ['x bad', 'v'],
      ];
      for (const [i, field] of values.entries()) {
        const o = await c.outcome(c.request([...G(`/invalid-chars-${i}`), field]));
        assert.equal(o.resetCode, ERROR.PROTOCOL_ERROR, JSON.stringify(field));
        assert.equal(o.status, 0);
      }
      assert.equal(c.goaway, null);
      assert.equal((await c.outcome(c.request(G('/after-invalid-chars')))).status, 200);
      for (let i = 0; i < values.length; i++) assert.equal(seen(`/invalid-chars-${i}`).length, 0);
    } finally {
      c.close();
    }
  });

  test('a stream the client cancels aborts its upstream request at once', async () => {
    const c = await RawH2Client.connect(proxy.port);
    try {
      const id = c.request(G('/hold-cancel'));
      const start = Date.now();
      while (seen('/hold-cancel').length === 0 && Date.now() - start < 3000)
        await new Promise((r) => setTimeout(r, 10));
      assert.equal(seen('/hold-cancel').length, 1);
      const holding = openUpstreamSockets.size;
      assert.ok(holding >= 1);
      await c.write(rstStreamFrame(id, ERROR.CANCEL));
      const t0 = Date.now();
      while (openUpstreamSockets.size >= holding && Date.now() - t0 < 2000)
        await new Promise((r) => setTimeout(r, 10));
      assert.ok(
        openUpstreamSockets.size < holding,
        'the upstream connection of the cancelled stream was closed',
      );
      assert.ok(Date.now() - t0 < 1000, `closed after ${Date.now() - t0} ms`);
    } finally {
      c.close();
    }
  });

  test('Rapid Reset: GOAWAY ENHANCE_YOUR_CALM, a bounded number of upstream requests, another client keeps its latency', async () => {
    const normal = http2.connect(proxy.url);
    const latencies: number[] = [];
    let stop = false;
    let normalErrors = 0;
    const normalLoop = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const status = await new Promise<number>((resolve) => {
          const req = normal.request({ ':path': '/normal' });
          let s = 0;
          req.on('response', (h) => {
            s = Number(h[':status']);
          });
          req.on('data', () => {});
          req.on('end', () => resolve(s));
          req.on('error', () => resolve(-1));
        });
        if (status !== 200) normalErrors++;
        latencies.push(performance.now() - t0);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    const attacker = await RawH2Client.connect(proxy.port);
    attacker.keepFrames = false;
    const block = hpack.block(G('/hold-attack'));
    let sent = 0;
    const t0 = performance.now();
    while (!attacker.closed && attacker.goaway === null && sent < 5000 && performance.now() - t0 < 10_000) {
      const parts: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        const id = attacker.newStreamId();
        parts.push(headersFrame(id, block), rstStreamFrame(id, ERROR.CANCEL));
        sent++;
      }
      await attacker.write(Buffer.concat(parts));
      await new Promise((r) => setImmediate(r));
    }
    const goaway = await attacker.waitGoawayOrClose(3000);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await normalLoop;
    normal.close();
    attacker.close();

    assert.equal(goaway?.code, ERROR.ENHANCE_YOUR_CALM);
    // At most one second's budget of resets plus one window of concurrent streams can be in flight before
    // the GOAWAY; each of them is aborted at once, so few (usually none) reach the upstream.
    const bound = HTTP2.max_resets_per_second + HTTP2.max_concurrent_streams;
    assert.ok(
      seen('/hold-attack').length < bound,
      `${seen('/hold-attack').length} attack requests reached the upstream`,
    );
    assert.ok(sent < 5000, `the attacker could send ${sent} streams`);
    assert.ok(latencies.length >= 3, `the normal client completed ${latencies.length} requests`);
    assert.equal(normalErrors, 0);
    assert.ok(Math.max(...latencies) < 1000, `normal client max latency ${Math.max(...latencies)} ms`);
  });
});

describe('HTTP/2 hardening: the warn line of a session closed for Rapid Reset', () => {
  test('names the client address and the count', async () => {
    const upstream = await startHttpUpstream();
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l));
        cb();
      },
    });
    const config = parseConfig({
      host: '127.0.0.1',
      port: 0,
      protocols: ['http1', 'http2'],
      http2: { max_resets_per_second: 20 },
      routes: [{ path: '/', upstream: upstream.url }],
    });
    const pools = new PoolRegistry();
    const ctx: ConnectionContext = {
      runtime: compileRuntime(config, pools, null),
      connections: new SlotSet(),
      shuttingDown: false,
      onConnectionClosed: () => {},
      releaseConnection: () => {},
      http2: null,
      http1: true,
    };
    const h2 = new Http2Downstream(ctx, pino({ level: 'info' }, sink));
    const server = net.createServer((socket) => h2.accept(socket, Buffer.alloc(0)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const c = await RawH2Client.connect(port);
      const block = hpack.block(getFields('/x'));
      const parts: Buffer[] = [];
      for (let i = 0; i < 200; i++) {
        const id = c.newStreamId();
        parts.push(headersFrame(id, block), rstStreamFrame(id, ERROR.CANCEL));
      }
      await c.write(Buffer.concat(parts));
      const goaway = await c.waitGoawayOrClose(3000);
      c.close();
      assert.equal(goaway?.code, ERROR.ENHANCE_YOUR_CALM);
      const warns = lines.filter((l) => l.level === 40);
      assert.equal(warns.length, 1, JSON.stringify(lines));
      assert.equal(warns[0]!.client, '127.0.0.1');
      assert.equal(warns[0]!.limit, 'stream resets');
      assert.ok(typeof warns[0]!.count === 'number' && (warns[0]!.count as number) > 20);
    } finally {
      h2.destroy();
      server.close();
      await upstream.close();
    }
  });
});

describe('HTTP/2 floods against a zproxy process', () => {
  let upstream: HttpUpstream;
  let cli: ReturnType<typeof startCli>;
  let port = 0;
  let pid = 0;

  /** Resident memory of the proxy process in MiB. */
  const rssMiB = () => {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return Number(m![1]) / 1024;
  };

  before(async () => {
    upstream = await startHttpUpstream();
    cli = startCli({
      host: '127.0.0.1',
      port: 0,
      thread_count: 1,
      protocols: ['http1', 'http2'],
      access_log: { enabled: false },
      http2: HTTP2,
      routes: [{ path: '/', upstream: upstream.url }],
    });
    const listening = await cli.waitForLog((l) => l.msg === 'listening', 20_000, 'listening');
    port = listening.port as number;
    pid = listening.pid as number;
  });
  after(async () => {
    await cli.cleanup();
    await upstream.close();
  });

  /**
   * Sends `each()` frames in batches until the proxy answers GOAWAY or closes (at most `maxMs`); returns
   * the GOAWAY (null if closed without one) and the time it took.
   */
  /**
   * Writes `batch` frames at a time until the connection closes. `pauseMs` paces the batches for the
   * control-frame floods: still tens of thousands of frames a second, far over the budget, but a proxy
   * starved of CPU (a loaded test machine) then does not find thousands of SETTINGS in one read, where
   * nghttp2's own backstop (over 1000 unsent ACKs) closes the connection before zproxy's budget can send
   * its GOAWAY.
   */
  async function flood(first: Buffer | null, each: () => Buffer, batch: number, pauseMs = 0, maxMs = 5000) {
    const c = await RawH2Client.connect(port);
    c.keepFrames = false;
    if (first !== null) await c.write(first);
    const t0 = performance.now();
    let frames = 0;
    while (!c.closed && c.goaway === null && performance.now() - t0 < maxMs) {
      const parts: Buffer[] = [];
      for (let i = 0; i < batch; i++) parts.push(each());
      frames += batch;
      await c.write(Buffer.concat(parts));
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      else await new Promise((r) => setImmediate(r));
    }
    await c.waitGoawayOrClose(2000).catch(() => {});
    const ms = performance.now() - t0;
    const goaway = c.goaway;
    const closed = c.goaway !== null || c.closed;
    c.close();
    return { goaway, closed, ms, frames };
  }

  const getBlock = hpack.block(getFields('/flood'));
  const cases: [name: string, run: () => ReturnType<typeof flood>, code: number | null][] = [
    [
      'CONTINUATION flood (large fields)',
      () =>
        flood(
          headersFrame(1, getBlock, { endHeaders: false }),
          () => continuationFrame(1, hpack.literal('x-c', 'c'.repeat(16000))),
          20,
        ),
      null,
    ],
    [
      'CONTINUATION flood (empty frames)',
      () =>
        flood(
          headersFrame(1, getBlock, { endHeaders: false }),
          () => continuationFrame(1, Buffer.alloc(0)),
          200,
        ),
      null,
    ],
    [
      'SETTINGS flood',
      () => flood(null, () => settingsFrame([[SETTING.INITIAL_WINDOW_SIZE, 65535]]), 100, 2),
      ERROR.ENHANCE_YOUR_CALM,
    ],
    ['PING flood', () => flood(null, () => pingFrame(), 100, 2), ERROR.ENHANCE_YOUR_CALM],
    [
      'empty DATA flood',
      () =>
        flood(
          headersFrame(1, hpack.block(post('/flood')), { endStream: false }),
          () => dataFrame(1, Buffer.alloc(0)),
          200,
        ),
      null,
    ],
  ];

  test('each flood closes the connection within a bounded time, with memory flat', async () => {
    // Warm-up: one ordinary connection so that baseline memory includes a served session.
    const warm = await RawH2Client.connect(port);
    assert.equal((await warm.outcome(warm.request(getFields('/warm')))).status, 200);
    warm.close();
    const baseline = rssMiB();
    for (const [name, run, code] of cases) {
      const r = await run();
      assert.ok(
        r.closed,
        `${name}: the connection was not closed (${r.frames} frames in ${Math.round(r.ms)} ms)`,
      );
      if (code !== null) assert.equal(r.goaway?.code, code, `${name}: ${JSON.stringify(r)}`);
      assert.ok(r.ms < 5000, `${name}: closed after ${Math.round(r.ms)} ms`);
    }
    const grown = rssMiB() - baseline;
    assert.ok(grown < 48, `the proxy grew by ${grown.toFixed(1)} MiB`);
    assert.equal(upstream.requests.filter((r) => r.url === '/flood').length, 0);
  });

  test('HPACK bomb: streams referencing one large table entry thousands of times are refused, then the connection is closed (ENHANCE_YOUR_CALM), memory flat', async () => {
    const c = await RawH2Client.connect(port);
    try {
      await c.waitUntil(() => c.serverSettings !== null);
      // The entry (4000 bytes) enters the dynamic table with an ordinary request.
      const seed = c.newStreamId();
      await c.write(
        headersFrame(seed, Buffer.concat([getBlock, hpack.incremental('x-bomb', Buffer.alloc(4000, 'b'))])),
      );
      assert.equal((await c.outcome(seed)).status, 200);
      const before = rssMiB();
      // Each bomb references it 4000 times: 16 MB of header values from 4 kB on the wire.
      const refs = Buffer.concat(Array.from({ length: 4000 }, () => hpack.indexed(62)));
      const bombPath = hpack.block(getFields('/bomb'));
      const first = c.newStreamId();
      await c.write(headersFrame(first, Buffer.concat([bombPath, refs])));
      // The first bomb is answered 431 (its fields past the limit were never kept), the connection stays
      // usable.
      assert.equal((await c.outcome(first)).status, 431);
      assert.equal(c.goaway, null);
      const started = performance.now();
      for (let i = 0; i < 1000 && !c.closed && c.goaway === null; i++) {
        await c.write(headersFrame(c.newStreamId(), Buffer.concat([bombPath, refs])));
      }
      // More bombs than the reset budget (max_resets_per_second): the connection goes away.
      const goaway = await c.waitGoawayOrClose();
      assert.equal(goaway?.code, ERROR.ENHANCE_YOUR_CALM, JSON.stringify(goaway));
      assert.ok(performance.now() - started < 5000);
      const grown = rssMiB() - before;
      assert.ok(grown < 48, `the proxy grew by ${grown.toFixed(1)} MiB`);
      assert.equal(upstream.requests.filter((r) => r.url === '/bomb').length, 0);
    } finally {
      c.close();
    }
  });
});
