/**
 * The report's charts: Vega-Lite specifications compiled to Vega and rendered to SVG headlessly (a View
 * with renderer 'none', then toSVG), never drawn by hand. Each chart draws one bar per figure; each bar's
 * aria-label (Vega-Lite's `description` channel) states its figure as report.json has it.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { ProxyName } from './proxies.ts';
import {
  type ChartFigure,
  type ChartRecord,
  type CompareResult,
  PERCENTILE_LABELS,
  PERCENTILES,
} from './results.ts';
import type { ScenarioName } from './scenarios.ts';

export interface RenderedChart {
  readonly record: ChartRecord;
  readonly svg: string;
}

/** One bar's label: the figure as the page and report.json show it. */
export function figureLabel(chart: Pick<ChartRecord, 'measure'>, figure: ChartFigure): string {
  const what = [figure.proxy, figure.scenario, figure.series].filter((part) => part !== null).join(', ');
  return `${what}: ${figure.value} (${chart.measure})`;
}

/** The figures of each chart, from the summary (nothing is measured or rounded here). */
export function chartRecords(result: CompareResult): ChartRecord[] {
  const charts: ChartRecord[] = [];
  const perCore = result.results.filter((r) => r.requests_per_core !== null);
  if (perCore.length > 0) {
    charts.push({
      id: 'per-core',
      title: 'Throughput per core of proxy CPU, by scenario (requests or WebSocket messages per second)',
      measure: 'per second per core',
      figures: perCore.map((r) => ({
        scenario: r.scenario,
        proxy: r.proxy,
        series: null,
        value: r.requests_per_core!,
      })),
      svg_file: 'per-core.svg',
    });
  }
  for (const scenario of result.scenarios) {
    const rows = result.results.filter((r) => r.scenario === scenario.name);
    if (rows.length === 0) continue;
    charts.push({
      id: `latency-${scenario.name}`,
      title: `Latency percentiles, ${scenario.title} (ms)`,
      measure: 'ms',
      figures: rows.flatMap((r) =>
        PERCENTILES.map((p) => ({
          scenario: r.scenario,
          proxy: r.proxy,
          series: PERCENTILE_LABELS[p],
          value: r.latency_ms[p],
        })),
      ),
      svg_file: `latency-${scenario.name}.svg`,
    });
  }
  if (result.memory.length > 0) {
    charts.push({
      id: 'rss',
      title: 'Peak resident memory over the runs (MiB, all of the proxy’s processes)',
      measure: 'MiB',
      figures: result.memory.map((m) => ({
        scenario: null,
        proxy: m.proxy,
        series: null,
        value: m.peak_rss_mib,
      })),
      svg_file: 'rss.svg',
    });
  }
  return charts;
}

function specFor(
  chart: ChartRecord,
  proxies: readonly ProxyName[],
  scenarios: readonly ScenarioName[],
): TopLevelSpec {
  const values = chart.figures.map((figure) => ({
    scenario: figure.scenario === null ? '' : figure.scenario,
    proxy: figure.proxy,
    series: figure.series ?? '',
    value: figure.value,
    label: figureLabel(chart, figure),
  }));
  const color = { field: 'proxy', type: 'nominal', scale: { domain: [...proxies] }, title: 'proxy' } as const;
  const description = { field: 'label', type: 'nominal' } as const;
  const y = (title: string) => ({ field: 'value', type: 'quantitative', title }) as const;
  const base = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    data: { values },
  };
  if (chart.id === 'per-core') {
    return {
      ...base,
      width: Math.min(900, 110 * Math.max(1, scenarios.length)),
      height: 260,
      mark: 'bar',
      encoding: {
        x: {
          field: 'scenario',
          type: 'nominal',
          sort: [...scenarios],
          title: 'scenario',
          axis: { labelAngle: 0 },
        },
        xOffset: { field: 'proxy', sort: [...proxies] },
        y: y('per second per core'),
        color,
        description,
      },
    } as TopLevelSpec;
  }
  if (chart.id === 'rss') {
    return {
      ...base,
      width: 60 * Math.max(1, proxies.length),
      height: 200,
      mark: 'bar',
      encoding: {
        x: { field: 'proxy', type: 'nominal', sort: [...proxies], title: 'proxy', axis: { labelAngle: 0 } },
        y: y('peak RSS (MiB)'),
        color,
        description,
      },
    } as TopLevelSpec;
  }
  return {
    ...base,
    width: 520,
    height: 200,
    mark: 'bar',
    encoding: {
      x: {
        field: 'series',
        type: 'nominal',
        sort: PERCENTILES.map((p) => PERCENTILE_LABELS[p]),
        title: 'percentile',
        axis: { labelAngle: 0 },
      },
      xOffset: { field: 'proxy', sort: [...proxies] },
      y: y('latency (ms)'),
      color,
      description,
    },
  } as TopLevelSpec;
}

/** Renders one chart to SVG without a browser. */
export async function renderChart(
  chart: ChartRecord,
  proxies: readonly ProxyName[],
  scenarios: readonly ScenarioName[],
): Promise<string> {
  const compiled = compile(specFor(chart, proxies, scenarios)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The charts of a result with their SVG. */
export async function renderCharts(result: CompareResult): Promise<RenderedChart[]> {
  const proxies = result.proxies.filter((p) => p.status === 'measured').map((p) => p.name);
  const scenarios = result.scenarios.map((s) => s.name);
  const out: RenderedChart[] = [];
  for (const record of chartRecords(result))
    out.push({ record, svg: await renderChart(record, proxies, scenarios) });
  return out;
}
