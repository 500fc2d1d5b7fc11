import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ConfigError,
  type ConfigWarning,
  checkConfigFile,
  loadConfigFileWithWarnings,
  parseConfig,
  parseConfigWithWarnings,
} from '../../src/config/load.ts';
import { isLoopbackHost, isOpenOrigin, tooWideScope, WARNING_CODES } from '../../src/config/warnings.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

const ROUTE = { path: '/', upstream: 'http://127.0.0.1:8080' };

const CORS_MESSAGE = (origins: string) =>
  `allow_credentials is true and allowed_origins admits any web site (${origins}), so any page a user visits can send requests with the user's cookies and read the answers; list only trusted origins, or set allow_credentials to false`;
const UNVERIFIED_MESSAGE =
  'the certificates of https:// and h2:// upstreams are not verified, so anyone able to intercept those connections can pose as the upstream and read or change the traffic; remove verify: false (give ca_file for a private CA)';
const TRUSTED_MESSAGE = (entry: string, scope: string) =>
  `"${entry}" covers ${scope}, so clients there can forge X-Forwarded-For and Forwarded and pass for any address in rate limits and upstream headers (logs show the TCP peer); list only the proxies in front of zproxy`;
const BASIC_MESSAGE =
  'no listener accepts TLS, so Basic auth user names and passwords cross the network in clear text; enable tls, or accept this risk only when a TLS-terminating proxy sits in front of zproxy';
const CACHE_MESSAGE =
  "shared is false, so responses meant for one user (Cache-Control: private, answers to requests with Authorization) are stored and served to other clients; remove shared: false, since zproxy's cache serves every client";

function warningsOf(json: Record<string, unknown>): ConfigWarning[] {
  // Keys keep the order they have in `json` (warnings come in document order).
  return [...parseConfigWithWarnings({ ...json, routes: json.routes ?? [ROUTE] }).warnings];
}

const cors = (config: Record<string, unknown>) => ({ type: 'cors', config });
const BASIC = { type: 'auth', config: { kind: 'basic', users: { ann: '$2b$10$abcdefghijklmnopqrstuv' } } };

describe('ZP_WARN_CORS_CREDENTIALS_WILDCARD', () => {
  test('"*" with credentials, at the top level', () => {
    assert.deepStrictEqual(
      warningsOf({ middlewares: [cors({ allowed_origins: ['*'], allow_credentials: true })] }),
      [
        {
          code: 'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
          path: 'middlewares[0].config.allowed_origins',
          message: CORS_MESSAGE('"*"'),
        },
      ],
    );
  });

  test('"null" and host-less patterns with credentials, on a route', () => {
    const origins = ['https://app.example.com', 'null', 'https://*', 'https://*.com:8443'];
    assert.deepStrictEqual(
      warningsOf({
        routes: [{ ...ROUTE, middlewares: [cors({ allowed_origins: origins, allow_credentials: true })] }],
      }),
      [
        {
          code: 'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
          path: 'routes[0].middlewares[0].config.allowed_origins',
          message: CORS_MESSAGE('"null", "https://*", "https://*.com:8443"'),
        },
      ],
    );
  });

  test('no warning for the safe variants', () => {
    for (const config of [
      { allowed_origins: ['*'] },
      { allowed_origins: ['*'], allow_credentials: false },
      { allowed_origins: ['https://app.example.com', 'https://*.example.com'], allow_credentials: true },
    ]) {
      assert.deepStrictEqual(warningsOf({ middlewares: [cors(config)] }), [], JSON.stringify(config));
    }
  });

  test('which origins admit any web site', () => {
    const open = [
      '*',
      'null',
      'NULL',
      'https://*',
      'http://*.*',
      'https://*.com',
      'https://a*.com',
      'https://*:443',
    ];
    const closed = [
      'https://example.com',
      'https://*.example.com',
      'https://app-*.example.com:8443',
      'http://[::1]:8080',
    ];
    for (const origin of open) assert.equal(isOpenOrigin(origin), true, origin);
    for (const origin of closed) assert.equal(isOpenOrigin(origin), false, origin);
  });
});

