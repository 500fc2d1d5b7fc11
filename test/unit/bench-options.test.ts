/** `zproxy bench` command line, option values, thread plans and the constant-rate schedule. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { serialiseRequest } from '../../src/bench/http1-client.ts';
import {
  type BenchOptions,
  parseDuration,
  parseHeader,
  planThreads,
  shareOf,
} from '../../src/bench/options.ts';
import { phaseOf, Schedule } from '../../src/bench/schedule.ts';
import { parseCommandLine } from '../../src/cli/args.ts';

function benchOptions(args: string[]): BenchOptions {
  const command = parseCommandLine(['bench', ...args]);
  assert.equal(command.kind, 'bench', JSON.stringify(command));
  return (command as { options: BenchOptions }).options;
}

function usageError(args: string[]): string {
  const command = parseCommandLine(['bench', ...args]);
  assert.equal(command.kind, 'usage-error', JSON.stringify(command));
  return (command as { message: string }).message;
}

describe('zproxy bench command line', () => {
  test('defaults', () => {
    assert.deepEqual(benchOptions(['http://127.0.0.1:8000/x?y=1']), {
      url: 'http://127.0.0.1:8000/x?y=1',
      protocol: 'http1',
      connections: 10,
      concurrency: 1,
      durationMs: 10_000,
      keepAlive: true,
      method: 'GET',
      headers: [],
      body: null,
      bodyFile: null,
      threads: 1,
      rate: null,
      messageBytes: 64,
      timeoutMs: 10_000,
      insecure: false,
      json: false,
    });
  });

  test('every option', () => {
    const o = benchOptions([
      '-c',
      '64',
      '-d',
      '500ms',
      '--concurrency',
      '4',
      '--protocol',
      'http2',
      '--method',
      'put',
      '-H',
      'X-A: 1',
      '-H',
      'x-b:two words',
      '--body',
      'hi',
      '-t',
      '2',
      '--rate',
      '1500.5',
      '--timeout',
      '2s',
      '-k',
      '--json',
      'https://localhost:8443/',
    ]);
    assert.equal(o.connections, 64);
    assert.equal(o.durationMs, 500);
    assert.equal(o.concurrency, 4);
    assert.equal(o.protocol, 'http2');
    assert.equal(o.method, 'PUT');
    assert.deepEqual(o.headers, [
      ['X-A', '1'],
      ['x-b', 'two words'],
    ]);
    assert.equal(o.body, 'hi');
    assert.equal(o.threads, 2);
    assert.equal(o.rate, 1500.5);
    assert.equal(o.timeoutMs, 2000);
    assert.equal(o.insecure, true);
    assert.equal(o.json, true);
  });

  test('the protocol follows the URL; http2 defaults to 10 streams; a body makes a POST', () => {
    assert.equal(benchOptions(['ws://127.0.0.1:1/']).protocol, 'websocket');
    assert.equal(benchOptions(['wss://h/']).protocol, 'websocket');
    assert.equal(benchOptions(['--protocol', 'http2', 'http://h/']).concurrency, 10);
    assert.equal(benchOptions(['--body', 'x', 'http://h/']).method, 'POST');
    assert.equal(benchOptions(['--body-file', 'f', 'http://h/']).method, 'POST');
    assert.equal(benchOptions(['--no-keepalive', 'http://h/']).keepAlive, false);
    assert.equal(benchOptions(['--message-bytes', '0', 'ws://h/']).messageBytes, 0);
  });

  const ERRORS: [args: string[], message: RegExp][] = [
    [[], /needs a URL/],
    [['http://a/', 'http://b/'], /one URL, got 2/],
    [['not a url'], /not a URL/],
    [['ftp://h/'], /http:\/\/, https:\/\/, ws:\/\/ or wss:\/\//],
    [['--protocol', 'http3', 'http://h/'], /--protocol must be one of/],
    [['--protocol', 'websocket', 'http://h/'], /needs a ws:\/\/ or wss:\/\/ URL/],
    [['--protocol', 'http2', 'ws://h/'], /needs a http:\/\/ or https:\/\/ URL/],
    [['-c', '0', 'http://h/'], /--connections/],
    [['-c', 'ten', 'http://h/'], /--connections/],
    [['-d', '10x', 'http://h/'], /--duration/],
    [['-d', '0', 'http://h/'], /--duration/],
    [['--concurrency', '2000', 'http://h/'], /--concurrency/],
    [['--no-keepalive', '--protocol', 'http2', 'http://h/'], /http1 only/],
    [['--no-keepalive', '--concurrency', '2', 'http://h/'], /must be 1/],
    [['-t', '4', '-c', '2', 'http://h/'], /must not exceed --connections/],
    [['--rate', '0', 'http://h/'], /--rate/],
    [['--rate', '-5', 'http://h/'], /--rate/],
    [['--body', 'a', '--body-file', 'f', 'http://h/'], /exclude each other/],
    [['-H', 'no colon', 'http://h/'], /-H must be/],
    [['-H', 'bad name: x', 'http://h/'], /-H must be/],
    [['--method', 'GE T', 'http://h/'], /--method/],
    [['--frobnicate', 'http://h/'], /Unknown option/],
    [['http://user:pw@h/'], /user info/],
  ];
  for (const [args, message] of ERRORS) {
    test(`usage error: bench ${args.join(' ')}`, () => {
      assert.match(usageError(args), message);
    });
  }

  test('--help', () => {
    assert.deepEqual(parseCommandLine(['bench', '--help']), { kind: 'help' });
  });
});

describe('option values', () => {
  test('durations', () => {
    assert.equal(parseDuration('10s'), 10_000);
    assert.equal(parseDuration('500ms'), 500);
    assert.equal(parseDuration('1m'), 60_000);
    assert.equal(parseDuration('2.5'), 2500);
    assert.equal(parseDuration('3'), 3000);
    for (const bad of ['', 's', '-1s', '1h', '0', '0ms', '1 s']) assert.equal(parseDuration(bad), null, bad);
  });

  test('headers', () => {
    assert.deepEqual(parseHeader('Accept: text/html'), ['Accept', 'text/html']);
    assert.deepEqual(parseHeader('X-Empty:'), ['X-Empty', '']);
    assert.deepEqual(parseHeader('a:b:c'), ['a', 'b:c']);
    assert.equal(parseHeader(': x'), null);
    assert.equal(parseHeader('X: a\r\nY: b'), null);
  });

  test('threads share connections and the rate in proportion', () => {
    assert.deepEqual(
      [0, 1, 2].map((i) => shareOf(10, 3, i)),
      [
        { first: 0, count: 4 },
        { first: 4, count: 3 },
        { first: 7, count: 3 },
      ],
    );
    const plans = planThreads(
      { ...benchOptions(['-c', '10', '-t', '3', '--rate', '1000', 'http://h/']) },
      null,
    );
    assert.deepEqual(
      plans.map((p) => [p.connections, p.firstConnection, p.totalConnections, p.rate]),
      [
        [4, 0, 10, 400],
        [3, 4, 10, 300],
        [3, 7, 10, 300],
      ],
    );
    assert.equal(
      plans.reduce((sum, p) => sum + p.rate!, 0),
      1000,
    );
  });
});

describe('constant-rate schedule', () => {
  test('fixed intended times, whatever happens in between', () => {
    const s = new Schedule(1000, 100, 0.5);
    assert.equal(s.interval, 10);
    assert.deepEqual([s.take(), s.take(), s.take()], [1005, 1015, 1025]);
    assert.equal(s.next, 1035);
  });

  test('phases spread connections over one interval', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => phaseOf(i, 4)),
      [0, 0.25, 0.5, 0.75],
    );
    assert.equal(phaseOf(0, 1), 0);
  });
});

describe('HTTP/1.1 request bytes', () => {
  test('a GET: the request line, Host, the fields given', () => {
    const bytes = serialiseRequest(
      new URL('http://example.com:8080/a/b?c=d'),
      'GET',
      [['Accept', '*/*']],
      null,
      true,
    );
    assert.equal(bytes.toString(), 'GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n');
  });

  test('a POST with a body, one connection per request, Host given', () => {
    const body = new Uint8Array(Buffer.from('{"a":1}'));
    const bytes = serialiseRequest(new URL('http://h/'), 'POST', [['host', 'other']], body, false);
    assert.equal(
      bytes.toString(),
      'POST / HTTP/1.1\r\nhost: other\r\nContent-Length: 7\r\nConnection: close\r\n\r\n{"a":1}',
    );
  });

  test('a POST without a body says Content-Length: 0', () => {
    const bytes = serialiseRequest(new URL('http://h/'), 'POST', [], null, true);
    assert.equal(bytes.toString(), 'POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n');
  });
});
