/**
 * `zproxy bench --protocol http2` end to end: the real CLI in a child process against real HTTP/2 servers
 * started here (Node's http2 server, which answers through nghttp2's HPACK encoder with Huffman-coded
 * strings and a dynamic table; and zproxy itself over h2c and TLS), each test checking the bench's counts
 * against the server's: what a server limits (concurrent streams, flow-control windows), what it sends
 * when it refuses (RST_STREAM, GOAWAY with and without an error) and request bodies larger than its
 * windows and frames.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { BenchReport } from '../../src/bench/report.ts';
import { HpackDecoder } from '../../src/http2/hpack.ts';
import { assertConsistent, bench, close, listen, settle, zproxy } from '../helpers/bench-cli.ts';
import { CertDir } from '../helpers/certs.ts';
import {
  continuationFrame,
  dataFrame,
  FLAG,
  FRAME,
  frame,
  headersFrame,
  hpack,
  pingFrame,
  SETTING,
  settingsAck,
  settingsFrame,
  windowUpdateFrame,
} from '../helpers/h2-frames.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;

/** `zproxy bench --json --protocol http2 ARGS`. */
const h2 = (...args: string[]): Promise<BenchReport> => bench(['--protocol', 'http2', ...args]);

/** Two connections of four streams each for 800 ms. */
const TWO_BY_FOUR = ['-c', '2', '--concurrency', '4', '-d', '800ms'];

/** `n` bytes that are not all alike (a body cut or reordered would not hash the same). */
function patterned(n: number): Buffer {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 7) & 0xff;
  return bytes;
}

