/**
 * zproxy's own HTTP/2 frame layer (src/http2/server-connection.ts) against real clients: node:http2
 * (nghttp2) for well-formed traffic, flow control and trailers, and raw frames for what no client
 * library sends (malformed requests, floods).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { FieldList } from '../../src/http/fields.ts';
import { parseRequestHead, RequestHead } from '../../src/http1/parse-head.ts';
import {
  type H2ConnectionError,
  H2ServerConnection,
  type H2ServerOptions,
  type H2ServerStream,
  type StreamOwner,
} from '../../src/http2/server-connection.ts';
import { h2Request } from '../helpers/h2-client.ts';
import {
  continuationFrame,
  dataFrame,
  ERROR,
  FLAG,
  FRAME,
  frame,
  getFields,
  headersFrame,
  hpack,
  pingFrame,
  RawH2Client,
  rstStreamFrame,
  SETTING,
  settingsFrame,
} from '../helpers/h2-frames.ts';

const OPTIONS: H2ServerOptions = {
  maxConcurrentStreams: 128,
  maxHeaderListSize: 16384,
  maxHeaderFields: 100,
  streamWindow: 1 << 20,
  connectionWindow: 4 << 20,
  enableConnectProtocol: false,
  maxResetsPerSecond: 100,
  maxControlFramesPerSecond: 100,
  idleTimeoutMs: 30_000,
};

interface Server {
  port: number;
  /** Requests that reached the application: method and path. */
  seen: string[];
  /** How each connection ended (null: cleanly). */
  ends: (H2ConnectionError | null)[];
  close(): Promise<void>;
}

const servers: Server[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

/**
 * A server on the frame layer. Each request is answered by `handler`, by default an echo: status 200,
 * `x-method`/`x-path`/`x-fields` describing the request, the request body as the response body, and
 * the request's trailers echoed as response trailers.
 */
async function startServer(
  options: Partial<H2ServerOptions> = {},
  handler: (stream: H2ServerStream) => void = echo,
): Promise<Server> {
  const seen: string[] = [];
  const ends: (H2ConnectionError | null)[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const connection = new H2ServerConnection(socket, { ...OPTIONS, ...options }, (stream) => {
      seen.push(`${stream.method} ${stream.path}`);
      handler(stream);
    });
    connection.onClose = (error) => ends.push(error);
    connection.start();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const s: Server = {
    port: (server.address() as net.AddressInfo).port,
    seen,
    ends,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
  servers.push(s);
  return s;
}

/** An owner built from the callbacks a test needs (the rest do nothing). */
function own(stream: H2ServerStream, owner: Partial<StreamOwner>): void {
  stream.owner = {
    onRequestData: () => {},
    onRequestTrailers: () => {},
    onRequestEnd: () => {},
    onStreamDrain: () => {},
    onStreamClose: () => {},
    ...owner,
  };
  stream.resume();
}

function echo(stream: H2ServerStream): void {
  const body: Buffer[] = [];
  let trailers: string[] | null = null;
  own(stream, {
    onRequestData: (chunk) => body.push(chunk),
    onRequestTrailers: (fields) => {
      trailers = fields;
    },
    onRequestEnd: () => {
      const fields = [
        'x-method',
        stream.method,
        'x-path',
        stream.path,
        'x-fields',
        JSON.stringify(stream.fields),
      ];
      stream.respond(200, fields, false);
      const all = Buffer.concat(body);
      if (trailers !== null) {
        if (all.length > 0) stream.write(all);
        stream.sendTrailers(trailers.map((v, i) => (i % 2 === 0 ? v : `echo ${v}`)));
      } else stream.end(all);
    },
  });
}

test('100 concurrent streams on one connection, bodies checked byte for byte', async () => {
  const server = await startServer();
  const client = http2.connect(`http://127.0.0.1:${server.port}`);
  try {
    const bodies = Array.from({ length: 100 }, (_, i) => randomBytes(i % 10 === 0 ? 200_000 : i * 100));
    const results = await Promise.all(
      bodies.map((body, i) =>
        h2Request(client, { ':method': 'POST', ':path': `/s/${i}`, 'x-n': String(i) }, body),
      ),
    );
    results.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-path'], `/s/${i}`);
      assert.deepEqual(JSON.parse(r.headers['x-fields'] as string), ['x-n', String(i)]);
      assert.ok(r.body.equals(bodies[i]!), `body ${i}`);
    });
  } finally {
    client.close();
  }
});

test('each delivered field carries its kind, looked up once by the frame layer, the same as a field list finds', async () => {
  // Names zproxy acts on (each kind a request may carry over HTTP/2), mixed with others, in any order.
  const known = ['host', 'content-length', 'te', 'x-forwarded-for', 'forwarded', 'traceparent', 'expect'];
  const server = await startServer({}, (stream) => {
    const looked = new FieldList(stream.fields);
    const expected = stream.fields.filter((_, i) => i % 2 === 0).map((_, j) => looked.fieldKind(j));
    own(stream, {
      onRequestEnd: () => {
        const ok =
          JSON.stringify(stream.fieldKinds) === JSON.stringify(expected) &&
          new FieldList(stream.fields, stream.fieldKinds).kindsPresent === looked.kindsPresent;
        stream.respond(ok ? 200 : 500, ['x-kinds', JSON.stringify(stream.fieldKinds)], true);
      },
    });
  });
  const client = http2.connect(`http://127.0.0.1:${server.port}`);
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.oneof(fc.constantFrom(...known), fc.constantFrom('x-a', 'accept', 'cookie')), {
          maxLength: 8,
        }),
        async (names) => {
          const headers: http2.OutgoingHttpHeaders = { ':method': 'GET', ':path': '/' };
          for (const name of names) {
            if (name === 'host') headers[name] = `127.0.0.1:${server.port}`;
            else if (name === 'content-length') headers[name] = '0';
            else if (name === 'te') headers[name] = 'trailers';
            else headers[name] = 'v';
          }
          const r = await h2Request(client, headers);
          assert.equal(r.status, 200, `kinds ${r.headers['x-kinds']} for ${names.join(',')}`);
          // The kinds are those of the fields as delivered (not an empty list that agrees with nothing).
          assert.equal(JSON.parse(r.headers['x-kinds'] as string).length, names.length);
        },
      ),
      { numRuns: 40 },
    );
  } finally {
    client.close();
  }
});