describe('ZP_WARN_UPSTREAM_TLS_UNVERIFIED', () => {
  test('verify false on a route with an https:// upstream', () => {
    assert.deepStrictEqual(
      warningsOf({
        routes: [{ path: '/', upstream: ['http://a', 'https://b'], upstream_tls: { verify: false } }],
      }),
      [
        {
          code: 'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
          path: 'routes[0].upstream_tls.verify',
          message: UNVERIFIED_MESSAGE,
        },
      ],
    );
  });

  test('verify false in upstream_defaults, used by an h2:// route', () => {
    assert.deepStrictEqual(
      warningsOf({
        routes: [ROUTE, { path: '/h2', upstream: 'h2://b' }],
        upstream_defaults: { tls: { verify: false } },
      }),
      [
        {
          code: 'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
          path: 'upstream_defaults.tls.verify',
          message: UNVERIFIED_MESSAGE,
        },
      ],
    );
  });

  test('no warning where verify false takes no effect, or verify is on', () => {
    const cases: Record<string, unknown>[] = [
      { routes: [{ path: '/', upstream: 'https://b' }] },
      { routes: [{ path: '/', upstream: 'https://b', upstream_tls: { verify: true } }] },
      // Only plain upstreams: nothing to verify.
      { routes: [{ path: '/', upstream: 'http://b', upstream_tls: { verify: false } }] },
      { routes: [{ path: '/', upstream: 'h2c://b' }], upstream_defaults: { tls: { verify: false } } },
      // The one TLS route turns verification back on.
      {
        routes: [{ path: '/', upstream: 'https://b', upstream_tls: { verify: true } }],
        upstream_defaults: { tls: { verify: false } },
      },
    ];
    for (const json of cases) assert.deepStrictEqual(warningsOf(json), [], JSON.stringify(json));
  });
});

describe('ZP_WARN_TRUSTED_PROXIES_TOO_WIDE', () => {
  test('ranges covering everything or much of it, with their exact messages', () => {
    const entries = ['10.0.0.0/8', '0.0.0.0/0', '::/0', '1.0.0.0/7', '2000::/3', '::ffff:0:0/96'];
    assert.deepStrictEqual(warningsOf({ trusted_proxies: entries }), [
      {
        code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        path: 'trusted_proxies[1]',
        message: TRUSTED_MESSAGE('0.0.0.0/0', 'every IPv4 address'),
      },
      {
        code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        path: 'trusted_proxies[2]',
        message: TRUSTED_MESSAGE('::/0', 'every address'),
      },
      {
        code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        path: 'trusted_proxies[3]',
        message: TRUSTED_MESSAGE('1.0.0.0/7', 'a large part of the IPv4 address space'),
      },
      {
        code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        path: 'trusted_proxies[4]',
        message: TRUSTED_MESSAGE('2000::/3', 'a large part of the IPv6 address space'),
      },
      {
        code: 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        path: 'trusted_proxies[5]',
        message: TRUSTED_MESSAGE('::ffff:0:0/96', 'every IPv4 address'),
      },
    ]);
  });

  test('the rule: IPv4 shorter than /8, IPv6 shorter than /16 outside fc00::/7 and fe80::/10', () => {
    const narrow = [
      '0.0.0.0',
      '192.168.1.10',
      '10.0.0.0/8',
      '8.0.0.0/8',
      '0.0.0.0/8',
      '::1',
      '::',
      '2001:db8::/32',
      '2001::/16',
      'fc00::/7',
      'fd00::/8',
      'fe80::/10',
      '::ffff:10.0.0.0/104',
    ];
    for (const entry of narrow) assert.equal(tooWideScope(entry), null, entry);
    const wide = ['128.0.0.0/1', '10.0.0.0/7', '2001::/15', 'fc00::/6', 'fe80::/9', '::/1', '::ffff:0:0/103'];
    for (const entry of wide) assert.notEqual(tooWideScope(entry), null, entry);
    assert.deepStrictEqual(warningsOf({ trusted_proxies: narrow }), []);
  });
});

