// The bench's results: the record of a run, its summary (medians, same-round ratios to nginx) and the
// Markdown report.
import type { LoadResult } from './load-tool.ts';

export const TARGETS = ['direct', 'nginx', 'zproxy'] as const;
export type TargetName = (typeof TARGETS)[number];

export const SCENARIOS = [
  'small',
  '64k',
  'close',
  'h2c-small',
  'h2c-64k',
  'h2-small',
  'h2-64k',
  'ws-small',
  'ws-16k',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/**
 * Scenario groups, selectable with `--only`: HTTP/1.1 (wrk), HTTP/2 (h2load), WebSocket over HTTP/1.1
 * (bench/lib/ws-load-client.ts against a `ws` echo server).
 */
export const GROUPS = ['h1', 'h2', 'ws'] as const;
export type GroupName = (typeof GROUPS)[number];

/** The group's name in report file names and titles. */
export const GROUP_FILE_NAMES: Record<GroupName, string> = { h1: 'http1', h2: 'http2', ws: 'websocket' };
export const GROUP_TITLES: Record<GroupName, string> = { h1: 'HTTP/1.1', h2: 'HTTP/2', ws: 'WebSocket' };

/**
 * How the load generator talks to the target: HTTP/1.1, HTTP/2 with prior knowledge, HTTP/2 over TLS,
 * WebSocket (an HTTP/1.1 Upgrade, then frames).
 */
export type LoadProtocol = 'http1' | 'h2c' | 'h2' | 'ws';

export interface ScenarioSpec {
  readonly group: GroupName;
  readonly protocol: LoadProtocol;
  readonly tool: 'wrk' | 'h2load' | 'ws-load';
  readonly path: string;
  readonly closeConnections: boolean;
  /** The message each WebSocket connection sends and gets back (ws-load scenarios); null for HTTP. */
  readonly message: { readonly bytes: number; readonly binary: boolean } | null;
  readonly title: string;
}

/** What one unit of the scenario's throughput is: a request (HTTP) or a round trip (WebSocket echo). */
export function unitOf(scenario: ScenarioName): 'req' | 'msg' {
  return SCENARIO_SPECS[scenario].group === 'ws' ? 'msg' : 'req';
}

export const SCENARIO_SPECS: Record<ScenarioName, ScenarioSpec> = {
  small: {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/small',
    closeConnections: false,
    message: null,
    title: '13-byte response, keep-alive',
  },
  '64k': {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/64k',
    closeConnections: false,
    message: null,
    title: '64 KiB response, keep-alive',
  },
  close: {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/small',
    closeConnections: true,
    message: null,
    title: '13-byte response, one connection per request (`Connection: close`)',
  },
  'h2c-small': {
    group: 'h2',
    protocol: 'h2c',
    tool: 'h2load',
    path: '/small',
    closeConnections: false,
    message: null,
    title: '13-byte response, HTTP/2 with prior knowledge (h2c)',
  },
  'h2c-64k': {
    group: 'h2',
    protocol: 'h2c',
    tool: 'h2load',
    path: '/64k',
    closeConnections: false,
    message: null,
    title: '64 KiB response, HTTP/2 with prior knowledge (h2c)',
  },
  'h2-small': {
    group: 'h2',
    protocol: 'h2',
    tool: 'h2load',
    path: '/small',
    closeConnections: false,
    message: null,
    title: '13-byte response, HTTP/2 over TLS (ALPN h2)',
  },
  'h2-64k': {
    group: 'h2',
    protocol: 'h2',
    tool: 'h2load',
    path: '/64k',
    closeConnections: false,
    message: null,
    title: '64 KiB response, HTTP/2 over TLS (ALPN h2)',
  },
  'ws-small': {
    group: 'ws',
    protocol: 'ws',
    tool: 'ws-load',
    path: '/ws',
    closeConnections: false,
    message: { bytes: 32, binary: false },
    title: 'WebSocket echo, 32-byte text messages',
  },
  'ws-16k': {
    group: 'ws',
    protocol: 'ws',
    tool: 'ws-load',
    path: '/ws',
    closeConnections: false,
    message: { bytes: 16 * 1024, binary: true },
    title: 'WebSocket echo, 16 KiB binary messages',
  },
};

/** The scenario groups that `scenarios` touch, in canonical order. */
export function groupsOf(scenarios: readonly ScenarioName[]): GroupName[] {
  return GROUPS.filter((group) => scenarios.some((scenario) => SCENARIO_SPECS[scenario].group === group));
}

export interface RunRecord
  extends Pick<
    LoadResult,
    | 'requests'
    | 'seconds'
    | 'requestsPerSecond'
    | 'latencyUs'
    | 'errors'
    | 'errorCount'
    | 'negotiatedProtocol'
    | 'tls'
  > {
  // For WebSocket scenarios, `requests` are round trips (a message and its echo), `latencyUs` their times.
  readonly round: number;
  readonly scenario: ScenarioName;
  readonly target: TargetName;
  /** CPU time of the measured process(es) divided by the run's duration (1 = one core fully used). */
  readonly cpuFraction: number;
  /** requestsPerSecond / cpuFraction; null when no CPU time was measured. */
  readonly requestsPerCore: number | null;
  /**
   * The origin's CPU fraction in the same run (it shares its core with the load generator): the nginx
   * origin worker, or the echo server for WebSocket scenarios.
   */
  readonly originCpuFraction: number;
  /** The load generator's (wrk's, h2load's, ws-load's) own CPU fraction; null when it could not be read. */
  readonly loadGeneratorCpuFraction: number | null;
  /**
   * CPU time on the proxy CPU and on the load CPU that no process of the bench used (other processes on the
   * machine, hypervisor steal), as a fraction of one core over the run; null when it could not be measured.
   */
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
}

/** Runs where other work took more than this fraction of a bench CPU are marked as disturbed. */
export const DISTURBANCE_LIMIT = 0.1;

/** Other load over the limit on a CPU the run used (`direct` leaves the proxy CPU to whoever wants it). */
export function isDisturbed(run: RunRecord): boolean {
  const proxyCpu = run.target === 'direct' ? 0 : (run.otherLoad.proxyCpu ?? 0);
  return proxyCpu > DISTURBANCE_LIMIT || (run.otherLoad.loadCpu ?? 0) > DISTURBANCE_LIMIT;
}

/** A load CPU this busy (origin + load generator + others, as a fraction of one core) is the limit. */
export const SATURATION_LIMIT = 0.9;

/**
 * How busy the load CPU was during a run: the origin's, the load generator's and other processes' CPU
 * fractions added up; null when the generator's or the others' share could not be read.
 */
export function loadCpuBusy(run: RunRecord): number | null {
  if (run.loadGeneratorCpuFraction === null || run.otherLoad.loadCpu === null) return null;
  return run.originCpuFraction + run.loadGeneratorCpuFraction + run.otherLoad.loadCpu;
}

/** True when the load CPU was the limit: the target may have been able to do more than it was asked. */
export function isLoadSaturated(run: RunRecord): boolean {
  return (loadCpuBusy(run) ?? 0) >= SATURATION_LIMIT;
}

export interface MemoryRecord {
  /** The figure the report uses, in KiB. */
  readonly peakRssKiB: number;
  /** How it was obtained. */
  readonly rule: string;
  readonly processes: readonly { readonly pid: number; readonly peakRssKiB: number | null }[];
}

export interface MachineInfo {
  readonly cpuModel: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly nginx: string;
  /** wrk's version; null when no HTTP/1.1 scenario ran. */
  readonly wrk: string | null;
  /** h2load's version; null when no HTTP/2 scenario ran. */
  readonly h2load: string | null;
  /** The `ws` package's version (the echo server); null when no WebSocket scenario ran. */
  readonly ws: string | null;
  readonly commit: string;
}

export interface MethodInfo {
  readonly rounds: number;
  readonly durationS: number;
  readonly warmupS: number;
  /** wrk connections (HTTP/1.1 scenarios). */
  readonly connections: number;
  /** h2load connections (`-c`) and concurrent streams per connection (`-m`) (HTTP/2 scenarios). */
  readonly h2Clients: number;
  readonly h2Streams: number;
  /** WebSocket connections of the load generator (WebSocket scenarios). */
  readonly wsConnections: number;
  /** Idle upstream connections each proxy keeps (nginx `keepalive`, zproxy `max_idle_per_target`). */
  readonly upstreamKeepalive: number;
  readonly proxyCpu: number;
  readonly loadCpu: number;
  readonly scenarios: readonly ScenarioName[];
  readonly targets: readonly TargetName[];
  readonly clockTicksPerSecond: number;
}

export interface BenchResult {
  readonly date: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: MachineInfo;
  readonly method: MethodInfo;
  readonly runs: readonly RunRecord[];
  /** Peak memory per scenario group (the groups run one after the other, the peak is reset in between). */
  readonly memory: Partial<Record<GroupName, Partial<Record<TargetName, MemoryRecord>>>>;
}

// ---- statistics -------------------------------------------------------------------------------------

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function spread(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

export interface TargetSummary {
  readonly target: TargetName;
  readonly rounds: number;
  readonly requestsPerSecond: Spread;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly cpuFraction: number;
  readonly requestsPerCore: Spread | null;
  readonly originCpuFraction: number;
  readonly loadGeneratorCpuFraction: number | null;
  /** Median of the runs' load CPU use (origin + load generator + others); null when unknown. */
  readonly loadCpuBusy: number | null;
  /** Runs in which the load CPU was the limit (see isLoadSaturated). */
  readonly saturatedRuns: number;
  /** Median CPU use by other processes on the proxy CPU and the load CPU. */
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  readonly errorCount: number;
  readonly disturbedRuns: number;
  /** Same-round ratios to nginx: req/s per core, raw req/s, p99 latency. */
  readonly toNginx: {
    readonly perCore: Spread | null;
    readonly raw: Spread | null;
    readonly p99: Spread | null;
  };
  /** Same-round ratios to direct (the origin alone): raw req/s, p99 latency. */
  readonly toDirect: {
    readonly raw: Spread | null;
    readonly p99: Spread | null;
  };
}

function runsOf(result: BenchResult, scenario: ScenarioName, target: TargetName): RunRecord[] {
  return result.runs.filter((run) => run.scenario === scenario && run.target === target);
}

function pairedRatios(
  runs: readonly RunRecord[],
  reference: readonly RunRecord[],
  value: (run: RunRecord) => number | null,
): number[] {
  const ratios: number[] = [];
  for (const run of runs) {
    const other = reference.find((candidate) => candidate.round === run.round);
    if (other === undefined) continue;
    const a = value(run);
    const b = value(other);
    if (a !== null && b !== null && b > 0) ratios.push(a / b);
  }
  return ratios;
}

export function summarize(
  result: BenchResult,
  scenario: ScenarioName,
  target: TargetName,
): TargetSummary | null {
  const runs = runsOf(result, scenario, target);
  if (runs.length === 0) return null;
  const nginx = runsOf(result, scenario, 'nginx');
  const direct = runsOf(result, scenario, 'direct');
  const perCore = runs.flatMap((run) => (run.requestsPerCore === null ? [] : [run.requestsPerCore]));
  const medianOf = (pick: (run: RunRecord) => number | null): number | null => {
    const values = runs.flatMap((run) => {
      const value = pick(run);
      return value === null ? [] : [value];
    });
    return values.length === 0 ? null : median(values);
  };
  return {
    target,
    rounds: runs.length,
    requestsPerSecond: spread(runs.map((run) => run.requestsPerSecond))!,
    p50Us: median(runs.map((run) => run.latencyUs.p50)),
    p99Us: median(runs.map((run) => run.latencyUs.p99)),
    cpuFraction: median(runs.map((run) => run.cpuFraction)),
    requestsPerCore: spread(perCore),
    originCpuFraction: median(runs.map((run) => run.originCpuFraction)),
    loadGeneratorCpuFraction: medianOf((run) => run.loadGeneratorCpuFraction),
    loadCpuBusy: medianOf(loadCpuBusy),
    saturatedRuns: runs.filter(isLoadSaturated).length,
    otherLoad: {
      proxyCpu: medianOf((run) => run.otherLoad.proxyCpu),
      loadCpu: medianOf((run) => run.otherLoad.loadCpu),
    },
    errorCount: runs.reduce((sum, run) => sum + run.errorCount, 0),
    disturbedRuns: runs.filter(isDisturbed).length,
    toNginx: {
      perCore: spread(pairedRatios(runs, nginx, (run) => run.requestsPerCore)),
      raw: spread(pairedRatios(runs, nginx, (run) => run.requestsPerSecond)),
      p99: spread(pairedRatios(runs, nginx, (run) => run.latencyUs.p99)),
    },
    toDirect: {
      raw: spread(pairedRatios(runs, direct, (run) => run.requestsPerSecond)),
      p99: spread(pairedRatios(runs, direct, (run) => run.latencyUs.p99)),
    },
  };
}

// ---- targets ----------------------------------------------------------------------------------------

export interface TargetCheck {
  readonly goal: string;
  readonly limit: string;
  readonly measured: string;
  /** PASS, MISS, or why it could not be evaluated. */
  readonly verdict: string;
}

const MIB = 1024;
const RSS_LIMIT_MIB = 100;

export function checkTargets(result: BenchResult): TargetCheck[] {
  const checks: TargetCheck[] = [];
  /** A ratio of zproxy to `reference` with its limit, or with no limit (`null`: measured, no goal yet). */
  const ratioCheck = (
    goal: string,
    scenario: ScenarioName,
    pick: (s: TargetSummary) => Spread | null,
    limit: number | null,
    atLeast: boolean,
    reference: TargetName = 'nginx',
  ): void => {
    const summary = summarize(result, scenario, 'zproxy');
    const limitText = limit === null ? '—' : `${atLeast ? '≥' : '≤'} ${limit.toFixed(2)}`;
    if (summary === null) {
      checks.push({
        goal,
        limit: limitText,
        measured: '–',
        verdict: `not measured (no zproxy ${scenario} runs)`,
      });
      return;
    }
    const ratio = pick(summary);
    if (ratio === null) {
      checks.push({
        goal,
        limit: limitText,
        measured: '–',
        verdict: `not measured (no ${reference} ${scenario} runs)`,
      });
      return;
    }
    const involved = result.runs.filter(
      (run) => run.scenario === scenario && (run.target === 'zproxy' || run.target === reference),
    );
    const notes = [
      ...(involved.some((run) => run.errorCount > 0) ? ['runs had errors'] : []),
      ...(involved.some(isDisturbed) ? ['disturbed runs'] : []),
    ];
    const errors = notes.length > 0 ? ` (${notes.join(', ')})` : '';
    checks.push({
      goal,
      limit: limitText,
      measured: formatRatio(ratio),
      verdict:
        limit === null
          ? `no goal yet${errors}`
          : `${(atLeast ? ratio.median >= limit : ratio.median <= limit) ? 'PASS' : 'MISS'}${errors}`,
    });
  };
  // A group's goals are listed when any of its scenarios ran.
  const groups = groupsOf(result.method.scenarios);
  if (groups.includes('h1')) {
    ratioCheck('small: req/s per core, zproxy ÷ nginx', 'small', (s) => s.toNginx.perCore, 0.5, true);
    ratioCheck('64 KiB: req/s per core, zproxy ÷ nginx', '64k', (s) => s.toNginx.perCore, 0.8, true);
    ratioCheck('small: p99 latency, zproxy ÷ nginx', 'small', (s) => s.toNginx.p99, 3, false);
  }
  if (groups.includes('h2')) {
    ratioCheck('h2c-small: req/s per core, zproxy ÷ nginx', 'h2c-small', (s) => s.toNginx.perCore, 0.4, true);
    ratioCheck('h2-small: req/s per core, zproxy ÷ nginx', 'h2-small', (s) => s.toNginx.perCore, 0.4, true);
  }
  if (groups.includes('ws')) {
    // Issue 4 asks for these figures without limits: they are reported, not judged.
    for (const scenario of result.method.scenarios.filter((name) => SCENARIO_SPECS[name].group === 'ws')) {
      ratioCheck(
        `${scenario}: msg/s, zproxy ÷ direct`,
        scenario,
        (s) => s.toDirect.raw,
        null,
        true,
        'direct',
      );
      ratioCheck(
        `${scenario}: p99 round trip, zproxy ÷ direct`,
        scenario,
        (s) => s.toDirect.p99,
        null,
        false,
        'direct',
      );
      ratioCheck(
        `${scenario}: msg/s per core, zproxy ÷ nginx`,
        scenario,
        (s) => s.toNginx.perCore,
        null,
        true,
      );
      ratioCheck(`${scenario}: msg/s, zproxy ÷ nginx`, scenario, (s) => s.toNginx.raw, null, true);
      ratioCheck(`${scenario}: p99 round trip, zproxy ÷ nginx`, scenario, (s) => s.toNginx.p99, null, false);
    }
  }
  if (!groups.includes('h1')) return checks;
  // The memory goal is issue 2's, for HTTP/1.1; the HTTP/2 figures are in the tables.
  const memory = result.memory.h1?.zproxy;
  const rssGoal = 'zproxy peak RSS, HTTP/1.1 scenarios';
  const rssLimit = `≤ ${RSS_LIMIT_MIB} MiB`;
  if (memory === undefined) {
    checks.push({
      goal: rssGoal,
      limit: rssLimit,
      measured: '–',
      verdict: 'not measured (zproxy did not run)',
    });
  } else {
    const ok = memory.peakRssKiB <= RSS_LIMIT_MIB * MIB;
    checks.push({
      goal: rssGoal,
      limit: rssLimit,
      measured: formatMiB(memory.peakRssKiB),
      verdict: ok ? 'PASS' : 'MISS',
    });
  }
  return checks;
}

// ---- formatting -------------------------------------------------------------------------------------

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatLatency(us: number): string {
  if (us < 1000) return `${Math.round(us)} µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(2)} ms`;
  return `${(us / 1e6).toFixed(2)} s`;
}

export function formatPercent(fraction: number): string {
  return `${Math.round(fraction * 100)} %`;
}

export function formatMiB(kib: number): string {
  return `${(kib / MIB).toFixed(1)} MiB`;
}

function formatSpread(value: Spread, format: (n: number) => string): string {
  if (value.min === value.max) return format(value.median);
  return `${format(value.median)} (${format(value.min)}–${format(value.max)})`;
}

function formatRatio(value: Spread): string {
  return formatSpread(value, (n) => n.toFixed(2));
}

// ---- Markdown ---------------------------------------------------------------------------------------

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** The results of one scenario as a Markdown table (also printed by the bench at the end). */
export function scenarioTable(result: BenchResult, scenario: ScenarioName): string {
  const unit = unitOf(scenario);
  // WebSocket scenarios also compare with the upstream alone (HTTP/1.1's direct has no such column).
  const withDirect = SCENARIO_SPECS[scenario].group === 'ws';
  const ratio = (value: Spread | null): string => (value === null ? '–' : formatRatio(value));
  const rows: string[][] = [];
  for (const target of result.method.targets) {
    const s = summarize(result, scenario, target);
    if (s === null) continue;
    const memory = result.memory[SCENARIO_SPECS[scenario].group]?.[target];
    rows.push([
      `${target}${s.errorCount > 0 ? ' ⚠' : ''}${s.disturbedRuns > 0 ? ' †' : ''}`,
      formatSpread(s.requestsPerSecond, formatCount),
      formatLatency(s.p50Us),
      formatLatency(s.p99Us),
      formatPercent(s.cpuFraction),
      s.requestsPerCore === null ? '–' : formatSpread(s.requestsPerCore, formatCount),
      memory === undefined ? '–' : formatMiB(memory.peakRssKiB),
      ratio(s.toNginx.perCore),
      ratio(s.toNginx.raw),
      ...(withDirect ? [ratio(s.toDirect.raw), ratio(s.toDirect.p99)] : []),
    ]);
  }
  return table(
    [
      'target',
      `${unit}/s median (min–max)`,
      'p50',
      'p99',
      'CPU used',
      `${unit}/s per core`,
      'peak RSS',
      'ratio to nginx (per core)',
      `ratio to nginx (${unit}/s)`,
      ...(withDirect ? [`ratio to direct (${unit}/s)`, 'p99 ratio to direct'] : []),
    ],
    rows,
  );
}

function cpuTable(result: BenchResult, scenario: ScenarioName): string {
  const { loadCpu, proxyCpu } = result.method;
  const optional = (value: number | null): string => (value === null ? '?' : formatPercent(value));
  const rows: string[][] = [];
  for (const target of result.method.targets) {
    const s = summarize(result, scenario, target);
    if (s === null) continue;
    rows.push([
      target,
      formatPercent(s.originCpuFraction),
      optional(s.loadGeneratorCpuFraction),
      optional(s.otherLoad.loadCpu),
      `${optional(s.loadCpuBusy)}${s.saturatedRuns > 0 ? ' ‡' : ''}`,
      optional(s.otherLoad.proxyCpu),
    ]);
  }
  const origin = SCENARIO_SPECS[scenario].group === 'ws' ? 'echo server' : 'origin';
  return table(
    [
      'target',
      `${origin} (CPU ${loadCpu})`,
      `${SCENARIO_SPECS[scenario].tool} (CPU ${loadCpu})`,
      `other processes (CPU ${loadCpu})`,
      `CPU ${loadCpu} in all`,
      `other processes (CPU ${proxyCpu})`,
    ],
    rows,
  );
}

/** A sentence on the runs of `scenario` in which the load CPU was the limit; null when there were none. */
function saturationText(result: BenchResult, scenario: ScenarioName): string | null {
  const { loadCpu } = result.method;
  const saturated: string[] = [];
  for (const target of result.method.targets) {
    const runs = runsOf(result, scenario, target);
    const count = runs.filter(isLoadSaturated).length;
    if (count > 0) saturated.push(`${target} (${count} of ${runs.length} runs)`);
  }
  if (saturated.length === 0) return null;
  const unit = unitOf(scenario);
  return (
    `‡ CPU ${loadCpu} was saturated (at least ${formatPercent(SATURATION_LIMIT)} busy) for ${saturated.join(', ')}: ` +
    `the origin and the load generator could not ask for more, so the ${unit}/s of these targets is a floor and ` +
    `a ratio of ${unit}/s to them understates the faster side. The ${unit}/s per core figures (÷ the proxy's own ` +
    'CPU) still compare what each proxy costs.'
  );
}

export function targetsTable(result: BenchResult): string {
  return table(
    ['goal', 'limit', 'measured (median of rounds, min–max)', 'result'],
    checkTargets(result).map((check) => [check.goal, check.limit, check.measured, check.verdict]),
  );
}

function describeErrors(run: RunRecord): string {
  const parts = Object.entries(run.errors)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${kind === 'status' ? 'status ≥ 400' : kind} ${count}`);
  return parts.join(', ');
}

/** What h2load reported about the connections of a scenario's runs, per target; null for wrk scenarios. */
function negotiatedText(result: BenchResult, scenario: ScenarioName): string | null {
  if (SCENARIO_SPECS[scenario].tool !== 'h2load') return null;
  const parts: string[] = [];
  for (const target of result.method.targets) {
    const seen = new Set(
      runsOf(result, scenario, target).map((run) =>
        [run.negotiatedProtocol ?? '?', ...(run.tls === null ? [] : [run.tls])].join(', '),
      ),
    );
    if (seen.size > 0) parts.push(`${target} ${[...seen].join(' / ')}`);
  }
  return parts.length === 0 ? null : parts.join('; ');
}

export function renderMarkdown(result: BenchResult, jsonFileName: string): string {
  const { machine, method } = result;
  const out: string[] = [];
  const groups = groupsOf(method.scenarios);
  const h1 = groups.includes('h1');
  const h2 = groups.includes('h2');
  const ws = groups.includes('ws');
  const http = h1 || h2;
  const titles = groups.map((group) => GROUP_TITLES[group]);
  const title =
    titles.length > 1 ? `${titles.slice(0, -1).join(', ')} and ${titles[titles.length - 1]}` : titles[0];
  out.push(`# ${title} benchmark, ${result.date}`);
  out.push('');
  out.push(
    `zproxy against nginx${method.targets.includes('direct') ? ' (and the origin alone, `direct`)' : ''}, ` +
      'measured in the same run by `npm run bench` ' +
      `(\`bench/run.ts\`). Raw per-round figures: [${jsonFileName}](${jsonFileName}). ` +
      'How to read this page: [docs/performance.md](../performance.md).',
  );
  out.push('');
  out.push('## Machine');
  out.push('');
  out.push(
    table(
      ['', 'value'],
      [
        ['CPU', `${machine.cpuModel}, ${machine.cores} cores`],
        ['Memory', `${machine.memoryGiB.toFixed(1)} GiB`],
        ['Kernel', machine.kernel],
        ['Node (zproxy)', machine.node],
        ['nginx', machine.nginx],
        ...(machine.wrk === null ? [] : [['wrk', machine.wrk]]),
        ...(machine.h2load === null ? [] : [['h2load', machine.h2load]]),
        ...(machine.ws === null
          ? []
          : [['ws (echo server)', `${machine.ws}; load: bench/lib/ws-load-client.ts on the same Node`]]),
        ['zproxy commit', machine.commit],
        ['Run', `${result.startedAt} to ${result.finishedAt}`],
      ],
    ),
  );
  out.push('');
  out.push('## Method');
  out.push('');
  const generators = [...(h1 ? ['wrk'] : []), ...(h2 ? ['h2load'] : [])].join(' or ');
  const proxies = method.targets.filter((t) => t !== 'direct').join(', ') || 'none';
  out.push(
    `- Each proxy under test (${proxies}) runs one worker pinned to CPU ${method.proxyCpu} with \`taskset\`.` +
      (http
        ? ` ${generators} and the origin (nginx, one worker, HTTP/1.1, \`/small\` = 13 bytes, \`/64k\` = 65536 ` +
          `bytes) share CPU ${method.loadCpu}.` +
          `${h1 ? ' `direct` is wrk straight at the origin (HTTP/1.1 scenarios only).' : ''}`
        : ''),
  );
  if (h1) {
    out.push(
      `- HTTP/1.1 load: \`wrk -t1 -c${method.connections} -d${method.durationS}s --latency\`, pinned to CPU ` +
        `${method.loadCpu}.`,
    );
  }
  if (h2) {
    out.push(
      `- HTTP/2 load: \`h2load -t1 -c${method.h2Clients} -m${method.h2Streams} -D${method.durationS}\` ` +
        `(${method.h2Clients} connections × ${method.h2Streams} concurrent streams), pinned to CPU ` +
        `${method.loadCpu}; latency percentiles come from h2load's per-request log (\`--log-file\`, time from ` +
        'request start to the end of the response). h2c: `http://` URL, HTTP/2 with prior knowledge. h2: ' +
        '`https://` URL, TLS with ALPN h2, a self-signed ECDSA P-256 certificate made by openssl for the run. ' +
        'nginx 1.22 cannot serve HTTP/1.1 and h2c on one port, so its server block has three `listen` ' +
        'directives (plain, `http2`, `ssl http2`). zproxy has two listeners: the plain one (HTTP/1.1 and h2c, ' +
        'which the HTTP/1.1 scenarios also use) and a TLS one (`tls.enabled`, which also accepts plain ' +
        'HTTP/1.1 and h2c; the bench checks that before measuring). Both proxies forward to the same ' +
        'HTTP/1.1 origin.',
    );
  }
  if (ws) {
    out.push(
      `- WebSocket: the upstream is an echo server on the \`ws\` package (a Node process of its own, ` +
        `\`bench/lib/ws-echo-server.ts\`, no compression, no UTF-8 check of text), pinned to CPU ${method.loadCpu} ` +
        `with the load generator \`bench/lib/ws-load-client.ts\` (Node). The client opens ` +
        `${method.wsConnections} connections to \`ws://…/ws\` (no extensions offered); once all are open, each ` +
        'connection sends a message, waits for its echo (checked byte for byte), records the round trip and ' +
        'sends the next, for the whole run; a request in these tables is one round trip (msg/s = echoes per ' +
        'second), p50/p99 are round-trip times (1 µs buckets below 2 ms, 0.1 % above). `direct` is the client ' +
        'straight at the echo server. nginx proxies `/ws` with `proxy_http_version 1.1`, ' +
        '`Upgrade $http_upgrade`, `Connection "upgrade"` and one-hour read and send timeouts; zproxy has a ' +
        'route `/ws` to the echo server with `websocket` in `protocols`. Both carry the frames as they are ' +
        '(an HTTP/1.1 Upgrade, then a byte tunnel). Before measuring, the bench checks each target with the ' +
        "`ws` client: a text and a 1 MiB binary message come back unchanged and the client's close code " +
        'and reason come back from the echo server.',
    );
  }
  out.push(
    `- Each run is preceded by a ${method.warmupS} s warm-up of the same target and scenario, not recorded.`,
  );
  out.push(
    `- Interleaved: ${method.rounds} round(s), each running every scenario (${method.scenarios.join(', ')}) ` +
      `against every target (${method.targets.join(', ')}) that serves it, in turn` +
      `${groups.length > 1 ? ` (group by group: first all rounds of the ${titles.join(' scenarios, then all rounds of the ')} scenarios)` : ''}; ` +
      'the proxies stay up for the whole bench. Figures are medians over the rounds, with min–max in brackets.',
  );
  out.push(
    '- CPU used = utime + stime of the measured processes (`/proc/<pid>/stat`, ' +
      `${method.clockTicksPerSecond} ticks/s) during the run ÷ the run's duration: 100 % is one fully used core. ` +
      'req/s per core = req/s ÷ CPU used. Measured processes: nginx = master + worker (the master is idle), ' +
      `zproxy = the node process and any children, direct = the origin worker${ws ? ' (WebSocket: the echo server)' : ''}. ` +
      `CPU ${method.loadCpu} in all = origin + load generator + other processes on that CPU; at ` +
      `${formatPercent(SATURATION_LIMIT)} or more (‡) the load CPU was the limit.`,
  );
  out.push(
    `- Peak RSS = VmHWM at the end of ${groups.length > 1 ? "each group's" : 'the'} rounds, so it covers every ` +
      'round: nginx = its worker, zproxy = the sum over its processes, direct = the origin worker' +
      `${ws ? ' (WebSocket: the echo server)' : ''}.` +
      (groups.length > 1
        ? ' The groups run one after the other; before each ' +
          "group the peak is reset to the current RSS (`/proc/<pid>/clear_refs`), so a group's figure is " +
          'the highest RSS during its rounds (at least what the process held when they started).'
        : ''),
  );
  out.push(
    `- A run is marked as disturbed (†) when other processes used more than ${formatPercent(DISTURBANCE_LIMIT)} ` +
      `of CPU ${method.proxyCpu} or CPU ${method.loadCpu} during it (from \`/proc/stat\`, minus the bench's own ` +
      `processes and the load generator; for \`direct\` only CPU ${method.loadCpu} counts, as the bench leaves the other idle).`,
  );
  out.push(
    `- Ratios to nginx${ws ? ' (and, for WebSocket, to direct)' : ''} are taken per round (same round, same ` +
      'scenario) and summarised as median (min–max). ' +
      (http
        ? 'nginx proxies HTTP with `proxy_http_version 1.1`, `Connection ""` and an upstream block with ' +
          `\`keepalive ${method.upstreamKeepalive}\`; nginx keeps client and upstream connections for up to ` +
          '1,000,000 requests (`keepalive_requests`), and logs no access. zproxy keeps up to ' +
          `${method.upstreamKeepalive} idle upstream connections (\`upstream_defaults.max_idle_per_target\`).`
        : 'Neither nginx nor zproxy logs access.'),
  );
  out.push('');
  out.push('## Results');
  for (const scenario of method.scenarios) {
    const spec = SCENARIO_SPECS[scenario];
    out.push('');
    const request = spec.message === null ? `GET ${spec.path}` : `ws://…${spec.path}`;
    out.push(`### ${scenario}: ${spec.title}, \`${request}\``);
    out.push('');
    out.push(scenarioTable(result, scenario));
    const negotiated = negotiatedText(result, scenario);
    if (negotiated !== null) {
      out.push('');
      out.push(`Connections as h2load reported them: ${negotiated}.`);
    }
    out.push('');
    out.push(
      `Other CPU use in the same runs (medians). The ${spec.group === 'ws' ? 'echo server' : 'origin'} and ` +
        `${spec.tool} share CPU ${method.loadCpu}; ` +
        '"other processes" is CPU time that no process of the bench used (other users of the machine, ' +
        'hypervisor steal).',
    );
    out.push('');
    out.push(cpuTable(result, scenario));
    const saturation = saturationText(result, scenario);
    if (saturation !== null) {
      out.push('');
      out.push(saturation);
    }
  }
  out.push('');
  out.push('## Targets');
  out.push('');
  if (!method.targets.includes('zproxy')) {
    out.push(`zproxy was not measured in this run (\`--targets ${method.targets.join(',')}\`).`);
    out.push('');
  }
  out.push(targetsTable(result));
  out.push('');
  out.push('## Runs with errors');
  out.push('');
  const failed = result.runs.filter((run) => run.errorCount > 0);
  if (failed.length === 0) {
    out.push('None: no socket errors and no responses with status ≥ 400.');
  } else {
    out.push('Targets marked ⚠ above had errors in these runs; their figures are not trustworthy:');
    out.push('');
    for (const run of failed) {
      out.push(`- round ${run.round}, ${run.scenario}, ${run.target}: ${describeErrors(run)}`);
    }
  }
  out.push('');
  out.push('## Disturbed runs');
  out.push('');
  const disturbed = result.runs.filter(isDisturbed);
  if (disturbed.length === 0) {
    out.push(
      `None: in every run, other processes used at most ${formatPercent(DISTURBANCE_LIMIT)} of CPU ` +
        `${method.proxyCpu} and of CPU ${method.loadCpu}.`,
    );
  } else {
    out.push(
      `Targets marked † above had runs in which other processes on the machine (or hypervisor steal) used more ` +
        `than ${formatPercent(DISTURBANCE_LIMIT)} of a bench CPU. Their figures are not trustworthy; ` +
        'run the bench again on a quiet machine:',
    );
    out.push('');
    const optional = (value: number | null): string => (value === null ? '?' : formatPercent(value));
    for (const run of disturbed) {
      out.push(
        `- round ${run.round}, ${run.scenario}, ${run.target}: other load ${optional(run.otherLoad.proxyCpu)} ` +
          `on CPU ${method.proxyCpu}, ${optional(run.otherLoad.loadCpu)} on CPU ${method.loadCpu}`,
      );
    }
  }
  out.push('');
  return out.join('\n');
}
