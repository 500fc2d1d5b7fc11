/**
 * `max_connections` bounds every accepted connection from accept to close, whatever it becomes: HTTP/1.1,
 * h2c (handed from the HTTP/1 engine to HTTP/2), HTTP/2 over TLS, and TLS handshakes still in progress.
 * For each kind alone and for all of them at once, N+10 connections are opened together against a limit
 * of N: exactly N are served (or held, for half-done handshakes) and the rest refused (503 for plain
 * text, a close without a handshake for TLS); a closed connection frees its place. With `thread_count`
 * workers the limit holds for the instance (each worker holds its share).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CertDir } from '../helpers/certs.ts';
import { type CliProcess, startCli } from '../helpers/cli-process.ts';
import { getFields, RawH2Client } from '../helpers/h2-frames.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/simple-request.ts';
import { freePort, type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

/** The limit in these tests. */
const N = 6;
/** Connections opened beyond the limit. */
const EXTRA = 10;
/** How long a definite outcome (served or refused) may take. */
const OUTCOME_TIMEOUT_MS = 10_000;

type Kind = 'http1' | 'h2c' | 'h2-tls' | 'half-tls';
const KINDS: readonly Kind[] = ['http1', 'h2c', 'h2-tls', 'half-tls'];

/** One client connection of a kind; `outcome` settles once it is known to be served or refused. */
interface Client {
  readonly kind: Kind;
  /**
   * 'served' (a response came) or 'refused'. A half-done handshake has no answer to wait for: its
   * outcome is 'refused' when the proxy closes it and stays pending while it is held.
   */
  readonly outcome: Promise<'served' | 'refused'>;
  /** True once the connection is closed (by either side). */
  closed(): boolean;
  close(): void;
}

