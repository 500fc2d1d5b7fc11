/**
 * W3C Trace Context: which traceparent values zproxy continues (src/http/trace-context.ts), and the
 * random ids it draws in bulk.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  newTraceparent,
  randomHex,
  traceFlagsOf,
  traceIdOf,
  validTraceparent,
} from '../../src/http/trace-context.ts';

const ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

const CASES: readonly (readonly [value: string, valid: boolean, why: string])[] = [
  [`00-${ID}-${PARENT}-01`, true, 'version 00, sampled'],
  [`00-${ID}-${PARENT}-00`, true, 'version 00, not sampled'],
  [`00-${ID}-${PARENT}-ff`, true, 'unknown flags are still flags'],
  [`01-${ID}-${PARENT}-01`, true, 'a later version with nothing more'],
  [`cc-${ID}-${PARENT}-01-more`, true, 'a later version with more after a dash'],
  [`cc-${ID}-${PARENT}-01more`, false, 'a later version with more but no dash'],
  [`00-${ID}-${PARENT}-01-more`, false, 'version 00 with anything after the flags'],
  [`ff-${ID}-${PARENT}-01`, false, 'version ff'],
  [`00-${'0'.repeat(32)}-${PARENT}-01`, false, 'all-zero trace id'],
  [`00-${ID}-${'0'.repeat(16)}-01`, false, 'all-zero parent id'],
  [`00-${ID.toUpperCase()}-${PARENT}-01`, false, 'uppercase hex'],
  [`00-${ID}-${PARENT}-0g`, false, 'a flag digit that is not hex'],
  [`00_${ID}-${PARENT}-01`, false, 'a wrong separator'],
  [`00-${ID.slice(1)}-${PARENT}-01`, false, 'a short trace id'],
  [`00-${ID}-${PARENT}-1`, false, 'one flag digit'],
  [` 00-${ID}-${PARENT}-01`, false, 'a leading space (the parsers trim field values)'],
  ['', false, 'empty'],
];

for (const [value, valid, why] of CASES) {
  test(`traceparent ${valid ? 'valid' : 'invalid'}: ${why}`, () => {
    assert.equal(validTraceparent(value), valid, value);
  });
}

test('the trace id and flags of a valid traceparent', () => {
  assert.equal(traceIdOf(`00-${ID}-${PARENT}-01`), ID);
  assert.equal(traceFlagsOf(`00-${ID}-${PARENT}-01`), '01');
  assert.equal(traceFlagsOf(`cc-${ID}-${PARENT}-03-more`), '03');
});

test('random ids are lowercase hex of the length asked, never all zeros, and do not repeat across refills', () => {
  const seen = new Set<string>();
  // Well past one pool (4096 bytes = 8192 digits): the pool is drawn again several times.
  for (let i = 0; i < 3000; i++) {
    const span = randomHex(16);
    const trace = randomHex(32);
    assert.match(span, /^[0-9a-f]{16}$/);
    assert.match(trace, /^[0-9a-f]{32}$/);
    assert.notEqual(span, '0'.repeat(16));
    seen.add(span);
    seen.add(trace);
  }
  assert.equal(seen.size, 6000);
});

test('new traceparents are valid version-00 values with the sampled flag, and do not repeat across refills', () => {
  const seen = new Set<string>();
  // Well past one pool (128 traceparents): the pool is drawn again many times.
  for (let i = 0; i < 2000; i++) {
    const value = newTraceparent();
    assert.match(value, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(validTraceparent(value), true);
    seen.add(traceIdOf(value));
    seen.add(value.slice(36, 52));
  }
  assert.equal(seen.size, 4000);
});
