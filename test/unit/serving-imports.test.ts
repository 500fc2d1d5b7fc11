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
