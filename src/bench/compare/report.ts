/**
 * A comparison's report files: report.json (every figure), report.md (tables, the charts as linked SVG
 * files) and report.html (the same tables with the charts' SVG inlined, so it needs no network). Every
 * figure on the HTML page is written from report.json as it is (`data-path` names where), so the page and
 * the JSON cannot disagree.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RenderedChart, renderCharts } from './charts.ts';
import { type CompareResult, PERCENTILE_LABELS, PERCENTILES } from './results.ts';

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** A figure of report.json on the page: its value as JSON writes it, and where it is. */
function num(value: number | null, path: string): string {
  if (value === null) return '–';
  return `<span class="num" data-path="${path}">${String(value)}</span>`;
}

/** A text of report.json on the page, and where it is. */
function txt(value: string, path: string): string {
  return `<span data-path="${path}">${escapeHtml(value)}</span>`;
}

function table(head: readonly string[], rows: readonly (readonly string[])[], className = ''): string {
  return `<table${className === '' ? '' : ` class="${className}"`}><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${rows
    .map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

function mdTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  return [
    `| ${head.join(' | ')} |`,
    `| ${head.map(() => '---').join(' | ')} |`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n');
}

const RESULT_HEAD = [
  'proxy',
  'per second',
  'per core',
  'vs zproxy (per core)',
  'proxy CPU',
  ...PERCENTILES.map((p) => `${PERCENTILE_LABELS[p]} ms`),
  'errors',
  'non-2xx',
  'rounds',
  'disturbed',
];

export function renderHtml(result: CompareResult, charts: readonly RenderedChart[]): string {
  const m = result.method;
  const method = [
    `${num(m.rounds, 'method.rounds')} interleaved round(s); measured runs of ${num(m.duration_s, 'method.duration_s')} s after warm-ups of ${num(m.warmup_s, 'method.warmup_s')} s`,
    `HTTP/1.1 and WebSocket: ${num(m.connections, 'method.connections')} connections; HTTP/2: ${num(m.h2_connections, 'method.h2_connections')} connections × ${num(m.h2_streams, 'method.h2_streams')} streams`,
    `proxies pinned to CPU ${num(m.proxy_cpu, 'method.proxy_cpu')}, generator and origin to CPU ${num(m.load_cpu, 'method.load_cpu')}; up to ${num(m.idle_upstream, 'method.idle_upstream')} idle upstream connections each`,
    `origin: ${txt(m.origin, 'method.origin')}`,
    `routes: ${txt(m.plan, 'method.plan')}`,
    `load: ${txt(m.generator, 'method.generator')}`,
  ];
  const proxies = table(
    ['proxy', 'status', 'version', 'note'],
    result.proxies.map((p, i) => [
      txt(p.name, `proxies.${i}.name`),
      `<span class="status-${p.status}" data-path="proxies.${i}.status">${p.status}</span>`,
      p.version === null ? '' : txt(p.version, `proxies.${i}.version`),
      p.reason === null ? '' : txt(p.reason, `proxies.${i}.reason`),
    ]),
    'text-table',
  );
  const skipped =
    result.skipped.length === 0
      ? ''
      : `<h2>Skipped</h2><ul>${result.skipped
          .map(
            (s, i) =>
              `<li>${txt(s.scenario, `skipped.${i}.scenario`)}${s.proxy === null ? '' : ` on ${txt(s.proxy, `skipped.${i}.proxy`)}`}: ${txt(s.reason, `skipped.${i}.reason`)}</li>`,
          )
          .join('')}</ul>`;
  const figures = charts
    .map(
      (chart, index) =>
        `<figure data-chart="${chart.record.id}"><figcaption>${txt(chart.record.title, `charts.${index}.title`)}</figcaption>${chart.svg}</figure>`,
    )
    .join('\n');
  const sections = result.scenarios
    .map((scenario, si) => {
      const rows: string[][] = [];
      result.results.forEach((r, i) => {
        if (r.scenario !== scenario.name) return;
        const at = `results.${i}`;
        rows.push([
          txt(r.proxy, `${at}.proxy`),
          num(r.requests_per_second, `${at}.requests_per_second`),
          num(r.requests_per_core, `${at}.requests_per_core`),
          num(r.per_core_vs_zproxy, `${at}.per_core_vs_zproxy`),
          num(r.proxy_cpu, `${at}.proxy_cpu`),
          ...PERCENTILES.map((p) => num(r.latency_ms[p], `${at}.latency_ms.${p}`)),
          num(r.errors, `${at}.errors`),
          num(r.non_2xx, `${at}.non_2xx`),
          num(r.rounds, `${at}.rounds`),
          num(r.disturbed_rounds, `${at}.disturbed_rounds`),
        ]);
      });
      const body = rows.length === 0 ? '<p>Not measured (see Skipped).</p>' : table(RESULT_HEAD, rows);
      return `<section data-scenario="${scenario.name}"><h3>${txt(scenario.name, `scenarios.${si}.name`)}: ${txt(scenario.title, `scenarios.${si}.title`)}</h3>${body}</section>`;
    })
    .join('\n');
  const memory = table(
    ['proxy', 'peak RSS (MiB)'],
    result.memory.map((mem, i) => [
      txt(mem.proxy, `memory.${i}.proxy`),
      num(mem.peak_rss_mib, `memory.${i}.peak_rss_mib`),
    ]),
  );
  const notes =
    result.notes.length === 0
      ? ''
      : `<h2>Notes</h2><ul>${result.notes.map((n, i) => `<li>${txt(n, `notes.${i}`)}</li>`).join('')}</ul>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(result.title)}: ${escapeHtml(result.started_at)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; max-width: 72rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1rem 0 2rem; }
