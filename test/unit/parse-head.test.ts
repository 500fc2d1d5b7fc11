import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  FIELD_CONNECTION,
  FIELD_CONTENT_LENGTH,
  FIELD_HOST,
  FIELD_NAMED_BY_CONNECTION,
  FIELD_OTHER,
  FIELD_TE,
  FIELD_TRACEPARENT,
  FIELD_UPGRADE,
  FIELD_X_FORWARDED_FOR,
  FieldList,
} from '../../src/http/fields.ts';
import { TCHAR } from '../../src/http/syntax.ts';
import {
  F_LINE_END,
  F_NAME_END,
  F_NAME_START,
  F_VALUE_END,
  F_VALUE_START,
  FIELD_STRIDE,
  findHeadEnd,
  HEAD_INCOMPLETE,
  parseRequestHead,
  parseResponseHead,
  RequestHead,
  ResponseHead,
} from '../../src/http1/parse-head.ts';
import { CASE_LIMITS, requestCases, responseCases } from '../fixtures/http1-cases.ts';
import {
  applyMutations,
  BIG_LIMITS,
  EngineHeadReader,
  type FeedMode,
  latin1,
  mutation,
  REQUEST_STATUSES,
  requestMismatches,
  responseMismatches,
  snapshot,
  validRequest,
  validResponse,
} from '../fixtures/http1-gen.ts';

/** Fixed seed and run counts; ZP_FUZZ_SEED / ZP_FUZZ_SCALE explore further (not for CI). */
const SEED = Number(process.env.ZP_FUZZ_SEED ?? 0x2c0ffee);
const SCALE = Number(process.env.ZP_FUZZ_SCALE ?? 1);
const params = (numRuns: number) => ({ seed: SEED, numRuns: Math.ceil(numRuns * SCALE) });

const MODES: readonly FeedMode[] = ['parse-first', 'scan-first'];

/** Feeds `raw` through the engine-like reader in the pieces that `cuts` make; returns the first decision. */
function feedInPieces(
  raw: Buffer,
  cuts: readonly number[],
  limits = BIG_LIMITS,
  mode: FeedMode = 'parse-first',
) {
  const head = new RequestHead();
  const reader = new EngineHeadReader(head, limits, mode);
  const points = [...new Set(cuts.filter((c) => c > 0 && c < raw.length))].sort((a, b) => a - b);
  points.push(raw.length);
  let from = 0;
  for (const to of points) {
    const r = reader.push(Buffer.from(raw.subarray(from, to)));
    if (r !== null) return { r, head, at: to };
    from = to;
  }
  return { r: null, head, at: raw.length };
}