/** Runs `use` with a temporary file holding `bytes`. */
async function withBodyFile(bytes: Buffer, use: (file: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-bench-h2-'));
  const file = join(dir, 'body.bin');
  writeFileSync(file, bytes);
  try {
    await use(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A Node http2 server that hands `answer` each stream with its number in its session (from 1), its
 * request read and dropped; a stream the server or the bench's stop cuts is no error of the test's.
 */
function sessionServer(answer: (stream: http2.ServerHttp2Stream, n: number) => void): http2.Http2Server {
  const counts = new WeakMap<http2.Http2Session, number>();
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('error', () => {}).resume();
    const session = stream.session!;
    const n = (counts.get(session) ?? 0) + 1;
    counts.set(session, n);
    answer(stream, n);
  });
  return server;
}
const MiB = 1024 * 1024;

describe('zproxy bench --protocol http2 against a Node http2 server', () => {
  let served = 0;
  let interim = 0;
  const bodies = new Map<string, number>();
  const big = Buffer.alloc(20 * MiB, 'zproxy-');
  const server = http2.createServer({ maxSessionMemory: 1000 });
  server.on('stream', (stream, headers) => {
    // The bench's stop cuts the streams in flight (ECONNRESET on the big ones).
    stream.on('error', () => {});
    const path = headers[':path'];
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      served++;
      if (headers[':method'] === 'POST') {
        const body = Buffer.concat(chunks);
        const key = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
        bodies.set(key, (bodies.get(key) ?? 0) + 1);
      }
      if (stream.destroyed) return;
      if (path === '/big') {
        stream.respond({ ':status': 200, 'content-length': big.length });
        stream.end(big);
      } else if (path === '/unavailable') {
        stream.respond({ ':status': 503, 'content-type': 'text/plain' });
        stream.end('try later');
      } else if (path === '/early') {
        interim++;
        stream.additionalHeaders({ ':status': 103, link: '</style.css>; rel=preload' });
        stream.respond({ ':status': 200 });
        stream.end('after the hints\n');
      } else {
        stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-served': String(served) });
        stream.end('hello h2\n');
      }
    });
  });
  let port = 0;
  before(async () => {
    port = await listen(server);
  });
  after(() => close(server));

  const reset = (): void => {
    served = 0;
    interim = 0;
    bodies.clear();
  };

  /** Every counted request carried the whole body; only those cut by the stop arrived in part. */
  const assertWholeBodies = (r: BenchReport, body: Buffer): void => {
    const key = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
    const whole = bodies.get(key) ?? 0;
    const cut = [...bodies.values()].reduce((sum, n) => sum + n, 0) - whole;
    assert.ok(whole >= r.requests, `${whole} whole bodies for ${r.requests} responses`);
    assert.ok(cut <= r.in_flight_at_stop, `${cut} bodies cut, ${r.in_flight_at_stop} in flight at the stop`);
  };

  test('responses larger than the 16 MiB windows: the stream and connection windows are replenished', async () => {
    reset();
    const r = await h2('-c', '1', '--concurrency', '2', '-d', '1s', `http://127.0.0.1:${port}/big`);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    assert.equal(r.connections_opened, 1);
    // Without a stream WINDOW_UPDATE no 20 MiB response would complete; without the connection's, not two.
    assert.ok(r.requests >= 2, `${r.requests} responses of 20 MiB`);
    assert.ok(r.bytes_received >= r.requests * big.length, `${r.bytes_received} bytes read`);
  });

  test('POST bodies larger than the server window and frame size, and small ones, arrive whole', async () => {
    reset();
    const large = patterned(300_000);
    await withBodyFile(large, async (file) => {
      const r = await h2(...TWO_BY_FOUR, '--body-file', file, `http://127.0.0.1:${port}/`);
      await settle();
      assertConsistent(r, served);
      assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
      assertWholeBodies(r, large);
      assert.ok(r.bytes_sent >= r.requests * large.length, `${r.bytes_sent} bytes sent`);
    });
    reset();
    const small = await h2('-c', '2', '-d', '500ms', '--body', 'ping=pong', `http://127.0.0.1:${port}/`);
    await settle();
    assertConsistent(small, served);
    assert.equal(small.method, 'POST');
    assertWholeBodies(small, Buffer.from('ping=pong'));
  });

  test('a status without its own static-table entry, and interim 103 responses, which are not counted', async () => {
    reset();
    const r = await h2('-c', '2', '-d', '500ms', `http://127.0.0.1:${port}/unavailable`);
    await settle();
    assertConsistent(r, served);
    assert.deepEqual(r.non_2xx, { '503': r.requests });
    reset();
    const early = await h2('-c', '2', '-d', '500ms', `http://127.0.0.1:${port}/early`);
    await settle();
    assertConsistent(early, served);
    assert.ok(interim >= early.requests, 'each response had its hints');
    assert.deepEqual(early.statuses, { '200': early.requests });
    assert.equal(early.errors.total, 0);
  });

  test('--threads 2: both threads ran their sessions', async () => {
    reset();
    const r = await h2('-c', '4', '-t', '2', '-d', '700ms', `http://127.0.0.1:${port}/`);
    await settle();
    assertConsistent(r, served);
    assert.equal(r.generator.threads.length, 2);
    assert.equal(r.connections_opened, 4);
    assert.equal(r.errors.total, 0);
  });
});

