import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { normalizePath } from '../../src/router/normalize-path.ts';

/** [input, expected output (null = rejected), note]. */
const cases: readonly (readonly [string, string | null, string])[] = [
  // Unchanged.
  ['/', '/', 'root'],
  ['/index.html', '/index.html', 'dot inside a segment'],
  ['/a/b/c', '/a/b/c', 'plain'],
  ['/a/b/', '/a/b/', 'trailing slash kept'],
  ['/.hidden', '/.hidden', 'leading dot in a segment'],
  ['/.well-known/acme', '/.well-known/acme', 'well-known'],
  ['/a..b', '/a..b', 'two dots inside a segment'],
  ['/...', '/...', 'three dots are not a dot segment'],
  ['/a/..b/c', '/a/..b/c', 'dots then text'],
  ['/a%2Fb', '/a%2Fb', '%2F kept'],
  ['/a%2fb', '/a%2fb', '%2f kept, lower case kept'],
  ['/%25', '/%25', '%25 kept'],
  ['/%2541', '/%2541', '%25 is not decoded, so %41 does not appear'],
  ['/a%20b', '/a%20b', '%20 kept'],
  ['/a%3Fb', '/a%3Fb', '%3F kept'],
  ['/caf%C3%A9', '/caf%C3%A9', 'UTF-8 escapes kept'],
  ['/caf%c3%a9', '/caf%c3%a9', 'lower-case hex kept'],
  ['/a%2F..', '/a%2F..', 'an escaped slash does not split segments'],
  ['/a/..%2f', '/a/..%2f', "'..%2f' is not a dot segment"],
  ['/a;b=1/c', '/a;b=1/c', 'sub-delims kept'],
  // Unreserved escapes decoded.
  ['/%41', '/A', '%41 decoded'],
  ['/%61%62', '/ab', 'lower-case letters decoded'],
  ['/%7e%7E', '/~~', 'tilde, both hex cases'],
  ['/%2D%2e%5F', '/-._', 'dash, dot, underscore'],
  ['/%30%39', '/09', 'digits'],
  ['/a%2Fb%41', '/a%2FbA', 'mixed: %2F kept, %41 decoded'],
  ['/%2e%2e%2e', '/...', 'three encoded dots are not a dot segment'],
  // Repeated slashes merged.
  ['//', '/', 'double slash'],
  ['///a//b//', '/a/b/', 'many'],
  ['/a//b', '/a/b', 'middle'],
  ['//a', '/a', 'leading'],
  // Dot segments removed (RFC 3986 §5.2.4; §5.4 examples against the base path /b/c/).
  ['/b/c/./g', '/b/c/g', '5.4.1 ./g'],
  ['/b/c/g/', '/b/c/g/', '5.4.1 g/'],
  ['/b/c/.', '/b/c/', '5.4.1 .'],
  ['/b/c/./', '/b/c/', '5.4.1 ./'],
  ['/b/c/..', '/b/', '5.4.1 ..'],
  ['/b/c/../', '/b/', '5.4.1 ../'],
  ['/b/c/../g', '/b/g', '5.4.1 ../g'],
  ['/b/c/../..', '/', '5.4.1 ../..'],
  ['/b/c/../../', '/', '5.4.1 ../../'],
  ['/b/c/../../g', '/g', '5.4.1 ../../g'],
  ['/b/c/../../../g', null, '5.4.2 ../../../g climbs above the root (RFC: /g; zproxy: 400)'],
  ['/b/c/g.', '/b/c/g.', '5.4.2 g.'],
  ['/b/c/.g', '/b/c/.g', '5.4.2 .g'],
  ['/b/c/g..', '/b/c/g..', '5.4.2 g..'],
  ['/b/c/..g', '/b/c/..g', '5.4.2 ..g'],
  ['/b/c/./../g', '/b/g', '5.4.2 ./../g'],
  ['/b/c/./g/.', '/b/c/g/', '5.4.2 ./g/.'],
  ['/b/c/g/./h', '/b/c/g/h', '5.4.2 g/./h'],
  ['/b/c/g/../h', '/b/c/h', '5.4.2 g/../h'],
  ['/b/c/g;x=1/./y', '/b/c/g;x=1/y', '5.4.2 g;x=1/./y'],
  ['/b/c/g;x=1/../y', '/b/c/y', '5.4.2 g;x=1/../y'],
  ['/a/b/c/./../../g', '/a/g', '5.2.4 example 1'],
  ['/mid/content=5/../6', '/mid/6', '5.2.4 example 2'],
  ['/.', '/', 'root dot'],
  ['/./a', '/a', 'leading dot segment'],
  ['/a/..', '/', 'back to the root'],
  ['/a/b/..', '/a/', 'trailing .. leaves a slash'],
  ['/a/b/.', '/a/b/', 'trailing . leaves a slash'],
  ['/a//../b', '/b', 'merged slashes, then ..'],
  // Encoded dot segments.
  ['/%2e', '/', '%2e'],
  ['/a/%2E/b', '/a/b', '%2E'],
  ['/a/%2e%2e', '/', '%2e%2e'],
  ['/a/b/.%2e/c', '/a/c', '.%2e'],
  ['/a/b/%2e./c', '/a/c', '%2e.'],
  ['/a/b/%2E%2e/c', '/a/c', '%2E%2e'],
  ['//a/%2E/../%41', '/A', 'everything at once'],
  // Rejected.
  ['', null, 'empty'],
  ['a/b', null, 'no leading slash'],
  ['*', null, 'asterisk-form'],
  ['/..', null, 'climbs above the root'],
  ['/../x', null, 'climbs above the root'],
  ['/a/../../x', null, 'climbs above the root'],
  ['/%2e%2e/x', null, 'encoded climb'],
  ['/a/.%2E/..', null, 'encoded climb, two levels'],
  ['/%', null, 'lone %'],
  ['/a%', null, '% at the end'],
  ['/%4', null, 'one hex digit'],
  ['/%zz', null, 'not hex'],
  ['/%4g', null, 'second digit not hex'],
  ['/a/%2e/%x1', null, 'malformed after a slow-path trigger'],
];