/** Structural invariants of any head the parser accepted. */
function checkAcceptedHead(head: RequestHead | ResponseHead, buf: Buffer, start: number, r: number): void {
  assert.equal(head.end, r, 'head.end is the returned offset');
  assert.ok(head.fieldsStart > start && head.fieldsStart <= r);
  let prevLineEnd = head.fieldsStart;
  for (let i = 0; i < head.fieldCount; i++) {
    const o = i * FIELD_STRIDE;
    const f = head.fields;
    assert.equal(f[o + F_NAME_START], prevLineEnd, 'field lines are contiguous');
    assert.ok(f[o + F_NAME_END]! > f[o + F_NAME_START]!, 'non-empty name');
    for (let p = f[o + F_NAME_START]!; p < f[o + F_NAME_END]!; p++) assert.equal(TCHAR[buf[p]!], 1);
    assert.equal(buf[f[o + F_NAME_END]!], 0x3a, 'a colon ends the name');
    assert.ok(f[o + F_VALUE_START]! <= f[o + F_VALUE_END]!);
    const value = buf.subarray(f[o + F_VALUE_START]!, f[o + F_VALUE_END]!);
    assert.ok(
      !value.includes(0x0d) && !value.includes(0x0a) && !value.includes(0x00),
      'no CR, LF or NUL in a value',
    );
    assert.ok(value.length === 0 || (value[0] !== 0x20 && value[0] !== 0x09), 'no leading OWS');
    assert.ok(value.length === 0 || (value.at(-1) !== 0x20 && value.at(-1) !== 0x09), 'no trailing OWS');
    assert.equal(buf.latin1Slice(f[o + F_LINE_END]! - 2, f[o + F_LINE_END]!), '\r\n');
    prevLineEnd = f[o + F_LINE_END]!;
  }
  assert.equal(r, prevLineEnd + 2, 'the blank line follows the last field line');
  assert.equal(buf.latin1Slice(r - 2, r), '\r\n');
  if (head instanceof RequestHead) {
    assert.match(head.method, /^[A-Z0-9_-]{1,32}$/);
    assert.match(head.target, /^[\x21-\x22\x24-\x5b\x5d-\x7e]+$/, 'target: visible ASCII without # or \\');
    // Re-serialising the parsed head gives a head that parses the same way.
    const again = `${head.method} ${head.target} HTTP/1.${head.versionMinor}\r\n${head
      .entries()
      .map(([n, v]) => `${n}: ${v}\r\n`)
      .join('')}\r\n`;
    const h2 = new RequestHead();
    const r2 = parseRequestHead(latin1(again), 0, again.length, BIG_LIMITS, h2);
    assert.equal(r2, again.length, `round trip of ${JSON.stringify(again)}: ${h2.error}`);
    const { entries: _a, ...s1 } = snapshot(head);
    const { entries: _b, ...s2 } = snapshot(h2);
    assert.deepEqual(s2, s1);
    assert.deepEqual(h2.entries(), head.entries());
  }
}

describe('parseRequestHead: shared case table', () => {
  test('the table has at least 80 cases, valid and invalid', () => {
    assert.ok(requestCases.length >= 80, `${requestCases.length} cases`);
    assert.ok(requestCases.filter((c) => c.expect.ok).length >= 30);
    assert.ok(requestCases.filter((c) => !c.expect.ok).length >= 30);
    assert.equal(new Set(requestCases.map((c) => c.name)).size, requestCases.length, 'unique names');
  });

  for (const c of requestCases) {
    test(c.name, () => {
      const buf = latin1(c.raw);
      const head = new RequestHead();
      const r = parseRequestHead(buf, 0, buf.length, CASE_LIMITS, head);
      const e = c.expect;
      if (e.ok) {
        assert.ok(r > 0, `rejected with ${r}: ${head.error}`);
        assert.deepEqual(requestMismatches(head, r, c.raw, e), []);
        checkAcceptedHead(head, buf, 0, r);
        // The same head inside a larger buffer, at an offset, with a range that ends at its end.
        const shifted = latin1(`JUNK\r\n\r\n${c.raw.slice(0, r)}MORE`);
        const h2 = new RequestHead();
        assert.equal(parseRequestHead(shifted, 8, 8 + r, CASE_LIMITS, h2), r + 8);
        assert.deepEqual(h2.entries(), head.entries());
        assert.equal(h2.target, head.target);
        // Every strict prefix of the head is incomplete, never an error.
        for (let i = 0; i < r; i++) {
          const hp = new RequestHead();
          const rp = parseRequestHead(buf, 0, i, CASE_LIMITS, hp);
          assert.equal(rp, HEAD_INCOMPLETE, `prefix of ${i} bytes gave ${rp}: ${hp.error}`);
        }
      } else {
        assert.equal(
          r,
          -e.status,
          `got ${r}${r > 0 ? ` (${JSON.stringify(head.entries())})` : `: ${head.error}`}`,
        );
        assert.notEqual(head.error, '', 'a rejection says why');
      }
      // The engine-like reader (whole input in one piece) takes the same decision, or for a malformed
      // head without any blank line, waits for one (or for the size limit).
      for (const mode of MODES) {
        const engine = feedInPieces(buf, [], CASE_LIMITS, mode);
        if (e.ok || findHeadEnd(buf, 0) !== -1) assert.equal(engine.r, e.ok ? r : -e.status, mode);
        else assert.ok(engine.r === null || engine.r === -e.status, `${mode}: ${engine.r}`);
      }
      // The parser keeps no state between calls: parsing again with the same head object agrees.
      assert.equal(parseRequestHead(buf, 0, buf.length, CASE_LIMITS, head), r);
    });
  }
});