describe('zproxy bench --protocol http2 against servers that limit and refuse', () => {
  test('MAX_CONCURRENT_STREAMS 3 with --concurrency 10: three streams per session, none refused', async () => {
    let served = 0;
    let maxOpen = 0;
    const open = new WeakMap<http2.Http2Session, number>();
    const server = http2.createServer({ settings: { maxConcurrentStreams: 3 } });
    server.on('stream', (stream) => {
      const session = stream.session!;
      const now = (open.get(session) ?? 0) + 1;
      open.set(session, now);
      maxOpen = Math.max(maxOpen, now);
      stream.on('close', () => open.set(session, open.get(session)! - 1));
      stream.on('error', () => {}).resume();
      // Answered a little later, so that the streams pile up to the limit.
      setTimeout(() => {
        if (stream.destroyed) return;
        served++;
        stream.respond({ ':status': 200 });
        stream.end('ok');
      }, 2);
    });
    const port = await listen(server);
    try {
      const r = await h2('-c', '2', '--concurrency', '10', '-d', '800ms', `http://127.0.0.1:${port}/`);
      await settle();
      assertConsistent(r, served);
      // A stream over the limit would be refused with RST_STREAM: a `reset` error.
      assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
      assert.equal(maxOpen, 3);
      assert.ok(r.in_flight_at_stop <= 6, `${r.in_flight_at_stop} in flight at the stop`);
    } finally {
      await close(server);
    }
  });

  test('SETTINGS_HEADER_TABLE_SIZE 0: the requests start with a table size update and index nothing', async () => {
    let served = 0;
    const server = http2.createServer({ settings: { headerTableSize: 0 } });
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {}).resume();
      served++;
      stream.respond({ ':status': headers[':authority'] === 'table.test' ? 200 : 400 });
      stream.end('ok');
    });
    const port = await listen(server);
    try {
      const r = await h2(
        '-c',
        '2',
        '--concurrency',
        '4',
        '-d',
        '500ms',
        '-H',
        'host: table.test',
        `http://127.0.0.1:${port}/`,
      );
      await settle();
      assertConsistent(r, served);
      // Without the update, nghttp2 ends the connection with COMPRESSION_ERROR at the first request.
      assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
      assert.deepEqual(r.statuses, { '200': r.requests });
      assert.equal(r.connections_opened, 2);
    } finally {
      await close(server);
    }
  });

  test('RST_STREAM for every fourth stream: counted as `reset`, the sessions go on', async () => {
    let served = 0;
    let resets = 0;
    const server = sessionServer((stream, n) => {
      if (n % 4 === 0) {
        resets++;
        stream.close(NGHTTP2_INTERNAL_ERROR);
        return;
      }
      served++;
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const port = await listen(server);
    try {
      const r = await h2('-c', '2', '--concurrency', '4', '-d', '700ms', `http://127.0.0.1:${port}/`);
      await settle();
      assertConsistent(r, served);
      assert.equal(r.connections_opened, 2, 'a reset stream does not cost its connection');
      assert.ok(
        r.errors.reset > 0 && r.errors.reset <= resets,
        `${r.errors.reset} resets counted, ${resets} sent`,
      );
      assert.ok(r.errors.reset >= resets - r.in_flight_at_stop, `${r.errors.reset} of ${resets}`);
      assert.equal(r.errors.total, r.errors.reset, JSON.stringify(r.errors));
    } finally {
      await close(server);
    }
  });

  test('GOAWAY with ENHANCE_YOUR_CALM after 20 streams: the unanswered ones are `closed`, new sessions go on', async () => {
    let served = 0;
    let goaways = 0;
    const server = sessionServer((stream, n) => {
      if (n < 20) {
        served++;
        stream.respond({ ':status': 200 });
        stream.end('ok');
      } else if (n === 20) {
        goaways++;
        // The streams up to the one before were answered; this one and later ones never will be.
        const session = stream.session!;
        session.goaway(NGHTTP2_ENHANCE_YOUR_CALM, stream.id! - 2);
        setTimeout(() => session.destroy(), 200);
      }
    });
    const port = await listen(server);
    try {
      const r = await h2(...TWO_BY_FOUR, `http://127.0.0.1:${port}/`);
      await settle();
      assertConsistent(r, served);
      assert.ok(goaways >= 2, `${goaways} GOAWAY frames sent`);
      assert.ok(r.connections_opened >= goaways, `${r.connections_opened} sessions for ${goaways} GOAWAYs`);
      // Each GOAWAY leaves between 1 and 4 streams (the concurrency) unanswered.
      assert.ok(r.errors.closed >= goaways - 2 && r.errors.closed <= 4 * goaways, JSON.stringify(r.errors));
      // A client that ignored GOAWAY would open streams the server refuses (RST_STREAM: `reset`).
      assert.equal(r.errors.total, r.errors.closed, JSON.stringify(r.errors));
    } finally {
      await close(server);
    }
  });

  test('a graceful GOAWAY (session.close() after 20 streams): no error, the run goes on in new sessions', async () => {
    let served = 0;
    let closes = 0;
    const server = sessionServer((stream, n) => {
      served++;
      stream.respond({ ':status': 200 });
      stream.end('ok');
      if (n === 20) {
        closes++;
        stream.session!.close();
      }
    });
    const port = await listen(server);
    try {
      const r = await h2(...TWO_BY_FOUR, `http://127.0.0.1:${port}/`);
      await settle();
      assertConsistent(r, served);
      assert.ok(closes >= 2, `${closes} sessions closed by the server`);
      assert.ok(r.connections_opened >= closes, `${r.connections_opened} sessions`);
      assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    } finally {
      await close(server);
    }
  });

  test('an HTTP/1.1 server given the h2c preface: `protocol` errors, exit status 1', async () => {
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () =>
        socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'),
      );
    });
    const port = await listen(server);
    try {
      const result = await zproxy([
        'bench',
        '--json',
        '--protocol',
        'http2',
        '-c',
        '1',
        '-d',
        '300ms',
        `http://127.0.0.1:${port}/`,
      ]);
      assert.equal(result.status, 1, result.stderr);
      const r = JSON.parse(result.stdout) as { requests: number; errors: Record<string, number> };
      assert.equal(r.requests, 0);
      assert.ok(r.errors.protocol! >= 1, JSON.stringify(r.errors));
      assert.equal(r.errors.total, r.errors.protocol);
    } finally {
      await close(server);
    }
  });
});

