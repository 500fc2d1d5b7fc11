// The bench's results: the record of a run, its summary (medians, same-round ratios to nginx) and the
// Markdown report.
import type { LoadResult } from './load-tool.ts';

export const TARGETS = ['direct', 'nginx', 'zproxy'] as const;
export type TargetName = (typeof TARGETS)[number];

export const SCENARIOS = ['small', '64k', 'close', 'h2c-small', 'h2c-64k', 'h2-small', 'h2-64k'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

/** Scenario groups, selectable with `--only`: HTTP/1.1 (wrk) and HTTP/2 (h2load). */
export const GROUPS = ['h1', 'h2'] as const;
export type GroupName = (typeof GROUPS)[number];

/** How the load generator talks to the target: HTTP/1.1, HTTP/2 with prior knowledge, HTTP/2 over TLS. */
export type LoadProtocol = 'http1' | 'h2c' | 'h2';

export interface ScenarioSpec {
  readonly group: GroupName;
  readonly protocol: LoadProtocol;
  readonly tool: 'wrk' | 'h2load';
  readonly path: string;
  readonly closeConnections: boolean;
  readonly title: string;
}

export const SCENARIO_SPECS: Record<ScenarioName, ScenarioSpec> = {
  small: {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/small',
    closeConnections: false,
    title: '13-byte response, keep-alive',
  },
  '64k': {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/64k',
    closeConnections: false,
    title: '64 KiB response, keep-alive',
  },
  close: {
    group: 'h1',
    protocol: 'http1',
    tool: 'wrk',
    path: '/small',
    closeConnections: true,
    title: '13-byte response, one connection per request (`Connection: close`)',
  },
  'h2c-small': {
    group: 'h2',
    protocol: 'h2c',
    tool: 'h2load',
    path: '/small',
    closeConnections: false,
    title: '13-byte response, HTTP/2 with prior knowledge (h2c)',
  },
  'h2c-64k': {
    group: 'h2',
    protocol: 'h2c',
    tool: 'h2load',
    path: '/64k',
    closeConnections: false,
    title: '64 KiB response, HTTP/2 with prior knowledge (h2c)',
  },
  'h2-small': {
    group: 'h2',
    protocol: 'h2',
    tool: 'h2load',
    path: '/small',
    closeConnections: false,
    title: '13-byte response, HTTP/2 over TLS (ALPN h2)',
  },
  'h2-64k': {
    group: 'h2',
    protocol: 'h2',
    tool: 'h2load',
    path: '/64k',
    closeConnections: false,
    title: '64 KiB response, HTTP/2 over TLS (ALPN h2)',
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
  readonly round: number;
  readonly scenario: ScenarioName;
  readonly target: TargetName;
  /** CPU time of the measured process(es) divided by the run's duration (1 = one core fully used). */
  readonly cpuFraction: number;
  /** requestsPerSecond / cpuFraction; null when no CPU time was measured. */
  readonly requestsPerCore: number | null;
  /** The origin worker's CPU fraction in the same run (it shares its core with wrk). */
  readonly originCpuFraction: number;
  /** The load generator's (wrk's or h2load's) own CPU fraction; null when it could not be read. */
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
  readonly wrk: string;
  /** h2load's version; null when no HTTP/2 scenario ran. */
  readonly h2load: string | null;
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
  const ratioCheck = (
    goal: string,
    scenario: ScenarioName,
    pick: (s: TargetSummary) => Spread | null,
    limit: number,
    atLeast: boolean,
  ): void => {
    const summary = summarize(result, scenario, 'zproxy');
    const limitText = `${atLeast ? '≥' : '≤'} ${limit.toFixed(2)}`;
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
        verdict: `not measured (no nginx ${scenario} runs)`,
      });
      return;
    }
    const ok = atLeast ? ratio.median >= limit : ratio.median <= limit;
    const involved = result.runs.filter(
      (run) => run.scenario === scenario && (run.target === 'zproxy' || run.target === 'nginx'),
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
      verdict: `${ok ? 'PASS' : 'MISS'}${errors}`,
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
      s.toNginx.perCore === null ? '–' : formatRatio(s.toNginx.perCore),
      s.toNginx.raw === null ? '–' : formatRatio(s.toNginx.raw),
    ]);
  }
  return table(
    [
      'target',
      'req/s median (min–max)',
      'p50',
      'p99',
      'CPU used',
      'req/s per core',
      'peak RSS',
      'ratio to nginx (per core)',
      'ratio to nginx (req/s)',
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
      optional(s.otherLoad.proxyCpu),
    ]);
  }
  return table(
    [
      'target',
      `origin (CPU ${loadCpu})`,
      `${SCENARIO_SPECS[scenario].tool} (CPU ${loadCpu})`,
      `other processes (CPU ${loadCpu})`,
      `other processes (CPU ${proxyCpu})`,
    ],
    rows,
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
  const title = groups.map((group) => (group === 'h1' ? 'HTTP/1.1' : 'HTTP/2')).join(' and ');
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
        ['wrk', machine.wrk],
        ...(machine.h2load === null ? [] : [['h2load', machine.h2load]]),
        ['zproxy commit', machine.commit],
        ['Run', `${result.startedAt} to ${result.finishedAt}`],
      ],
    ),
  );
  out.push('');
  out.push('## Method');
  out.push('');
  const generators = [...(h1 ? ['wrk'] : []), ...(h2 ? ['h2load'] : [])].join(' or ');
  out.push(
    `- Each proxy under test (${method.targets.filter((t) => t !== 'direct').join(', ') || 'none'}) runs one ` +
      `worker pinned to CPU ${method.proxyCpu} with \`taskset\`; ${generators} and the origin (nginx, one ` +
      `worker, HTTP/1.1, \`/small\` = 13 bytes, \`/64k\` = 65536 bytes) share CPU ${method.loadCpu}.` +
      `${h1 ? ' `direct` is wrk straight at the origin (HTTP/1.1 scenarios only).' : ''}`,
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
  out.push(
    `- Each run is preceded by a ${method.warmupS} s warm-up of the same target and scenario, not recorded.`,
  );
  out.push(
    `- Interleaved: ${method.rounds} round(s), each running every scenario (${method.scenarios.join(', ')}) ` +
      `against every target (${method.targets.join(', ')}) that serves it, in turn` +
      `${groups.length > 1 ? ' (first all rounds of the HTTP/1.1 scenarios, then all rounds of the HTTP/2 ones)' : ''}; ` +
      'the proxies stay up for the whole bench. Figures are medians over the rounds, with min–max in brackets.',
  );
  out.push(
    '- CPU used = utime + stime of the measured processes (`/proc/<pid>/stat`, ' +
      `${method.clockTicksPerSecond} ticks/s) during the run ÷ the run's duration: 100 % is one fully used core. ` +
      'req/s per core = req/s ÷ CPU used. Measured processes: nginx = master + worker (the master is idle), ' +
      'zproxy = the node process and any children, direct = the origin worker.',
  );
  out.push(
    `- Peak RSS = VmHWM at the end of ${groups.length > 1 ? "each group's" : 'the'} rounds, so it covers every ` +
      'round: nginx = its worker, zproxy = the sum over its processes, direct = the origin worker.' +
      (groups.length > 1
        ? ' The groups run one after the other (all HTTP/1.1 rounds, then all HTTP/2 rounds); before each ' +
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
    '- Ratios to nginx are taken per round (same round, same scenario) and summarised as median (min–max). ' +
      'nginx proxies with `proxy_http_version 1.1`, `Connection ""` and an upstream block with ' +
      `\`keepalive ${method.upstreamKeepalive}\`; nginx keeps client and upstream connections for up to ` +
      '1,000,000 requests (`keepalive_requests`), and logs no access. zproxy keeps up to ' +
      `${method.upstreamKeepalive} idle upstream connections (\`upstream_defaults.max_idle_per_target\`).`,
  );
  out.push('');
  out.push('## Results');
  for (const scenario of method.scenarios) {
    const spec = SCENARIO_SPECS[scenario];
    out.push('');
    out.push(`### ${scenario}: ${spec.title}, \`GET ${spec.path}\``);
    out.push('');
    out.push(scenarioTable(result, scenario));
    const negotiated = negotiatedText(result, scenario);
    if (negotiated !== null) {
      out.push('');
      out.push(`Connections as h2load reported them: ${negotiated}.`);
    }
    out.push('');
    out.push(
      `Other CPU use in the same runs (medians). The origin and ${spec.tool} share CPU ${method.loadCpu}; ` +
        '"other processes" is CPU time that no process of the bench used (other users of the machine, ' +
        'hypervisor steal).',
    );
    out.push('');
    out.push(cpuTable(result, scenario));
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
