/**
 * zproxy compare's pure parts: its command line, the plan from a user's config (which routes the other
 * proxies get, in which order, and the file zproxy runs, which must stay a valid config), the summary's
 * medians and same-round ratios, and the charts' figures, rendered to SVG by Vega without a browser.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chartRecords, figureLabel, renderChart } from '../../src/bench/compare/charts.ts';
import { parseCompareArgs } from '../../src/bench/compare/options.ts';
import { generatedPlan, userPlan } from '../../src/bench/compare/plan.ts';
import type { CompareResult, RunRecord } from '../../src/bench/compare/results.ts';
import { summarise } from '../../src/bench/compare/results.ts';
import { SCENARIO_NAMES } from '../../src/bench/compare/scenarios.ts';
import { loadCompareConfig } from '../../src/cli/compare-config.ts';
import { parseConfig } from '../../src/config/load.ts';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const ORIGIN = { host: '127.0.0.1', port: 9001 };

test('the command line: defaults, --all, --quick, and its mistakes', () => {
  const defaults = parseCompareArgs([]);
  assert.equal(defaults.kind, 'compare');
  if (defaults.kind !== 'compare') return;
  assert.deepEqual(defaults.options.scenarios, ['small']);
  assert.deepEqual(defaults.options.proxies, ['zproxy', 'nginx', 'haproxy', 'caddy', 'envoy']);
  assert.equal(defaults.options.rounds, 3);
  assert.equal(defaults.options.durationMs, 10_000);
  assert.equal(defaults.options.warmupMs, 2000);
  const all = parseCompareArgs(['--all', '--quick', '--warmup', '0', '--proxies', 'caddy,zproxy']);
  assert.equal(all.kind, 'compare');
  if (all.kind !== 'compare') return;
  assert.deepEqual(all.options.scenarios, [...SCENARIO_NAMES]);
  // Canonical order, whatever the order given.
  assert.deepEqual(all.options.proxies, ['zproxy', 'caddy']);
  assert.deepEqual([all.options.rounds, all.options.durationMs, all.options.warmupMs], [1, 2000, 0]);
  assert.equal(parseCompareArgs(['--help']).kind, 'help');
  const mistakes: [string[], RegExp][] = [
    [['--scenarios', 'small,huge'], /unknown "huge"/],
    [['--all', '--scenarios', 'small'], /exclude each other/],
    [['--proxies', 'traefik'], /unknown "traefik"/],
    [['--rounds', '0'], /--rounds must be a whole number ≥ 1/],
    [['--proxy-cpu', '1', '--load-cpu', '1'], /must differ/],
    [['--duration', 'soon'], /--duration/],
    [['--origin', 'apache'], /--origin/],
    [['extra'], /positional/i],
  ];
  for (const [args, message] of mistakes) {
    const line = parseCompareArgs(args);
    assert.equal(line.kind, 'usage-error', args.join(' '));
    if (line.kind === 'usage-error') assert.match(line.message, message);
  }
});

test('the generated plan: /ws and /filtered before /, each measured route named', () => {
  const plan = generatedPlan(ORIGIN, { host: '127.0.0.1', port: 9002 }, 64);
  assert.deepEqual(
    plan.routes.map((r) => r.pathPrefix),
    ['/filtered', '/ws', '/'],
  );
  assert.equal(plan.measured.websocket?.targets[0]?.port, 9002);
  assert.equal(plan.measured.filterChain?.filterChain, true);
  assert.equal(plan.zproxyConfig, null);
});

test('--config examples/basic_proxy.json: its three routes, longest prefix first, zproxy’s copy still valid', () => {
  const user = loadCompareConfig(join(EXAMPLES, 'basic_proxy.json'));
  const { plan, leftOut } = userPlan(user, ORIGIN, 64);
  assert.deepEqual(leftOut, []);
  assert.deepEqual(
    plan.routes.map((r) => r.pathPrefix),
    ['/static', '/api', '/'],
  );
  assert.equal(plan.measured.plain.pathPrefix, '/api');
  for (const route of plan.routes) assert.deepEqual(route.targets, [ORIGIN]);
  // zproxy runs the user's file with its listener, thread count and targets replaced: still a valid config.
  const config = parseConfig(plan.zproxyConfig!(8123));
  assert.deepEqual(
    config.listeners.map((l) => [l.host, l.port]),
    [['127.0.0.1', 8123]],
  );
  assert.equal(config.thread_count, 1);
  assert.deepEqual(
    config.routes.map((r) => [r.path, r.methods, r.upstream.map((t) => t.url)]),
    [
      ['/api', ['GET', 'POST', 'PUT', 'DELETE'], ['http://127.0.0.1:9001']],
      ['/static', ['GET'], ['http://127.0.0.1:9001']],
      ['/', ['GET', 'POST'], ['http://127.0.0.1:9001']],
    ],
  );
  assert.deepEqual(config.protocols, ['http1', 'http2', 'websocket']);
});

test('--config with filters everywhere (examples/middleware_proxy.json): no plain route, said so', () => {
  const user = loadCompareConfig(join(EXAMPLES, 'middleware_proxy.json'));
  assert.throws(() => userPlan(user, ORIGIN, 64), /no plain route \(without filters\) to compare/);
});

test('hosts, wildcards, parameters and methods: which routes the other proxies get', () => {
  const plan = userPlan(
    {
      file: 'inline.json',
      raw: {},
      protocols: ['http1'],
      routes: [
        { path: '/', host: 'api.example.com', methods: null, targets: 2, filters: 0 },
        { path: '/', host: '*.example.com', methods: null, targets: 1, filters: 0 },
        { path: '/users/:id', host: null, methods: null, targets: 1, filters: 0 },
        { path: '/upload', host: null, methods: ['POST'], targets: 1, filters: 0 },
        { path: '/auth', host: null, methods: null, targets: 1, filters: 1 },
        { path: '/docs/', host: null, methods: null, targets: 1, filters: 0 },
      ],
    },
    ORIGIN,
    64,
  );
  assert.deepEqual(
    plan.plan.routes.map((r) => [r.host, r.pathPrefix, r.targets.length]),
    [
      [null, '/docs', 1],
      ['api.example.com', '/', 2],
    ],
  );
  assert.equal(plan.plan.measured.plain.pathPrefix, '/docs');
  assert.equal(plan.leftOut.length, 4);
  assert.match(plan.leftOut.join('\n'), /routes\[1\].*wildcard/);
  assert.match(plan.leftOut.join('\n'), /routes\[2\].*parameters/);
  assert.match(plan.leftOut.join('\n'), /routes\[3\].*GET/);
  assert.match(plan.leftOut.join('\n'), /routes\[4\].*filters/);
});

function runOf(round: number, proxy: RunRecord['proxy'], perCore: number, p99: number): RunRecord {
  return {
    round,
    scenario: 'small',
    proxy,
    requests: perCore,
    seconds: 1,
    requests_per_second: perCore / 2,
    latency_ms: { p50: 1, p90: 2, p99, p99_9: p99 + 1, max: p99 + 2 },
    errors: 0,
    non_2xx: round === 2 ? 1 : 0,
    proxy_cpu: 0.5,
    requests_per_core: perCore,
    origin_cpu: 0.1,
    generator_cpu: 0.4,
    generator_limited: false,
    other_load: { proxy_cpu: 0, load_cpu: round === 3 ? 0.2 : 0 },
    disturbed: round === 3,
  };
}

test('the summary: medians over the rounds, the ratio to zproxy taken in each round, then the median', () => {
  const runs = [
    runOf(1, 'zproxy', 100, 5),
    runOf(1, 'nginx', 300, 3),
    runOf(2, 'zproxy', 200, 7),
    runOf(2, 'nginx', 200, 4),
    runOf(3, 'zproxy', 150, 6),
    runOf(3, 'nginx', 600, 9),
  ];
  const [zproxy, nginx] = summarise(runs);
  assert.equal(zproxy!.requests_per_core, 150);
  assert.equal(zproxy!.per_core_vs_zproxy, null);
  assert.equal(zproxy!.latency_ms.p99, 6);
  assert.equal(zproxy!.non_2xx, 1);
  assert.equal(zproxy!.disturbed_rounds, 1);
  // Ratios 3, 1 and 4: the median is 3 (the ratio of the medians, 300 / 150 = 2, is not what is shown).
  assert.equal(nginx!.per_core_vs_zproxy, 3);
  assert.equal(nginx!.requests_per_core, 300);
});

test('the charts: one bar per figure, each bar labelled with its figure, rendered without a browser', async () => {
  const runs = [runOf(1, 'zproxy', 100, 5), runOf(1, 'nginx', 300, 3)];
  const result = {
    proxies: [
      { name: 'zproxy', status: 'measured' },
      { name: 'nginx', status: 'measured' },
    ],
    scenarios: [{ name: 'small', title: 'small', unit: 'req' }],
    results: summarise(runs),
    memory: [
      { proxy: 'zproxy', peak_rss_mib: 80.5 },
      { proxy: 'nginx', peak_rss_mib: 12 },
    ],
  } as unknown as CompareResult;
  const charts = chartRecords(result);
  assert.deepEqual(
    charts.map((c) => [c.id, c.figures.length]),
    [
      ['per-core', 2],
      ['latency-small', 8],
      ['rss', 2],
    ],
  );
  for (const chart of charts) {
    const svg = await renderChart(chart, ['zproxy', 'nginx'], ['small']);
    const marks = /<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)<\/g>/s.exec(svg);
    assert.ok(marks !== null, `${chart.id}: a rect mark`);
    const labels = [...marks[1]!.matchAll(/<path aria-label="([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(labels.sort(), chart.figures.map((f) => figureLabel(chart, f)).sort(), chart.id);
  }
});