/** The HPACK dynamic table as the strict server's encoder keeps it (RFC 7541 §4): newest entry first. */
class EncoderTable {
  private readonly entries: [string, string][] = [];
  private size = 0;

  insert(name: string, value: string): void {
    this.entries.unshift([name, value]);
    this.size += name.length + value.length + 32;
    while (this.size > 4096) {
      const [n, v] = this.entries.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }

  /** The index (62 for the newest entry) of a field, or -1. */
  indexOf(name: string, value: string): number {
    const i = this.entries.findIndex(([n, v]) => n === name && v === value);
    return i < 0 ? -1 : 62 + i;
  }
}

/**
 * A raw HTTP/2 server on `net` sockets that checks what Node's server lets pass: that the client never
 * sends past a flow-control window (65,535 bytes for the connection, 16,384 for each stream, credited 5 ms
 * after the bytes arrive, so that a client that does not wait overruns them), and reassembles the client's
 * header blocks from HEADERS and CONTINUATION frames. Its answers take turns among shapes Node never
 * sends, each after a PING (to be acknowledged), a PRIORITY frame and a frame of an unknown type:
 * 0. the status in a padded HEADERS frame with a priority block, then a padded DATA frame;
 * 1. a header block split over HEADERS and CONTINUATION whose `:status: 201` enters the dynamic table;
 * 2. a broken response, a header block without `:status` (a stream error for the client, which resets
 *    the stream), then trailers on that stream that insert another entry into the dynamic table;
 * 3. `:status` as a reference to the dynamic-table entry of (1), whose index (2) moved: a client that did
 *    not decode the block of the stream it had already given up reads another field, or none.
 */
class StrictH2Server {
  readonly server = net.createServer((socket) => this.connection(socket));
  served = 0;
  broken = 0;
  violations: string[] = [];
  pings = 0;
  pingAcks = 0;
  /** Length of every answered request's body, and of every header block received. */
  readonly bodies: number[] = [];
  readonly blocks: number[] = [];
  /** Each request as the server decoded it: `METHOD scheme://authority/path`. */
  readonly requests: string[] = [];
  largestFrame = 0;