describe('parseResponseHead: shared case table', () => {
  test('the table has at least 30 cases', () => {
    assert.ok(responseCases.length >= 30, `${responseCases.length} cases`);
    assert.equal(new Set(responseCases.map((c) => c.name)).size, responseCases.length, 'unique names');
  });

  for (const c of responseCases) {
    test(c.name, () => {
      const buf = latin1(c.raw);
      const head = new ResponseHead();
      const r = parseResponseHead(buf, 0, buf.length, CASE_LIMITS, head);
      const e = c.expect;
      if (e.ok) {
        assert.ok(r > 0, `rejected with ${r}: ${head.error}`);
        assert.deepEqual(responseMismatches(head, r, c.raw, e), []);
        checkAcceptedHead(head, buf, 0, r);
        for (let i = 0; i < r; i++) {
          const hp = new ResponseHead();
          assert.equal(
            parseResponseHead(buf, 0, i, CASE_LIMITS, hp),
            HEAD_INCOMPLETE,
            `prefix of ${i} bytes: ${hp.error}`,
          );
        }
      } else {
        assert.equal(r, -502, `got ${r}: ${head.error}`);
        assert.notEqual(head.error, '');
      }
    });
  }
});

describe('MessageHead accessors', () => {
  const raw =
    'POST /x HTTP/1.1\r\nHost: h.test\r\nX-Dup: 1\r\nx-dup: 2\r\nContent-Length: 0\r\nConnection: x-dup\r\n' +
    'Transfer-Encoding-X: no\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nUpgrade: h2c\r\n\r\n';
  const head = new RequestHead();
  const r = parseRequestHead(latin1(raw), 0, raw.length, BIG_LIMITS, head);

  test('get and getAll are case-insensitive and keep the order', () => {
    assert.equal(r, raw.length, head.error);
    assert.equal(head.get('host'), 'h.test');
    assert.equal(head.get('x-dup'), '1');
    assert.deepEqual(head.getAll('x-dup'), ['1', '2']);
    assert.equal(head.get('absent'), undefined);
    assert.deepEqual(head.getAll('absent'), []);
    assert.equal(head.fieldCount, 9);
    assert.equal(head.fieldName(1), 'X-Dup');
    assert.equal(head.fieldValue(2), '2');
  });

  test('field kinds', () => {
    const kinds = Object.fromEntries(head.entries().map(([n], i) => [n, head.fieldKind(i)]));
    assert.deepEqual(kinds, {
      Host: FIELD_HOST,
      'X-Dup': FIELD_NAMED_BY_CONNECTION,
      'x-dup': FIELD_NAMED_BY_CONNECTION,
      'Content-Length': FIELD_CONTENT_LENGTH,
      Connection: FIELD_CONNECTION,
      'Transfer-Encoding-X': FIELD_OTHER,
      TE: FIELD_TE,
      'X-Forwarded-For': FIELD_X_FORWARDED_FOR,
      Upgrade: FIELD_UPGRADE,
    });
    assert.equal(head.connectionUpgrade, false, 'Upgrade without Connection: upgrade');
  });

  test('lowerFieldName gives each name in lowercase, common or not', () => {
    const response =
      'HTTP/1.1 200 OK\r\nContent-Type: a\r\nSERVER: b\r\nX-Custom-Name: c\r\nset-cookie: d\r\n' +
      'Content-Typf: e\r\n\r\n';
    const rh = new ResponseHead();
    assert.equal(parseResponseHead(latin1(response), 0, response.length, BIG_LIMITS, rh), response.length);
    const names = Array.from({ length: rh.fieldCount }, (_, i) => rh.lowerFieldName(i));
    assert.deepEqual(names, ['content-type', 'server', 'x-custom-name', 'set-cookie', 'content-typf']);
  });

  test('a head object reused for the next message forgets the previous one', () => {
    const next = 'GET / HTTP/1.0\r\n\r\n';
    assert.equal(parseRequestHead(latin1(next), 0, next.length, BIG_LIMITS, head), next.length);
    assert.equal(head.fieldCount, 0);
    assert.equal(head.host, null);
    assert.equal(head.contentLength, -1);
    assert.equal(head.connectionNames, null);
    assert.equal(head.get('host'), undefined);
    const bad = 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n';
    assert.equal(parseRequestHead(latin1(bad), 0, bad.length, BIG_LIMITS, head), -400);
    assert.equal(head.error, 'several Host fields');
    assert.equal(parseRequestHead(latin1(next), 0, next.length, BIG_LIMITS, head), next.length);
    assert.equal(head.error, '');
  });
});

