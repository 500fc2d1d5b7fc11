/**
 * docs/security.md gathers what other pages and the code say; these checks keep it from drifting: it names
 * every configuration warning code and every accepted difference of the differential fuzzing (with its
 * reason, as compare.ts words it), every ZP_* code it names exists, every file it points to exists, and
 * the defaults in its limits table are the schema's.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONFIG_DEFAULTS } from '../../src/config/schema.ts';
import { WARNING_CODES } from '../../src/config/warning-codes.ts';
import { ERROR_CODES } from '../../src/errors.ts';
import { ACCEPTED } from '../differential/compare.ts';

const root = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** The page as written, and as read: the Markdown formatter escapes punctuation such as `_` and `*`. */
const raw = readFileSync(root('docs/security.md'), 'utf8');
const page = raw.replace(/\\([!-/:-@[-`{-~])/g, '$1');

test('every ZP_WARN_* code of src/config/ is on the page', () => {
  const dir = root('src/config');
  const inSources = new Set<string>();
  for (const file of readdirSync(dir)) {
    if (!file.endsWith('.ts')) continue;
    for (const m of readFileSync(`${dir}/${file}`, 'utf8').matchAll(/ZP_WARN_[A-Z0-9_]+/g))
      inSources.add(m[0]);
  }
  assert.deepEqual([...inSources].sort(), [...WARNING_CODES].sort(), 'the sources use the listed codes');
  for (const code of WARNING_CODES) assert.ok(page.includes(`| \`${code}\``), `${code} has a row`);
});

test('every accepted difference of the differential harness is on the page, with its reason', () => {
  assert.ok(ACCEPTED.length > 0);
  for (const d of ACCEPTED) {
    const row = page.split('\n').find((line) => line.startsWith(`| \`${d.id}\``));
    assert.ok(row !== undefined, `${d.id} has a row`);
    assert.ok(row.includes(d.reason), `the reason of ${d.id} is the one in compare.ts`);
  }
});

test('every ZP_ERR_* and ZP_WARN_* code the page names exists', () => {
  const known = new Set<string>([...Object.keys(ERROR_CODES), ...WARNING_CODES]);
  const named = new Set(page.match(/ZP_(?:ERR|WARN)_[A-Z0-9_]+/g) ?? []);
  assert.ok(named.size > 10);
  for (const code of named) assert.ok(known.has(code), `${code} is not a code of zproxy`);
});

test('every file of the repository the page names exists', () => {
  const paths = new Set(page.match(/\b(?:src|test|docs)\/[\w./-]+\.(?:ts|md)\b/g) ?? []);
  assert.ok(paths.size > 30);
  for (const path of paths) assert.ok(existsSync(root(path)), `${path} does not exist`);
  for (const m of page.matchAll(/\]\(([\w-]+\.md)(?:#[\w-]+)?\)/g)) {
    assert.ok(existsSync(root(`docs/${m[1]}`)), `link to ${m[1]}`);
  }
});

test("the defaults in the limits table are the schema's", () => {
  let checked = 0;
  for (const line of page.split('\n')) {
    const m = /^\| `([a-z_.0-9]+)` +\| `([^`]+)` +\|/.exec(line);
    if (m === null) continue;
    let value: unknown = CONFIG_DEFAULTS;
    for (const key of m[1]!.split('.')) value = (value as Record<string, unknown> | undefined)?.[key];
    assert.notEqual(value, undefined, `${m[1]} is a key of the configuration with a default`);
    assert.equal(m[2], JSON.stringify(value), `the default of ${m[1]}`);
    checked++;
  }
  assert.ok(checked >= 15, `${checked} rows checked`);
});
