/**
 * The metric slots and the instance's sum (src/observe/metrics.ts, metrics-view.ts), and the `admin`
 * config: a route or target keeps its slots when a runtime is compiled again; a worker thread's shared
 * slots are read by another registry view without a message per count; a worker that ends leaves its
 * counters in the sum and takes its gauges; the exposition's histograms are cumulative.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { FAMILIES, MetricRegistry, type SeriesEntry } from '../../src/observe/metrics.ts';
import { type MetricSeriesMessage, MetricSum, ThreadMetrics } from '../../src/observe/metrics-view.ts';

const ROUTES = [{ path: '/', upstream: 'http://127.0.0.1:1' }];

function issues(json: unknown): string[] {
  try {
    parseConfig(json);
  } catch (error) {
    return (error as { issues: { message: string }[] }).issues.map((i) => i.message);
  }
  return [];
}

function render(registry: MetricRegistry): string {
  const sum = new MetricSum();
  for (const [family, labels, part, , chunk, slot] of registry.series) {
    sum.add(family, labels, part, registry.chunks[chunk]![slot]!);
  }
  return sum.render();
}

describe('metric slots', () => {
  test('a route and a target keep their slots: asked again (a new runtime), the same handle', () => {
    const registry = new MetricRegistry(false, 1);
    const route = registry.route('/api');
    route.record('GET', 200, '1.1', 3);
    assert.equal(registry.route('/api'), route);
    assert.equal(registry.target('http://a:80'), registry.target('http://a:80'));
    const before = registry.series.length;
    registry.route('/api');
    assert.equal(registry.series.length, before);
  });

  test('methods outside the fixed set count as OTHER; statuses by class; HTTP/2 apart', () => {
    const registry = new MetricRegistry(false, 1);
    const route = registry.route('/');
    route.record('PROPFIND', 207, '1.1', 1);
    route.record('GET', 404, '2', 1);
    route.record('GET', 0, '1.1', 1);
    const text = render(registry);
    assert.match(
      text,
      /^zproxy_requests_total\{route="\/",method="OTHER",status="2xx",protocol="http1"\} 1$/m,
    );
    assert.match(text, /^zproxy_requests_total\{route="\/",method="GET",status="4xx",protocol="http2"\} 1$/m);
    assert.match(
      text,
      /^zproxy_requests_total\{route="\/",method="GET",status="other",protocol="http1"\} 1$/m,
    );
    // Combinations that never occurred are not written.
    assert.doesNotMatch(text, /method="PUT"/);
  });

  test('histograms are written cumulative, with _sum and _count', () => {
    const registry = new MetricRegistry(false, 1);
    const route = registry.route('/');
    route.record('GET', 200, '1.1', 3); // 0.003 s: bucket le=0.005
    route.record('GET', 200, '1.1', 200); // 0.2 s: bucket le=0.25
    const text = render(registry);
    assert.match(text, /^zproxy_request_duration_seconds_bucket\{route="\/",le="0.0025"\} 0$/m);
    assert.match(text, /^zproxy_request_duration_seconds_bucket\{route="\/",le="0.005"\} 1$/m);
    assert.match(text, /^zproxy_request_duration_seconds_bucket\{route="\/",le="0.1"\} 1$/m);
    assert.match(text, /^zproxy_request_duration_seconds_bucket\{route="\/",le="0.25"\} 2$/m);
    assert.match(text, /^zproxy_request_duration_seconds_bucket\{route="\/",le="\+Inf"\} 2$/m);
    assert.match(text, /^zproxy_request_duration_seconds_count\{route="\/"\} 2$/m);
    assert.match(text, /^zproxy_request_duration_seconds_sum\{route="\/"\} 0.203$/m);
  });

  test('label values are escaped', () => {
    const registry = new MetricRegistry(false, 1);
    registry.route('/a"b\\c').record('GET', 200, '1.1', 1);
    assert.match(render(registry), /route="\/a\\"b\\\\c"/);
  });

  test('worker threads: shared slots read without a message per count; an ended worker keeps its counters', () => {
    const messages: MetricSeriesMessage[] = [];
    const worker = new MetricRegistry(true, 1, (series: SeriesEntry[], chunk) => {
      messages.push({ type: 'metric-series', series, chunk });
    });
    const view = new ThreadMetrics();
    const route = worker.route('/');
    for (const m of messages) view.onSeries(1, m);
    const published = messages.length;
    route.record('GET', 200, '1.1', 1);
    route.record('GET', 200, '1.1', 1);
    worker.server.connections(5, 0, 0, 0, 0);
    assert.equal(messages.length, published, 'counting sends no message');
    const read = (): MetricSum => {
      const sum = new MetricSum();
      view.collect(sum);
      return sum;
    };
    const labels = 'route="/",method="GET",status="2xx",protocol="http1"';
    assert.equal(read().value('zproxy_requests_total', labels), 2);
    assert.equal(read().value('zproxy_downstream_connections', 'protocol="http1"'), 5);
    view.onExit(1);
    assert.equal(read().value('zproxy_requests_total', labels), 2, 'the counters stay');
    assert.equal(read().value('zproxy_downstream_connections', 'protocol="http1"'), 0, 'the gauges go');
    // Its replacement starts from zero; the sum goes on from the ended worker's counts.
    const replacement: MetricSeriesMessage[] = [];
    const next = new MetricRegistry(true, 1, (series, chunk) => {
      replacement.push({ type: 'metric-series', series, chunk });
    });
    next.route('/').record('GET', 200, '1.1', 1);
    for (const m of replacement) view.onSeries(1, m);
    assert.equal(read().value('zproxy_requests_total', labels), 3);
  });

  test('worker threads: a scrape waits for the announcements still on their way, then counts exactly', async () => {
    const view = new ThreadMetrics();
    const announced = new Int32Array(view.add(1));
    const inFlight: MetricSeriesMessage[] = [];
    // As worker-thread.ts does: counted in shared memory before the message is posted.
    const worker = new MetricRegistry(true, 1, (series: SeriesEntry[], chunk) => {
      Atomics.add(announced, 0, 1);
      inFlight.push({ type: 'metric-series', series, chunk });
    });
    worker.route('/').record('GET', 200, '1.1', 1);
    assert.ok(inFlight.length > 0);
    const sum = new MetricSum();
    const collected = view.collect(sum);
    assert.ok(collected instanceof Promise, 'the scrape waits');
    let done = false;
    void collected.then(() => {
      done = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(done, false, 'not before the announcements are read');
    for (const m of inFlight) view.onSeries(1, m);
    await collected;
    const labels = 'route="/",method="GET",status="2xx",protocol="http1"';
    assert.equal(sum.value('zproxy_requests_total', labels), 1);
    // Nothing on its way: the next scrape reads at once.
    assert.equal(view.collect(new MetricSum()), undefined);
  });
});

describe('admin config', () => {
  test('defaults: loopback, no token, metrics on; absent: off', () => {
    assert.deepEqual(parseConfig({ admin: { port: 9901 }, routes: ROUTES }).admin, {
      host: '127.0.0.1',
      port: 9901,
      token: null,
      metrics: true,
    });
    assert.equal(parseConfig({ routes: ROUTES }).admin, null);
    assert.equal(parseConfig({ routes: ROUTES }).shutdown_delay_ms, 0);
  });

  test('errors name their JSON path', () => {
    assert.deepEqual(issues({ port: 9000, admin: { port: 9000 }, routes: ROUTES }), [
      'admin.port: expected a port that no proxy listener uses (port has it), found 9000',
    ]);
    assert.deepEqual(
      issues({
        listeners: [
          { host: '127.0.0.1', port: 8000 },
          { host: '0.0.0.0', port: 9000 },
        ],
        admin: { port: 9000 },
        routes: ROUTES,
      }),
      ['admin.port: expected a port that no proxy listener uses (listeners[1] has it), found 9000'],
    );
    assert.deepEqual(issues({ admin: { port: 9001, token: 'short', extra: 1 }, routes: ROUTES }), [
      'admin.token: expected a secret of at least 16 characters, found "short"',
      'admin.extra: unknown key (allowed keys: host, port, token, metrics)',
    ]);
    assert.deepEqual(issues({ admin: {}, routes: ROUTES }), [
      'admin.port: expected an integer from 0 to 65535, found nothing',
    ]);
    assert.deepEqual(issues({ shutdown_delay_ms: -1, routes: ROUTES }).length, 1);
  });
});

test('docs/operations.md lists every metric family with its type', () => {
  const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
  for (const [name, { type }] of Object.entries(FAMILIES)) {
    assert.match(doc, new RegExp(`^\\| \`${name}\` +\\| ${type} +\\|`, 'm'), `${name} (${type})`);
  }
});

test("circuit breaking's limits and the overload counter's `limit` label are in the same order", async () => {
  const breaker = await import('../../src/upstream/circuit-breaker.ts');
  const { OVERLOAD_LIMITS } = await import('../../src/observe/metrics.ts');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_REQUESTS], 'requests');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_PENDING], 'pending');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_RETRIES], 'retries');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_RETRY_BUDGET], 'retry_budget');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_TARGET_REQUESTS], 'target_requests');
  assert.equal(OVERLOAD_LIMITS[breaker.LIMIT_TARGET_PENDING], 'target_pending');
  assert.equal(OVERLOAD_LIMITS.length, 6);
});
