// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the configs hold zproxy ${variables}, not JavaScript templates.
/**
 * The headers filter's compiled parts and config errors: templates and their variables, the rewrite's
 * boundary cases, hop-by-hop names, bad regular expressions, schema errors through parseConfig and factory
 * errors through buildChains (both naming the JSON path), and client-controlled values with CR, LF or NUL
 * run through the production phase runner (FilterExchange and its FieldEditList, which throws on them).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { HeadersConfig } from '../../src/config/headers-schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { Exchange } from '../../src/exchange.ts';
import { compileTemplate, HeadersFilter, headersFactory, Rewrite } from '../../src/filters/headers.ts';
import { BUILT_IN_FILTERS } from '../../src/filters/index.ts';
import { buildChains, FilterChain } from '../../src/pipeline/chain.ts';
import { ObjectFieldReader } from '../../src/pipeline/field-readers.ts';
import { FilterExchange, FilterRequestView } from '../../src/pipeline/filter-exchange.ts';
import { FilterRegistry } from '../../src/pipeline/registry.ts';

const ENV = { index: 0, route: '/r' };

function configWith(config: unknown): unknown {
  return {
    port: 0,
    routes: [{ path: '/r', upstream: 'http://127.0.0.1:9', middlewares: [{ type: 'headers', config }] }],
  };
}

/** One exchange of `config` through the production runner; returns the forwarded and response edits. */
function runOnce(
  config: HeadersConfig,
  headers: Record<string, string>,
  target = '/r',
): { upstream: string[]; response: string[]; target: string; requestId: string | null } {
  const filter = new HeadersFilter(config, ENV);
  const chain = new FilterChain(
    [filter],
    [{ middleware: { type: 'headers', config } as never, where: 'middlewares[0]' }],
    '/r',
    null,
  );
  const q = target.indexOf('?');
  const exchange = new Exchange(0, 'GET', target, 'example.test', '1.1', '192.0.2.7');
  exchange.path = q === -1 ? target : target.slice(0, q);
  exchange.query = q === -1 ? '' : target.slice(q);
  const request = new FilterRequestView(exchange, 'GET', 'http', false, new ObjectFieldReader(headers));
  const fx = new FilterExchange(chain, exchange, request, target);
  const outcome = fx.runRequest();
  assert.equal(outcome, undefined, 'the filter answered or failed');
  return {
    upstream: fx.upstreamEditsOrNull?.added ?? [],
    response: fx.responseEditsOrNull?.added ?? [],
    target: fx.upstreamTarget,
    requestId: exchange.requestId,
  };
}

describe('templates', () => {
  test('a value without variables is a constant; $ alone and $${ are literal', () => {
    assert.equal(compileTemplate('plain value', 'f', '/r').constant, 'plain value');
    assert.equal(compileTemplate('', 'f', '/r').constant, '');
    assert.equal(compileTemplate('$5, $ {x}, $${x}', 'f', '/r').constant, '$5, $ {x}, ${x}');
    assert.equal(compileTemplate('on ${route}', 'f', '/api/*').constant, 'on /api/*');
  });

  test('variables are compiled into parts once', () => {
    const t = compileTemplate('a ${client_ip} b ${http_X_Forwarded_Proto}', 'f', '/r');
    assert.equal(t.constant, null);
    assert.deepEqual(t.texts, ['a ', '', ' b ', 'x-forwarded-proto']);
  });

  test('an unknown or unterminated variable is an error naming the field', () => {
    assert.throws(
      () => compileTemplate('x ${foo}', 'request.set.x-user', '/r'),
      (e: Error) => e.message.startsWith('config.request.set.x-user: unknown variable ${foo}'),
    );
    assert.throws(
      () => compileTemplate('${http_}', 'f', '/r'),
      /^HeadersConfigError: config\.f: unknown variable \$\{http_\}/,
    );
    assert.throws(() => compileTemplate('${__proto__}', 'f', '/r'), /unknown variable/);
    assert.throws(
      () => compileTemplate('${client_ip', 'f', '/r'),
      /^HeadersConfigError: config\.f: unterminated variable/,
    );
  });

  test('client-controlled values with CR, LF or NUL are sent with spaces instead (never injected)', () => {
    const config: HeadersConfig = {
      request: { set: { 'x-user': 'u=${http_x_user}', 'x-h': '${host}' } },
      response: { add: { 'x-echo': '${http_x_user}' } },
    };
    const out = runOnce(config, { 'x-user': 'ann\r\nx-admin: true\0!' });
    assert.deepEqual(out.upstream, ['x-user', 'u=ann  x-admin: true !', 'x-h', 'example.test']);
    assert.deepEqual(out.response, ['x-echo', 'ann  x-admin: true !']);
  });
});