  private connection(socket: net.Socket): void {
    socket.on('error', () => {});
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    let preface = false;
    let connectionWindow = 65535;
    const windows = new Map<number, number>();
    const bodies = new Map<number, number>();
    const blocks = new Map<number, Buffer[]>();
    const table = new EncoderTable();
    const decoder = new HpackDecoder();
    let credit = new Map<number, number>();
    let creditTimer: NodeJS.Timeout | null = null;
    let turn = 0;
    socket.write(settingsFrame([[SETTING.INITIAL_WINDOW_SIZE, 16384]]));
    const answer = (id: number): void => {
      this.pings++;
      const out = [
        pingFrame(Buffer.from('strict-h')),
        frame(FRAME.PRIORITY, 0, id, Buffer.from([0, 0, 0, 0, 16])),
      ];
      out.push(frame(0xfa, 0, 0, Buffer.from('unknown')));
      const shape = turn++ % 4;
      if (shape === 2) this.broken++;
      else {
        this.served++;
        this.bodies.push(bodies.get(id) ?? 0);
      }
      switch (shape) {
        case 0: {
          // PADDED | PRIORITY | END_HEADERS: pad length, 5 priority bytes, the block (:status 200), padding.
          const payload = Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 16, 0x88]), Buffer.alloc(3)]);
          out.push(frame(FRAME.HEADERS, FLAG.PADDED | FLAG.PRIORITY | FLAG.END_HEADERS, id, payload));
          const data = Buffer.concat([Buffer.from([4]), Buffer.from('ok'), Buffer.alloc(4)]);
          out.push(frame(FRAME.DATA, FLAG.PADDED | FLAG.END_STREAM, id, data));
          break;
        }
        case 1: {
          const block = Buffer.concat([
            hpack.incremental(':status', '201'),
            hpack.incremental('x-strict', 'one'),
          ]);
          table.insert(':status', '201');
          table.insert('x-strict', 'one');
          out.push(headersFrame(id, block.subarray(0, 4), { endStream: false, endHeaders: false }));
          out.push(continuationFrame(id, block.subarray(4), true));
          out.push(dataFrame(id, 'ok', true));
          break;
        }
        case 2:
          out.push(headersFrame(id, hpack.incremental('x-no-status', 'at all'), { endStream: false }));
          table.insert('x-no-status', 'at all');
          out.push(headersFrame(id, hpack.incremental('x-trailer', 'after the reset'), { endStream: true }));
          table.insert('x-trailer', 'after the reset');
          break;
        default:
          out.push(headersFrame(id, hpack.indexed(table.indexOf(':status', '201')), { endStream: true }));
      }
      socket.write(Buffer.concat(out));
    };
    const consume = (id: number, n: number): void => {
      credit.set(0, (credit.get(0) ?? 0) + n);
      credit.set(id, (credit.get(id) ?? 0) + n);
      creditTimer ??= setTimeout(() => {
        creditTimer = null;
        const out: Buffer[] = [];
        for (const [streamId, increment] of credit) {
          if (streamId === 0) connectionWindow += increment;
          else windows.set(streamId, windows.get(streamId)! + increment);
          out.push(windowUpdateFrame(streamId, increment));
        }
        credit = new Map();
        if (!socket.destroyed) socket.write(Buffer.concat(out));
      }, 5);
    };
    socket.on('close', () => {
      if (creditTimer !== null) clearTimeout(creditTimer);
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!preface) {
        if (buf.length < 24) return;
        preface = true;
        buf = buf.subarray(24);
      }
      while (buf.length >= 9) {
        const length = buf.readUIntBE(0, 3);
        if (buf.length < 9 + length) break;
        const type = buf[3]!;
        const flags = buf[4]!;
        const id = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + length);
        buf = buf.subarray(9 + length);
        this.largestFrame = Math.max(this.largestFrame, length);
        const ends = (flags & FLAG.END_STREAM) !== 0;
        if (type === FRAME.SETTINGS && (flags & FLAG.ACK) === 0) socket.write(settingsAck());
        else if (type === FRAME.PING && (flags & FLAG.ACK) !== 0) this.pingAcks++;
        else if (type === FRAME.HEADERS || type === FRAME.CONTINUATION) {
          if (type === FRAME.HEADERS) windows.set(id, 16384);
          blocks.set(id, [...(blocks.get(id) ?? []), payload]);
          if ((flags & FLAG.END_HEADERS) !== 0) {
            const block = Buffer.concat(blocks.get(id)!);
            this.blocks.push(block.length);
            const fields: string[] = [];
            decoder.decode(block, 0, block.length, fields, 1 << 20);
            const field = (name: string): string => fields[fields.indexOf(name) + 1] ?? '';
            this.requests.push(
              `${field(':method')} ${field(':scheme')}://${field(':authority')}${field(':path')}`,
            );
          }
          if (type === FRAME.HEADERS && ends) answer(id);
        } else if (type === FRAME.DATA) {
          connectionWindow -= length;
          const window = windows.get(id)! - length;
          windows.set(id, window);
          if (connectionWindow < 0) this.violations.push(`connection window ${connectionWindow}`);
          if (window < 0) this.violations.push(`stream ${id} window ${window}`);
          bodies.set(id, (bodies.get(id) ?? 0) + length);
          if (length > 0) consume(id, length);
          if (ends) answer(id);
        }
      }
    });
  }
}