describe('ZP_WARN_BASIC_AUTH_WITHOUT_TLS', () => {
  test('basic auth on a public listener without TLS', () => {
    assert.deepStrictEqual(warningsOf({ host: '0.0.0.0', middlewares: [BASIC] }), [
      { code: 'ZP_WARN_BASIC_AUTH_WITHOUT_TLS', path: 'middlewares[0].config.kind', message: BASIC_MESSAGE },
    ]);
    // The default host is 0.0.0.0; a listener that turns TLS off for itself counts as plain.
    assert.deepStrictEqual(
      warningsOf({
        tls: { enabled: true, cert_file: 'a.pem', key_file: 'a.key' },
        listeners: [{ host: '::', port: 80, tls: { enabled: false } }],
        routes: [{ ...ROUTE, middlewares: [BASIC] }],
      }).map((warning) => warning.path),
      ['routes[0].middlewares[0].config.kind'],
    );
  });

  test('no warning with TLS on some listener, on loopback only, or for other kinds', () => {
    const cases: Record<string, unknown>[] = [
      { tls: { enabled: true, cert_file: 'a.pem', key_file: 'a.key' }, middlewares: [BASIC] },
      {
        listeners: [
          { host: '0.0.0.0', port: 80 },
          { host: '0.0.0.0', port: 443, tls: { enabled: true, cert_file: 'a.pem', key_file: 'a.key' } },
        ],
        middlewares: [BASIC],
      },
      { host: '127.0.0.1', middlewares: [BASIC] },
      {
        listeners: [
          { host: 'localhost', port: 1 },
          { host: '::1', port: 2 },
        ],
        middlewares: [BASIC],
      },
      { middlewares: [{ type: 'auth', config: { api_keys: ['k'] } }] },
    ];
    for (const json of cases) assert.deepStrictEqual(warningsOf(json), [], JSON.stringify(json));
  });

  test('which hosts are loopback', () => {
    for (const host of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '[::1]',
      '::ffff:127.0.0.1',
      'localhost',
      'LOCALHOST.',
    ]) {
      assert.equal(isLoopbackHost(host), true, host);
    }
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'proxy.internal', 'localhost.example.com']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });
});

describe('ZP_WARN_CACHE_NOT_SHARED', () => {
  test('a cache with shared false', () => {
    assert.deepStrictEqual(
      warningsOf({ middlewares: [{ type: 'cache', config: { ttl_seconds: 60, shared: false } }] }),
      [{ code: 'ZP_WARN_CACHE_NOT_SHARED', path: 'middlewares[0].config.shared', message: CACHE_MESSAGE }],
    );
  });

  test('no warning for a shared cache', () => {
    for (const config of [{ ttl_seconds: 60 }, { ttl_seconds: 60, shared: true }]) {
      assert.deepStrictEqual(warningsOf({ middlewares: [{ type: 'cache', config }] }), []);
    }
  });
});

describe('warnings together', () => {
  test('every code has a rule that a config above triggers', () => {
    // The describe blocks above are named after the codes; this keeps the list and the tests in step.
    assert.deepStrictEqual([...WARNING_CODES].sort(), [
      'ZP_WARN_BASIC_AUTH_WITHOUT_TLS',
      'ZP_WARN_CACHE_NOT_SHARED',
      'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
      'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
      'ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
    ]);
  });

  test('they come in document order', () => {
    const warnings = warningsOf({
      trusted_proxies: ['0.0.0.0/0'],
      routes: [{ path: '/', upstream: 'https://b', upstream_tls: { verify: false }, middlewares: [BASIC] }],
      middlewares: [
        { type: 'cache', config: { ttl_seconds: 1, shared: false } },
        cors({ allowed_origins: ['*'], allow_credentials: true }),
      ],
    });
    assert.deepStrictEqual(
      warnings.map((warning) => `${warning.path} ${warning.code}`),
      [
        'trusted_proxies[0] ZP_WARN_TRUSTED_PROXIES_TOO_WIDE',
        'routes[0].upstream_tls.verify ZP_WARN_UPSTREAM_TLS_UNVERIFIED',
        'routes[0].middlewares[0].config.kind ZP_WARN_BASIC_AUTH_WITHOUT_TLS',
        'middlewares[0].config.shared ZP_WARN_CACHE_NOT_SHARED',
        'middlewares[1].config.allowed_origins ZP_WARN_CORS_CREDENTIALS_WILDCARD',
      ],
    );
  });

  test('the warnings are frozen', () => {
    const { warnings } = parseConfigWithWarnings({ routes: [ROUTE], trusted_proxies: ['::/0'] });
    assert.ok(Object.isFrozen(warnings));
    assert.ok(Object.isFrozen(warnings[0]));
  });
});

