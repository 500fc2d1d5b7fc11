import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { configJsonSchemaText } from '../../src/config/json-schema.ts';
import { configValidatorCode } from '../../src/config/validator-code.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const SCHEMA_FILE = root('schema/zproxy.schema.json');

const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

test('the committed schema file is what `npm run schema` writes now', () => {
  assert.equal(
    readFileSync(SCHEMA_FILE, 'utf8'),
    configJsonSchemaText(),
    'schema/zproxy.schema.json is stale: run `npm run schema` and commit it',
  );
});

test('the committed precompiled validator is what `npm run schema` writes now', () => {
  assert.equal(
    readFileSync(root('src/config/config-validator.generated.js'), 'utf8'),
    configValidatorCode(),
    'src/config/config-validator.generated.js is stale: run `npm run schema` and commit it',
  );
});

describe('the schema file validates configs with a standard validator', () => {
  // A plain draft-07 validator in strict mode: the file must not rely on zproxy's own keywords.
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(readJson(SCHEMA_FILE) as object);

  const examples = readdirSync(root('examples'))
    .filter((name) => name.endsWith('.json'))
    .map((name) => `examples/${name}`);
  const validFixtures = readdirSync(root('test/fixtures/configs/valid')).map(
    (name) => `test/fixtures/configs/valid/${name}`,
  );

  test('the seed examples and the demo are all there', () => {
    for (const name of ['basic_proxy', 'middleware_proxy', 'high_performance', 'demo']) {
      assert.ok(examples.includes(`examples/${name}.json`), name);
    }
  });

  for (const file of [...examples, ...validFixtures]) {
    test(`${file} is valid`, () => {
      const valid = validate(readJson(root(file)));
      assert.ok(valid, JSON.stringify(validate.errors, null, 2));
    });
  }

  const rejected: [name: string, config: unknown][] = [
    ['unknown key', { routes: [{ path: '/', upstream: 'http://a' }], prot: 1 }],
    ['ftp upstream', { routes: [{ path: '/', upstream: 'ftp://a' }] }],
    ['upstream with a path', { routes: [{ path: '/', upstream: 'http://a/b' }] }],
    ['bad protocol', { protocols: ['http3'], routes: [{ path: '/', upstream: 'http://a' }] }],
    [
      'rate_limit without requests_per_minute',
      { routes: [{ path: '/', upstream: 'http://a' }], middlewares: [{ type: 'rate_limit', config: {} }] },
    ],
    [
      'unknown cors key',
      {
        routes: [{ path: '/', upstream: 'http://a' }],
        middlewares: [{ type: 'cors', config: { allowed_origins: ['*'], origins: [] } }],
      },
    ],
    ['no routes', {}],
  ];
  for (const [name, config] of rejected) {
    test(`rejects: ${name}`, () => {
      assert.equal(validate(config), false);
    });
  }
});

test('every property in the schema file is described, with its default', () => {
  const missing: string[] = [];
  const walk = (node: unknown, path: string): void => {
    if (node === null || typeof node !== 'object') return;
    const schema = node as Record<string, unknown>;
    if (schema.properties !== undefined) {
      for (const [key, child] of Object.entries(schema.properties as Record<string, unknown>)) {
        const described = child as { description?: unknown; default?: unknown };
        if (typeof described.description !== 'string') missing.push(`${path}.${key}: no description`);
        else if ('default' in described && !described.description.includes('Default: ')) {
          missing.push(`${path}.${key}: default not in the description`);
        }
        walk(child, `${path}.${key}`);
      }
    }
    for (const key of ['items', 'anyOf', 'allOf', 'then']) {
      const child = schema[key];
      if (Array.isArray(child)) {
        child.forEach((entry, index) => {
          walk(entry, `${path}.${key}[${index}]`);
        });
      } else walk(child, `${path}.${key}`);
    }
  };
  const schema = readJson(SCHEMA_FILE) as Record<string, unknown>;
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.equal(typeof schema.$id, 'string');
  assert.equal(typeof schema.title, 'string');
  walk(schema, '(root)');
  assert.deepStrictEqual(missing, []);
});
