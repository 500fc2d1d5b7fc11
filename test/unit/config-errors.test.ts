import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { ConfigError, checkConfigFile, loadConfigFile, parseConfig } from '../../src/config/load.ts';
import { closestName, editDistance, maxHintDistance } from '../../src/config/suggest.ts';
import { ZpError } from '../../src/errors.ts';

const INVALID_DIR = fileURLToPath(new URL('../fixtures/configs/invalid/', import.meta.url));

/** Each invalid fixture (`NAME.json`, or `NAME.badjson` for broken JSON) and its `NAME.expected.txt`. */
const fixtures = readdirSync(INVALID_DIR)
  .filter((name) => name.endsWith('.json') || name.endsWith('.badjson'))
  .sort()
  .map((name) => {
    const expectedFile = `${INVALID_DIR}${name.replace(/\.(json|badjson)$/, '')}.expected.txt`;
    const expected = readFileSync(expectedFile, 'utf8').trimEnd().split('\n');
    return { name, path: `${INVALID_DIR}${name}`, expected };
  });

const ROUTE = { path: '/', upstream: 'http://localhost:8080' };

function issuesOf(json: unknown): string[] {
  try {
    parseConfig(json);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.issues.map((issue) => issue.message);
  }
  assert.fail('the config was accepted');
}

describe('invalid fixtures report exactly their expected issues', () => {
  test('there are enough fixtures', () => {
    assert.ok(fixtures.length >= 15, `${fixtures.length} fixtures`);
  });

  for (const fixture of fixtures) {
    test(fixture.name, () => {
      assert.throws(
        () => loadConfigFile(fixture.path),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.ok(error instanceof ZpError);
          assert.equal(error.code, 'ZP_ERR_CONFIG');
          assert.equal(error.source, fixture.path);
          assert.deepStrictEqual(
            error.issues.map((issue) => issue.message),
            fixture.expected,
          );
          return true;
        },
      );
      const checked = checkConfigFile(fixture.path);
      assert.equal(checked.config, null);
      assert.deepStrictEqual(
        checked.issues.map((issue) => issue.message),
        fixture.expected,
      );
    });
  }
});

describe('issue shape', () => {
  test('path, expected, found and message agree', () => {
    const [issue] = parseConfigIssues({ port: 70000, routes: [ROUTE] });
    assert.deepStrictEqual(issue, {
      path: 'port',
      expected: 'an integer from 0 to 65535',
      found: '70000',
      message: 'port: expected an integer from 0 to 65535, found 70000',
    });
  });

  test('a missing key is found as "nothing"', () => {
    const [issue] = parseConfigIssues({ routes: [{ path: '/' }] });
    assert.equal(issue!.path, 'routes[0].upstream');
    assert.equal(issue!.found, 'nothing');
  });

  test('the root is named (root)', () => {
    assert.deepStrictEqual(issuesOf('routes'), [
      '(root): expected an object with at least "routes", found "routes"',
    ]);
    assert.deepStrictEqual(issuesOf(null), ['(root): expected an object with at least "routes", found null']);
  });

  test('long values are truncated', () => {
    const [issue] = parseConfigIssues({ routes: [{ ...ROUTE, path: `x${'/a'.repeat(100)}` }] });
    assert.ok(issue!.found.length <= 60, issue!.found);
    assert.ok(issue!.found.endsWith('...'));
  });

  test('keys that are not identifiers are quoted in paths', () => {
    assert.deepStrictEqual(issuesOf({ routes: [ROUTE], 'my key': 1 }), [
      '["my key"]: unknown key (allowed keys: $schema, host, port, listeners, thread_count, worker_mode, backlog, max_connections, connection_timeout_ms, request_body_timeout_ms, protocols, tls, http2, websocket, routes, middlewares, limits, upstream_defaults, preserve_host, trusted_proxies, access_log, tracing, shutdown_grace_ms, shutdown_delay_ms, admin, accept_risks)',
    ]);
  });

  test('the error message names the source and lists every issue', () => {
    assert.throws(
      () => parseConfig({ port: -1, backlog: 0, routes: [ROUTE] }, 'my.json'),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(
          error.message,
          [
            'invalid configuration in my.json (2 issues)',
            '  port: expected an integer from 0 to 65535, found -1',
            '  backlog: expected an integer >= 1, found 0',
          ].join('\n'),
        );
        assert.ok(Object.isFrozen(error.issues));
        return true;
      },
    );
  });

  test('a missing file is one issue', () => {
    const { config, issues } = checkConfigFile(`${INVALID_DIR}does-not-exist.json`);
    assert.equal(config, null);
    assert.deepStrictEqual(
      issues.map((issue) => issue.message),
      ['(root): expected a readable JSON file, found no such file'],
    );
  });
});