test('10 MB request and response bodies pass through flow control both ways', async () => {
  const server = await startServer();
  const client = http2.connect(`http://127.0.0.1:${server.port}`);
  try {
    const body = randomBytes(10 * 1024 * 1024);
    const r = await h2Request(client, { ':method': 'PUT', ':path': '/big' }, body);
    assert.equal(r.body.length, body.length);
    assert.ok(r.body.equals(body));
  } finally {
    client.close();
  }
});

test('request trailers arrive, response trailers are sent', async () => {
  const server = await startServer();
  const client = http2.connect(`http://127.0.0.1:${server.port}`);
  try {
    const r = await h2Request(client, { ':method': 'POST', ':path': '/t' }, Buffer.from('abc'), {
      'x-check': 'ok',
    });
    assert.equal(r.body.toString(), 'abc');
    assert.equal(r.trailers['x-check'], 'echo ok');
  } finally {
    client.close();
  }
});

test('a slow reader stalls the response (flow control) and the body still arrives whole', async () => {
  const server = await startServer({}, (stream) => {
    const chunk = Buffer.alloc(1 << 20, 7);
    let sent = 0;
    const pump = () => {
      while (sent < 8) {
        sent++;
        if (sent === 8) {
          stream.end(chunk);
          return;
        }
        if (!stream.write(chunk)) return;
      }
    };
    own(stream, {
      onStreamDrain: pump,
      onRequestEnd: () => {
        stream.respond(200, [], false);
        pump();
      },
    });
  });
  const client = http2.connect(`http://127.0.0.1:${server.port}`, { settings: { initialWindowSize: 65535 } });
  try {
    const req = client.request({ ':path': '/slow' });
    let received = 0;
    req.on('data', (c: Buffer) => {
      received += c.length;
      req.pause();
      setTimeout(() => req.resume(), 1);
    });
    await new Promise((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    assert.equal(received, 8 << 20);
  } finally {
    client.close();
  }
});

/** Sends one malformed request and checks it is reset with PROTOCOL_ERROR and never reaches the app. */
async function refused(fields: [string, string | Buffer][], extra: (id: number) => Buffer[] = () => []) {
  const server = await startServer();
  const client = await RawH2Client.connect(server.port);
  try {
    const id = client.newStreamId();
    const frames = extra(id);
    client.socket.write(headersFrame(id, hpack.block(fields), { endStream: frames.length === 0 }));
    for (const f of frames) client.socket.write(f);
    const outcome = await client.outcome(id);
    assert.equal(
      outcome.resetCode,
      ERROR.PROTOCOL_ERROR,
      JSON.stringify(fields.map(([n, v]) => [n, String(v)])),
    );
    // The connection survives: a good request on it is answered.
    const good = client.request(getFields('/ok'));
    assert.equal((await client.outcome(good)).status, 200);
    assert.deepEqual(server.seen, ['GET /ok']);
  } finally {
    client.close();
  }
}

test('field values with CR, LF or NUL are refused, never delivered', async () => {
  for (const bad of ['a\rb', 'a\nb', 'a\0b', '\r\n', 'x\r\nInjected: 1'])
    await refused([...getFields(), ['x-v', bad]]);
  await refused([...getFields(), [':authority2', 'x']]);
});

test('malformed requests are refused (RFC 9113 §8.2, §8.3)', async () => {
  const cases: [string, string][][] = [
    [...getFields(), ['X-Upper', 'x']],
    [...getFields(), ['connection', 'close']],
    [...getFields(), ['keep-alive', '5']],
    [...getFields(), ['transfer-encoding', 'chunked']],
    [...getFields(), ['upgrade', 'h2c']],
    [...getFields(), ['proxy-connection', 'x']],
    [...getFields(), ['te', 'gzip']],
    [...getFields(), ['x-lead', ' space']],
    [...getFields(), ['x-trail', 'tab\t']],
    [...getFields(), ['', 'empty name']],
    [...getFields(), ['bad name', 'x']],
    [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':authority', 'a'],
    ], // no :path
    [
      [':method', 'GET'],
      [':path', '/'],
      [':authority', 'a'],
    ], // no :scheme
    [
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'a'],
    ], // no :method
    [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', ''],
      [':authority', 'a'],
    ],
    [...getFields(), [':method', 'GET']], // duplicate pseudo
    [
      [':method', 'GET'],
      ['x-a', '1'],
      [':scheme', 'http'],
      [':path', '/'],
    ], // pseudo after regular
    [...getFields(), [':status', '200']], // response pseudo in a request
    [...getFields(), [':protocol', 'websocket']], // extended CONNECT not enabled
    [
      [':method', 'CONNECT'],
      [':authority', 'a:443'],
      [':path', '/'],
    ], // CONNECT with :path
    [
      [':method', 'G T'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'a'],
    ],
  ];
  for (const fields of cases) await refused(fields);
});