figure svg { max-width: 100%; height: auto; }
.text-table td, .text-table th { text-align: left; }
figcaption { font-weight: 600; margin-bottom: 0.5rem; }
.status-missing, .status-failed { color: #b00; font-weight: 600; }
code { background: #f4f4f4; padding: 0 0.2rem; }
</style>
</head>
<body>
<h1>${txt(result.title, 'title')}</h1>
${result.note === null ? '' : `<p class="note">${txt(result.note, 'note')}</p>`}
<p>Command: <code>${txt(result.command, 'command')}</code><br>
Started <span data-path="started_at">${escapeHtml(result.started_at)}</span>, finished <span data-path="finished_at">${escapeHtml(result.finished_at)}</span>.<br>
Machine: ${txt(result.machine.cpu_model, 'machine.cpu_model')}, ${num(result.machine.cpus, 'machine.cpus')} CPUs, Linux ${txt(result.machine.kernel, 'machine.kernel')}, Node ${txt(result.machine.node, 'machine.node')}.</p>
<h2>Method</h2>
<ul>${method.map((line) => `<li>${line}</li>`).join('')}</ul>
<h2>Proxies</h2>
${proxies}
${skipped}
<h2>Charts</h2>
${figures}
<h2>Results (medians over the rounds)</h2>
${sections}
<h2>Memory</h2>
${memory}
${notes}
<p>Every figure: <a href="report.json">report.json</a> (each run in <code>runs</code>).</p>
</body>
</html>
`;
}

/** Inline code in Markdown, fenced with more backticks than the text has in a row. */
function markdownCode(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return longest === 0 ? `${fence}${text}${fence}` : `${fence} ${text} ${fence}`;
}

export function renderMarkdown(result: CompareResult, charts: readonly RenderedChart[]): string {
  const m = result.method;
  const lines = [
    `# ${result.title}: ${result.started_at.slice(0, 10)}`,
    '',
    ...(result.note === null ? [] : [result.note, '']),
    `Command: ${markdownCode(result.command)}; started ${result.started_at}, finished ${result.finished_at}.`,
    `Machine: ${result.machine.cpu_model}, ${result.machine.cpus} CPUs, Linux ${result.machine.kernel}, Node ${result.machine.node}.`,
    'The same figures with the charts inlined: [report.html](report.html); every run: [report.json](report.json).',
    '',
    '## Method',
    '',
    `- ${m.rounds} interleaved round(s); measured runs of ${m.duration_s} s after warm-ups of ${m.warmup_s} s.`,
    `- HTTP/1.1 and WebSocket: ${m.connections} connections; HTTP/2: ${m.h2_connections} connections × ${m.h2_streams} streams.`,
    `- Proxies pinned to CPU ${m.proxy_cpu}, generator and origin to CPU ${m.load_cpu}; up to ${m.idle_upstream} idle upstream connections each.`,
    `- Origin: ${m.origin}.`,
    `- Routes: ${m.plan}.`,
    `- Load: ${m.generator}.`,
    '',
    '## Proxies',
    '',
    mdTable(
      ['proxy', 'status', 'version', 'note'],
      result.proxies.map((p) => [
        p.name,
        p.status === 'measured' ? p.status : `**${p.status}**`,
        p.version ?? '',
        p.reason ?? '',
      ]),
    ),
    '',
  ];
  if (result.skipped.length > 0) {
    lines.push('## Skipped', '');
    for (const s of result.skipped)
      lines.push(`- ${s.scenario}${s.proxy === null ? '' : ` on ${s.proxy}`}: ${s.reason}`);
    lines.push('');
  }
  if (charts.length > 0) {
    lines.push('## Charts', '');
    for (const chart of charts) lines.push(`![${chart.record.title}](${chart.record.svg_file})`, '');
  }
  lines.push('## Results (medians over the rounds)', '');
  for (const scenario of result.scenarios) {
    const rows = result.results
      .filter((r) => r.scenario === scenario.name)
      .map((r) => [
        r.proxy,
        String(r.requests_per_second),
        String(r.requests_per_core ?? '–'),
        String(r.per_core_vs_zproxy ?? '–'),
        String(r.proxy_cpu),
        ...PERCENTILES.map((p) => String(r.latency_ms[p])),
        String(r.errors),
        String(r.non_2xx),
        String(r.rounds),
        String(r.disturbed_rounds),
      ]);
    lines.push(`### ${scenario.name}: ${scenario.title}`, '');
    lines.push(rows.length === 0 ? 'Not measured (see Skipped).' : mdTable(RESULT_HEAD, rows), '');
  }
  lines.push('## Memory', '');
  lines.push(
    mdTable(
      ['proxy', 'peak RSS (MiB)'],
      result.memory.map((mem) => [mem.proxy, String(mem.peak_rss_mib)]),
    ),
    '',
  );
  if (result.notes.length > 0) {
    lines.push('## Notes', '');
    for (const note of result.notes) lines.push(`- ${note}`);
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}

/** Renders the charts and writes report.json, report.md, report.html and the SVG files into `dir`. */
export async function writeReport(result: CompareResult, dir: string): Promise<CompareResult> {
  const charts = await renderCharts(result);
  const withCharts: CompareResult = { ...result, charts: charts.map((chart) => chart.record) };
  mkdirSync(dir, { recursive: true });
  for (const chart of charts) writeFileSync(join(dir, chart.record.svg_file), chart.svg);
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(withCharts, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), renderMarkdown(withCharts, charts));
  writeFileSync(join(dir, 'report.html'), renderHtml(withCharts, charts));
  return withCharts;
}

