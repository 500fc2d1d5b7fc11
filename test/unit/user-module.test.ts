/**
 * The user filter loader (src/pipeline/user-module.ts) on its own: where a relative path is resolved,
 * what the module's default export may be, what it is handed, and the message for each way a module can
 * be unusable (the CLI and proxy tests in test/integration/user-filter.test.ts cover the rest).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { FilterContext, FilterEnvironment } from '../../src/pipeline/contract.ts';
import { createUserFilter } from '../../src/pipeline/user-module.ts';

const dir = mkdtempSync(join(tmpdir(), 'zproxy-user-module-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let counter = 0;
/** Writes a module under `dir` (a fresh name each time: Node caches modules by URL). */
function write(source: string, ext = 'ts', sub = ''): string {
  const name = `m${counter++}.${ext}`;
  mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, sub, name), source);
  return sub === '' ? `./${name}` : `./${sub}/${name}`;
}

const ENV: FilterEnvironment = { index: 3, route: '/api/*', baseDir: dir };

async function loadError(path: string, env: FilterEnvironment = ENV): Promise<string> {
  try {
    await createUserFilter(path, {}, env);
  } catch (error) {
    assert.ok(error instanceof Error);
    return error.message;
  }
  assert.fail(`${path} was accepted`);
}

describe('loading a user filter module', () => {
  test('a relative path is resolved against env.baseDir, not the working directory', async () => {
    const path = write('export default () => ({ onLog() {} });\n', 'ts', 'filters');
    assert.ok(!path.startsWith('/'));
    const filter = await createUserFilter(path, {}, ENV);
    assert.equal(typeof filter.onLog, 'function');
    // The same relative path against another directory names a file that is not there.
    const message = await loadError(path, { ...ENV, baseDir: tmpdir() });
    assert.equal(message, `user filter module ${join(tmpdir(), path)} does not exist`);
  });

  test('an absolute path is used as it is', async () => {
    const path = join(dir, write('export default () => ({ onLog() {} });\n').slice(2));
    const filter = await createUserFilter(path, {}, { index: 0, route: '/' });
    assert.equal(typeof filter.onLog, 'function');
  });

  test('a factory object gets its config and env, with `this` bound to the factory', async () => {
    const path = write(
      [
        "import type { Filter, FilterEnvironment, FilterFactory } from 'zproxy';",
        'interface Config { readonly label: string }',
        'const factory = {',
        "  type: 'probe',",
        '  prefix: "p:",',
        '  create(config: Config, env: FilterEnvironment): Filter {',
        '    const seen = this.prefix + config.label + ":" + env.index + ":" + env.route;',
        '    return { onRequest(ctx) { ctx.upstreamHeaders.set("x-seen", seen); return undefined; } };',
        '  },',
        '} satisfies FilterFactory<Config> & { prefix: string };',
        'export default factory;',
        '',
      ].join('\n'),
    );
    const filter = await createUserFilter(path, { label: 'L' }, ENV);
    const edits: [string, string][] = [];
    const ctx = { upstreamHeaders: { set: (n: string, v: string) => edits.push([n, v]) } };
    assert.equal(filter.onRequest!(ctx as unknown as FilterContext), undefined);
    assert.deepStrictEqual(edits, [['x-seen', 'p:L:3:/api/*']]);
  });

  test('an async function (and a factory whose create returns a promise)', async () => {
    const fn = write('export default async (config: { n: number }) => ({ onLog() { return config.n; } });\n');
    const filter = await createUserFilter(fn, { n: 7 }, ENV);
    assert.equal((filter.onLog as unknown as () => number)(), 7);
    const obj = write('export default { async create() { return { onResponseEnd() {} }; } };\n', 'js');
    assert.equal(typeof (await createUserFilter(obj, {}, ENV)).onResponseEnd, 'function');
  });

  test('a module Node cannot strip: its message', async () => {
    const path = write('enum Mode { A, B }\nexport default () => ({ onLog() { return Mode.A; } });\n');
    const message = await loadError(path);
    assert.match(message, new RegExp(`^user filter module ${join(dir, path.slice(2))} cannot be loaded: `));
    assert.match(message, /enum|strip/i);
  });

  test('a module that throws while it is evaluated', async () => {
    const path = write("throw new Error('no tenants file');\nexport default () => ({});\n");
    assert.match(await loadError(path), /cannot be loaded: no tenants file$/);
  });

  test('no default export', async () => {
    const path = write('export const filter = { onLog() {} };\n');
    assert.match(await loadError(path), /: its default export must be a filter factory/);
  });

  test('a factory object without create', async () => {
    const path = write("export default { type: 'x', make() { return {}; } };\n");
    assert.match(await loadError(path), /: its default export must be a filter factory/);
  });

  test('a factory whose promise rejects', async () => {
    const path = write("export default async () => { throw new Error('redis down'); };\n");
    assert.match(await loadError(path), /: creating the filter failed: redis down$/);
  });

  for (const [result, found] of [
    ['null', 'null'],
    ['undefined', 'undefined'],
    ['"onRequest"', 'onRequest'],
  ] as const) {
    test(`a factory that returns ${result}`, async () => {
      const path = write(`export default () => ${result};\n`);
      assert.match(
        await loadError(path),
        new RegExp(`: the factory returned ${found}, not a filter object$`),
      );
    });
  }

  test('a phase that is not a function', async () => {
    const path = write('export default () => ({ onRequest() {}, onResponse: true });\n');
    assert.match(await loadError(path), /: the filter's onResponse is not a function$/);
  });

  test('other properties are left alone', async () => {
    const path = write('export default () => ({ name: "t", limit: 3, onLog() {} });\n');
    const filter = (await createUserFilter(path, {}, ENV)) as unknown as { name: string; limit: number };
    assert.equal(filter.name, 't');
    assert.equal(filter.limit, 3);
  });
});
