/**
 * Request smuggling and response desynchronisation, end to end. Every classic payload (CL.TE, TE.CL,
 * TE.TE with obfuscated Transfer-Encoding, CL.CL) is sent through the proxy to a node upstream (llhttp,
 * which would count a smuggled request) and to a raw upstream (which records every byte). The proxy must
 * reject the ambiguous ones before any byte reaches an upstream, accept the valid spellings, and in every
 * case the upstream sees at most the legitimate request — never a second, smuggled one. A canary request
 * after each payload proves the pooled upstream connections are still in step.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  parseResponses,
  type ScriptedUpstream,
  startScriptedUpstream,
  WireClient,
} from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
let raw: ScriptedUpstream;
let toHttp: StartedProxy;
let toRaw: StartedProxy;

const RESPONSES: Record<string, string> = {
  '/resp/extra':
    'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled',
  '/resp/204-extra':
    'HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled',
  '/resp/chunked-extra':
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled',
  '/resp/cl-te':
    'HTTP/1.1 200 OK\r\nContent-Length: 8\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
  '/resp/two-cl': 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 8\r\n\r\noksmuggled',
  '/resp/te-obfuscated': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\nok',
  '/resp/bare-lf': 'HTTP/1.1 200 OK\nContent-Length: 2\n\nok',
  '/resp/obs-fold': 'HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok',
  '/resp/bad-chunk': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nok\r\n0\r\n\r\n',
};

before(async () => {
  upstream = await startHttpUpstream();
  raw = await startScriptedUpstream((req) => {
    const canned = RESPONSES[req.target];
    if (canned !== undefined) return canned;
    const body = `${req.method} ${req.target} ${req.body.length}`;
    return `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  });
  toHttp = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
  toRaw = await startProxy({ routes: [{ path: '/', upstream: raw.url }] });
});
after(async () => {
  await toHttp.close();
  await toRaw.close();
  await upstream.close();
  await raw.close();
});

/** True when a request line smuggled inside a payload shows up at an upstream. */
function smuggledSeen(
  fromHttp: { method: string; url: string }[],
  fromRaw: { method: string; target: string }[],
) {
  return (
    fromHttp.some((r) => /smuggled/i.test(r.url) || !['GET', 'POST'].includes(r.method)) ||
    fromRaw.some((r) => /smuggled/i.test(r.target) || !['GET', 'POST'].includes(r.method))
  );
}

/** A canary on a fresh client connection: each upstream must see exactly it, next, intact. */
async function canary(): Promise<void> {
  for (const proxy of [toHttp, toRaw]) {
    const httpBefore = upstream.requests.length;
    const rawBefore = raw.requests.length;
    const c = await WireClient.connect(proxy.port);
    try {
      c.write('POST /canary HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\ncanary');
      const r = await c.next();
      assert.equal(r.status, 200, `canary through ${proxy === toHttp ? 'node' : 'raw'} upstream`);
    } finally {
      c.close();
    }
    if (proxy === toHttp) {
      assert.equal(upstream.requests.length, httpBefore + 1);
      const seen = upstream.requests.at(-1)!;
      assert.equal(`${seen.method} ${seen.url} ${seen.body.toString()}`, 'POST /canary canary');
    } else {
      assert.equal(raw.requests.length, rawBefore + 1);
      const seen = raw.requests.at(-1)!;
      assert.equal(`${seen.method} ${seen.target} ${seen.body.toString()}`, 'POST /canary canary');
    }
  }
}

/**
 * Sends `payload` through both proxies. `rejected`: the expected status (and nothing may reach an
 * upstream), or null when the payload is valid and exactly `legit` requests (with `body`) may be forwarded.
 */
async function attempt(
  payload: string,
  expect: { rejected: number } | { legit: { method: string; url: string; body: string } },
): Promise<void> {
  const httpBefore = upstream.requests.length;
  const rawBefore = raw.requests.length;
  const rawBytesBefore = raw.bytesReceived();
  for (const proxy of [toHttp, toRaw]) {
    const c = await WireClient.connect(proxy.port);
    try {
      c.write(payload);
      const r = await c.next();
      if ('rejected' in expect) {
        assert.equal(r.status, expect.rejected, `answer:\n${r.raw.toString('latin1')}`);
        assert.equal(r.header('connection')?.toLowerCase(), 'close');
        assert.equal(await c.waitClosed(), true, 'the proxy closes the connection');
      } else {
        assert.equal(r.status, 200, `answer:\n${r.raw.toString('latin1')}`);
      }
      // No second response may follow: that would be the answer to a smuggled request.
      assert.equal(
        await c.quietFor(60),
        true,
        `unexpected bytes after the answer: ${c.unread.toString('latin1')}`,
      );
    } finally {
      c.close();
    }
  }
  const fromHttp = upstream.requests.slice(httpBefore);
  const fromRaw = raw.requests.slice(rawBefore);
  assert.equal(smuggledSeen(fromHttp, fromRaw), false, 'no smuggled request reached an upstream');
  if ('rejected' in expect) {
    assert.equal(fromHttp.length, 0, 'the node upstream saw no request');
    assert.equal(fromRaw.length, 0, 'the raw upstream saw no request');
    assert.equal(raw.bytesReceived(), rawBytesBefore, 'the raw upstream received zero bytes');
  } else {
    const { method, url, body } = expect.legit;
    assert.deepEqual(
      fromHttp.map((r) => `${r.method} ${r.url} ${r.body.toString('latin1')}`),
      [`${method} ${url} ${body}`],
    );
    assert.deepEqual(
      fromRaw.map((r) => `${r.method} ${r.target} ${r.body.toString('latin1')}`),
      [`${method} ${url} ${body}`],
    );
  }
  await canary();
}