describe('rewrite', () => {
  const prefixCases: [prefix: string, replacement: string, target: string, expected: string | null][] = [
    ['/old', '/new', '/old', '/new'],
    ['/old', '/new', '/old/', '/new/'],
    ['/old', '/new', '/old/a/b?x=1', '/new/a/b?x=1'],
    ['/old', '/new', '/old?x=/old', '/new?x=/old'],
    ['/old', '/new', '/older', null],
    ['/old', '/new', '/olde?x', null],
    ['/old', '/new', '/Old/a', null],
    ['/old/', '/new/', '/old', '/new'],
    ['/old/', '/new/', '/old/a', '/new/a'],
    ['/old', '', '/old/a?q', '/a?q'],
    ['/old', '/', '/old', '/'],
    ['/', '/v1', '/a?q', '/v1/a?q'],
    ['/a/b', '/c', '/a/bc', null],
  ];
  for (const [prefix, replacement, target, expected] of prefixCases) {
    test(`prefix ${prefix} -> "${replacement}": ${target} -> ${expected}`, () => {
      assert.equal(new Rewrite({ prefix, replacement }).apply(target), expected);
    });
  }

  test('regex: groups, named groups, query kept, first match only, a leading / ensured', () => {
    assert.equal(
      new Rewrite({ regex: '^/u/(\\d+)$', replacement: '/users/$1' }).apply('/u/7?a=b'),
      '/users/7?a=b',
    );
    assert.equal(
      new Rewrite({ regex: '^/(?<v>v\\d)/(.*)$', replacement: '/$2/$<v>' }).apply('/v2/x/y'),
      '/x/y/v2',
    );
    assert.equal(new Rewrite({ regex: 'a', replacement: 'b' }).apply('/aaa'), '/baa');
    assert.equal(new Rewrite({ regex: '^/x/', replacement: '' }).apply('/x/y'), '/y');
    assert.equal(new Rewrite({ regex: '^/u/(\\d+)$', replacement: '/users/$1' }).apply('/u/x'), null);
  });

  test('runs in onUpstreamRequest through the runner (setUpstreamTarget)', () => {
    const out = runOnce({ rewrite: { prefix: '/r', replacement: '/internal' } }, {}, '/r/x?y=1');
    assert.equal(out.target, '/internal/x?y=1');
  });
});

describe('request id through the runner', () => {
  test('generated, set upstream, on the response and on the exchange', () => {
    const out = runOnce({ request_id: {} }, {});
    assert.match(String(out.requestId), /^[0-9a-f-]{36}$/);
    assert.deepEqual(out.upstream, ['x-request-id', out.requestId]);
    assert.deepEqual(out.response, ['x-request-id', out.requestId]);
  });

  test('request rules run after the id, so they can use or override it', () => {
    const out = runOnce(
      { request_id: {}, request: { set: { 'x-trace': '${request_id}' } } },
      { 'x-request-id': 'a1' },
    );
    assert.deepEqual(out.upstream, ['x-request-id', 'a1', 'x-trace', 'a1']);
  });
});