describe('the seed example with middleware', () => {
  test('examples/middleware_proxy.json loads and yields exactly the CORS warning', () => {
    const { config, warnings } = loadConfigFileWithWarnings(root('examples/middleware_proxy.json'));
    assert.equal(config.middlewares[1]!.type, 'cors');
    assert.deepStrictEqual(config.middlewares[1]!.config, {
      allowed_origins: ['*'],
      allow_credentials: true,
    });
    assert.deepStrictEqual(warnings, [
      {
        code: 'ZP_WARN_CORS_CREDENTIALS_WILDCARD',
        path: 'middlewares[1].config.allowed_origins',
        message: CORS_MESSAGE('"*"'),
      },
    ]);
  });

  test('the other examples and the valid fixtures have no warnings', () => {
    const files = [
      ...readdirSync(root('examples'))
        .filter((name) => name.endsWith('.json') && name !== 'middleware_proxy.json')
        .map((name) => `examples/${name}`),
      ...readdirSync(root('test/fixtures/configs/valid')).map(
        (name) => `test/fixtures/configs/valid/${name}`,
      ),
    ];
    for (const file of files) {
      assert.deepStrictEqual(checkConfigFile(root(file)).warnings, [], file);
    }
  });
});

describe('accept_risks', () => {
  const risky = {
    middlewares: [cors({ allowed_origins: ['*'], allow_credentials: true })],
    trusted_proxies: ['0.0.0.0/0'],
  };

  test('a listed code silences its warnings, and only those', () => {
    assert.deepStrictEqual(
      warningsOf(risky).map((warning) => warning.code),
      ['ZP_WARN_CORS_CREDENTIALS_WILDCARD', 'ZP_WARN_TRUSTED_PROXIES_TOO_WIDE'],
    );
    assert.deepStrictEqual(
      warningsOf({ ...risky, accept_risks: ['ZP_WARN_CORS_CREDENTIALS_WILDCARD'] }).map((w) => w.code),
      ['ZP_WARN_TRUSTED_PROXIES_TOO_WIDE'],
    );
    assert.deepStrictEqual(
      warningsOf({
        ...risky,
        accept_risks: ['ZP_WARN_TRUSTED_PROXIES_TOO_WIDE', 'ZP_WARN_CORS_CREDENTIALS_WILDCARD'],
      }),
      [],
    );
  });

  test('a code that triggers nothing is accepted too', () => {
    assert.deepStrictEqual(warningsOf({ accept_risks: ['ZP_WARN_CACHE_NOT_SHARED'] }), []);
  });

  test('an unknown code is an error naming its path and the valid codes', () => {
    assert.throws(
      () =>
        parseConfig({
          routes: [ROUTE],
          accept_risks: ['ZP_WARN_CORS_CREDENTIALS_WILDCARD', 'ZP_WARN_CORS_CREDENTIAL_WILDCARD', 'cors'],
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const codes = WARNING_CODES.join(', ');
        assert.deepStrictEqual(
          error.issues.map((issue) => issue.message),
          [
            `accept_risks[1]: expected one of ${codes}, found "ZP_WARN_CORS_CREDENTIAL_WILDCARD"; did you mean "ZP_WARN_CORS_CREDENTIALS_WILDCARD"?`,
            `accept_risks[2]: expected one of ${codes}, found "cors"`,
          ],
        );
        assert.equal(
          codes,
          'ZP_WARN_CORS_CREDENTIALS_WILDCARD, ZP_WARN_UPSTREAM_TLS_UNVERIFIED, ZP_WARN_TRUSTED_PROXIES_TOO_WIDE, ZP_WARN_BASIC_AUTH_WITHOUT_TLS, ZP_WARN_CACHE_NOT_SHARED',
        );
        return true;
      },
    );
  });

  test('a code listed twice is an error', () => {
    assert.throws(
      () =>
        parseConfig({
          routes: [ROUTE],
          accept_risks: ['ZP_WARN_CACHE_NOT_SHARED', 'ZP_WARN_CACHE_NOT_SHARED'],
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepStrictEqual(
          error.issues.map((issue) => issue.message),
          [
            'accept_risks: expected a list of unique warning codes such as ["ZP_WARN_CORS_CREDENTIALS_WILDCARD"], found ["ZP_WARN_CACHE_NOT_SHARED","ZP_WARN_CACHE_NOT_SHARED"]',
          ],
        );
        return true;
      },
    );
  });

  test('accept_risks does not reach the normalised config', () => {
    const config = parseConfig({ routes: [ROUTE], accept_risks: ['ZP_WARN_CACHE_NOT_SHARED'] });
    assert.equal('accept_risks' in config, false);
  });
});

test('docs/configuration.md documents every warning code', () => {
  const docs = readFileSync(root('docs/configuration.md'), 'utf8');
  const section = docs.slice(docs.indexOf('\n## Warnings'));
  assert.ok(section.length > 20, 'a "Warnings" section');
  for (const code of WARNING_CODES) assert.ok(section.includes(`\`${code}\``), code);
});