describe('findHeadEnd', () => {
  const at = (s: string, from = 0) => findHeadEnd(latin1(s), from);
  test('finds the blank line after the fields', () => {
    assert.equal(at('GET / HTTP/1.1\r\nHost: a\r\n\r\nbody'), 27);
    assert.equal(at('GET / HTTP/1.1\r\n\r\n'), 18);
  });
  test('reports -1 without a blank line', () => {
    assert.equal(at('GET / HTTP/1.1\r\nHost: a\r\n'), -1);
    assert.equal(at(''), -1);
  });
  test('reports bare-LF blank lines so that the parser can reject them', () => {
    assert.equal(at('GET / HTTP/1.1\nHost: a\n\n'), 24);
    assert.equal(at('GET / HTTP/1.1\r\nHost: a\n\n'), 25);
    assert.equal(at('GET / HTTP/1.1\r\nHost: a\n\r\n'), 26);
    assert.equal(at('\r\n\nGET / HTTP/1.1\r\n'), 3);
  });
  test('resumes from an offset', () => {
    const s = 'GET / HTTP/1.1\r\nHost: a\r\n\r\n';
    for (let from = 0; from <= 24; from++) assert.equal(at(s, from), 27);
    assert.equal(at(s, 25), -1);
  });
  test('empty lines before the request line are not the end of a head (RFC 9112 §2.2)', () => {
    assert.equal(at('\r\n\r\n'), -1);
    assert.equal(at('\r\n\r\n\r\n\r'), -1);
    assert.equal(at('\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n'), -1);
    assert.equal(at('\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n'), 31);
    assert.equal(at('\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', 2), 31);
  });
});

describe('the engine reading a request in pieces', () => {
  for (const mode of MODES) {
    test(`leading CRLFs arriving before the request line do not end the head (${mode})`, () => {
      // A client sends an extra CRLF after a body (RFC 9112 §2.2), and the next request follows later.
      const head = new RequestHead();
      const reader = new EngineHeadReader(head, BIG_LIMITS, mode);
      assert.equal(reader.push(latin1('\r\n\r\n')), null);
      assert.equal(reader.push(latin1('\r')), null);
      assert.equal(reader.push(latin1('\nGET / HTTP/1.1\r\nHost: a\r\n')), null);
      assert.equal(reader.push(latin1('\r\n')), 33);
      assert.equal(head.target, '/');
    });
  }
  test('a CR that may start a leading CRLF is incomplete, not an error', () => {
    const head = new RequestHead();
    assert.equal(parseRequestHead(latin1('\r'), 0, 1, BIG_LIMITS, head), HEAD_INCOMPLETE);
    assert.equal(parseRequestHead(latin1('\r\n\r'), 0, 3, BIG_LIMITS, head), HEAD_INCOMPLETE);
    assert.equal(parseRequestHead(latin1('\r\n\rX'), 0, 4, BIG_LIMITS, head), -400);
  });
  test('a short malformed start line before a blank line is rejected at once, not incomplete', () => {
    // The connections wait for more bytes on HEAD_INCOMPLETE, even after a blank line has arrived.
    const req = (s: string) => parseRequestHead(latin1(s), 0, s.length, BIG_LIMITS, new RequestHead());
    const res = (s: string) => parseResponseHead(latin1(s), 0, s.length, BIG_LIMITS, new ResponseHead());
    assert.equal(req('GET / X\r\n\r\n'), -400);
    assert.equal(req('GET / HTTP/1.1'), HEAD_INCOMPLETE);
    assert.equal(req('GET / HTTP/1.'), HEAD_INCOMPLETE);
    assert.equal(res('HTX\r\n\r\n'), -502);
    assert.equal(res('HTTP/1.1 2\r\n\r\n'), -502);
    assert.equal(res('HTTP/1.1 20'), HEAD_INCOMPLETE);
  });
});

