/**
 * User filters: the shipped example (examples/filters/tenant.ts, TypeScript importing its types from the
 * `zproxy` package) loaded through a config by path, relative to the config file, changing the request
 * the upstream sees over HTTP/1.1 and HTTP/2; and `zproxy check` failing with a clear message, naming
 * the entry, for a missing module, a syntax error, a bad default export and a factory that throws.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { parseConfig } from '../../src/config/load.ts';
import { ProxyServer } from '../../src/server/proxy-server.ts';
import { h2Request } from '../helpers/h2-client.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'src/cli/main.ts');

describe('the example tenant filter through zproxy', () => {
  let upstream: HttpUpstream;
  let server: ProxyServer;
  let port = 0;

  before(async () => {
    upstream = await startHttpUpstream();
    const config = parseConfig({
      host: '127.0.0.1',
      port: 0,
      protocols: ['http1', 'http2'],
      routes: [{ path: '/', upstream: upstream.url }],
      middlewares: [
        { type: 'module', path: './filters/tenant.ts', config: { header: 'x-tenant', required: true } },
      ],
    });
    // Relative to the config file's directory, as `zproxy run examples/...json` would resolve it.
    server = new ProxyServer(config, { logger: pino({ level: 'silent' }), baseDir: join(ROOT, 'examples') });
    port = (await server.start())[0]!.port;
  });

  after(async () => {
    await server.stop(1000);
    await upstream.close();
  });

  test('HTTP/1.1: the tenant header reaches the upstream as x-tenant-id; a forged one is replaced', async () => {
    const res = await sendRequest(port, '/a', { headers: { 'x-tenant': 'Acme', 'x-tenant-id': 'forged' } });
    assert.equal(res.status, 200);
    assert.equal(upstream.requests.at(-1)!.headers['x-tenant-id'], 'acme');
  });

  test('HTTP/2: the tenant from the first label of :authority', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const res = await h2Request(session, { ':path': '/b', ':authority': `globex.example.com:${port}` });
      assert.equal(res.status, 200);
      assert.equal(upstream.requests.at(-1)!.headers['x-tenant-id'], 'globex');
    } finally {
      session.close();
    }
  });

  test('without a tenant: 400 from the filter, nothing forwarded', async () => {
    const seen = upstream.requests.length;
    const res = await sendRequest(port, '/c', { headers: { host: 'localhost', 'x-tenant': 'not valid!' } });
    assert.equal(res.status, 400);
    assert.equal(JSON.parse(res.text).error.code, 'TENANT_REQUIRED');
    assert.equal(upstream.requests.length, seen);
  });
});

test("a filter's close() runs once when zproxy stops (the runtime is disposed), after its last request", async () => {
  const { closingJournal } = await import('../fixtures/filters/closing.ts');
  const upstream = await startHttpUpstream();
  const server = new ProxyServer(
    parseConfig({
      host: '127.0.0.1',
      port: 0,
      routes: [
        {
          path: '/',
          upstream: upstream.url,
          middlewares: [
            { type: 'module', path: join(ROOT, 'test/fixtures/filters/closing.ts'), config: { name: 'a' } },
          ],
        },
      ],
    }),
    { logger: pino({ level: 'silent' }) },
  );
  const [address] = await server.start();
  try {
    for (let i = 0; i < 3; i++) assert.equal((await sendRequest(address!.port, `/x${i}`)).status, 200);
    assert.deepEqual(closingJournal(), [], 'not closed while serving');
  } finally {
    await server.stop(500);
    await upstream.close();
  }
  assert.deepEqual(closingJournal(), ['closed a after 3']);
});

describe('zproxy check builds the filters', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-user-filter-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function check(module: string, source: string | null): { status: number | null; stderr: string } {
    if (source !== null) writeFileSync(join(dir, module), source);
    const config = join(dir, 'zproxy.json');
    writeFileSync(
      config,
      JSON.stringify({
        routes: [
          {
            path: '/',
            upstream: 'http://127.0.0.1:9',
            middlewares: [{ type: 'module', path: `./${module}` }],
          },
        ],
      }),
    );
    const result = spawnSync(process.execPath, [CLI, 'check', config], { encoding: 'utf8', timeout: 30_000 });
    return { status: result.status, stderr: result.stderr };
  }

  const cases: [string, string, string | null, RegExp][] = [
    ['a missing module', 'missing.ts', null, /missing\.ts does not exist/],
    ['a syntax error', 'syntax.ts', 'export default {\n  create( {\n', /syntax\.ts cannot be loaded: /],
    [
      'a default export that is no factory',
      'number.ts',
      'export default 42;\n',
      /its default export must be/,
    ],
    [
      'a factory that throws',
      'throws.ts',
      "export default { create() { throw new Error('tenant list unreadable'); } };\n",
      /creating the filter failed: tenant list unreadable/,
    ],
    ['a filter without phases', 'empty.ts', 'export default () => ({});\n', /the filter has no phase method/],
  ];
  for (const [name, file, source, message] of cases) {
    test(`${name}: exit 1, the entry's path and the reason`, () => {
      const result = check(file, source);
      assert.equal(result.status, 1, result.stderr);
      assert.match(result.stderr, /^routes\[0\]\.middlewares\[0\] \(module\): user filter module /);
      assert.match(result.stderr, message);
    });
  }

  test('a working module: exit 0', () => {
    const result = check(
      'ok.ts',
      "import type { Filter } from 'zproxy';\nconst f: Filter = { onRequest() { return undefined; } };\nexport default () => f;\n",
    );
    assert.equal(result.status, 0, result.stderr);
  });
});