describe('config errors', () => {
  const factoryCases: [config: HeadersConfig, message: RegExp][] = [
    [
      { request: { set: { Connection: 'close' } } },
      /^config\.request\.set\.Connection: connection is a hop-by-hop/,
    ],
    [
      { request: { add: { 'Transfer-Encoding': ['chunked'] } } },
      /^config\.request\.add\.Transfer-Encoding: /,
    ],
    [
      { response: { remove: ['x-a', 'Content-Length'] } },
      /^config\.response\.remove\[1\]: content-length is a/,
    ],
    [{ request: { remove: ['host'] } }, /^config\.request\.remove\[0\]: host is a/],
    [{ request_id: { header: 'TE' } }, /^config\.request_id\.header: te is a/],
    // The one rule of src/http/fields.ts (isManagedName), which FieldEditList applies at run time too.
    [{ response: { set: { Trailer: 'x' } } }, /^config\.response\.set\.Trailer: trailer is a hop-by-hop/],
    [{ request: { remove: ['HTTP2-Settings'] } }, /^config\.request\.remove\[0\]: http2-settings is a/],
    [{ request: { add: { upgrade: 'h2c' } } }, /^config\.request\.add\.upgrade: upgrade is a/],
    [{ request: { set: { 'Keep-Alive': '1' } } }, /^config\.request\.set\.Keep-Alive: keep-alive is a/],
    [{ response: { remove: ['proxy-connection'] } }, /^config\.response\.remove\[0\]: proxy-connection is a/],
    [
      { request: { add: { 'x-a': ['ok', 'bad ${nope}'] } } },
      /^config\.request\.add\.x-a\[1\]: unknown variable \$\{nope\}/,
    ],
    [{ response: { set: { 'x-a': '${http-x}' } } }, /^config\.response\.set\.x-a: unknown variable/],
    [
      { rewrite: { regex: '^/(unclosed', replacement: '/x' } },
      /^config\.rewrite\.regex: invalid regular expression/,
    ],
  ];
  for (const [config, message] of factoryCases) {
    test(`factory refuses ${JSON.stringify(config)}`, () => {
      assert.throws(
        () => headersFactory.create(config, ENV),
        (e: Error) => message.test(e.message),
      );
    });
  }

  test('buildChains names the entry: routes[0].middlewares[0].config.request.set.x-user', async () => {
    const config = parseConfig(configWith({ request: { set: { 'x-user': '${foo}' } } }));
    await assert.rejects(
      buildChains(config, { filters: new FilterRegistry(BUILT_IN_FILTERS) }),
      (e: Error) => {
        assert.match(
          e.message,
          /^routes\[0\]\.middlewares\[0\]\.config\.request\.set\.x-user: unknown variable \$\{foo\}/,
        );
        return true;
      },
    );
  });

  test('buildChains builds a valid headers entry from the registry', async () => {
    const config = parseConfig(configWith({ request_id: {}, rewrite: { prefix: '/r', replacement: '/' } }));
    const [chain] = await buildChains(config, { filters: new FilterRegistry(BUILT_IN_FILTERS) });
    assert.ok(chain?.filters[0] instanceof HeadersFilter);
    assert.equal(chain.onRequest?.length, 1);
    assert.equal(chain.onResponse, null);
  });

  test('a filter without request-side work has no onRequest phase (null in the chain)', async () => {
    const config = parseConfig(configWith({ request: { remove: ['x-a'] } }));
    const [chain] = await buildChains(config, { filters: new FilterRegistry(BUILT_IN_FILTERS) });
    assert.equal(chain?.onRequest, null);
    assert.equal(chain?.onUpstreamRequest?.length, 1);
  });

  const schemaCases: [config: unknown, message: string][] = [
    [
      { request: { set: { 'bad name': 'x' } } },
      'routes[0].middlewares[0].config.request.set: expected a header name such as x-real-ip, found "bad name"',
    ],
    [
      { request: { set: { 'x-a': 'a\nb' } } },
      'routes[0].middlewares[0].config.request.set["x-a"]: expected a header value',
    ],
    [
      { response: { add: { 'x-a': [1] } } },
      'routes[0].middlewares[0].config.response.add["x-a"][0]: expected',
    ],
    [{ request: { delete: ['x'] } }, 'routes[0].middlewares[0].config.request.delete: unknown key'],
    [
      { rewrite: { prefix: 'old', replacement: '/new' } },
      'routes[0].middlewares[0].config.rewrite: expected a rewrite',
    ],
    [
      { rewrite: { regex: '^/a', replacement: '/b?c' } },
      'routes[0].middlewares[0].config.rewrite: expected a rewrite',
    ],
    [
      { request_id: { trust_incoming: 'yes' } },
      'routes[0].middlewares[0].config.request_id.trust_incoming: expected true or false',
    ],
  ];
  for (const [config, message] of schemaCases) {
    test(`schema refuses ${JSON.stringify(config)}`, () => {
      assert.throws(
        () => parseConfig(configWith(config)),
        (e: Error) => {
          assert.ok(e.message.includes(message), e.message);
          return true;
        },
      );
    });
  }
});
