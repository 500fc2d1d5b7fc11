/** The bench report: threads' counts and histograms merged, the generator verdict, the human table. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BenchOptions } from '../../src/bench/options.ts';
import { buildReport, formatMicros, formatReport } from '../../src/bench/report.ts';
import { classifyError, ThreadStats } from '../../src/bench/stats.ts';

const OPTIONS: BenchOptions = {
  url: 'http://127.0.0.1:8000/',
  protocol: 'http1',
  connections: 4,
  concurrency: 1,
  durationMs: 1000,
  keepAlive: true,
  method: 'GET',
  headers: [],
  body: null,
  bodyFile: null,
  threads: 2,
  rate: null,
  messageBytes: 64,
  timeoutMs: 10_000,
  insecure: false,
  json: false,
};

describe('buildReport', () => {
  test('sums the threads and merges their histograms', () => {
    const a = new ThreadStats(false);
    const b = new ThreadStats(false);
    // Thread a: 99 responses at 1 ms; thread b: 1 response at 100 ms and a 503.
    for (let i = 0; i < 99; i++) a.complete(200, 0, 0, 1);
    b.complete(200, 0, 0, 100);
    b.complete(503, 0, 0, 2);
    a.bytesReceived = 1000;
    b.bytesReceived = 500;
    b.error('connect_refused', 3);
    b.error('timeout');
    const report = buildReport(
      OPTIONS,
      [a.result(1000, 500_000, 0.5), b.result(1000, 950_000, 0.4)],
      1_500_000,
    );
    assert.equal(report.requests, 101);
    assert.equal(report.requests_per_second, 101);
    assert.equal(report.bytes_received, 1500);
    assert.deepEqual(report.statuses, { '200': 100, '503': 1 });
    assert.deepEqual(report.non_2xx, { '503': 1 });
    assert.equal(report.non_2xx_total, 1);
    assert.equal(report.errors.connect_refused, 3);
    assert.equal(report.errors.timeout, 1);
    assert.equal(report.errors.total, 4);
    assert.equal(report.latency_us.count, 101);
    assert.equal(report.latency_us.p50, 1000);
    assert.ok(
      report.latency_us.max >= 99_900 && report.latency_us.max <= 100_100,
      String(report.latency_us.max),
    );
    assert.ok(report.latency_us.p99 >= 1999 && report.latency_us.p99 <= 2001, String(report.latency_us.p99));
    assert.equal(report.latency_uncorrected_us, null);
    assert.equal(report.mode, 'closed-loop');
    assert.deepEqual(
      report.generator.threads.map((t) => t.cpu_percent),
      [50, 95],
    );
    assert.equal(report.generator.cpu_percent, 72.5);
    assert.equal(report.generator.process_cpu_percent, 150);
    assert.equal(report.generator.limited, true, 'a thread at 95 % limited the run');
    assert.match(report.generator.verdict, /the generator was the limit/);
  });

  test('constant rate: corrected and uncorrected latencies; a missed rate is noted', () => {
    const s = new ThreadStats(true);
    // Meant to go at 0, sent at 900 (the connection was waiting), answered at 901.
    s.complete(200, 0, 900, 901);
    const report = buildReport({ ...OPTIONS, threads: 1, rate: 100 }, [s.result(1000, 10_000, 0.1)], 10_000);
    assert.equal(report.mode, 'constant-rate');
    assert.ok(Math.abs(report.latency_us.max - 901_000) < 1000);
    assert.equal(report.latency_uncorrected_us!.max, 1000);
    assert.equal(report.generator.limited, false);
    assert.match(report.generator.verdict, /not the limit/);
    assert.ok(report.notes.some((n) => n.includes('was not reached')));
  });

  test('an event loop busy 90 % of the run is a limit even with less CPU', () => {
    const s = new ThreadStats(false);
    const report = buildReport({ ...OPTIONS, threads: 1 }, [s.result(1000, 100_000, 0.93)], 100_000);
    assert.equal(report.generator.limited, true);
  });
});

describe('formatting', () => {
  test('times as wrk shows them', () => {
    assert.equal(formatMicros(850), '850.00us');
    assert.equal(formatMicros(1200), '1.20ms');
    assert.equal(formatMicros(2_050_000), '2.05s');
  });

  test('the table names every figure', () => {
    const s = new ThreadStats(true);
    s.complete(404, 0, 0, 3);
    s.error('reset');
    const text = formatReport(
      buildReport({ ...OPTIONS, threads: 1, rate: 50 }, [s.result(1000, 1000, 0.01)], 1000),
    );
    for (const part of [
      'Latency (corrected)',
      'Latency (uncorrected)',
      'Requests/sec:',
      'Transfer/sec:',
      'Non-2xx responses: 1 (404: 1)',
      'Errors: 1 (reset 1)',
      'Generator CPU:',
      'constant rate 50/s',
    ]) {
      assert.ok(text.includes(part), `${part} in\n${text}`);
    }
  });
});

test('error kinds', () => {
  const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
  assert.equal(classifyError(err('ECONNREFUSED'), false), 'connect_refused');
  assert.equal(classifyError(err('ETIMEDOUT'), false), 'connect_timeout');
  assert.equal(classifyError(err('EHOSTUNREACH'), false), 'connect');
  assert.equal(classifyError(err('DEPTH_ZERO_SELF_SIGNED_CERT'), false), 'tls');
  assert.equal(classifyError(err('ERR_SSL_WRONG_VERSION_NUMBER'), false), 'tls');
  assert.equal(classifyError(err('ECONNRESET'), true), 'reset');
  assert.equal(classifyError(err('EPIPE'), true), 'reset');
  assert.equal(classifyError(err('ERR_HTTP2_SESSION_ERROR'), true), 'protocol');
  assert.equal(classifyError(new Error('?'), true), 'other');
});
