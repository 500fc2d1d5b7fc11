/**
 * The serving process must not load the config schema machinery (TypeBox, ajv): `zproxy run` validates
 * in a short-lived child process precisely so that those modules never cost the server memory
 * (docs/performance.md, "Where the memory goes"). A value import of schema.ts from the serving path
 * would silently undo that, so the module graph is checked here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

test('the modules `zproxy run` serves with do not load TypeBox, ajv or the schema', () => {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
    await import('./src/cli/commands.ts');
    await import('./src/server/run.ts');
    await import('./src/server/proxy-server.ts');
    console.log(JSON.stringify(seen));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
  });
  const urls = JSON.parse(out) as string[];
  assert.ok(
    urls.some((u) => u.endsWith('/src/runtime/compile.ts')),
    'the graph includes the runtime compiler',
  );
  const heavy = urls.filter((u) =>
    /@sinclair\/typebox|\/ajv|\/src\/config\/(schema|validate|semantic|load)\.ts$/.test(u),
  );
  assert.deepEqual(heavy, []);
});

test('the serving modules load a built-in filter (and its libraries) only when a config uses it', async () => {
  const script = `
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); seen.push(r.url); return r; } });
    await import('./src/server/run.ts');
    const { FilterRegistry } = await import('./src/pipeline/registry.ts');
    const { BUILT_IN_FILTERS } = await import('./src/filters/index.ts');
    const registry = new FilterRegistry(BUILT_IN_FILTERS);
    const before = seen.length;
    await registry.create({ type: 'cors', config: { allowed_origins: ['*'] } }, { index: 0, route: '/' });
    console.log(JSON.stringify({ serving: seen.slice(0, before), cors: seen.slice(before) }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
  });
  const { serving, cors } = JSON.parse(out) as { serving: string[]; cors: string[] };
  const filters = serving.filter((u) =>
    /\/src\/filters\/(auth|cache|cors|headers)|rate-limit\/filter\.ts|\/(jose|ioredis|bcryptjs|http-cache-semantics)\//.test(
      u,
    ),
  );
  assert.deepEqual(filters, [], 'no filter module before a config asks for one');
  assert.ok(
    cors.some((u) => u.endsWith('/src/filters/cors.ts')),
    'cors loaded when used',
  );
  assert.ok(!cors.some((u) => /\/(jose|ioredis)\//.test(u)), 'and nothing of auth or the Redis stores');
});

/**
 * What a worker of a plain HTTP/1.1 configuration (no TLS, no HTTP/2 upstream, no health check, no admin)
 * loads of Node's own modules once it served a request: not node:tls, node:http2, node:http(s), zlib or
 * undici. They cost RSS in every worker (docs/architecture.md, "Workers": about 10 MiB together), and one
 * static `import ... from 'node:http'` in the serving path loads them all again (an ESM import of a
 * built-in reads its lazily loaded properties: node:http's load undici, node:http2 and zlib). The worker
 * runs in a child process, as `zproxy run` does, and serves one request from a raw origin.
 */
test('a worker serving plain HTTP/1.1 loads neither TLS, HTTP/2, the HTTP client modules nor zlib', () => {
  const script = `
    import net from 'node:net';
    import { mkdtempSync, writeFileSync } from 'node:fs';
    import { tmpdir } from 'node:os';
    import { join } from 'node:path';
    const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server.address().port)));
    const origin = net.createServer((socket) => {
      socket.on('data', () => socket.write('HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok'));
    });
    const originPort = await listen(origin);
    const probe = net.createServer();
    const port = await listen(probe);
    await new Promise((resolve) => probe.close(resolve));
    const file = join(mkdtempSync(join(tmpdir(), 'zproxy-imports-')), 'plain.json');
    writeFileSync(file, JSON.stringify({
      host: '127.0.0.1', port, thread_count: 1, access_log: { enabled: false },
      routes: [{ path: '/', upstream: 'http://127.0.0.1:' + originPort }],
    }));
    const { main } = await import('./src/cli/cli.ts');
    const code = await main(['run', file, '--log-level', 'silent']);
    const answer = await new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write('GET / HTTP/1.1\\r\\nhost: a\\r\\nconnection: close\\r\\n\\r\\n'));
      let text = '';
      socket.setEncoding('latin1');
      socket.on('data', (d) => { text += d; });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
    console.log(JSON.stringify({ code, answer, builtins }));
    process.exit(0);
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const { code, answer, builtins } = JSON.parse(out) as { code: number; answer: string; builtins: string[] };
  assert.equal(code, 0);
  assert.match(answer, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nok$/, 'the request was proxied');
  assert.ok(builtins.includes('net'), 'the list is the process one');
  const heavy = builtins.filter((m) =>
    /^(tls|_tls_wrap|internal\/tls\/.*|http2|internal\/http2\/.*|http|https|_http_.*|zlib|internal\/deps\/undici\/.*)$/.test(
      m,
    ),
  );
  assert.deepEqual(heavy, []);
});