/**
 * `:path` values that are not origin-form request-targets of the characters an HTTP/1.1 request-target may
 * hold (src/http/syntax.ts): over HTTP/2 they used to reach an HTTP/1.1 upstream as its request line
 * ("/x HTTP/1.0" became `GET /x HTTP/1.0 HTTP/1.1`).
 */
const BAD_PATHS = [
  '/x HTTP/1.0',
  '/x\\y',
  '/x#fragment',
  '/x\x80',
  '/caf\xe9',
  '/x\x01',
  '/x\x7f',
  '/x\ty',
  'x',
  'http://a.test/x',
  '*',
];

/** `:authority` or `host` values that are not a host with an optional port of digits (as HTTP/1.1's Host). */
const BAD_AUTHORITIES = [
  'user@a.test',
  'a.test/x',
  'a:b',
  '\x01ctl',
  'a:1:2',
  '[::1',
  '[]',
  'a.test\\x',
  'a b',
  'a.test?x',
  'a.test#x',
  'caf\xe9.test',
];

test('a :path that is not an origin-form request-target of HTTP/1.1 characters is refused, never delivered', async () => {
  for (const path of BAD_PATHS) await refused(getFields(path));
  // `*` is for OPTIONS only.
  await refused([
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '*'],
  ]);
});

test('an :authority or host that is not a valid HTTP/1.1 Host is refused, never delivered', async () => {
  for (const authority of BAD_AUTHORITIES) {
    await refused(getFields('/', authority));
    await refused([...getFields('/').filter(([n]) => n !== ':authority'), ['host', authority]]);
  }
  // A plain CONNECT names a host and a port (RFC 9113 §8.5).
  for (const authority of ['a.test', 'a.test:', ':443', 'user@a.test:443']) {
    await refused([
      [':method', 'CONNECT'],
      [':authority', authority],
    ]);
  }
});

test('origin-form paths of every request-target character, OPTIONS *, and valid authorities are delivered', async () => {
  const server = await startServer();
  const client = await RawH2Client.connect(server.port);
  const delivered: [string, string, string][] = [
    ['GET', '/a-._~!$&\'()*+,;=:@%2F/b?q=[x]{y}|^`"<>/?', 'a.test'],
    ['OPTIONS', '*', 'a.test'],
    ['GET', '/', '[::1]:8080'],
    ['GET', '/', 'A.Test:'],
    ['GET', '/', "sub-delims!$&'()*+,;=%41~_.-:80"],
    ['GET', '/', ''],
  ];
  try {
    for (const [method, path, authority] of delivered) {
      const fields: [string, string][] = [
        [':method', method],
        [':scheme', 'http'],
        [':path', path],
        [':authority', authority],
      ];
      assert.equal((await client.outcome(client.request(fields))).status, 200, `${path} ${authority}`);
    }
    const viaHost: [string, string][] = [
      ...getFields('/h').filter(([n]) => n !== ':authority'),
      ['host', 'a.test:81'],
    ];
    assert.equal((await client.outcome(client.request(viaHost))).status, 200);
    const connect: [string, string][] = [
      [':method', 'CONNECT'],
      [':authority', 'a.test:443'],
    ];
    assert.equal((await client.outcome(client.request(connect))).status, 200);
    assert.deepEqual(server.seen, [...delivered.map(([m, p]) => `${m} ${p}`), 'GET /h', 'CONNECT ']);
  } finally {
    client.close();
  }
});