describe('properties of valid request heads', () => {
  test('a generated valid request parses as expected', () => {
    fc.assert(
      fc.property(validRequest({ duplicateContentLength: true }), (g) => {
        const buf = latin1(g.raw);
        const head = new RequestHead();
        const r = parseRequestHead(buf, 0, buf.length, BIG_LIMITS, head);
        assert.ok(r > 0, `${JSON.stringify(g.raw)} rejected: ${head.error}`);
        assert.deepEqual(requestMismatches(head, r, g.raw, g.expect), [], JSON.stringify(g.raw));
        checkAcceptedHead(head, buf, 0, r);
      }),
      params(400),
    );
  });

  test('split at every byte boundary, the engine-like readers give the same head', () => {
    fc.assert(
      fc.property(validRequest({ duplicateContentLength: true }), fc.constantFrom(...MODES), (g, mode) => {
        const buf = latin1(g.raw);
        const whole = feedInPieces(buf, [], BIG_LIMITS, mode);
        assert.equal(whole.r, g.headLength);
        const expected = snapshot(whole.head);
        for (let i = 1; i < buf.length; i++) {
          const split = feedInPieces(buf, [i], BIG_LIMITS, mode);
          assert.equal(
            split.r,
            g.headLength,
            `split at ${i} of ${JSON.stringify(g.raw)}: ${split.head.error}`,
          );
          assert.ok(split.at >= g.headLength);
          assert.deepEqual(snapshot(split.head), expected);
        }
      }),
      params(200),
    );
  });

  test('random multi-way splits give the same head', () => {
    fc.assert(
      fc.property(
        validRequest(),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.constantFrom(...MODES),
        (g, cuts, mode) => {
          const buf = latin1(g.raw);
          const pieces = feedInPieces(
            buf,
            cuts.map((c) => c % (buf.length + 1)),
            BIG_LIMITS,
            mode,
          );
          assert.equal(pieces.r, g.headLength, pieces.head.error);
          assert.deepEqual(requestMismatches(pieces.head, pieces.r!, g.raw, g.expect), []);
        },
      ),
      params(400),
    );
  });

  test('every strict prefix of a valid head is incomplete for the parser itself', () => {
    fc.assert(
      fc.property(validRequest(), (g) => {
        const buf = latin1(g.raw);
        const head = new RequestHead();
        for (let i = 0; i < g.headLength; i++) {
          const r = parseRequestHead(buf, 0, i, BIG_LIMITS, head);
          assert.equal(r, HEAD_INCOMPLETE, `prefix ${JSON.stringify(g.raw.slice(0, i))}: ${head.error}`);
        }
      }),
      params(150),
    );
  });

  test('response heads split at every byte boundary, read like the upstream connection reads them', () => {
    fc.assert(
      fc.property(validResponse(), (g) => {
        const buf = latin1(g.raw);
        for (let i = 1; i < buf.length; i++) {
          const head = new ResponseHead();
          const reader = new EngineHeadReader(head, BIG_LIMITS, 'parse-first');
          let r = reader.push(Buffer.from(buf.subarray(0, i)));
          if (r === null) r = reader.push(Buffer.from(buf.subarray(i)));
          assert.equal(r, g.expect.consumed, `split at ${i}: ${head.error}`);
          assert.deepEqual(responseMismatches(head, r!, g.raw, g.expect), []);
        }
      }),
      params(150),
    );
  });

  test('valid response heads parse as expected, and every prefix is incomplete', () => {
    fc.assert(
      fc.property(validResponse(), (g) => {
        const buf = latin1(g.raw);
        const head = new ResponseHead();
        const r = parseResponseHead(buf, 0, buf.length, BIG_LIMITS, head);
        assert.ok(r > 0, `${JSON.stringify(g.raw)}: ${head.error}`);
        assert.deepEqual(responseMismatches(head, r, g.raw, g.expect), []);
        checkAcceptedHead(head, buf, 0, r);
        const hp = new ResponseHead();
        for (let i = 0; i < r; i++)
          assert.equal(parseResponseHead(buf, 0, i, BIG_LIMITS, hp), HEAD_INCOMPLETE);
      }),
      params(300),
    );
  });
});