function parseConfigIssues(json: unknown) {
  try {
    parseConfig(json);
  } catch (error) {
    if (error instanceof ConfigError) return error.issues;
    throw error;
  }
  return assert.fail('the config was accepted');
}

const TOP_LEVEL_KEYS =
  '$schema, host, port, listeners, thread_count, worker_mode, backlog, max_connections, connection_timeout_ms, request_body_timeout_ms, protocols, tls, http2, websocket, routes, middlewares, limits, upstream_defaults, preserve_host, trusted_proxies, access_log, tracing, shutdown_grace_ms, shutdown_delay_ms, admin, accept_risks';
const ROUTE_KEYS =
  'path, upstream, methods, host, strip_prefix, middlewares, inherit_middlewares, upstream_tls, retry, load_balancing, circuit_breaking, request_buffering, health_check, outlier_detection, websocket_idle_timeout_ms';
const MIDDLEWARE_TYPES = 'auth, rate_limit, cors, cache, headers, module';

describe('did-you-mean hints', () => {
  test('an unknown top-level key', () => {
    assert.deepStrictEqual(issuesOf({ routes: [ROUTE], trusted_proxy: ['10.0.0.1'] }), [
      `trusted_proxy: unknown key (allowed keys: ${TOP_LEVEL_KEYS}); did you mean "trusted_proxies"?`,
    ]);
  });

  test('an unknown key inside a route', () => {
    assert.deepStrictEqual(issuesOf({ routes: [{ ...ROUTE, strip_prefx: true }] }), [
      `routes[0].strip_prefx: unknown key (allowed keys: ${ROUTE_KEYS}); did you mean "strip_prefix"?`,
    ]);
  });

  test('an unknown middleware type', () => {
    assert.deepStrictEqual(
      issuesOf({ routes: [ROUTE], middlewares: [{ type: 'rate_limt', config: { requests_per_minute: 1 } }] }),
      [
        `middlewares[0].type: expected one of ${MIDDLEWARE_TYPES}, found "rate_limt"; did you mean "rate_limit"?`,
      ],
    );
  });

  test('an unknown enum value', () => {
    assert.deepStrictEqual(issuesOf({ protocols: ['http1', 'htp2'], routes: [ROUTE] }), [
      'protocols[1]: expected one of http1, http2, websocket, found "htp2"; did you mean "http2"?',
    ]);
  });

  test('an enum value in the wrong case', () => {
    assert.deepStrictEqual(
      issuesOf({
        routes: [ROUTE],
        middlewares: [{ type: 'cache', config: { ttl_seconds: 1, store: 'Redis' } }],
      }),
      ['middlewares[0].config.store: expected "memory" or "redis", found "Redis"; did you mean "redis"?'],
    );
  });

  test('a far-off key gets no hint', () => {
    assert.deepStrictEqual(issuesOf({ routes: [ROUTE], compression: true }), [
      `compression: unknown key (allowed keys: ${TOP_LEVEL_KEYS})`,
    ]);
  });

  test('a far-off middleware type gets no hint', () => {
    assert.deepStrictEqual(issuesOf({ routes: [ROUTE], middlewares: [{ type: 'gzip' }] }), [
      `middlewares[0].type: expected one of ${MIDDLEWARE_TYPES}, found "gzip"`,
    ]);
  });

  test('two equally close names give no hint', () => {
    assert.deepStrictEqual(issuesOf({ tls: { min_version: 'TLSv1.4' }, routes: [ROUTE] }), [
      'tls.min_version: expected one of TLSv1.2, TLSv1.3, found "TLSv1.4"',
    ]);
    assert.deepStrictEqual(issuesOf({ protocols: ['http1', 'http3'], routes: [ROUTE] }), [
      'protocols[1]: expected one of http1, http2, websocket, found "http3"',
    ]);
  });

  test('the issue carries the suggestion on its own', () => {
    const [issue] = parseConfigIssues({ routes: [ROUTE], middlewares: [{ type: 'corss', config: {} }] });
    assert.deepStrictEqual(issue, {
      path: 'middlewares[0].type',
      expected: `one of ${MIDDLEWARE_TYPES}`,
      found: '"corss"',
      message: `middlewares[0].type: expected one of ${MIDDLEWARE_TYPES}, found "corss"; did you mean "cors"?`,
      suggestion: 'cors',
    });
  });

  test('edit distance counts an adjacent swap as one edit', () => {
    assert.equal(editDistance('cahce', 'cache'), 1);
    assert.equal(editDistance('prot', 'port'), 1);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('abc', ''), 3);
    assert.equal(editDistance('same', 'same'), 0);
    // Optimal string alignment: a swapped pair is not edited again.
    assert.equal(editDistance('ca', 'abc'), 3);
  });

  test('how far a hint may be', () => {
    assert.deepStrictEqual(
      ['a', 'ab', 'abc', 'abcdef', 'connection_timeout', 'max_connections_per_targt'].map(maxHintDistance),
      [0, 1, 2, 2, 6, 8],
    );
    assert.equal(
      closestName('connection_timeout', ['connection_timeout_ms', 'shutdown_grace_ms']),
      'connection_timeout_ms',
    );
    assert.equal(closestName('xy', ['ab', 'cd']), null);
    assert.equal(closestName('HTTP2', ['http1', 'http2']), 'http2');
  });
});

