import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CHUNKED_ERROR, CHUNKED_MORE, ChunkedDecoder } from '../../src/http1/chunked.ts';
import { chunkedCases } from '../fixtures/http1-cases.ts';
import {
  applyMutations,
  chunkedBody,
  type DecodeResult,
  decodeChunked,
  latin1,
  mutation,
} from '../fixtures/http1-gen.ts';

/** Fixed seed and run counts; ZP_FUZZ_SEED / ZP_FUZZ_SCALE explore further (not for CI). */
const SEED = Number(process.env.ZP_FUZZ_SEED ?? 0x5eed_c4);
const SCALE = Number(process.env.ZP_FUZZ_SCALE ?? 1);
const params = (numRuns: number) => ({ seed: SEED, numRuns: Math.ceil(numRuns * SCALE) });

/** The decision alone, for comparing runs that fed the same bytes in different pieces. */
const outcome = (r: DecodeResult) => ({
  state: r.state,
  end: r.end,
  data: r.state === 'error' ? '' : r.data,
});

describe('ChunkedDecoder: shared case table', () => {
  test('the table has at least 40 cases, valid and invalid', () => {
    assert.ok(chunkedCases.length >= 40, `${chunkedCases.length} cases`);
    assert.ok(chunkedCases.filter((c) => c.expect.ok === true).length >= 15);
    assert.ok(chunkedCases.filter((c) => c.expect.ok === false).length >= 20);
    assert.equal(new Set(chunkedCases.map((c) => c.name)).size, chunkedCases.length, 'unique names');
  });

  for (const c of chunkedCases) {
    test(c.name, () => {
      const input = latin1(c.raw);
      const r = decodeChunked(input, 0, [], c.maxTrailerBytes);
      const e = c.expect;
      if (e.ok === true) {
        assert.equal(r.state, 'done', r.error);
        assert.equal(r.data, e.data);
        assert.equal(r.end, e.consumed ?? input.length);
      } else if (e.ok === 'more') {
        assert.equal(r.state, 'more', r.error);
        assert.equal(r.data, e.data);
      } else {
        assert.equal(r.state, 'error', `accepted: ${JSON.stringify(r)}`);
        assert.notEqual(r.error, '');
      }
      // The same decision whatever the pieces: at every byte boundary, and one byte at a time.
      for (let i = 1; i < input.length; i++) {
        assert.deepEqual(
          outcome(decodeChunked(input, 0, [i], c.maxTrailerBytes)),
          outcome(r),
          `split at ${i}`,
        );
      }
      const bytewise = Array.from({ length: input.length }, (_, i) => i);
      assert.deepEqual(
        outcome(decodeChunked(input, 0, bytewise, c.maxTrailerBytes)),
        outcome(r),
        'byte by byte',
      );
    });
  }
});

describe('ChunkedDecoder: API', () => {
  test('pass-through mode (no sink) finds the same end and counts the data', () => {
    const raw = latin1('3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT');
    const d = new ChunkedDecoder();
    d.reset();
    assert.equal(d.feed(raw, 0, raw.length), raw.length - 4);
    assert.equal(d.dataBytes, 19);
    assert.ok(d.done);
  });

  test('reset makes a used or failed decoder new again', () => {
    const d = new ChunkedDecoder();
    d.reset();
    assert.equal(d.feed(latin1('zz'), 0, 2), CHUNKED_ERROR);
    d.reset();
    assert.equal(d.error, '');
    const ok = latin1('1\r\na\r\n0\r\n\r\n');
    assert.equal(d.feed(ok, 0, ok.length), ok.length);
    d.reset();
    assert.equal(d.done, false);
    assert.equal(d.feed(ok, 0, 3), CHUNKED_MORE);
    assert.equal(d.feed(ok, 3, ok.length), ok.length);
  });

  test('a chunk size at 2^53 - 1 is accepted, above it is rejected', () => {
    const d = new ChunkedDecoder();
    d.reset();
    const max = latin1('1fffffffffffff\r\nab');
    assert.equal(d.feed(max, 0, max.length), CHUNKED_MORE);
    assert.equal(d.dataBytes, Number.MAX_SAFE_INTEGER);
    d.reset();
    const over = latin1('20000000000000\r\n');
    assert.equal(d.feed(over, 0, over.length), CHUNKED_ERROR);
    assert.equal(d.error, 'chunk size too large');
  });
});

describe('ChunkedDecoder: properties', () => {
  test('a generated body decodes to its data at every byte boundary', () => {
    fc.assert(
      fc.property(chunkedBody(), (g) => {
        const input = latin1(g.raw);
        const whole = decodeChunked(input);
        assert.equal(whole.state, 'done', `${JSON.stringify(g.raw)}: ${whole.error}`);
        assert.equal(whole.data, g.data);
        assert.equal(whole.end, input.length);
        for (let i = 1; i < input.length; i++) {
          const split = decodeChunked(input, 0, [i]);
          assert.deepEqual(outcome(split), outcome(whole), `split at ${i} of ${JSON.stringify(g.raw)}`);
        }
      }),
      params(200),
    );
  });

  test('random multi-way splits, with a following message, decode the same', () => {
    fc.assert(
      fc.property(
        chunkedBody(),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.string({ maxLength: 20 }),
        (g, cuts, after) => {
          const input = latin1(`PRE${g.raw}${after}`);
          const r = decodeChunked(
            input,
            3,
            cuts.map((c) => c % (input.length + 1)),
          );
          assert.equal(r.state, 'done', r.error);
          assert.equal(r.data, g.data);
          assert.equal(r.end, 3 + g.raw.length);
          // Without a sink the decoder finds the same end and counts the same data.
          const d = new ChunkedDecoder();
          d.reset();
          assert.equal(d.feed(input, 3, input.length), 3 + g.raw.length);
          assert.equal(d.dataBytes, latin1(g.data).length);
        },
      ),
      params(500),
    );
  });

  test('arbitrary bytes: never throws, results in range, independent of the pieces', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((a) => Buffer.from(a).toString('latin1')),
      fc
        .array(fc.constantFrom(...'0123456789abcdefABCDEF;= \t"\\\r\nxX:'.split('')), { maxLength: 80 })
        .map((a) => a.join('')),
    );
    fc.assert(
      fc.property(bytes, fc.array(fc.nat(), { maxLength: 6 }), (s, cuts) => {
        const input = latin1(s);
        const d = new ChunkedDecoder(64);
        d.reset();
        const r = d.feed(input, 0, input.length);
        assert.ok(r === CHUNKED_MORE || r === CHUNKED_ERROR || (r > 0 && r <= input.length), `result ${r}`);
        if (r === CHUNKED_ERROR) assert.notEqual(d.error, '');
        const whole = decodeChunked(input, 0, [], 64);
        const pieces = decodeChunked(
          input,
          0,
          cuts.map((c) => c % (input.length + 1)),
          64,
        );
        assert.deepEqual(outcome(pieces), outcome(whole));
      }),
      params(3000),
    );
  });

  test('mutations of valid bodies: never throws, independent of the pieces', () => {
    fc.assert(
      fc.property(
        chunkedBody({ maxData: 60 }),
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
        fc.nat(),
        (g, muts, cut) => {
          const input = latin1(applyMutations(g.raw, muts));
          const whole = decodeChunked(input);
          const pieces = decodeChunked(input, 0, [cut % (input.length + 1)]);
          assert.deepEqual(outcome(pieces), outcome(whole));
          if (whole.state === 'done') assert.ok(whole.end > 0 && whole.end <= input.length);
        },
      ),
      params(2000),
    );
  });
});