describe('zproxy bench --protocol http2 against a strict raw server', () => {
  const strict = new StrictH2Server();
  let port = 0;
  before(async () => {
    port = await listen(strict.server);
  });
  after(() => close(strict.server));

  test('bodies wait for the windows; padding, priority, CONTINUATION, PING; every block decoded', async () => {
    await withBodyFile(Buffer.alloc(150_000, 'b'), async (file) => {
      const r = await h2(...TWO_BY_FOUR, '--body-file', file, `http://127.0.0.1:${port}/strict?q=1`);
      await settle();
      assertConsistent(r, strict.served);
      assert.deepEqual(strict.violations.slice(0, 5), [], `${strict.violations.length} overruns`);
      assert.ok(
        strict.bodies.every((n) => n === 150_000),
        'every answered request had its whole body',
      );
      // The broken responses, and only they, are `protocol` errors (the connections went on).
      assert.equal(r.errors.total, r.errors.protocol, JSON.stringify(r.errors));
      assert.ok(
        r.errors.protocol <= strict.broken && r.errors.protocol >= strict.broken - r.in_flight_at_stop,
        `${r.errors.protocol} protocol errors for ${strict.broken} broken responses`,
      );
      assert.equal(r.connections_opened, 2);
      assert.ok(r.statuses['200']! > 0 && r.statuses['201']! > 0, JSON.stringify(r.statuses));
      assert.equal(r.statuses['200']! + r.statuses['201']!, r.requests);
      assert.ok(
        strict.pingAcks >= strict.pings - 8,
        `${strict.pingAcks} of ${strict.pings} PINGs acknowledged`,
      );
      assert.ok(strict.largestFrame <= 16_384, `a frame of ${strict.largestFrame} bytes`);
      // Like h2load's, the requests after each connection's first refer to the dynamic table: a byte a field.
      assert.deepEqual(new Set(strict.requests), new Set([`POST http://127.0.0.1:${port}/strict?q=1`]));
      assert.ok(
        strict.blocks.filter((n) => n > 5).length <= 2,
        `blocks of ${[...new Set(strict.blocks)]} bytes`,
      );
    });
  });

  test('a header block over 16 KiB goes in HEADERS and CONTINUATION frames', async () => {
    strict.blocks.length = 0;
    strict.largestFrame = 0;
    const r = await h2(
      '-c',
      '1',
      '-d',
      '300ms',
      '-H',
      `x-large: ${'v'.repeat(40_000)}`,
      `http://127.0.0.1:${port}/`,
    );
    assert.ok(r.requests > 0);
    assert.equal(r.errors.total, r.errors.protocol, JSON.stringify(r.errors));
    assert.ok(strict.blocks.length > 0 && strict.blocks.every((n) => n > 40_000), 'whole blocks');
    assert.ok(strict.largestFrame <= 16_384, `a frame of ${strict.largestFrame} bytes`);
  });
});