describe('anyOf locations give one readable issue', () => {
  test('upstream of the wrong type', () => {
    assert.deepStrictEqual(issuesOf({ routes: [{ path: '/', upstream: { url: 'http://a' } }] }), [
      'routes[0].upstream: expected an http://, https://, h2c:// or h2:// URL without path, query or user info, such as http://127.0.0.1:8080, or a non-empty list of targets, found {"url":"http://a"}',
    ]);
  });

  test('the same schema at several routes keeps each route apart', () => {
    assert.deepStrictEqual(
      issuesOf({
        routes: [
          { path: '/a', upstream: 'ftp://a' },
          { path: '/b', upstream: [] },
          { path: '/c', upstream: ['http://c', 'http://c/x'] },
        ],
      }),
      [
        'routes[0].upstream: expected an http://, https://, h2c:// or h2:// URL without path, query or user info, such as http://127.0.0.1:8080, found "ftp://a"',
        'routes[1].upstream: expected a non-empty list of targets such as ["http://127.0.0.1:8080", {"url": "http://127.0.0.1:8081", "weight": 2}], found []',
        'routes[2].upstream[1]: expected an http://, https://, h2c:// or h2:// URL without path, query or user info, such as http://127.0.0.1:8080, found "http://c/x"',
      ],
    );
  });

  test('tls file of the wrong type', () => {
    assert.deepStrictEqual(issuesOf({ tls: { cert_file: 5 }, routes: [ROUTE] }), [
      'tls.cert_file: expected a file path or null, found 5',
    ]);
  });
});

describe('route path rules', () => {
  const cases: [path: string, accepted: boolean][] = [
    ['/', true],
    ['/api', true],
    ['/api/', true],
    ['/api/users/:id', true],
    ['/api/:a/:b_2/*', true],
    ['/files/*', true],
    ['/*', true],
    ['/%41bc', true],
    ['/a:b@c', true],
    ['api', false],
    ['', false],
    ['/a/*/b', false],
    ['/a*', false],
    ['/:1x', false],
    ['/:', false],
    ['/:a/:a', false],
    ['/:__proto__', false],
    ['/a?b', false],
    ['/a#b', false],
    ['/a//b', false],
    ['//', false],
    ['/a/../b', false],
    ['/a/%2E', false],
    ['/a b', false],
    ['/a%zz', false],
  ];
  for (const [path, accepted] of cases) {
    test(`${JSON.stringify(path)} is ${accepted ? 'accepted' : 'rejected'}`, () => {
      const json = { routes: [{ path, upstream: 'http://localhost:8080' }] };
      if (accepted) assert.equal(parseConfig(json).routes[0]!.path, path);
      else assert.match(issuesOf(json)[0]!, /^routes\[0\]\.path: expected a path/);
    });
  }

  test('trailing slashes and parameter names do not make a route different', () => {
    assert.deepStrictEqual(
      issuesOf({
        routes: [
          { path: '/a', upstream: 'http://x' },
          { path: '/a/', upstream: 'http://x' },
        ],
      }),
      [
        'routes[1].path: expected a route that does not repeat routes[0] (same host and path, methods overlap: any), found "/a/"',
      ],
    );
  });

  test('routes on different hosts or with disjoint methods do not clash', () => {
    const config = parseConfig({
      routes: [
        { path: '/a', upstream: 'http://x', methods: ['GET'] },
        { path: '/a', upstream: 'http://x', methods: ['POST'] },
        { path: '/a', upstream: 'http://x', host: 'a.example.com' },
        { path: '/a', upstream: 'http://x', host: '*.example.com' },
      ],
    });
    assert.equal(config.routes.length, 4);
  });

  test('hosts are compared case-insensitively', () => {
    assert.equal(
      issuesOf({
        routes: [
          { path: '/', upstream: 'http://x', host: 'A.test' },
          { path: '/', upstream: 'http://x', host: 'a.TEST' },
        ],
      }).length,
      1,
    );
  });
});