test('an extended CONNECT (RFC 8441) needs an origin-form :path and a valid :authority', async () => {
  const server = await startServer({ enableConnectProtocol: true });
  const client = await RawH2Client.connect(server.port);
  const connect = (path: string, authority: string): [string, string][] => [
    [':method', 'CONNECT'],
    [':protocol', 'websocket'],
    [':scheme', 'http'],
    [':path', path],
    [':authority', authority],
  ];
  try {
    assert.equal((await client.outcome(client.request(connect('/chat?room=1', 'a.test')))).status, 200);
    for (const [path, authority] of [
      ['chat', 'a.test'],
      ['*', 'a.test'],
      ['/chat x', 'a.test'],
      ['/chat', 'user@a.test'],
    ] as const) {
      const o = await client.outcome(client.request(connect(path, authority)));
      assert.equal(o.resetCode, ERROR.PROTOCOL_ERROR, `${path} ${authority}`);
    }
    assert.deepEqual(server.seen, ['CONNECT /chat?room=1']);
  } finally {
    client.close();
  }
});

/** What the HTTP/1.1 parser makes of a request-target and a Host: accepted as sent, or not. */
function http1Accepts(target: string, host: string): boolean {
  const raw = Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 'latin1');
  const head = new RequestHead();
  const limits = { maxHeaderBytes: 1 << 20, maxHeaderCount: 100, maxUriBytes: 1 << 20 };
  return (
    parseRequestHead(raw, 0, raw.length, limits, head) > 0 && head.target === target && head.host === host
  );
}

test('differential: the frame layer takes a :path exactly when the HTTP/1.1 parser takes it as an origin-form target, and an :authority exactly when it takes it as Host', async () => {
  const server = await startServer({ maxResetsPerSecond: 1e9 });
  const client = await RawH2Client.connect(server.port);
  /** The frame layer's verdict: delivered (true) or refused as malformed (false). */
  const h2Accepts = async (path: string, authority: string): Promise<boolean> => {
    const o = await client.outcome(client.request(getFields(path, authority)));
    if (o.status === 200) return true;
    assert.equal(o.resetCode, ERROR.PROTOCOL_ERROR, JSON.stringify([path, authority]));
    return false;
  };
  const char = fc.oneof(
    fc.constantFrom(..."/?=&%.-_~!$'()*+,;:@[]aZ09"),
    fc.constantFrom(
      ' ',
      '\\',
      '#',
      '\t',
      '"',
      '<',
      '>',
      '{',
      '}',
      '|',
      '^',
      '`',
      '\x7f',
      '\x01',
      '\x80',
      '\xff',
    ),
    fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)),
  );
  const text = fc.array(char, { maxLength: 24 }).map((chars) => chars.join(''));
  try {
    await fc.assert(
      fc.asyncProperty(text, fc.boolean(), async (rest, slash) => {
        const path = slash ? `/${rest}` : rest;
        const h2 = await h2Accepts(path, 'a.test');
        const h1 = http1Accepts(path, 'a.test');
        if (h2) assert.ok(h1, `the frame layer took ${JSON.stringify(path)}, the HTTP/1.1 parser did not`);
        if (slash) assert.equal(h2, h1, JSON.stringify(path));
      }),
      { seed: 0x5eed, numRuns: 400 },
    );
    await fc.assert(
      fc.asyncProperty(text, async (authority) => {
        const h2 = await h2Accepts('/', authority);
        assert.equal(h2, http1Accepts('/', authority), JSON.stringify(authority));
      }),
      { seed: 0x5eed, numRuns: 400 },
    );
  } finally {
    client.close();
  }
});

