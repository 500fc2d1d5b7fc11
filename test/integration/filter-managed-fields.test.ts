/**
 * A user filter cannot edit the fields zproxy manages (docs/filters.md, "Edits"): the framing fields, Host
 * and the hop-by-hop ones. A user filter (fixtures/filters/managed-fields.ts) tries each with set, add and
 * remove, on the forwarded request (onRequest, onUpstreamRequest) and on the response (onRequest,
 * onResponse): each attempt is answered 500 ZP_ERR_FILTER_FAILED with a `filter failed` line naming the
 * field, and a request edit never reaches the upstream. A local answer's managed fields are left out.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const EDITOR = new URL('../fixtures/filters/managed-fields.ts', import.meta.url).pathname;
const PROBE = new URL('../fixtures/filters/probe.ts', import.meta.url).pathname;

/** The fields docs/filters.md lists as managed. */
const MANAGED = [
  'Content-Length',
  'Transfer-Encoding',
  'Host',
  'Connection',
  'Keep-Alive',
  'Proxy-Connection',
  'TE',
  'Trailer',
  'Upgrade',
  'HTTP2-Settings',
];

/** Where an edit is made: the phase and the side it edits (see the fixture). */
const PLACES = [
  ['request', 'upstream', 'onRequest'],
  ['upstream', 'upstream', 'onUpstreamRequest'],
  ['request', 'response', 'onRequest'],
  ['response', 'response', 'onResponse'],
] as const;
const OPS = ['set', 'add', 'remove'] as const;

describe('user filters and the fields zproxy manages', () => {
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    upstream = await startHttpUpstream();
    proxy = await startProxy({
      protocols: ['http1', 'http2'],
      routes: [
        {
          path: '/edit',
          upstream: upstream.url,
          middlewares: [{ type: 'module', path: EDITOR, config: {} }],
        },
        {
          path: '/local',
          upstream: upstream.url,
          middlewares: [
            {
              type: 'module',
              path: PROBE,
              config: {
                name: 'local-managed',
                answer: {
                  status: 200,
                  body: 'local\n',
                  headers: {
                    'x-local': 'kept',
                    'Content-Length': '999',
                    'Transfer-Encoding': 'chunked',
                    Host: 'evil.test',
                    Connection: 'x-local',
                    'Keep-Alive': 'timeout=1',
                    'Proxy-Connection': 'keep-alive',
                    TE: 'trailers',
                    Trailer: 'x-t',
                    Upgrade: 'h2c',
                    'HTTP2-Settings': 'AAMAAABkAAQAAP__',
                  },
                },
              },
            },
          ],
        },
      ],
    });
  });
  after(async () => {
    await proxy.close(500);
    await upstream.close();
  });

  const failures = () => proxy.logs.filter((l) => l.msg === 'filter failed');

  for (const [phase, side, method] of PLACES) {
    test(`${method} cannot set, add or remove a managed field of the ${side === 'upstream' ? 'forwarded request' : 'response'}`, async () => {
      for (const name of MANAGED) {
        for (const op of OPS) {
          const what = `${phase} ${side} ${op} ${name}`;
          const forwarded = upstream.requests.length;
          const logged = failures().length;
          const res = await sendRequest(proxy.port, '/edit/x', { headers: { 'x-edit': what } });
          assert.equal(res.status, 500, what);
          assert.equal(JSON.parse(res.text).error.code, 'ZP_ERR_FILTER_FAILED', what);
          // A failed request phase forwards nothing; onResponse runs after the upstream answered.
          assert.equal(upstream.requests.length, forwarded + (phase === 'response' ? 1 : 0), what);
          const line = failures()[logged];
          assert.ok(line !== undefined, `${what}: a filter failed line`);
          assert.equal(line.phase, method, what);
          const message = (line.err as { message: string }).message;
          assert.match(message, new RegExp(`^field ${name.toLowerCase()} is managed by zproxy`), what);
        }
      }
    });
  }

  test('the same edits of ordinary fields go through (control)', async () => {
    for (const [phase, side] of PLACES) {
      for (const name of ['x-ordinary', 'via', 'x-forwarded-for']) {
        const what = `${phase} ${side} set ${name}`;
        const res = await sendRequest(proxy.port, '/edit/x', { headers: { 'x-edit': what } });
        assert.equal(res.status, 200, what);
        if (side === 'upstream') assert.equal(upstream.requests.at(-1)!.headers[name], '1', what);
        else assert.equal(res.headers[name], '1', what);
      }
    }
  });

  test('an HTTP/2 client gets the same 500, and the edit never reaches the upstream', async () => {
    const session = http2.connect(proxy.url);
    try {
      for (const what of ['request upstream set content-length', 'response response remove content-length']) {
        const forwarded = upstream.requests.length;
        const res = await h2Request(session, { ':method': 'GET', ':path': '/edit/h2', 'x-edit': what });
        assert.equal(res.status, 500, what);
        assert.equal(JSON.parse(res.body.toString()).error.code, 'ZP_ERR_FILTER_FAILED', what);
        assert.equal(upstream.requests.length, forwarded + (what.startsWith('response') ? 1 : 0), what);
      }
    } finally {
      session.close();
    }
  });

  test("a local answer's managed fields are left out; the engine frames it", async () => {
    const { text } = await rawRequest(
      proxy.port,
      'GET /local/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n',
    );
    const [head, body] = text.split('\r\n\r\n') as [string, string];
    const lines = head.split('\r\n').slice(1);
    const names = lines.map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
    assert.ok(head.startsWith('HTTP/1.1 200 '), head);
    assert.ok(names.includes('x-local'), head);
    for (const name of MANAGED) {
      if (name === 'Content-Length' || name === 'Connection') continue;
      assert.ok(!names.includes(name.toLowerCase()), `${name} in ${head}`);
    }
    const lengths = lines.filter((l) => /^content-length:/i.test(l));
    assert.equal(lengths.length, 1, head);
    assert.match(lengths[0]!, /^content-length: 6$/i);
    const connection = lines.filter((l) => /^connection:/i.test(l));
    assert.equal(connection.length, 1, head);
    assert.match(connection[0]!, /^connection: close$/i);
    assert.equal(body, 'local\n');
  });
});