const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n';

describe('request smuggling payloads', () => {
  test('CL.TE: Content-Length covering a smuggled request after the last chunk', async () => {
    const body = `0\r\n\r\n${SMUGGLED}`;
    await attempt(
      `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
      { rejected: 400 },
    );
  });

  test('CL.TE: a partial smuggled prefix', async () => {
    await attempt(
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED',
      { rejected: 400 },
    );
  });

  test('TE.CL: a short Content-Length and a chunk that holds a smuggled request', async () => {
    const inner = 'GPOST /smuggled HTTP/1.1\r\nHost: a\r\nContent-Length: 15\r\n\r\nx=1';
    await attempt(
      `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`,
      { rejected: 400 },
    );
  });

  const obfuscated: [string, string][] = [
    ['a second Transfer-Encoding: x', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: x'],
    ['Transfer-Encoding: x before chunked', 'Transfer-Encoding: x\r\nTransfer-Encoding: chunked'],
    ['a space before the colon', 'Transfer-Encoding : chunked'],
    ['xchunked', 'Transfer-Encoding: xchunked'],
    ['chunked, identity', 'Transfer-Encoding: chunked, identity'],
    ['a quoted value', 'Transfer-Encoding: "chunked"'],
    ['a vertical tab', 'Transfer-Encoding: chunked\x0b'],
    ['a form feed before the value', 'Transfer-Encoding:\x0cchunked'],
    ['a NUL in the name', 'Transfer-Encoding\x00: chunked'],
    ['obs-fold of the value', 'Transfer-Encoding:\r\n chunked'],
    ['a leading space on the field line', 'X-A: 1\r\n Transfer-Encoding: chunked'],
    ['a bare LF before the field', 'X-A: 1\nTransfer-Encoding: chunked'],
    ['a bare CR before the field', 'X-A: 1\rTransfer-Encoding: chunked'],
  ];
  for (const [name, te] of obfuscated) {
    test(`TE.TE: ${name} (with Content-Length) is rejected`, async () => {
      const inner = `${SMUGGLED}`;
      await attempt(
        `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n${te}\r\n\r\n${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`,
        { rejected: 400 },
      );
    });
  }

  test('TE.TE: chunked, chunked is rejected', async () => {
    const upstreamBefore = upstream.requests.length;
    for (const proxy of [toHttp, toRaw]) {
      const c = await WireClient.connect(proxy.port);
      try {
        c.write('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n');
        const r = await c.next();
        assert.ok(r.status === 400 || r.status === 501, `status ${r.status}`);
        assert.equal(await c.waitClosed(), true);
      } finally {
        c.close();
      }
    }
    assert.equal(upstream.requests.length, upstreamBefore);
    await canary();
  });

  test('Transfer-Encoding:<TAB>chunked is valid: the one request is forwarded with its body', async () => {
    await attempt(
      'POST /tab HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
      {
        legit: { method: 'POST', url: '/tab', body: 'hello' },
      },
    );
  });

  test('Transfer-Encoding: CHUNKED with trailing whitespace is valid', async () => {
    await attempt(
      'POST /upper HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \t\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      {
        legit: { method: 'POST', url: '/upper', body: 'abc' },
      },
    );
  });

  test('Transfer_Encoding (underscore) is an ordinary field: Content-Length frames the body', async () => {
    await attempt(
      'POST /underscore HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n',
      { legit: { method: 'POST', url: '/underscore', body: '0\r\n\r\n' } },
    );
  });

  test('CL.CL: two different Content-Lengths', async () => {
    await attempt(
      `POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: ${4 + SMUGGLED.length}\r\n\r\nbody${SMUGGLED}`,
      { rejected: 400 },
    );
  });

  test('CL.CL: a Content-Length list', async () => {
    await attempt(`POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4, 40\r\n\r\nbody${SMUGGLED}`, {
      rejected: 400,
    });
  });

  test('TE in HTTP/1.0 (with and without Content-Length)', async () => {
    await attempt(`POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, {
      rejected: 400,
    });
    await attempt(
      `POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      {
        rejected: 400,
      },
    );
  });

  test('a chunk size that overflows', async () => {
    await attempt(
      `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000000000025\r\n${SMUGGLED}\r\n0\r\n\r\n`,
      { rejected: 400 },
    );
  });

  test('a chunk whose data is longer than its size', async () => {
    await attempt(
      `POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n${SMUGGLED}`,
      {
        rejected: 400,
      },
    );
  });

  test('a bare LF in the request line', async () => {
    await attempt(`GET / HTTP/1.1\nHost: a\r\n\r\n${SMUGGLED}`, { rejected: 400 });
  });

  test('the proxy and the upstream agree on message boundaries for a GET with a body', async () => {
    const httpBefore = upstream.requests.length;
    const c = await WireClient.connect(toHttp.port);
    try {
      c.write(
        'GET /first HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbodyGET /second HTTP/1.1\r\nHost: a\r\n\r\n',
      );
      const r1 = await c.next();
      const r2 = await c.next();
      assert.equal(JSON.parse(r1.body.toString()).url, '/first');
      assert.equal(JSON.parse(r2.body.toString()).url, '/second');
    } finally {
      c.close();
    }
    assert.deepEqual(
      upstream.requests.slice(httpBefore).map((r) => `${r.url} ${r.body.length}`),
      ['/first 4', '/second 0'],
    );
  });
});

describe('response desynchronisation', () => {
  /**
   * Requests `target` then a canary on the same client connection through the raw upstream: the client
   * must get the expected answer, never the smuggled response, and the canary must be answered by the
   * upstream itself (the connection carrying the extra bytes is not reused).
   */
  async function desync(target: string, expectStatus: number, expectBody: string | null): Promise<void> {
    const c = await WireClient.connect(toRaw.port);
    try {
      c.write(`GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`);
      const r = await c.next();
      assert.equal(r.status, expectStatus, r.raw.toString('latin1'));
      if (expectBody !== null) assert.equal(r.body.toString(), expectBody);
      assert.equal(r.has('x-smuggled'), false);
      if (expectStatus >= 500) {
        assert.match(r.header('content-type') ?? '', /json/);
      }
      if (!c.closed && r.header('connection')?.toLowerCase() !== 'close') {
        c.write('GET /desync-canary HTTP/1.1\r\nHost: a\r\n\r\n');
        const next = await c.next();
        assert.equal(next.body.toString(), 'GET /desync-canary 0');
        assert.equal(next.has('x-smuggled'), false);
      }
      assert.equal(c.received.includes('smuggled'), false, c.received.toString('latin1'));
    } finally {
      c.close();
    }
    await canary();
  }

  test('bytes after a Content-Length body are not delivered as a response', async () => {
    await desync('/resp/extra', 200, 'ok');
  });

  test('bytes after a 204 are not delivered as a response', async () => {
    await desync('/resp/204-extra', 204, '');
  });

  test('bytes after the last chunk are not delivered as a response', async () => {
    await desync('/resp/chunked-extra', 200, 'ok');
  });

  test('an upstream response with Content-Length and Transfer-Encoding is a 502', async () => {
    await desync('/resp/cl-te', 502, null);
  });

  test('an upstream response with two Content-Lengths is a 502', async () => {
    await desync('/resp/two-cl', 502, null);
  });

  test('an upstream response with an unknown Transfer-Encoding is a 502', async () => {
    await desync('/resp/te-obfuscated', 502, null);
  });

  test('an upstream response with bare LF line endings is a 502', async () => {
    await desync('/resp/bare-lf', 502, null);
  });

  test('an upstream response with obs-fold is a 502', async () => {
    await desync('/resp/obs-fold', 502, null);
  });

  test('an upstream response with a bad chunk size is aborted, never presented as complete', async () => {
    const c = await WireClient.connect(toRaw.port);
    try {
      c.write('GET /resp/bad-chunk HTTP/1.1\r\nHost: a\r\n\r\n');
      assert.equal(await c.waitClosed(), true, 'the client connection is closed');
      // At most a head whose chunked body never ends: no complete response.
      let complete: number;
      try {
        complete = parseResponses(c.received).length;
      } catch {
        complete = -1;
      }
      assert.ok(complete <= 0, `a complete response was delivered: ${c.received.toString('latin1')}`);
      assert.equal(c.received.includes('-2'), false, 'the malformed chunk is not forwarded');
    } finally {
      c.close();
    }
    await canary();
  });
});
