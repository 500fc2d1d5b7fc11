// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configs hold zproxy ${variables}, not JavaScript templates.
/**
 * The headers filter through zproxy itself (the engines' filter runner, HTTP/1.1) in front of a real
 * upstream that echoes what it received. Request and response rules (remove, set, add), variables,
 * response rules on local answers of later filters (auth's 401), prefix and regex rewrites with the query
 * kept, request ids generated, passed through or replaced, and recorded on the exchange (the access log's
 * `request_id`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { HeadersConfig } from '../../src/config/headers-schema.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type SimpleResponse, sendRequest, waitUntil } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const KEY = 'k-headers-test-0123456789';

let upstream: HttpUpstream;
before(async () => {
  upstream = await startHttpUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url, headers: req.headers });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-powered-by': 'upstream-framework',
      server: 'upstream-server',
      'x-upstream': 'kept',
    });
    res.end(body);
  });
});
after(() => upstream.close());

interface Echo {
  readonly url: string;
  readonly headers: Record<string, string | string[]>;
}

/** The access log lines of `proxy` so far, once the exchanges sent have been logged. */
async function accessLogs(proxy: StartedProxy, count: number): Promise<Record<string, unknown>[]> {
  await waitUntil(() => proxy.accessLogs().length >= count, 3000, `${count} access log lines`);
  return proxy.accessLogs();
}

/**
 * zproxy with `headers` configured by `config` on every path; under /deny, an `auth` after it answers
 * 401 (a later filter's local answer) to requests without its key. `route` is the catch-all route's
 * pattern (what `${route}` gives).
 */
async function withHeaders(
  config: HeadersConfig,
  run: (
    send: (path: string, headers?: Record<string, string>) => Promise<SimpleResponse>,
    proxy: StartedProxy,
  ) => Promise<void>,
  route = '/',
): Promise<void> {
  const headers = { type: 'headers', config };
  const proxy = await startProxy({
    routes: [
      {
        path: '/deny',
        upstream: upstream.url,
        middlewares: [headers, { type: 'auth', config: { api_keys: [KEY] } }],
      },
      { path: route, upstream: upstream.url, middlewares: [headers] },
    ],
  });
  try {
    await run(
      (path, headers) => sendRequest(proxy.port, path, headers === undefined ? {} : { headers }),
      proxy,
    );
  } finally {
    await proxy.close();
  }
}

function echo(response: SimpleResponse): Echo {
  assert.equal(response.status, 200, response.text);
  return JSON.parse(response.text) as Echo;
}

describe('request rules', () => {
  test('remove, set and add reach the upstream; other fields are untouched', async () => {
    await withHeaders(
      {
        request: {
          remove: ['X-Secret', 'x-drop'],
          set: { 'X-Env': 'production', 'x-replaced': 'new' },
          add: { 'x-tag': ['a', 'b'], 'x-replaced': 'extra', 'x-one': 'single' },
        },
      },
      async (send) => {
        const { headers } = echo(
          await send('/r', { 'x-secret': 's3', 'x-replaced': 'old', 'x-tag': 'client', 'x-keep': 'yes' }),
        );
        assert.equal(headers['x-secret'], undefined);
        assert.equal(headers['x-env'], 'production');
        assert.equal(headers['x-replaced'], 'new, extra');
        assert.equal(headers['x-tag'], 'client, a, b');
        assert.equal(headers['x-one'], 'single');
        assert.equal(headers['x-keep'], 'yes');
      },
    );
  });

  test('variables: client_ip, host, http_<name> (absent is empty), method, path, query, scheme, route', async () => {
    await withHeaders(
      {
        request: {
          set: {
            'x-real-ip': '${client_ip}',
            'x-host': 'host=${host}',
            'x-user': 'u:${http_x_user_name}',
            'x-missing': '[${http_x_absent}]',
            'x-line': '${method} ${scheme}://${host}${path}?${query} on ${route}',
            'x-price': 'costs $5 and $${literal}',
          },
        },
      },
      async (send) => {
        const { headers } = echo(
          await send('/api/items/7?a=1&b=2', { host: 'shop.test:8080', 'x-user-name': 'ann' }),
        );
        assert.equal(headers['x-real-ip'], '127.0.0.1');
        assert.equal(headers['x-host'], 'host=shop.test:8080');
        assert.equal(headers['x-user'], 'u:ann');
        assert.equal(headers['x-missing'], '[]');
        assert.equal(headers['x-line'], 'GET http://shop.test:8080/api/items/7?a=1&b=2 on /api/*');
        assert.equal(headers['x-price'], 'costs $5 and ${literal}');
      },
      '/api/*',
    );
  });
});

