// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configs hold zproxy ${variables}, not JavaScript templates.
/**
 * The headers filter through zproxy itself (the engines' phase runner), over HTTP/1.1 and HTTP/2 clients
 * to a real upstream: request and response rules, a prefix rewrite after strip_prefix, the request id on
 * the forwarded request, the response, a local 401 of a later auth filter, and the access log.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { h2Request } from '../helpers/h2-client.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

let upstream: HttpUpstream;
let proxy: StartedProxy;

before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url, headers: req.headers });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-powered-by': 'upstream-framework',
    });
    res.end(body);
  });
  proxy = await startProxy({
    routes: [
      {
        path: '/app/*',
        strip_prefix: true,
        upstream: upstream.url,
        middlewares: [
          {
            type: 'headers',
            config: {
              request: {
                set: { 'x-real-ip': '${client_ip}', 'x-via-route': '${route}' },
                remove: ['x-debug'],
              },
              response: { remove: ['x-powered-by'], set: { 'x-frame-options': 'DENY' } },
              rewrite: { prefix: '/v1', replacement: '/api/v1' },
              request_id: {},
            },
          },
          { type: 'auth', config: { api_keys: ['k-0123456789abcdef'], header: 'x-api-key' } },
        ],
      },
    ],
  });
});

after(async () => {
  await proxy?.close();
  await upstream?.close();
});

describe('headers through zproxy', () => {
  test('HTTP/1.1: rules, rewrite after strip_prefix, request id upstream, on the response and in the log', async () => {
    const response = await sendRequest(proxy.port, '/app/v1/items?page=2', {
      headers: { 'x-api-key': 'k-0123456789abcdef', 'x-debug': '1' },
    });
    assert.equal(response.status, 200, response.text);
    const seen = JSON.parse(response.text) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/api/v1/items?page=2');
    assert.equal(seen.headers['x-real-ip'], '127.0.0.1');
    assert.equal(seen.headers['x-via-route'], '/app/*');
    assert.equal(seen.headers['x-debug'], undefined);
    const id = response.headers['x-request-id'];
    assert.match(String(id), UUID);
    assert.equal(seen.headers['x-request-id'], id);
    assert.equal(response.headers['x-powered-by'], undefined);
    assert.equal(response.headers['x-frame-options'], 'DENY');
    await waitFor(() => proxy.accessLogs().some((line) => line.request_id === id));
  });

  test("a later filter's 401 carries the response rules and the client's request id", async () => {
    const before = upstream.requests.length;
    const response = await sendRequest(proxy.port, '/app/v1/items', {
      headers: { 'x-request-id': 'req-42' },
    });
    assert.equal(response.status, 401);
    assert.equal(upstream.requests.length, before);
    assert.equal(response.headers['x-request-id'], 'req-42');
    assert.equal(response.headers['x-frame-options'], 'DENY');
    await waitFor(() =>
      proxy.accessLogs().some((line) => line.request_id === 'req-42' && line.status === 401),
    );
  });

  test('HTTP/2 (h2c): the same rules', async () => {
    const client = http2.connect(proxy.url);
    const response = await h2Request(client, {
      ':path': '/app/v1/x',
      'x-api-key': 'k-0123456789abcdef',
      'x-request-id': 'h2-id',
    }).finally(() => client.close());
    assert.equal(response.status, 200);
    const seen = JSON.parse(response.body.toString()) as { url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/api/v1/x');
    assert.equal(seen.headers['x-request-id'], 'h2-id');
    assert.equal(response.headers['x-request-id'], 'h2-id');
    assert.equal(response.headers['x-powered-by'], undefined);
    assert.equal(response.headers['x-frame-options'], 'DENY');
  });
});

async function waitFor(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail('timed out waiting for the access log line');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
