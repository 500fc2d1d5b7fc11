/**
 * `zproxy compare` end to end: the real CLI (a child process) measures zproxy, nginx, HAProxy and Caddy
 * (Debian's packages; .ci/run installs them) with tiny runs, and writes its report; then a real headless
 * Chromium opens report.html: a screenshot is taken, each chart's SVG has one bar per figure of report.json
 * (its label and its height say the figure), and every figure and text on the page is report.json's.
 * In CI a missing proxy fails the test; elsewhere the test is skipped, saying which is missing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { CompareResult } from '../../src/bench/compare/results.ts';
import { launchChromium, requireChromium } from '../helpers/chromium.ts';
import { type CliResult, compare, inCi, missingProxies, TINY } from '../helpers/compare-cli.ts';

/** The value at a dotted path (`results.3.latency_ms.p99`). */
function at(value: unknown, path: string): unknown {
  let node = value;
  for (const key of path.split('.')) node = (node as Record<string, unknown>)[key];
  return node;
}

const missing = missingProxies();
const skip = !inCi && missing.length > 0 ? `not installed: ${missing.join(', ')} (CI installs them)` : false;

describe('zproxy compare with nginx, HAProxy and Caddy', { skip }, () => {
  let dir: string;
  let run: CliResult;
  let report: CompareResult;

  before(async () => {
    assert.deepEqual(missing, [], `compare needs ${missing.join(', ')} (.ci/run installs them)`);
    dir = mkdtempSync(join(tmpdir(), 'zproxy-compare-test-'));
    run = await compare([
      ...TINY,
      '--scenarios',
      'small,h2',
      '--proxies',
      'zproxy,nginx,haproxy,caddy',
      '--report',
      join(dir, 'report'),
      '--note',
      'A test run: one round of 300 ms.',
    ]);
    assert.equal(run.status, 0, `exit ${run.status}\n${run.stderr}\n${run.stdout}`);
    report = JSON.parse(readFileSync(join(dir, 'report', 'report.json'), 'utf8')) as CompareResult;
  });

  after(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  test('every proxy is measured in every scenario, without errors', () => {
    assert.deepEqual(
      report.proxies.map((p) => [p.name, p.status]),
      [
        ['zproxy', 'measured'],
        ['nginx', 'measured'],
        ['haproxy', 'measured'],
        ['caddy', 'measured'],
      ],
    );
    for (const p of report.proxies)
      assert.ok(p.version !== null && p.version !== '', `${p.name} has a version`);
    assert.deepEqual(report.skipped, []);
    for (const scenario of ['small', 'h2'])
      for (const proxy of ['zproxy', 'nginx', 'haproxy', 'caddy']) {
        const row = report.results.find((r) => r.scenario === scenario && r.proxy === proxy);
        assert.ok(row !== undefined, `${scenario} on ${proxy}`);
        assert.ok(row.requests_per_second > 0, `${scenario} on ${proxy}: ${row.requests_per_second}/s`);
        assert.ok(row.requests_per_core !== null && row.requests_per_core >= row.requests_per_second);
        assert.equal(row.errors + row.non_2xx, 0, `${scenario} on ${proxy}: errors`);
        assert.equal(row.per_core_vs_zproxy === null, proxy === 'zproxy');
        assert.ok(row.latency_ms.p50 <= row.latency_ms.p99 && row.latency_ms.p99 <= row.latency_ms.p99_9);
      }
    for (const m of report.memory) assert.ok(m.peak_rss_mib > 1, `${m.proxy} peak RSS ${m.peak_rss_mib} MiB`);
    // The summary on stdout names every scenario and proxy.
    for (const word of ['small', 'h2', 'zproxy', 'nginx', 'haproxy', 'caddy'])
      assert.match(run.stdout, new RegExp(word));
  });

  test('report.md and the SVG charts are written next to report.html', () => {
    const md = readFileSync(join(dir, 'report', 'report.md'), 'utf8');
    for (const chart of report.charts) {
      assert.ok(statSync(join(dir, 'report', chart.svg_file)).size > 1000, chart.svg_file);
      assert.ok(md.includes(`(${chart.svg_file})`), `report.md links ${chart.svg_file}`);
    }
    assert.deepEqual(
      report.charts.map((c) => c.id),
      ['per-core', 'latency-small', 'latency-h2', 'rss'],
    );
  });

  test('Chromium shows report.html: the charts are drawn from report.json, every figure on the page is report.json’s', async () => {
    requireChromium();
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      // Nothing but the file itself is loaded: the charts are inlined, no network is needed.
      const requests: string[] = [];
      page.on('request', (request) => requests.push(request.url()));
      const url = pathToFileURL(join(dir, 'report', 'report.html')).href;
      await page.goto(url);
      assert.deepEqual(requests, [url]);
      const screenshot = await page.screenshot({ fullPage: true, path: join(dir, 'report.png') });
      assert.ok(screenshot.length > 20_000, `a screenshot of ${screenshot.length} bytes`);

      for (const chart of report.charts) {
        const bars = await page.$$eval(
          `figure[data-chart="${chart.id}"] svg g.mark-rect path[role="graphics-symbol"]`,
          (paths) =>
            paths.map((p) => {
              const box = (p as unknown as { getBBox(): { height: number; width: number } }).getBBox();
              return { label: p.getAttribute('aria-label') ?? '', height: box.height, width: box.width };
            }),
        );
        assert.equal(bars.length, chart.figures.length, `${chart.id}: one bar per figure`);
        const expected = chart.figures.map(
          (f) =>
            `${[f.proxy, f.scenario, f.series].filter((part) => part !== null).join(', ')}: ${f.value} (${chart.measure})`,
        );
        assert.deepEqual(
          bars.map((b) => b.label).sort(),
          [...expected].sort(),
          `${chart.id}: the bars' figures`,
        );
        // Each bar's height is its figure on one linear scale: height ÷ value is the same for all of them.
        const max = Math.max(...chart.figures.map((f) => f.value));
        const tallest = Math.max(...bars.map((b) => b.height));
        assert.ok(tallest > 50, `${chart.id}: the tallest bar is ${tallest} px`);
        for (const bar of bars) {
          assert.ok(bar.width > 1, `${chart.id}: ${bar.label} has a width`);
          const figure = chart.figures[expected.indexOf(bar.label)]!;
          const scaled = (figure.value / max) * tallest;
          assert.ok(
            Math.abs(bar.height - scaled) <= 1.5,
            `${chart.id}: ${bar.label} is ${bar.height} px, not ${scaled}`,
          );
        }
      }

      // Every figure and text taken from report.json is shown as report.json has it.
      const shown = await page.$$eval('[data-path]', (nodes) =>
        nodes.map((n) => ({ path: n.getAttribute('data-path')!, text: n.textContent ?? '' })),
      );
      assert.ok(shown.length > 50, `${shown.length} values on the page`);
      for (const { path, text } of shown) assert.equal(text, String(at(report, path)), path);
      const paths = new Set(shown.map((s) => s.path));
      for (let i = 0; i < report.results.length; i++) {
        for (const field of ['requests_per_second', 'requests_per_core', 'proxy_cpu', 'errors', 'non_2xx'])
          assert.ok(paths.has(`results.${i}.${field}`), `results.${i}.${field} is on the page`);
        for (const p of ['p50', 'p90', 'p99', 'p99_9'])
          assert.ok(paths.has(`results.${i}.latency_ms.${p}`), `results.${i}.latency_ms.${p} is on the page`);
      }
      for (let i = 0; i < report.memory.length; i++) assert.ok(paths.has(`memory.${i}.peak_rss_mib`));
      // Outside those values and the charts (whose axis ticks are scale marks, not figures), the page has no
      // number: only the fixed labels (HTTP/1.1, HTTP/2, p50 ... p99.9, 2xx).
      const rest = (await page.evaluate(`(() => {
        const texts = [];
        const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node !== null; node = walker.nextNode()) {
          const parent = node.parentElement;
          if (parent === null || parent.closest('[data-path], svg') !== null) continue;
          texts.push(node.textContent ?? '');
        }
        return texts.join(' ');
      })()`)) as string;
      const unlabelled = rest.replace(/HTTP\/1\.1|HTTP\/2|p99\.9|p50|p90|p99|2xx/g, '');
      assert.doesNotMatch(unlabelled, /\d/, `a number on the page that is not report.json's: ${unlabelled}`);
    } finally {
      await browser.close();
    }
  });
});
