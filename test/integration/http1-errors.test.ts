/**
 * Requests the proxy must refuse, end to end: size limits (413, 414, 431) and malformed requests (400,
 * 417, 501, 505). Each is answered with a JSON error and `Connection: close`, the connection is closed,
 * and — unless the head was valid and only the body turned out bad — nothing reaches an upstream: the
 * node upstream records no request and a raw upstream receives zero bytes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { parseResponses, type ScriptedUpstream, startScriptedUpstream } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const LIMITS = { max_body_bytes: 1000, max_uri_bytes: 256, max_header_bytes: 2048, max_header_count: 20 };

let upstream: HttpUpstream;
let raw: ScriptedUpstream;
/** Forwards to the node upstream. */
let toHttp: StartedProxy;
/** Forwards to the raw upstream. */
let toRaw: StartedProxy;

before(async () => {
  upstream = await startHttpUpstream();
  raw = await startScriptedUpstream(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  toHttp = await startProxy({ limits: LIMITS, routes: [{ path: '/', upstream: upstream.url }] });
  toRaw = await startProxy({ limits: LIMITS, routes: [{ path: '/', upstream: raw.url }] });
});
after(async () => {
  await toHttp.close();
  await toRaw.close();
  await upstream.close();
  await raw.close();
});

const ERROR_CODE_BY_STATUS: Record<number, string> = {
  400: 'ZP_ERR_BAD_REQUEST',
  413: 'ZP_ERR_BODY_TOO_LARGE',
  414: 'ZP_ERR_URI_TOO_LONG',
  417: 'ZP_ERR_EXPECTATION_FAILED',
  431: 'ZP_ERR_HEADERS_TOO_LARGE',
  501: 'ZP_ERR_NOT_IMPLEMENTED',
  505: 'ZP_ERR_VERSION_NOT_SUPPORTED',
};

/**
 * Sends `payload` through both proxies and checks the answer: one response with `status`, a JSON error
 * body with the matching code, Connection: close, the connection closed by the proxy. With
 * `reachesUpstream: false` (the default) it also checks that no upstream received anything.
 */
async function expectRejected(
  payload: string | Buffer | (string | Buffer)[],
  status: number,
  options: { reachesUpstream?: boolean } = {},
): Promise<void> {
  const httpBefore = upstream.requests.length;
  const rawBytesBefore = raw.bytesReceived();
  const rawRequestsBefore = raw.requests.length;
  for (const proxy of [toHttp, toRaw]) {
    const r = await rawRequest(proxy.port, payload);
    const responses = parseResponses(r.data, { closed: true });
    assert.equal(responses.length, 1, `one response, got:\n${r.text}`);
    const res = responses[0]!;
    assert.equal(res.status, status, `status for:\n${r.text}`);
    assert.equal(res.header('connection')?.toLowerCase(), 'close');
    assert.equal(r.closedByServer, true, 'the proxy closed the connection');
    const body = JSON.parse(res.body.toString());
    assert.equal(body.error.code, ERROR_CODE_BY_STATUS[status]);
  }
  // Give a forwarded request time to show up before asserting it did not.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(upstream.requests.length, httpBefore, 'the node upstream recorded no request');
  assert.equal(raw.requests.length, rawRequestsBefore, 'the raw upstream parsed no request');
  if (!options.reachesUpstream) {
    assert.equal(raw.bytesReceived(), rawBytesBefore, 'the raw upstream received zero bytes');
  }
}

describe('limits', () => {
  test('413 for a Content-Length over limits.max_body_bytes (before any body byte is forwarded)', async () => {
    await expectRejected(
      `POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n${'x'.repeat(1001)}`,
      413,
    );
    await expectRejected('POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999\r\n\r\n', 413);
  });

  test('a body of exactly limits.max_body_bytes is accepted', async () => {
    const r = await rawRequest(
      toHttp.port,
      `POST /exact HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n${'y'.repeat(1000)}`,
    );
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    assert.equal(upstream.requests.at(-1)!.body.length, 1000);
  });

  test('413 for a chunked body that grows over limits.max_body_bytes', async () => {
    const chunk = 'z'.repeat(600);
    await expectRejected(
      `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n${chunk}\r\n258\r\n${chunk}\r\n0\r\n\r\n`,
      413,
      { reachesUpstream: true },
    );
    // Sent in steps: the head is forwarded first, then the body is cut off when it passes the limit.
    await expectRejected(
      [
        `POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n${chunk}\r\n`,
        `258\r\n${chunk}\r\n0\r\n\r\n`,
      ],
      413,
      { reachesUpstream: true },
    );
  });

  test('414 for a request-target over limits.max_uri_bytes', async () => {
    await expectRejected(`GET /${'a'.repeat(300)} HTTP/1.1\r\nHost: a\r\n\r\n`, 414);
    // A target that goes on past limits.max_header_bytes without the head ever ending.
    await expectRejected(`GET /${'a'.repeat(3000)}`, 414);
  });

  test('431 for a huge header and for too many fields', async () => {
    await expectRejected(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(3000)}\r\n\r\n`, 431);
    // A head that never ends but exceeds the limit.
    await expectRejected(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'b'.repeat(3000)}`, 431);
    let many = 'GET / HTTP/1.1\r\nHost: a\r\n';
    for (let i = 0; i < 25; i++) many += `X-F${i}: ${i}\r\n`;
    await expectRejected(`${many}\r\n`, 431);
  });
});