describe('response rules', () => {
  const config: HeadersConfig = {
    response: {
      remove: ['x-powered-by', 'Server'],
      set: { 'strict-transport-security': 'max-age=63072000', 'x-served-for': '${client_ip}' },
      add: { 'x-upstream': 'added', 'cache-control': ['no-transform'] },
    },
  };

  test('apply to the proxied response', async () => {
    await withHeaders(config, async (send) => {
      const response = await send('/r');
      assert.equal(response.status, 200);
      assert.equal(response.headers['x-powered-by'], undefined);
      assert.equal(response.headers.server, undefined);
      assert.equal(response.headers['strict-transport-security'], 'max-age=63072000');
      assert.equal(response.headers['x-served-for'], '127.0.0.1');
      assert.equal(response.headers['x-upstream'], 'kept, added');
      assert.equal(response.headers['cache-control'], 'no-transform');
    });
  });

  test("apply to a later filter's local answer", async () => {
    await withHeaders(config, async (send) => {
      const before = upstream.requests.length;
      const response = await send('/deny');
      assert.equal(response.status, 401);
      assert.equal(upstream.requests.length, before);
      assert.equal(response.headers['strict-transport-security'], 'max-age=63072000');
      assert.equal(response.headers['x-served-for'], '127.0.0.1');
    });
  });
});

describe('rewrite', () => {
  test('prefix at a segment boundary, query kept', async () => {
    await withHeaders({ rewrite: { prefix: '/old', replacement: '/new' } }, async (send) => {
      assert.equal(echo(await send('/old')).url, '/new');
      assert.equal(echo(await send('/old/')).url, '/new/');
      assert.equal(echo(await send('/old/x/y?q=1&r=%20')).url, '/new/x/y?q=1&r=%20');
      assert.equal(echo(await send('/old?q=1')).url, '/new?q=1');
      assert.equal(echo(await send('/older/x')).url, '/older/x');
      assert.equal(echo(await send('/x/old')).url, '/x/old');
    });
  });

  test('prefix removed (replacement "")', async () => {
    await withHeaders({ rewrite: { prefix: '/api/', replacement: '' } }, async (send) => {
      assert.equal(echo(await send('/api/users?page=2')).url, '/users?page=2');
      assert.equal(echo(await send('/api')).url, '/');
      assert.equal(echo(await send('/apix')).url, '/apix');
    });
  });

  test('regex with groups, query kept, no match left alone', async () => {
    await withHeaders(
      { rewrite: { regex: '^/u/(\\d+)/(?<tab>[a-z]+)$', replacement: '/users/$1/$<tab>' } },
      async (send) => {
        assert.equal(echo(await send('/u/42/posts?sort=new')).url, '/users/42/posts?sort=new');
        assert.equal(echo(await send('/u/abc/posts')).url, '/u/abc/posts');
      },
    );
  });
});

describe('request id', () => {
  test('generated when absent: a UUID, the same upstream, on the response and on the exchange', async () => {
    await withHeaders(
      { request_id: {}, request: { set: { 'x-trace': 'id=${request_id}' } } },
      async (send, proxy) => {
        const first = await send('/r');
        const second = await send('/r');
        const id = first.headers['x-request-id'];
        assert.match(String(id), UUID);
        assert.notEqual(second.headers['x-request-id'], id);
        const { headers } = echo(first);
        assert.equal(headers['x-request-id'], id);
        assert.equal(headers['x-trace'], `id=${id}`);
        assert.equal((await accessLogs(proxy, 2))[0]?.request_id, id);
      },
    );
  });

  test('passed through when trusted and usable; replaced when unusable', async () => {
    await withHeaders({ request_id: {} }, async (send) => {
      const kept = await send('/r', { 'x-request-id': 'abc-123_XYZ' });
      assert.equal(kept.headers['x-request-id'], 'abc-123_XYZ');
      assert.equal(echo(kept).headers['x-request-id'], 'abc-123_XYZ');
      for (const bad of ['has space', 'x'.repeat(201), 'caf\u00e9']) {
        const replaced = await send('/r', { 'x-request-id': bad });
        assert.match(String(replaced.headers['x-request-id']), UUID, bad);
        assert.equal(echo(replaced).headers['x-request-id'], replaced.headers['x-request-id']);
      }
    });
  });

  test('trust_incoming false replaces the client id; a custom header; response false', async () => {
    await withHeaders(
      { request_id: { header: 'X-Correlation-Id', trust_incoming: false, response: false } },
      async (send, proxy) => {
        const response = await send('/r', { 'x-correlation-id': 'client-chosen' });
        assert.equal(response.headers['x-correlation-id'], undefined);
        const sent = echo(response).headers['x-correlation-id'];
        assert.match(String(sent), UUID);
        assert.equal((await accessLogs(proxy, 1))[0]?.request_id, sent);
      },
    );
  });

  test("on a later filter's local answer too", async () => {
    await withHeaders({ request_id: {} }, async (send, proxy) => {
      const response = await send('/deny', { 'x-request-id': 'req-1' });
      assert.equal(response.status, 401);
      assert.equal(response.headers['x-request-id'], 'req-1');
      const [line] = await accessLogs(proxy, 1);
      assert.equal(line?.request_id, 'req-1');
      assert.equal(line?.status, 401);
    });
  });

  test('without request_id, ${request_id} is empty and nothing is generated', async () => {
    await withHeaders({ request: { set: { 'x-trace': '<${request_id}>' } } }, async (send, proxy) => {
      const response = await send('/r', { 'x-request-id': 'client' });
      assert.equal(response.headers['x-request-id'], undefined);
      const { headers } = echo(response);
      assert.equal(headers['x-trace'], '<>');
      assert.equal(headers['x-request-id'], 'client');
      assert.equal((await accessLogs(proxy, 1))[0]?.request_id, undefined, 'no request id on the exchange');
    });
  });
});
