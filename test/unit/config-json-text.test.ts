import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { lineAndColumn, locateSyntaxError, parseJsonText } from '../../src/config/json-text.ts';

test('valid JSON parses (a leading BOM is ignored)', () => {
  assert.deepStrictEqual(parseJsonText('\uFEFF{"a": [1, 2.5e3, true, null, "x\\u0041"]}'), {
    ok: true,
    value: { a: [1, 2500, true, null, 'xA'] },
  });
});

test('broken JSON gives the line and column of the first error', () => {
  const cases: [text: string, line: number, column: number, problem: string][] = [
    ['{\n  "a": 1,\n}', 3, 1, 'unexpected "}" where a double-quoted key was expected'],
    ['{"a": tru}', 1, 10, 'unexpected "}" in true'],
    ['{"a" 1}', 1, 6, 'unexpected "1" where ":" was expected after a key'],
    ['[1 2]', 1, 4, 'unexpected "2" where "," or "]" was expected'],
    ['', 1, 1, 'unexpected end of input where a value was expected'],
    ['{"a": 1', 1, 8, 'unexpected end of input where "," or "}" was expected'],
    ['{"a": 1}\n x', 2, 2, 'unexpected "x" after the end of the JSON value'],
    ['{"a": 01}', 1, 8, 'unexpected "1" where "," or "}" was expected'],
    ['{"a": -}', 1, 8, 'unexpected "}" in a number'],
    ['{"a": "x\ny"}', 1, 9, 'unescaped control character in a string'],
    ['{"a": "\\q"}', 1, 8, 'invalid escape in a string'],
    ["{'a': 1}", 1, 2, 'unexpected "\'" where a double-quoted key was expected'],
    ['{"a": "x', 1, 9, 'unexpected end of input in a string'],
  ];
  for (const [text, line, column, problem] of cases) {
    assert.deepStrictEqual(parseJsonText(text), { ok: false, line, column, problem }, JSON.stringify(text));
  }
});

test('lineAndColumn counts from 1', () => {
  assert.deepStrictEqual(lineAndColumn('ab\ncd', 0), { line: 1, column: 1 });
  assert.deepStrictEqual(lineAndColumn('ab\ncd', 4), { line: 2, column: 2 });
});

test('the scanner agrees with JSON.parse on which texts are valid', () => {
  const agrees = (text: string) => {
    let valid = true;
    try {
      JSON.parse(text);
    } catch {
      valid = false;
    }
    assert.equal(locateSyntaxError(text) === null, valid, JSON.stringify(text));
  };
  // Valid texts, and valid texts with one character removed or replaced.
  const jsonText = fc.json();
  fc.assert(fc.property(jsonText, agrees), { numRuns: 500 });
  fc.assert(
    fc.property(
      jsonText,
      fc.nat(),
      fc.constantFrom('', '}', ']', ',', '"', ':', '\\', '-', '0', 'e', ' '),
      (text, at, c) => {
        const index = text.length === 0 ? 0 : at % text.length;
        agrees(text.slice(0, index) + c + text.slice(index + 1));
      },
    ),
    { numRuns: 2000 },
  );
  fc.assert(fc.property(fc.string(), agrees), { numRuns: 500 });
});