/** The summary printed at the end of a run: one table per scenario. */
export function formatSummary(result: CompareResult): string {
  const out: string[] = [];
  for (const scenario of result.scenarios) {
    const rows = result.results.filter((r) => r.scenario === scenario.name);
    if (rows.length === 0) continue;
    out.push(`\n${scenario.name}: ${scenario.title}`);
    out.push(
      `  ${'proxy'.padEnd(8)} ${`${scenario.unit}/s`.padStart(9)} ${'per core'.padStart(9)} ${'vs zproxy'.padStart(9)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'errors'.padStart(7)}`,
    );
    for (const r of rows) {
      out.push(
        `  ${r.proxy.padEnd(8)} ${String(r.requests_per_second).padStart(9)} ${String(r.requests_per_core ?? '-').padStart(9)} ${String(r.per_core_vs_zproxy ?? '-').padStart(9)} ${String(r.latency_ms.p50).padStart(8)} ${String(r.latency_ms.p99).padStart(8)} ${String(r.errors + r.non_2xx).padStart(7)}`,
      );
    }
  }
  if (result.memory.length > 0) {
    out.push(`\npeak RSS (MiB): ${result.memory.map((m) => `${m.proxy} ${m.peak_rss_mib}`).join(', ')}`);
  }
  const missing = result.proxies.filter((p) => p.status !== 'measured');
  for (const p of missing) out.push(`${p.name}: ${p.status.toUpperCase()}: ${p.reason}`);
  for (const s of result.skipped)
    out.push(`skipped: ${s.scenario}${s.proxy === null ? '' : ` on ${s.proxy}`}: ${s.reason}`);
  return `${out.join('\n')}\n`;
}