describe('zproxy bench --protocol http2 against zproxy', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let h2c: StartedProxy;
  let tlsProxy: StartedProxy;
  before(async () => {
    const cert = certs.make('localhost', ['localhost']);
    upstream = await startHttpUpstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('from the upstream\n');
    });
    // The smallest flow-control windows: a request body must wait for zproxy's WINDOW_UPDATEs, and
    // zproxy resets a stream (or ends the connection) that sends past a window.
    h2c = await startProxy({
      protocols: ['http1', 'http2'],
      http2: { stream_window_bytes: 65535, connection_window_bytes: 65535 },
      routes: [{ path: '/', upstream: upstream.url }],
    });
    tlsProxy = await startProxy({
      tls: { enabled: true, cert_file: cert.cert, key_file: cert.key },
      routes: [{ path: '/', upstream: upstream.url }],
    });
  });
  after(async () => {
    await h2c.close();
    await tlsProxy.close();
    await upstream.close();
    certs.remove();
  });

  test('h2c with prior knowledge: every counted response went through zproxy to the upstream', async () => {
    const before = upstream.requests.length;
    const r = await h2('-c', '2', '--concurrency', '8', '-d', '800ms', `http://127.0.0.1:${h2c.port}/h2c`);
    await settle(300);
    assertConsistent(r, upstream.requests.length - before);
    assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    assert.deepEqual(r.statuses, { '200': r.requests });
    assert.equal(r.connections_opened, 2);
    assert.equal(upstream.requests.at(-1)!.url, '/h2c');
  });

  test("POST bodies over h2c within zproxy's 64 KiB windows: every counted one reached the upstream whole", async () => {
    const body = patterned(200_000);
    const before = upstream.requests.length;
    await withBodyFile(body, async (file) => {
      const r = await h2(...TWO_BY_FOUR, '--body-file', file, `http://127.0.0.1:${h2c.port}/post`);
      await settle(300);
      assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
      const received = upstream.requests.slice(before);
      const sha = createHash('sha256').update(body).digest('hex');
      const whole = received.filter((q) => q.bodySha256 === sha).length;
      assert.ok(whole >= r.requests && r.requests > 0, `${whole} whole bodies for ${r.requests} responses`);
      assert.ok(received.length - whole <= r.in_flight_at_stop, `${received.length - whole} bodies cut`);
    });
  });

  test('h2 over TLS (ALPN h2) with -k', async () => {
    const before = upstream.requests.length;
    const r = await h2(
      '-k',
      '-c',
      '2',
      '--concurrency',
      '8',
      '-d',
      '800ms',
      `https://localhost:${tlsProxy.port}/tls`,
    );
    await settle(300);
    assertConsistent(r, upstream.requests.length - before);
    assert.equal(r.errors.total, 0, JSON.stringify(r.errors));
    assert.deepEqual(r.statuses, { '200': r.requests });
    assert.equal(upstream.requests.at(-1)!.url, '/tls');
  });
});

describe('constant rate over HTTP/2: coordinated omission', () => {
  test('a target that stalls for 1 s: uncorrected p99 stays low, corrected p99 is high', async () => {
    // 200 requests/s on 2 sessions of one stream each for 3 s; from 1 s to 2 s after the first request the
    // server holds every response back, then answers them all.
    let first = 0;
    const held: http2.ServerHttp2Stream[] = [];
    let served = 0;
    const server = http2.createServer();
    server.on('stream', (stream) => {
      stream.on('error', () => {}).resume();
      served++;
      const now = Date.now();
      if (first === 0) first = now;
      if (now - first >= 1000 && now - first < 2000) {
        if (held.length === 0) {
          setTimeout(
            () => {
              for (const s of held.splice(0)) {
                if (s.destroyed) continue;
                s.respond({ ':status': 200 });
                s.end('late\n');
              }
            },
            2000 - (now - first),
          );
        }
        held.push(stream);
      } else {
        stream.respond({ ':status': 200 });
        stream.end('ok\n');
      }
    });
    const port = await listen(server);
    try {
      const r = await h2(
        '-c',
        '2',
        '--concurrency',
        '1',
        '--rate',
        '200',
        '-d',
        '3s',
        `http://127.0.0.1:${port}/`,
      );
      await settle();
      assertConsistent(r, served);
      assert.equal(r.mode, 'constant-rate');
      const corrected = r.latency_us;
      const uncorrected = r.latency_uncorrected_us!;
      assert.ok(uncorrected.p99 < 100_000, `uncorrected p99 ${uncorrected.p99} µs`);
      assert.ok(corrected.p99 >= 500_000, `corrected p99 ${corrected.p99} µs`);
      assert.ok(uncorrected.max >= 500_000, 'the requests in flight during the stall waited');
      assert.ok(r.requests >= 560 && r.requests <= 602, `${r.requests} requests`);
    } finally {
      await close(server);
    }
  });
});