describe('the head parsers on arbitrary input', () => {
  function checkRequestResult(buf: Buffer, start: number): number {
    const head = new RequestHead();
    let r: number;
    try {
      r = parseRequestHead(buf, start, buf.length, BIG_LIMITS, head);
    } catch (err) {
      assert.fail(`threw on ${JSON.stringify(buf.toString('latin1'))}: ${err}`);
    }
    if (r > 0) {
      assert.ok(r <= buf.length);
      checkAcceptedHead(head, buf, start, r);
    } else if (r < 0) {
      assert.ok(REQUEST_STATUSES.has(r), `status ${r}`);
      assert.notEqual(head.error, '');
    } else if (start === 0) {
      // Incomplete only while no blank line has arrived: the connection waits for more bytes then.
      assert.equal(
        findHeadEnd(buf, 0),
        -1,
        `incomplete despite a blank line: ${JSON.stringify(buf.toString('latin1'))}`,
      );
    }
    // Tight limits lead to the limit statuses, never to anything else.
    const tight = parseRequestHead(
      buf,
      start,
      buf.length,
      { maxHeaderBytes: 40, maxHeaderCount: 2, maxUriBytes: 8 },
      new RequestHead(),
    );
    assert.ok(tight >= 0 ? tight <= buf.length : REQUEST_STATUSES.has(tight));
    return r;
  }

  function checkResponseResult(buf: Buffer): void {
    const head = new ResponseHead();
    let r: number;
    try {
      r = parseResponseHead(buf, 0, buf.length, BIG_LIMITS, head);
    } catch (err) {
      assert.fail(`threw on ${JSON.stringify(buf.toString('latin1'))}: ${err}`);
    }
    assert.ok(r === HEAD_INCOMPLETE || r === -502 || (r > 0 && r <= buf.length), `result ${r}`);
    if (r > 0) checkAcceptedHead(head, buf, 0, r);
    if (r === HEAD_INCOMPLETE)
      assert.equal(
        findHeadEnd(buf, 0),
        -1,
        `incomplete despite a blank line: ${JSON.stringify(buf.toString('latin1'))}`,
      );
  }

  /**
   * The engine's decision must not depend on how the bytes were split: the same head, or a rejection. A
   * connection that already saw an incomplete head re-parses only once a blank line arrives, so without
   * any blank line a malformed head in pieces may wait (for more bytes, then the size limit or a timeout)
   * where the whole input is rejected at once.
   */
  function checkSplitIndependence(buf: Buffer, cuts: readonly number[]): void {
    for (const mode of MODES) {
      const whole = feedInPieces(buf, [], BIG_LIMITS, mode);
      const pieces = feedInPieces(buf, cuts, BIG_LIMITS, mode);
      const what = `${mode}: ${JSON.stringify(buf.toString('latin1'))} cut at ${cuts}: ${pieces.r} vs ${whole.r}`;
      if (whole.r === null) assert.equal(pieces.r, null, what);
      else if (whole.r > 0) {
        assert.equal(pieces.r, whole.r, what);
        assert.deepEqual(snapshot(pieces.head), snapshot(whole.head));
      } else if (pieces.r === null) assert.equal(findHeadEnd(buf, 0), -1, what);
      else assert.ok(pieces.r < 0, what);
    }
  }

  test('random bytes', () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc
        .array(fc.constantFrom(...'GET / HTTP/1.1\r\nHost: a:\t ,;=chunked0\x00\x80'.split('')), {
          maxLength: 120,
        })
        .map((cs) => Uint8Array.from(latin1(cs.join('')))),
    );
    fc.assert(
      fc.property(bytes, fc.nat(5), fc.array(fc.nat(), { maxLength: 4 }), (a, start, cuts) => {
        const buf = Buffer.from(a);
        checkRequestResult(buf, Math.min(start, buf.length));
        checkResponseResult(buf);
        checkSplitIndependence(
          buf,
          cuts.map((c) => c % (buf.length + 1)),
        );
      }),
      params(2000),
    );
  });

  test('mutations of valid requests', () => {
    fc.assert(
      fc.property(
        validRequest(),
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        (g, muts, cuts) => {
          const buf = latin1(applyMutations(g.raw, muts));
          checkRequestResult(buf, 0);
          checkSplitIndependence(
            buf,
            cuts.map((c) => c % (buf.length + 1)),
          );
        },
      ),
      params(3000),
    );
  });

  test('mutations of valid responses', () => {
    fc.assert(
      fc.property(validResponse(), fc.array(mutation, { minLength: 1, maxLength: 4 }), (g, muts) => {
        checkResponseResult(latin1(applyMutations(g.raw, muts)));
      }),
      params(2000),
    );
  });
});