describe('other semantic rules', () => {
  test('trusted_proxies accepts addresses and CIDR ranges of both families', () => {
    const config = parseConfig({
      trusted_proxies: ['127.0.0.1', '10.0.0.0/8', '0.0.0.0/0', '::1', '::/0', 'fd00::/128'],
      routes: [ROUTE],
    });
    assert.equal(config.trusted_proxies.length, 6);
    assert.deepStrictEqual(
      issuesOf({ trusted_proxies: ['1.2.3.4/', '1.2.3.4/8/8', 'fd00::/1000'], routes: [ROUTE] }).map(
        (message) => message.split(':')[0],
      ),
      ['trusted_proxies[0]', 'trusted_proxies[1]', 'trusted_proxies[2]'],
    );
  });

  test('a bad IPv6 route host', () => {
    assert.deepStrictEqual(
      issuesOf({ routes: [{ ...ROUTE, host: '[zz::1]' }] }).map((message) => message.split(':')[0]),
      ['routes[0].host'],
    );
  });

  test('tls disabled does not need files', () => {
    assert.equal(parseConfig({ tls: { enabled: false }, routes: [ROUTE] }).tls.cert_file, null);
  });

  test('issues come in document order, schema and semantic mixed', () => {
    const messages = issuesOf({
      routes: [{ path: '/a/*/b', upstream: 'http://a/x', methods: ['get'] }],
      tls: { enabled: true },
      port: 'x',
    });
    assert.deepStrictEqual(
      messages.map((message) => message.split(': ')[0]),
      [
        'routes[0].path',
        'routes[0].upstream',
        'routes[0].methods[0]',
        'tls.cert_file',
        'tls.key_file',
        'port',
      ],
    );
  });
});

describe('robustness', () => {
  test('any JSON value either loads or throws a ConfigError', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          parseConfig(value);
        } catch (error) {
          assert.ok(error instanceof ConfigError);
          assert.ok(error.issues.length > 0);
        }
      }),
      { numRuns: 500 },
    );
  });

  test('random edits of a valid config either load or throw a ConfigError', () => {
    const field = fc.constantFrom(
      'host',
      'port',
      'listeners',
      'thread_count',
      'protocols',
      'tls',
      'routes',
      'middlewares',
      'limits',
      'trusted_proxies',
      'nope',
    );
    fc.assert(
      fc.property(field, fc.jsonValue(), (key, value) => {
        const json: Record<string, unknown> = { routes: [ROUTE], [key]: value };
        try {
          const config = parseConfig(json);
          assert.ok(Object.isFrozen(config));
        } catch (error) {
          assert.ok(error instanceof ConfigError);
          for (const issue of error.issues) {
            assert.ok(issue.message.startsWith(`${issue.path}: `), issue.message);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('route shapes that the router treats as the same', () => {
  const pairs: [string, string][] = [
    ['/x', '/x/*'],
    ['/x/', '/x'],
    ['/u/:a', '/u/:b/'],
    ['/%7Euser', '/~user'],
  ];
  for (const [a, b] of pairs) {
    test(`${a} and ${b}`, () => {
      const messages = issuesOf({
        routes: [
          { path: a, upstream: 'http://x' },
          { path: b, upstream: 'http://x' },
        ],
      });
      assert.equal(messages.length, 1);
      assert.match(messages[0]!, /^routes\[1\]\.path: expected a route that does not repeat routes\[0\]/);
    });
  }

  test('hosts that differ only by case or a trailing dot', () => {
    const messages = issuesOf({
      routes: [
        { path: '/', upstream: 'http://x', host: 'A.test.' },
        { path: '/', upstream: 'http://x', host: 'a.TEST' },
      ],
    });
    assert.equal(messages.length, 1);
  });

  test('escapes of reserved characters stay distinct', () => {
    const config = parseConfig({
      routes: [
        { path: '/a%2Fb', upstream: 'http://x' },
        { path: '/a%2fb', upstream: 'http://x' },
      ],
    });
    assert.equal(config.routes.length, 2);
  });
});