describe('normalizePath: table', () => {
  test('the table has at least 40 cases', () => assert.ok(cases.length >= 40));
  for (const [input, expected, note] of cases) {
    test(`${JSON.stringify(input)} -> ${JSON.stringify(expected)} (${note})`, () => {
      assert.equal(normalizePath(input), expected);
    });
  }
});

/**
 * A boxed String behaves like the string for normalizePath (length, charCodeAt), but unlike a
 * primitive it has an identity: getting the very same object back proves the fast path returned
 * its input instead of building a copy.
 */
function boxed(s: string): string {
  return new String(s) as unknown as string;
}

describe('normalizePath: same instance', () => {
  for (const path of ['/', '/a/b/c', '/index.html', '/a%2Fb', '/%20/x/', '/.well-known/a', '/a..b/...']) {
    test(`unchanged ${JSON.stringify(path)} is returned as is`, () => {
      const input = boxed(path);
      assert.equal(normalizePath(input), input);
    });
  }
  test('a changed path is a new string', () => {
    const input = boxed('/a//b');
    const output = normalizePath(input);
    assert.notEqual(output, input);
    assert.equal(output, '/a/b');
  });
});

/** An independent reference: decode, split, merge, remove dot segments. */
function reference(path: string): string | null {
  if (!path.startsWith('/')) return null;
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return null;
  const decoded = path.replace(/%([0-9A-Fa-f]{2})/g, (sequence, hex: string) => {
    const c = String.fromCharCode(Number.parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(c) ? c : sequence;
  });
  const parts = decoded.slice(1).split('/');
  const out: string[] = [];
  for (const part of parts) {
    if (part === '..') {
      if (out.length === 0) return null;
      out.pop();
    } else if (part !== '.' && part !== '') {
      out.push(part);
    }
  }
  const last = parts.at(-1)!;
  const trailing = out.length > 0 && (last === '' || last === '.' || last === '..');
  return `/${out.join('/')}${trailing ? '/' : ''}`;
}

describe('normalizePath: properties', () => {
  const token = fc.constantFrom(
    '/',
    '/',
    '.',
    '..',
    'a',
    'B',
    '~',
    '%2e',
    '%2E',
    '%2F',
    '%2f',
    '%41',
    '%7e',
    '%25',
    '%20',
    '%',
    '%4',
    '%zz',
  );
  const tokenPath = fc.array(token, { maxLength: 16 }).map((parts) => `/${parts.join('')}`);
  const anyString = fc.string({ maxLength: 24 });
  const path = fc.oneof(
    tokenPath,
    tokenPath,
    anyString.map((s) => `/${s}`),
    anyString,
  );
  const options = { numRuns: 5000 };

  test('output starts with / and has no dot segment and no //', () => {
    fc.assert(
      fc.property(path, (p) => {
        const out = normalizePath(p);
        if (out === null) return;
        assert.equal(out[0], '/');
        assert.ok(!out.includes('//'), out);
        for (const segment of out.split('/')) assert.ok(segment !== '.' && segment !== '..', out);
      }),
      options,
    );
  });

  test('idempotent', () => {
    fc.assert(
      fc.property(path, (p) => {
        const once = normalizePath(p);
        if (once === null) return;
        assert.equal(normalizePath(once), once);
      }),
      options,
    );
  });

  test('paths without %, dot segments and // are returned as the same instance', () => {
    const plain = fc
      .array(fc.constantFrom('/', 'a', 'b', '-', '_', '~', ';', '=', 'é'), { maxLength: 20 })
      .map((parts) => `/${parts.join('')}`)
      .filter((p) => !p.includes('//'));
    fc.assert(
      fc.property(plain, (p) => {
        const input = boxed(p);
        assert.equal(normalizePath(input), input);
      }),
      options,
    );
  });

  test('equals an independent reference', () => {
    fc.assert(
      fc.property(path, (p) => {
        assert.equal(normalizePath(p), reference(p));
      }),
      options,
    );
  });
});