test('a response head over its limits is refused (502) with a reason that names no configuration key', () => {
  // The limits of an upstream's response head are fixed (64 KiB, 256 field lines), not limits.max_header_*.
  const limits = { maxHeaderBytes: 64, maxHeaderCount: 2, maxUriBytes: 0 };
  const heads = [
    [`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(100)}\r\n\r\n`, 'response head too large'],
    ['HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n', 'too many field lines in the response head'],
  ];
  for (const [raw, reason] of heads) {
    const buf = Buffer.from(raw!, 'latin1');
    const head = new ResponseHead();
    assert.equal(parseResponseHead(buf, 0, buf.length, limits, head), -502);
    assert.equal(head.error, reason);
  }
});

test('kindsPresent has one bit per kind among the field lines, for the parser and for a field list', () => {
  const head = new RequestHead();
  const text =
    'GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Custom: 1\r\ntraceparent: x\r\n\r\n';
  const buf = latin1(text);
  assert.equal(parseRequestHead(buf, 0, buf.length, BIG_LIMITS, head), buf.length);
  const expected =
    (1 << FIELD_HOST) | (1 << FIELD_X_FORWARDED_FOR) | (1 << FIELD_OTHER) | (1 << FIELD_TRACEPARENT);
  assert.equal(head.kindsPresent, expected);
  const list = new FieldList([
    'host',
    'a',
    'x-forwarded-for',
    '1.2.3.4',
    'x-custom',
    '1',
    'traceparent',
    'x',
  ]);
  assert.equal(list.kindsPresent, expected);
  // The next head on the same object starts from none.
  const bare = latin1('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  assert.equal(parseRequestHead(bare, 0, bare.length, BIG_LIMITS, head), bare.length);
  assert.equal(head.kindsPresent, 1 << FIELD_HOST);
});