test('content-length that disagrees with the DATA received is refused', async () => {
  const post: [string, string][] = [
    [':method', 'POST'],
    [':scheme', 'http'],
    [':path', '/p'],
    [':authority', 'a'],
    ['content-length', '5'],
  ];
  // Fewer bytes than announced: reset when END_STREAM comes (the app saw the request, not its end).
  const server = await startServer();
  const client = await RawH2Client.connect(server.port);
  try {
    const id = client.newStreamId();
    client.socket.write(headersFrame(id, hpack.block(post), { endStream: false }));
    client.socket.write(dataFrame(id, 'abc', true));
    assert.equal((await client.outcome(id)).resetCode, ERROR.PROTOCOL_ERROR);
    const id2 = client.newStreamId();
    client.socket.write(headersFrame(id2, hpack.block(post), { endStream: false }));
    client.socket.write(dataFrame(id2, 'abcdefgh', true));
    assert.equal((await client.outcome(id2)).resetCode, ERROR.PROTOCOL_ERROR);
    const id3 = client.newStreamId();
    client.socket.write(headersFrame(id3, hpack.block(post), { endStream: true }));
    assert.equal((await client.outcome(id3)).resetCode, ERROR.PROTOCOL_ERROR);
  } finally {
    client.close();
  }
});

test('streams over SETTINGS_MAX_CONCURRENT_STREAMS are refused with REFUSED_STREAM', async () => {
  const server = await startServer({ maxConcurrentStreams: 2 }, () => {});
  const client = await RawH2Client.connect(server.port);
  try {
    const ids = [1, 2, 3].map(() => client.request(getFields()));
    assert.equal((await client.outcome(ids[2]!)).resetCode, ERROR.REFUSED_STREAM);
    assert.equal(server.seen.length, 2);
  } finally {
    client.close();
  }
});

test('Rapid Reset: a client resetting streams faster than allowed gets GOAWAY ENHANCE_YOUR_CALM', async () => {
  const server = await startServer({ maxResetsPerSecond: 50 }, () => {});
  const client = await RawH2Client.connect(server.port);
  try {
    client.keepFrames = false;
    const frames: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const id = client.newStreamId();
      frames.push(
        headersFrame(id, hpack.block(getFields()), { endStream: true }),
        rstStreamFrame(id, ERROR.CANCEL),
      );
    }
    client.socket.write(Buffer.concat(frames));
    const goaway = await client.waitGoawayOrClose();
    assert.equal(goaway?.code, ERROR.ENHANCE_YOUR_CALM);
    assert.ok(server.seen.length <= 60, `${server.seen.length} streams reached the application`);
  } finally {
    client.close();
  }
});

test('a CONTINUATION flood closes the connection with ENHANCE_YOUR_CALM', async () => {
  const server = await startServer();
  const client = await RawH2Client.connect(server.port);
  try {
    const id = client.newStreamId();
    client.socket.write(headersFrame(id, hpack.block(getFields()), { endStream: true, endHeaders: false }));
    const filler = hpack.block([['x-filler', 'y'.repeat(16000)]]);
    for (let i = 0; i < 10 && !client.closed; i++) await client.write(continuationFrame(id, filler, false));
    const goaway = await client.waitGoawayOrClose();
    assert.equal(goaway?.code, ERROR.ENHANCE_YOUR_CALM);
    assert.deepEqual(server.seen, []);
  } finally {
    client.close();
  }
});

test('PING and SETTINGS floods close the connection with ENHANCE_YOUR_CALM', async () => {
  const server = await startServer();
  const client = await RawH2Client.connect(server.port);
  try {
    client.keepFrames = false;
    client.socket.write(Buffer.concat(Array.from({ length: 500 }, () => pingFrame())));
    assert.equal((await client.waitGoawayOrClose())?.code, ERROR.ENHANCE_YOUR_CALM);
  } finally {
    client.close();
  }
});

test('protocol violations end the connection with the right GOAWAY code', async () => {
  const cases: [string, Buffer, number][] = [
    ['DATA on stream 0', frame(FRAME.DATA, 0, 0, Buffer.from('x')), ERROR.PROTOCOL_ERROR],
    ['HEADERS on an even id', headersFrame(2, hpack.block(getFields())), ERROR.PROTOCOL_ERROR],
    ['CONTINUATION without HEADERS', continuationFrame(1, Buffer.alloc(0), true), ERROR.PROTOCOL_ERROR],
    ['PUSH_PROMISE from a client', frame(FRAME.PUSH_PROMISE, 4, 1, Buffer.alloc(4)), ERROR.PROTOCOL_ERROR],
    ['oversized frame', frame(FRAME.DATA, 0, 1, Buffer.alloc(16385)), ERROR.FRAME_SIZE_ERROR],
    ['PING of 7 bytes', frame(FRAME.PING, 0, 0, Buffer.alloc(7)), ERROR.FRAME_SIZE_ERROR],
    ['bad HPACK index', headersFrame(1, Buffer.from([0xff, 0x10])), ERROR.COMPRESSION_ERROR],
    ['WINDOW_UPDATE of 0', frame(FRAME.WINDOW_UPDATE, 0, 0, Buffer.alloc(4)), ERROR.PROTOCOL_ERROR],
    ['DATA on an idle stream', dataFrame(99, 'x'), ERROR.PROTOCOL_ERROR],
  ];
  for (const [what, bytes, code] of cases) {
    const server = await startServer();
    const client = await RawH2Client.connect(server.port);
    try {
      client.socket.write(bytes);
      assert.equal((await client.waitGoawayOrClose())?.code, code, what);
    } finally {
      client.close();
    }
  }
});