function withTimeout<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no outcome for ${what} in ${OUTCOME_TIMEOUT_MS} ms`)),
      OUTCOME_TIMEOUT_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const REFUSED_503 = /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*"code":"ZP_ERR_UPSTREAM_UNAVAILABLE"/;

/** A keep-alive HTTP/1.1 connection with one request answered (served) or a 503 and a close (refused). */
function openHttp1(port: number): Client {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let text = '';
  let isClosed = false;
  const outcome = new Promise<'served' | 'refused'>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      if (/^HTTP\/1\.1 200 [\s\S]*\r\n\r\n[\s\S]*\}$/.test(text)) resolve('served');
    });
    socket.on('close', () => {
      isClosed = true;
      if (REFUSED_503.test(text)) resolve('refused');
      else reject(new Error(`http1: closed after ${JSON.stringify(text.slice(0, 80))}`));
    });
  });
  socket.on('connect', () => socket.write('GET /held HTTP/1.1\r\nHost: limit.test\r\n\r\n'));
  return {
    kind: 'http1',
    outcome: withTimeout(outcome, 'an HTTP/1.1 connection'),
    closed: () => isClosed,
    close: () => socket.destroy(),
  };
}

/** h2c with prior knowledge, one stream answered 200 (served), or the 503 in HTTP/1.1 and a close (refused). */
function openH2c(port: number): Client {
  let client: RawH2Client | null = null;
  let firstBytes = '';
  let isClosed = false;
  const outcome = RawH2Client.connect(port).then(
    (c) =>
      new Promise<'served' | 'refused'>((resolve, reject) => {
        client = c;
        c.socket.on('data', (chunk: Buffer) => {
          if (firstBytes.length < 200) firstBytes += chunk.toString('latin1');
        });
        const id = c.request(getFields('/held', 'limit.test'));
        c.waitUntil(() => c.stream(id).ended || c.closed, OUTCOME_TIMEOUT_MS, 'the h2c stream').then(() => {
          if (c.stream(id).status === 200) resolve('served');
          else if (c.closed && REFUSED_503.test(firstBytes)) resolve('refused');
          else
            reject(
              new Error(`h2c: status ${c.stream(id).status}, ${JSON.stringify(firstBytes.slice(0, 80))}`),
            );
        }, reject);
        c.closedPromise.then(() => {
          isClosed = true;
        });
      }),
  );
  return {
    kind: 'h2c',
    outcome: withTimeout(outcome, 'an h2c connection'),
    closed: () => isClosed,
    close: () => (client as RawH2Client | null)?.close(),
  };
}

/** HTTP/2 over TLS (node:http2): a stream answered 200 (served), or closed before any handshake (refused). */
function openH2Tls(port: number): Client {
  const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  session.on('error', () => {});
  let connected = false;
  let isClosed = false;
  session.on('connect', () => {
    connected = true;
  });
  const outcome = new Promise<'served' | 'refused'>((resolve, reject) => {
    const req = session.request({ ':path': '/held', ':authority': 'limit.test' });
    req.on('response', (headers) => {
      if (headers[':status'] === 200) resolve('served');
      else reject(new Error(`h2 over TLS: status ${headers[':status']}`));
    });
    req.on('error', () => {});
    req.resume();
    session.on('close', () => {
      isClosed = true;
      if (!connected) resolve('refused');
      else reject(new Error('h2 over TLS: closed after the handshake without an answer'));
    });
  });
  return {
    kind: 'h2-tls',
    outcome: withTimeout(outcome, 'an HTTP/2 over TLS connection'),
    closed: () => isClosed,
    close: () => session.destroy(),
  };
}

/**
 * A TLS handshake that never completes: the first byte of a ClientHello only, or (`partial`) a record
 * header and the start of a ClientHello, then nothing.
 */
function openHalfTls(port: number, partial: boolean): Client {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  let isClosed = false;
  const outcome = new Promise<'served' | 'refused'>((resolve) => {
    socket.on('close', () => {
      isClosed = true;
      resolve('refused');
    });
  });
  socket.on('connect', () => {
    socket.write(
      partial
        ? // handshake record, TLS 1.0 record version, 512 bytes announced; ClientHello, 508 bytes; TLS 1.2
          Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x5a, 0x5a])
        : Buffer.from([0x16]),
    );
  });
  return { kind: 'half-tls', outcome, closed: () => isClosed, close: () => socket.destroy() };
}

describe('max_connections counts every connection, whatever it becomes', () => {
  const certs = new CertDir();
  let upstream: HttpUpstream;
  let proxy: StartedProxy;
  let plainPort: number;
  let tlsPort: number;
  let halfCount = 0;

  const open = (kind: Kind): Client => {
    switch (kind) {
      case 'http1':
        return openHttp1(plainPort);
      case 'h2c':
        return openH2c(plainPort);
      case 'h2-tls':
        return openH2Tls(tlsPort);
      case 'half-tls':
        return openHalfTls(tlsPort, halfCount++ % 2 === 1);
    }
  };

  /**
   * Waits for every outcome and checks that exactly `expectedHeld` of `clients` are served or held and the
   * others refused, and that the proxy then holds `expectedTotal` connections. Half-done handshakes have no
   * answer: once the others are settled, as many of them as the limit leaves room for must stay open and
   * the rest must be closed, and stay so.
   */
  async function settle(clients: Client[], expectedHeld: number, expectedTotal = N): Promise<Client[]> {
    const definite = clients.filter((c) => c.kind !== 'half-tls');
    const half = clients.filter((c) => c.kind === 'half-tls');
    const outcomes = await Promise.all(definite.map((c) => c.outcome));
    const served = definite.filter((_, i) => outcomes[i] === 'served');
    const halfHeld = expectedHeld - served.length;
    assert.ok(
      halfHeld >= 0 && halfHeld <= half.length,
      `${served.length} connections served with a limit of ${expectedHeld} (${half.length} half-done handshakes)`,
    );
    const halfClosed = () => half.filter((c) => c.closed()).length;
    await waitUntil(
      () => halfClosed() >= half.length - halfHeld,
      OUTCOME_TIMEOUT_MS,
      `${half.length - halfHeld} half-done handshakes to be refused`,
    );
    // Refusals come at once; anything closed later would be a held connection dropped: none may be.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(halfClosed(), half.length - halfHeld, 'half-done handshakes refused');
    assert.equal(proxy.server.connectionCount, expectedTotal, 'connections the proxy holds');
    return [...served, ...half.filter((c) => !c.closed())];
  }

  before(async () => {
    const cert = certs.make('limit', ['limit.test']);
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      listeners: [
        { host: '127.0.0.1', port: 0, tls: { enabled: false } },
        { host: '127.0.0.1', port: 0, tls: { enabled: true, cert_file: cert.cert, key_file: cert.key } },
      ],
      max_connections: N,
      // Long enough that nothing held is dropped for idleness during a test.
      connection_timeout_ms: 30_000,
      routes: [{ path: '/', upstream: upstream.url }],
    });
    [plainPort, tlsPort] = proxy.ports as [number, number];
  });
  after(async () => {
    await proxy.close(500);
    await upstream.close();
    certs.remove();
  });

  for (const kind of KINDS) {
    test(`${kind} alone: ${N + EXTRA} at once, exactly ${N} served, the rest refused; a close frees a place`, async () => {
      const clients = Array.from({ length: N + EXTRA }, () => open(kind));
      try {
        const held = await settle(clients, N);
        assert.equal(held.length, N);
        assert.ok(held.every((c) => c.kind === kind));

        // A closed connection frees its place, and only one.
        held[0]!.close();
        await waitUntil(() => proxy.server.connectionCount === N - 1, 3000, 'the proxy to see the close');
        const again = [open(kind), open(kind)];
        clients.push(...again);
        const heldAgain = await settle(again, 1);
        assert.equal(heldAgain.length, 1);
        assert.equal(proxy.server.connectionCount, N);
      } finally {
        for (const c of clients) c.close();
        await waitUntil(() => proxy.server.connectionCount === 0, 3000, 'every connection to be closed');
      }
    });
  }

  test(`all kinds at once (${N + EXTRA} of each): exactly ${N} held in all`, async () => {
    const clients: Client[] = [];
    for (let i = 0; i < N + EXTRA; i++) for (const kind of KINDS) clients.push(open(kind));
    try {
      const held = await settle(clients, N);
      assert.equal(held.length, N);
      // Plain connections beyond the limit got the 503, TLS ones a close without a handshake (checked by
      // each client's outcome); freeing a place lets one more in, whatever its kind.
      held[0]!.close();
      await waitUntil(() => proxy.server.connectionCount === N - 1, 3000, 'the proxy to see the close');
      const again = KINDS.map(open);
      clients.push(...again);
      assert.equal((await settle(again, 1)).length, 1);
    } finally {
      for (const c of clients) c.close();
      await waitUntil(() => proxy.server.connectionCount === 0, 3000, 'every connection to be closed');
    }
  });
});

for (const mode of ['threads', 'processes'] as const) {
  describe(`max_connections with worker ${mode}: a bound for the instance`, () => {
    let upstream: HttpUpstream;
    let cli: CliProcess;
    let port: number;

    before(async () => {
      upstream = await startHttpUpstream();
      port = await freePort();
      cli = startCli({
        host: '127.0.0.1',
        port,
        thread_count: 2,
        worker_mode: mode,
        max_connections: 3,
        connection_timeout_ms: 30_000,
        protocols: ['http1'],
        routes: [{ path: '/', upstream: upstream.url }],
      });
      await cli.waitForLog((l) => l.msg === 'ready', 20_000, 'ready');
    });
    after(async () => {
      await cli.cleanup();
      await upstream.close();
    });

    test(`thread_count 2, max_connections 3: 3 of 30 connections are served`, async () => {
      // The kernel spreads connections over the workers; with 30 of them each worker sees more than 3/2.
      const clients = Array.from({ length: 30 }, () => openHttp1(port));
      try {
        const outcomes = await Promise.all(clients.map((c) => c.outcome));
        assert.equal(outcomes.filter((o) => o === 'served').length, 3, 'served in the whole instance');
        assert.equal(outcomes.filter((o) => o === 'refused').length, 27);
      } finally {
        for (const c of clients) c.close();
      }
      const limits = cli.logs
        .filter((l) => l.msg === 'listening')
        .map((l) => [l.worker, l.max_connections])
        .sort();
      // Worker threads check one shared count against the instance's limit; worker processes share no
      // memory, so each holds its share (2 and 1).
      assert.deepEqual(
        limits,
        mode === 'threads'
          ? [
              [1, 3],
              [2, 3],
            ]
          : [
              [1, 2],
              [2, 1],
            ],
      );
    });

    if (mode === 'threads') {
      test('closed connections free their places in the shared count, whichever worker held them', async () => {
        for (let round = 0; round < 3; round++) {
          const clients = Array.from({ length: 12 }, () => openHttp1(port));
          const outcomes = await Promise.all(clients.map((c) => c.outcome));
          for (const c of clients) c.close();
          assert.equal(outcomes.filter((o) => o === 'served').length, 3, `round ${round}`);
          await new Promise((r) => setTimeout(r, 200));
        }
      });
    }
  });
}
