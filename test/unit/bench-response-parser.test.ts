/**
 * The load generator's HTTP/1.1 response parser: each framing, responses back to back (pipelined), the
 * same bytes split at every position, and the inputs it must refuse.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ResponseParser, type ResponseSink } from '../../src/bench/http1-response.ts';

class Recorder implements ResponseSink {
  readonly responses: [status: number, close: boolean][] = [];
  readonly errors: string[] = [];
  onResponse(status: number, close: boolean): boolean {
    this.responses.push([status, close]);
    return true;
  }
  onProtocolError(reason: string): void {
    this.errors.push(reason);
  }
}

/** Feeds `text` in pieces cut at `cuts`; then the end of the connection when `end`. */
function parse(text: string, options: { head?: boolean; cuts?: number[]; end?: boolean } = {}): Recorder {
  const sink = new Recorder();
  const parser = new ResponseParser(sink, options.head ?? false);
  const bytes = Buffer.from(text, 'latin1');
  let from = 0;
  for (const cut of [...(options.cuts ?? []), bytes.length]) {
    parser.execute(bytes.subarray(from, cut));
    from = cut;
  }
  if (options.end === true) parser.end();
  return sink;
}

const CASES: [name: string, text: string, expected: [number, boolean][]][] = [
  ['Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', [[200, false]]],
  ['Content-Length 0', 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n', [[200, false]]],
  [
    'chunked with an extension and a trailer',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n',
    [[200, false]],
  ],
  [
    'chunked, no trailer',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
    [[200, false]],
  ],
  [
    'chunked wins over Content-Length',
    'HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    [[200, false]],
  ],
  [
    '1xx skipped',
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok',
    [[201, false]],
  ],
  ['204 has no body', 'HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n', [[204, false]]],
  ['304 has no body', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n', [[304, false]]],
  [
    'Connection: close',
    'HTTP/1.1 503 Unavailable\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx',
    [[503, true]],
  ],
  ['HTTP/1.0 closes', 'HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx', [[200, true]]],
  [
    'HTTP/1.0 with keep-alive',
    'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx',
    [[200, false]],
  ],
  [
    'three pipelined responses',
    'HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n',
    [
      [200, false],
      [404, false],
      [204, false],
    ],
  ],
];

describe('ResponseParser framings', () => {
  for (const [name, text, expected] of CASES) {
    test(name, () => {
      const whole = parse(text);
      assert.deepEqual(whole.errors, []);
      assert.deepEqual(whole.responses, expected);
    });
    test(`${name}, split at every position and byte by byte`, () => {
      for (let cut = 1; cut < text.length; cut++) {
        const r = parse(text, { cuts: [cut] });
        assert.deepEqual(r.responses, expected, `cut at ${cut}`);
        assert.deepEqual(r.errors, [], `cut at ${cut}`);
      }
      const bytes = parse(text, { cuts: Array.from({ length: text.length - 1 }, (_, i) => i + 1) });
      assert.deepEqual(bytes.responses, expected);
    });
  }

  test('a body delimited by the end of the connection completes at the end', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the end';
    assert.deepEqual(parse(text).responses, []);
    assert.deepEqual(parse(text, { end: true, cuts: [20, 50] }).responses, [[200, true]]);
    const other = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef';
    assert.deepEqual(parse(other).responses, [], 'a coding other than chunked runs to the end');
    assert.deepEqual(parse(other, { end: true }).responses, [[200, true]]);
  });

  test('no body after HEAD, whatever the framing says', () => {
    const text =
      'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    assert.deepEqual(parse(text, { head: true }).responses, [
      [200, false],
      [200, false],
    ]);
  });

  test('a large body in many pieces', () => {
    const body = 'z'.repeat(100_000);
    const text = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n`;
    const cuts = Array.from({ length: 50 }, (_, i) => 17 + i * 2003);
    assert.deepEqual(parse(text, { cuts }).responses, [
      [200, false],
      [202, false],
    ]);
  });
});

describe('ResponseParser refuses', () => {
  const BAD: [name: string, text: string][] = [
    ['a status line that is not HTTP/1.x', 'HTTP/2 200 OK\r\n\r\n'],
    ['a status without three digits', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['a field line without a colon', 'HTTP/1.1 200 OK\r\nbroken\r\n\r\n'],
    ['conflicting Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx'],
    ['a Content-Length that is not a number', 'HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx'],
    ['an invalid chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'],
    ['chunk data without its CRLF', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n'],
    ['an unexpected 101', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'],
  ];
  for (const [name, text] of BAD) {
    test(name, () => {
      const r = parse(text);
      assert.equal(r.errors.length, 1, `errors: ${r.errors.join(', ')}`);
      assert.deepEqual(r.responses, []);
    });
  }

  test('a head larger than 64 KiB', () => {
    const r = parse(`HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(70_000)}`, { cuts: [1000, 40_000] });
    assert.equal(r.errors.length, 1);
  });

  test('stops after a failure until reset', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink, false);
    parser.execute(Buffer.from('garbage\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    assert.equal(sink.errors.length, 1);
    assert.deepEqual(sink.responses, []);
    parser.reset();
    parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'));
    assert.deepEqual(sink.responses, [[200, false]]);
  });

  test('the sink can stop the parsing after a response', () => {
    const sink = new Recorder();
    sink.onResponse = function (status, close) {
      this.responses.push([status, close]);
      return false;
    };
    const parser = new ResponseParser(sink, false);
    parser.execute(
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
    );
    assert.equal(sink.responses.length, 1);
  });
});