/**
 * Stream states and frame rules as RFC 9113 states them (the points a conformance suite such as h2spec
 * checks beyond the tests above). Each case writes frames on a fresh connection and expects either a
 * GOAWAY with a code (a connection error) or an RST_STREAM with a code on one stream (a stream error,
 * the connection going on).
 */
test('RFC 9113 stream states and frame rules', async () => {
  const server = await startServer({}, (stream) => {
    // Holds every request open (no response), so that streams stay in the state the case puts them in.
    own(stream, {});
  });
  const block = (path: string) => hpack.block(getFields(path));
  const prio = (dependency: number, b: Buffer) => {
    const p = Buffer.alloc(5 + b.length);
    p.writeUInt32BE(dependency, 0);
    p[4] = 15;
    b.copy(p, 5);
    return p;
  };
  type Expect = { goaway: number } | { rst: [stream: number, code: number] };
  const cases: [what: string, frames: Buffer[], expect: Expect][] = [
    [
      'PRIORITY making a stream depend on itself',
      [frame(FRAME.PRIORITY, 0, 1, prio(1, Buffer.alloc(0)))],
      { rst: [1, ERROR.PROTOCOL_ERROR] },
    ],
    [
      'HEADERS making its stream depend on itself',
      [frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM | FLAG.PRIORITY, 1, prio(1, block('/p')))],
      { rst: [1, ERROR.PROTOCOL_ERROR] },
    ],
    [
      'a stream id lower than an earlier one',
      [headersFrame(5, block('/a')), headersFrame(3, block('/b'))],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
    [
      'DATA after the client reset the stream',
      [
        headersFrame(1, block('/a'), { endStream: false }),
        rstStreamFrame(1, ERROR.CANCEL),
        dataFrame(1, 'x'),
      ],
      { rst: [1, ERROR.STREAM_CLOSED] },
    ],
    [
      'HEADERS after the client reset the stream',
      [
        headersFrame(1, block('/a'), { endStream: false }),
        rstStreamFrame(1, ERROR.CANCEL),
        headersFrame(1, block('/a')),
      ],
      { goaway: ERROR.STREAM_CLOSED },
    ],
    [
      'DATA on a half-closed (remote) stream',
      [headersFrame(1, block('/a')), dataFrame(1, 'x')],
      { rst: [1, ERROR.STREAM_CLOSED] },
    ],
    [
      'HEADERS on a half-closed (remote) stream',
      [headersFrame(1, block('/a')), headersFrame(1, block('/a'))],
      { rst: [1, ERROR.STREAM_CLOSED] },
    ],
    [
      'trailers without END_STREAM',
      [
        headersFrame(1, block('/a'), { endStream: false }),
        headersFrame(1, hpack.block([['x-t', '1']]), { endStream: false }),
      ],
      { rst: [1, ERROR.PROTOCOL_ERROR] },
    ],
    [
      'an unknown frame inside a header block',
      [headersFrame(1, block('/a'), { endHeaders: false }), frame(0x42, 0, 0, Buffer.alloc(4))],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
    ['RST_STREAM on an idle stream', [rstStreamFrame(7, ERROR.CANCEL)], { goaway: ERROR.PROTOCOL_ERROR }],
    [
      'WINDOW_UPDATE on an idle stream',
      [frame(FRAME.WINDOW_UPDATE, 0, 9, Buffer.from([0, 0, 0, 1]))],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
    [
      'SETTINGS ACK with a payload',
      [frame(FRAME.SETTINGS, FLAG.ACK, 0, Buffer.alloc(6))],
      { goaway: ERROR.FRAME_SIZE_ERROR },
    ],
    [
      'SETTINGS of 5 bytes',
      [frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(5))],
      { goaway: ERROR.FRAME_SIZE_ERROR },
    ],
    [
      'SETTINGS_ENABLE_PUSH of 2',
      [settingsFrame([[SETTING.ENABLE_PUSH, 2]])],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
    [
      'SETTINGS_INITIAL_WINDOW_SIZE of 2^31',
      [settingsFrame([[SETTING.INITIAL_WINDOW_SIZE, 2 ** 31]])],
      { goaway: ERROR.FLOW_CONTROL_ERROR },
    ],
    [
      'SETTINGS_MAX_FRAME_SIZE of 16383',
      [settingsFrame([[SETTING.MAX_FRAME_SIZE, 16383]])],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
    [
      'a connection window over 2^31-1',
      [frame(FRAME.WINDOW_UPDATE, 0, 0, Buffer.from([0x7f, 0xff, 0xff, 0xff]))],
      { goaway: ERROR.FLOW_CONTROL_ERROR },
    ],
    [
      'a stream window over 2^31-1',
      [headersFrame(1, block('/a')), frame(FRAME.WINDOW_UPDATE, 0, 1, Buffer.from([0x7f, 0xff, 0xff, 0xff]))],
      { rst: [1, ERROR.FLOW_CONTROL_ERROR] },
    ],
    [
      'a WINDOW_UPDATE of 0 on a stream',
      [headersFrame(1, block('/a')), frame(FRAME.WINDOW_UPDATE, 0, 1, Buffer.alloc(4))],
      { rst: [1, ERROR.PROTOCOL_ERROR] },
    ],
    ['GOAWAY on a stream', [frame(FRAME.GOAWAY, 0, 1, Buffer.alloc(8))], { goaway: ERROR.PROTOCOL_ERROR }],
    [
      'DATA with padding longer than the frame',
      [
        headersFrame(1, block('/a'), { endStream: false }),
        frame(FRAME.DATA, FLAG.PADDED, 1, Buffer.from([5, 1, 2])),
      ],
      { goaway: ERROR.PROTOCOL_ERROR },
    ],
  ];
  for (const [what, frames, expect] of cases) {
    const client = await RawH2Client.connect(server.port);
    try {
      await client.write(Buffer.concat(frames));
      if ('goaway' in expect) {
        assert.equal((await client.waitGoawayOrClose())?.code, expect.goaway, what);
      } else {
        const [id, code] = expect.rst;
        await client.waitUntil(
          () => client.stream(id).resetCode !== -1 || client.goaway !== null,
          5000,
          what,
        );
        assert.equal(client.stream(id).resetCode, code, what);
        assert.equal(client.goaway, null, what);
        // The connection goes on: a PING is answered.
        const before = client.frames.filter((f) => f.type === FRAME.PING).length;
        await client.write(pingFrame(Buffer.from('12345678')));
        await client.waitUntil(
          () => client.frames.filter((f) => f.type === FRAME.PING).length > before,
          5000,
          what,
        );
      }
    } finally {
      client.close();
    }
  }
});

test('frames in flight after zproxy reset a stream are ignored, and a reserved bit in the stream id is ignored', async () => {
  const server = await startServer({}, (stream) => {
    own(stream, {
      onRequestData: () => stream.reset(ERROR.CANCEL),
      onRequestEnd: () => {
        stream.respond(200, [], false);
        stream.end();
      },
    });
  });
  const client = await RawH2Client.connect(server.port);
  try {
    client.socket.write(headersFrame(1, hpack.block([...getFields('/r')]), { endStream: false }));
    await client.write(dataFrame(1, 'first'));
    await client.waitUntil(() => client.stream(1).resetCode !== -1);
    assert.equal(client.stream(1).resetCode, ERROR.CANCEL);
    const resets = () => client.frames.filter((f) => f.type === FRAME.RST_STREAM).length;
    const before = resets();
    // DATA, trailers and WINDOW_UPDATE the client sent before it saw the reset: no answer, no error.
    await client.write(
      Buffer.concat([
        dataFrame(1, 'late'),
        headersFrame(1, hpack.block([['x-t', '1']])),
        frame(FRAME.WINDOW_UPDATE, 0, 1, Buffer.from([0, 0, 0, 9])),
      ]),
    );
    // A request whose stream id has the reserved bit set is served as stream 3.
    const bad = frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 3, hpack.block(getFields('/ok')));
    bad[5]! |= 0x80;
    await client.write(bad);
    assert.equal((await client.outcome(3)).status, 200);
    assert.deepEqual(server.seen, ['GET /r', 'GET /ok']);
    assert.equal(resets(), before);
    assert.equal(client.goaway, null);
  } finally {
    client.close();
  }
});

test('a client window of 1 byte gets the response one byte per DATA frame', async () => {
  const server = await startServer({}, (stream) => {
    own(stream, {
      onRequestEnd: () => {
        stream.respond(200, [], false);
        stream.end(Buffer.from('hello'));
      },
    });
  });
  const client = await RawH2Client.connect(server.port, [[SETTING.INITIAL_WINDOW_SIZE, 1]]);
  try {
    const id = client.request(getFields('/w'));
    const data = () => client.frames.filter((f) => f.type === FRAME.DATA && f.streamId === id);
    await client.waitUntil(() => data().length === 1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(data().length, 1);
    assert.equal(data()[0]!.payload.length, 1);
    for (let i = 0; i < 4; i++)
      await client.write(frame(FRAME.WINDOW_UPDATE, 0, id, Buffer.from([0, 0, 0, 1])));
    const outcome = await client.outcome(id);
    assert.equal(Buffer.concat(outcome.body).toString(), 'hello');
    assert.deepEqual(
      data().map((f) => f.payload.length),
      [1, 1, 1, 1, 1],
    );
  } finally {
    client.close();
  }
});

/**
 * Arbitrary frame sequences (every frame type, random flags, stream ids and payloads, some of them
 * well-formed header blocks and settings) never make the frame layer fail on its own account: each
 * connection ends cleanly or with a protocol error code, never INTERNAL_ERROR (an exception inside the
 * frame layer), and it answers a PING after the sequence unless it closed. `FUZZ_RUNS=N` runs N sequences
 * instead of 200 (5,000 pass in about 1.5 s).
 */
test('arbitrary frame sequences end in a protocol answer, never in an internal error', async () => {
  const server = await startServer({ maxResetsPerSecond: 1000 }, (stream) => {
    own(stream, {
      onRequestEnd: () => {
        stream.respond(200, ['x-a', 'b'], false);
        stream.end(Buffer.from('ok'));
      },
    });
  });
  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    fc.constant(hpack.block(getFields('/f'))),
    fc.constant(Buffer.concat([hpack.block(getFields('/f')), hpack.incremental('x-i', 'v')])),
    fc.constant(Buffer.from([0xbe])),
    fc
      .array(fc.tuple(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 2 ** 31 })), { maxLength: 3 })
      .map((entries) => settingsFrame(entries).subarray(9)),
    fc.integer({ min: 0, max: 2 ** 31 - 1 }).map((n) => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n);
      return b;
    }),
  );
  const anyFrame = fc
    .tuple(
      fc.constantFrom(0, 1, 2, 3, 4, 6, 7, 8, 9, 0x42),
      fc.constantFrom(0, 1, 4, 5, 8, 0x20, 0x25, 0xff),
      fc.constantFrom(0, 1, 1, 3, 3, 2, 5),
      payload,
    )
    .map(([type, flags, id, p]) => frame(type, flags, id, p));
  await fc.assert(
    fc.asyncProperty(fc.array(anyFrame, { minLength: 1, maxLength: 20 }), async (frames) => {
      const before = server.ends.length;
      const client = await RawH2Client.connect(server.port);
      try {
        await client.write(Buffer.concat(frames));
        const probe = Buffer.from('probe!!!');
        await client.write(pingFrame(probe));
        await client.waitUntil(
          () =>
            client.closed ||
            client.goaway !== null ||
            client.frames.some((f) => f.type === FRAME.PING && f.payload.equals(probe)),
          5000,
          'an answer to the probe',
        );
      } finally {
        client.close();
      }
      await new Promise<void>((resolve) => {
        const check = () => (server.ends.length > before ? resolve() : setTimeout(check, 2));
        check();
      });
      const end = server.ends[before];
      assert.notEqual(end?.code, ERROR.INTERNAL_ERROR, end?.reason);
    }),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 200) },
  );
});

test('a connection without open streams for idleTimeoutMs gets GOAWAY NO_ERROR and is closed; open streams keep it', async () => {
  let held: H2ServerStream | null = null;
  const server = await startServer({ idleTimeoutMs: 300 }, (stream) => {
    own(stream, {});
    held = stream;
  });
  const idle = await RawH2Client.connect(server.port);
  const busy = await RawH2Client.connect(server.port);
  try {
    const id = busy.request(getFields('/held'));
    const t0 = performance.now();
    const goaway = await idle.waitGoawayOrClose(3000);
    assert.equal(goaway?.code, ERROR.NO_ERROR);
    await idle.closedPromise;
    assert.ok(performance.now() - t0 >= 250, `closed after ${Math.round(performance.now() - t0)} ms`);
    // The connection with a stream in progress is still served; once the stream is done, it goes idle.
    assert.equal(busy.goaway, null);
    held!.respond(200, [], true);
    assert.equal((await busy.outcome(id)).status, 200);
    assert.equal((await busy.waitGoawayOrClose(3000))?.code, ERROR.NO_ERROR);
  } finally {
    idle.close();
    busy.close();
  }
});
