/**
 * The fields zproxy manages (src/http/fields.ts, isManagedName): the one rule FieldEditList applies to
 * every filter's edits (a TypeError naming the field, which the phase runner answers with 500) and a
 * LocalResponse's fields are rendered without. The list is the one docs/filters.md gives.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FIELD_NAMES, isManagedName } from '../../src/http/fields.ts';
import { FieldEditList } from '../../src/pipeline/field-edits.ts';
import { renderLocal } from '../../src/pipeline/local-response.ts';

/** docs/filters.md, "Edits". */
const MANAGED = [
  'connection',
  'content-length',
  'host',
  'http2-settings',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

const ORDINARY = [
  'x-anything',
  'via',
  'x-forwarded-for',
  'x-forwarded-host',
  'forwarded',
  'x-real-ip',
  'strict-transport-security',
  'cookie',
  'content-type',
  'content-lengthx',
  'hostname',
];

/** `name` with its letters in alternating case (`CoNtEnT-LeNgTh`). */
const mixed = (name: string) => [...name].map((c, i) => (i % 2 === 0 ? c.toUpperCase() : c)).join('');

describe('the fields zproxy manages', () => {
  test('are the framing fields, Host and the hop-by-hop ones of the field table, as documented', () => {
    const fromTable = FIELD_NAMES.map(([name]) => name).filter(isManagedName);
    assert.deepEqual(fromTable.sort(), MANAGED);
    for (const name of ORDINARY) assert.equal(isManagedName(name), false, name);
  });

  test('FieldEditList refuses to set, add or remove one, in any case, with a TypeError naming it', () => {
    for (const name of MANAGED) {
      for (const given of [name, name.toUpperCase(), mixed(name)]) {
        const edits = new FieldEditList();
        const expected = (e: unknown) =>
          e instanceof TypeError && e.message.startsWith(`field ${name} is managed by zproxy`);
        assert.throws(() => edits.set(given, '1'), expected, `set ${given}`);
        assert.throws(() => edits.add(given, '1'), expected, `add ${given}`);
        assert.throws(() => edits.remove(given), expected, `remove ${given}`);
        assert.ok(edits.empty, 'a refused edit leaves nothing behind');
      }
    }
  });

  test('FieldEditList takes every other name', () => {
    const edits = new FieldEditList();
    for (const name of ORDINARY) {
      edits.set(name, 'a');
      edits.add(mixed(name), 'b');
    }
    edits.remove('x-gone');
    assert.deepEqual(edits.dropped, [...ORDINARY, 'x-gone']);
    assert.equal(edits.added.length, ORDINARY.length * 4);
  });

  test("a LocalResponse's managed fields are left out, and Content-Length is the body's", () => {
    const headers: Record<string, string> = { 'x-kept': 'yes' };
    for (const name of MANAGED) headers[mixed(name)] = name === 'content-length' ? '999' : 'evil';
    const rendered = renderLocal({ status: 200, headers, body: 'hello' }, null);
    assert.deepEqual(rendered.fields, ['x-kept', 'yes', 'content-length', '5']);
    // For HEAD, the filter's Content-Length (the GET's) is the one kept.
    const head = renderLocal({ status: 200, headers: { 'Content-Length': '42', Trailer: 'x' } }, null, true);
    assert.deepEqual(head.fields, ['content-length', '42']);
  });
});