describe('malformed requests (400 and friends) never reach an upstream', () => {
  const cases: [string, string | Buffer, number][] = [
    [
      'Content-Length and Transfer-Encoding',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    [
      'differing Content-Lengths',
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
      400,
    ],
    ['a Content-Length list', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!', 400],
    ['a signed Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello', 400],
    ['a hex Content-Length', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello', 400],
    [
      'Transfer-Encoding: chunked, identity',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n',
      400,
    ],
    [
      'Transfer-Encoding: xchunked',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['Transfer-Encoding: gzip', 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 400],
    [
      'Transfer-Encoding: gzip, chunked (unsupported coding)',
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n',
      501,
    ],
    [
      'Transfer-Encoding in HTTP/1.0',
      'POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      400,
    ],
    ['bare LF line endings', 'GET / HTTP/1.1\nHost: a\n\n', 400],
    ['a bare LF after a field', 'GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n', 400],
    ['a bare LF ending the head', 'GET / HTTP/1.1\r\nHost: a\r\n\n', 400],
    ['a bare CR', 'GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n', 400],
    ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-Long: first\r\n second\r\n\r\n', 400],
    ['space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400],
    ['tab before the colon', 'GET / HTTP/1.1\r\nHost: a\r\nX-A\t: 1\r\n\r\n', 400],
    ['NUL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n', 400],
    ['CR in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n', 400],
    ['DEL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7fb\r\n\r\n', 400],
    ['an empty field name', 'GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n', 400],
    ['a field name with a space', 'GET / HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n', 400],
    ['an invalid method', 'G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a method with a control character', 'GE\x01T / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['two spaces after the method', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a space in the target', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a backslash in the target', 'GET /a\\..\\b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a non-ASCII byte in the target', Buffer.from('GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', 'latin1'), 400],
    ['a malformed escape in the path', 'GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['an unsupported target form', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['an https absolute-form target', 'GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a malformed version', 'GET / HTTP/1.x\r\nHost: a\r\n\r\n', 400],
    ['a lowercase protocol name', 'GET / http/1.1\r\nHost: a\r\n\r\n', 400],
    ['trailing text after the version', 'GET / HTTP/1.1 x\r\nHost: a\r\n\r\n', 400],
    ['HTTP/1.2', 'GET / HTTP/1.2\r\nHost: a\r\n\r\n', 505],
    ['HTTP/2.0', 'GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
    ['HTTP/0.9', 'GET / HTTP/0.9\r\nHost: a\r\n\r\n', 505],
    ['a missing Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX-A: 1\r\n\r\n', 400],
    ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n', 400],
    ['two Host fields with the same value', 'GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 400],
    ['a Host with a path', 'GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', 400],
    ['a Host with user info', 'GET / HTTP/1.1\r\nHost: user@a\r\n\r\n', 400],
    [
      'an unsupported expectation',
      'POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx',
      417,
    ],
  ];
  for (const [name, payload, status] of cases) {
    test(`${status}: ${name}`, async () => {
      await expectRejected(payload, status);
    });
  }
});

describe('malformed chunked request bodies', () => {
  const head = 'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n';
  const bodies: [string, string][] = [
    ['a negative size', '-5\r\nhello\r\n0\r\n\r\n'],
    ['a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
    ['leading whitespace', ' 5\r\nhello\r\n0\r\n\r\n'],
    ['a non-hex size', 'zz\r\nhello\r\n0\r\n\r\n'],
    ['an empty size line', '\r\nhello\r\n0\r\n\r\n'],
    ['an overflowing size', '10000000000000005\r\nhello\r\n0\r\n\r\n'],
    ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
    ['a bare CR after the size', '5\rhello\r\n0\r\n\r\n'],
    ['a bare LF in an extension', '5;a=b\nhello\r\n0\r\n\r\n'],
    ['data longer than the size', '5\r\nhello!\r\n0\r\n\r\n'],
    ['data without CRLF', '5\r\nhello0\r\n\r\n'],
    ['a bare LF after the data', '5\r\nhello\n0\r\n\r\n'],
    ['an obs-folded trailer', '0\r\nX-T: a\r\n b\r\n\r\n'],
    ['a trailer with a bare LF', '0\r\nX-T: a\n\r\n'],
  ];
  for (const [name, body] of bodies) {
    test(`400: ${name}; the upstream gets no complete request`, async () => {
      // Sent in one packet: the body error is found before the request head is flushed upstream.
      await expectRejected(head + body, 400);
    });
  }
});
