/**
 * Each built-in filter folder exports its module: its type name, its config schema (the one the config
 * validator checks it with), its factory, and close() where it keeps process-wide resources. The
 * registry built from them closes what it loaded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIDDLEWARE_CONFIG_SCHEMAS, MIDDLEWARE_TYPES } from '../../src/config/middleware-schemas.ts';
import { BUILT_IN_FILTERS } from '../../src/filters/index.ts';
import { FilterRegistry } from '../../src/pipeline/registry.ts';

test('every middleware type but `module` has a built-in filter module with its own name, schema and factory', async () => {
  assert.deepEqual(
    Object.keys(BUILT_IN_FILTERS).sort(),
    MIDDLEWARE_TYPES.filter((t) => t !== 'module').sort(),
  );
  for (const [type, load] of Object.entries(BUILT_IN_FILTERS)) {
    const module = await load();
    assert.equal(module.type, type);
    assert.equal(module.factory.type, type);
    assert.equal(
      await module.loadSchema(),
      MIDDLEWARE_CONFIG_SCHEMAS[type as keyof typeof MIDDLEWARE_CONFIG_SCHEMAS],
      `${type}: the schema the config is validated with`,
    );
  }
  const withClose = [];
  for (const [type, load] of Object.entries(BUILT_IN_FILTERS)) if ((await load()).close) withClose.push(type);
  assert.deepEqual(withClose.sort(), ['cache', 'rate_limit'], 'the filters with Redis clients of their own');
});

test('a registry closes the modules it loaded', async () => {
  const calls: string[] = [];
  const registry = new FilterRegistry({
    a: async () => ({
      type: 'a',
      loadSchema: async () => ({}),
      factory: { type: 'a', create: () => ({}) },
      close: async () => {
        calls.push('a');
      },
    }),
    b: async () => ({
      type: 'b',
      loadSchema: async () => ({}),
      factory: { type: 'b', create: () => ({}) },
      close: async () => {
        calls.push('b');
      },
    }),
  });
  await registry.create({ type: 'a' as never, config: {} }, { index: 0, route: '/' });
  await registry.close();
  assert.deepEqual(calls, ['a'], 'only what was loaded');
  await registry.close();
  assert.deepEqual(calls, ['a'], 'once');
});
