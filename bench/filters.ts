// `npm run bench -- --only filters` (or `node bench/filters.ts`): what filters cost. One zproxy per
// variant, all pinned to the proxy CPU, in front of the same nginx origin (on the load CPU, with wrk):
//   plain       the small keep-alive response, no filters (the reference)
//   chain       the same route with a typical chain: cors + rate_limit (memory) + auth (api_key, 10 keys)
//   cache-hit   the same route with the cache; every measured request is a hit
// Rounds are interleaved (plain, chain, cache-hit, plain, ...) so that drift hits every variant alike;
// ratios are taken per round against that round's plain run, then the median. Targets (issue 5): the
// chain costs at most 15 % of throughput (ratio >= 0.85); a cache hit is faster than proxying (ratio > 1).
// Each run records the other load on both bench CPUs (as zproxy compare does; over 10 % of a core marks it
// disturbed) and the origin's CPU (near zero in cache-hit runs: the hits never reach it). Any non-2xx answer,
// socket error or cache-hit run that reached the origin makes the bench exit non-zero (the report is written).
// Writes docs/reports/<YYYY-MM-DD>-filters.{md,json}.
import { execSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { type NginxInstance, SMALL_BODY, startOrigin } from '../src/bench/compare/nginx.ts';
import { freePort, type PinnedProcess, processTree, sleep } from '../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, spread, writeReport } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk, type WrkErrors } from './lib/wrk.ts';
import { ensureBuilt, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');
const ORIGIN = 'https://app.example.com';
const KEYS = Array.from({ length: 10 }, (_, i) => `bench-key-${i}-${'x'.repeat(24)}`);
const KEY = KEYS[7]!;

type Variant = 'plain' | 'chain' | 'cache-hit';
const VARIANTS: readonly Variant[] = ['plain', 'chain', 'cache-hit'];

const DESCRIPTIONS: Record<Variant, string> = {
  plain: 'no filters (the reference)',
  chain: 'cors + rate_limit (memory, never refusing) + auth (api_key, 10 keys); wrk sends Origin and the key',
  'cache-hit': 'cache (memory, ttl 3600 s); the entry is stored before the runs, every request is a hit',
};

function middlewares(variant: Variant): object[] {
  switch (variant) {
    case 'plain':
      return [];
    case 'chain':
      return [
        { type: 'cors', config: { allowed_origins: [ORIGIN], allow_credentials: true } },
        { type: 'rate_limit', config: { requests_per_minute: 1_000_000_000 } },
        { type: 'auth', config: { api_keys: KEYS } },
      ];
    case 'cache-hit':
      return [{ type: 'cache', config: { ttl_seconds: 3600 } }];
  }
}

function headersFor(variant: Variant): string[] {
  return variant === 'chain' ? [`Origin: ${ORIGIN}`, `x-api-key: ${KEY}`] : [];
}

interface Run {
  readonly round: number;
  readonly variant: Variant;
  readonly rps: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** Non-2xx/3xx answers plus socket errors. */
  readonly errors: number;
  readonly errorDetail: WrkErrors;
  /** zproxy CPU time per request, in microseconds. */
  readonly cpuUsPerRequest: number;
  /** Share of the proxy CPU zproxy used during the run. */
  readonly proxyCpuBusy: number;
  /** The nginx origin's CPU, as a fraction of one core over the run (about 0 when every request is a hit). */
  readonly originCpuBusy: number;
  /**
   * CPU time on each bench CPU that none of the bench's processes used (other users, steal), as a fraction
   * of one core over the run; null when it could not be measured.
   */
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  readonly disturbed: boolean;
}

/** A cache-hit run whose origin used more than this fraction of a core sent requests upstream. */
const ORIGIN_IDLE_LIMIT = 0.02;

function fetchHeaders(port: number, headers: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolveHeaders, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/small', headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolveHeaders({ status: res.statusCode, ...res.headers }));
    });
    req.on('error', reject);
  });
}

export async function runFiltersBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(argv, ROOT, { rounds: 5, duration: 10 });
  const { rounds, durationS, warmupS, connections, proxyCpu, loadCpu } = options;
  if (!ensureTools(options.install, ['h1'])) return 1;
  ensureBuilt(ROOT);
  const tmp = groupTmp('filters');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  let origin: NginxInstance | null = null;
  try {
    origin = await startOrigin(tmp, loadCpu);
    const originPort = origin.port;
    started.push(origin);
    const proxies = new Map<Variant, { port: number; process: PinnedProcess }>();
    for (const variant of VARIANTS) {
      const port = await freePort();
      const file = join(tmp, `zproxy-${variant}.json`);
      const config = {
        host: '127.0.0.1',
        port,
        thread_count: 1,
        access_log: { enabled: false },
        upstream_defaults: { max_idle_per_target: connections },
        routes: [{ path: '/', upstream: `http://127.0.0.1:${originPort}` }],
        middlewares: middlewares(variant),
      };
      writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
      const main = join(ROOT, 'dist', 'cli', 'main.js');
      const proc = startZproxy(ROOT, `zproxy ${variant}`, proxyCpu, main, file, join(tmp, `${variant}.log`));
      started.push(proc);
      await proc.waitForPort(port, 15_000);
      proxies.set(variant, { port, process: proc });
    }
    // Each variant does what it says before anything is measured.
    const chain = await fetchHeaders(proxies.get('chain')!.port, { origin: ORIGIN, 'x-api-key': KEY });
    if (
      chain.status !== 200 ||
      chain['access-control-allow-origin'] !== ORIGIN ||
      chain.ratelimit === undefined
    ) {
      throw new Error(`the chain variant does not answer as configured: ${JSON.stringify(chain)}`);
    }
    const refused = await fetchHeaders(proxies.get('chain')!.port, { origin: ORIGIN });
    if (refused.status !== 401) throw new Error(`the chain variant let a request without a key through`);
    const cachePort = proxies.get('cache-hit')!.port;
    await fetchHeaders(cachePort, {});
    const hit = await fetchHeaders(cachePort, {});
    if (!String(hit['cache-status']).includes('hit')) {
      throw new Error(`the cache variant does not hit: ${JSON.stringify(hit)}`);
    }
    for (let round = 1; round <= rounds; round++) {
      for (const variant of VARIANTS) {
        const { port, process: proc } = proxies.get(variant)!;
        const load = (seconds: number) =>
          runWrk({
            url: `http://127.0.0.1:${port}/small`,
            connections,
            durationS: seconds,
            cpu: loadCpu,
            closeConnections: false,
            headers: headersFor(variant),
          });
        if (warmupS > 0) await load(warmupS);
        const m = await measurePinned(proc, proxyCpu, () => load(durationS), {
          cpu: loadCpu,
          pids: processTree(origin.process.pid),
        });
        if (!origin.process.alive) {
          throw new Error(
            `${origin.process.name} exited during the run (${origin.process.exitDescription}):\n${origin.process.logTail()}`,
          );
        }
        const result = m.result;
        const otherLoad = m.otherLoad;
        const run: Run = {
          round,
          variant,
          rps: result.requestsPerSecond,
          p50Us: result.latencyUs.p50,
          p99Us: result.latencyUs.p99,
          errors: result.errorCount,
          errorDetail: result.errors,
          cpuUsPerRequest: result.requests > 0 ? (m.cpuSeconds * 1e6) / result.requests : 0,
          proxyCpuBusy: m.busy,
          originCpuBusy: m.loadSideCpuSeconds / m.wall,
          otherLoad,
          disturbed: m.disturbed,
        };
        runs.push(run);
        const pct = (x: number | null) => (x === null ? '?' : `${(100 * x).toFixed(0)} %`);
        console.error(
          `round ${round} ${variant}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${Math.round(result.latencyUs.p99)} µs, errors ${result.errorCount}, zproxy CPU ${pct(run.proxyCpuBusy)}, origin CPU ${pct(run.originCpuBusy)}, other load ${pct(otherLoad.proxyCpu)} / ${pct(otherLoad.loadCpu)}${run.disturbed ? ' DISTURBED' : ''}`,
        );
        // Let closed connections drain before the next run.
        await sleep(500);
      }
    }
    const hitAfter = await fetchHeaders(cachePort, {});
    if (!String(hitAfter['cache-status']).includes('hit'))
      throw new Error('the cache variant stopped hitting');
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const by = (variant: Variant) => runs.filter((r) => r.variant === variant);
  const plainOf = (round: number) => runs.find((p) => p.variant === 'plain' && p.round === round)!;
  const ratio = (variant: Variant): number[] => by(variant).map((r) => r.rps / plainOf(r.round).rps);
  const cpuRatio = (variant: Variant): number[] =>
    by(variant).map((r) => r.cpuUsPerRequest / plainOf(r.round).cpuUsPerRequest);
  const chainRatio = median(ratio('chain'));
  const cacheRatio = median(ratio('cache-hit'));
  const chainHolds = chainRatio >= 0.85;
  const cacheHolds = cacheRatio > 1;
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const disturbed = runs.filter((r) => r.disturbed);
  // Hits never reach the origin: a cache-hit run with a busy origin was not all hits.
  const missedRuns = by('cache-hit').filter((r) => r.originCpuBusy > ORIGIN_IDLE_LIMIT);
  const date = startedAt.toISOString().slice(0, 10);
  const pct = (x: number | null) => (x === null ? '?' : `${fmt(100 * x)} %`);
  const rows = VARIANTS.map((variant) => {
    const rs = by(variant);
    const m = (f: (r: Run) => number) => median(rs.map(f));
    const errorCount = rs.reduce((n, r) => n + r.errors, 0);
    return `| ${variant} | ${spread(rs.map((r) => r.rps))} | ${spread(ratio(variant), 2)} | ${fmt(m((r) => r.p50Us))} | ${fmt(m((r) => r.p99Us))} | ${fmt(
      m((r) => r.cpuUsPerRequest),
      1,
    )} | ${fmt(median(cpuRatio(variant)), 2)} | ${pct(m((r) => r.proxyCpuBusy))} | ${pct(m((r) => r.originCpuBusy))} | ${errorCount} |`;
  });
  const roundRows = Array.from({ length: rounds }, (_, i) => i + 1).map((round) => {
    const cells = VARIANTS.map((variant) => {
      const r = runs.find((x) => x.variant === variant && x.round === round)!;
      const mark = r.disturbed ? ' †' : '';
      return variant === 'plain'
        ? `${fmt(r.rps)}${mark}`
        : `${fmt(r.rps)} (${fmt(r.rps / plainOf(round).rps, 2)})${mark}`;
    });
    const others = runs
      .filter((x) => x.round === round)
      .map((x) => `${pct(x.otherLoad.proxyCpu)} / ${pct(x.otherLoad.loadCpu)}`);
    return `| ${round} | ${cells.join(' | ')} | ${others.join(', ')} |`;
  });
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const md = `# Filters: what a typical chain and a cache hit cost (${date})

zproxy ${commit}, ${machine()}.
\`npm run bench -- --only filters\` (bench/filters.ts): ${rounds} interleaved rounds of ${durationS} s (after ${warmupS} s of
warm-up each), wrk \`-t1 -c${connections}\` on CPU ${loadCpu} with the nginx origin; each zproxy (one process,
no access log) pinned to CPU ${proxyCpu}. The response is the origin's \`/small\` (${JSON.stringify(SMALL_BODY)}), keep-alive.
Load average (1 / 5 / 15 min) at the start: ${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)} (the bench's own load
included: it keeps both CPUs busy; the other load per run is under Rounds).

| variant | what |
| --- | --- |
${VARIANTS.map((v) => `| ${v} | ${DESCRIPTIONS[v]} |`).join('\n')}

## Targets (issue 5)

- The typical chain costs at most 15 % of throughput: chain ÷ plain = **${fmt(chainRatio, 2)}**. The target ${chainHolds ? 'holds' : '**does not hold**'}.
- A cache hit is faster than proxying to the upstream: cache-hit ÷ plain = **${fmt(cacheRatio, 2)}**. The target ${cacheHolds ? 'holds' : '**does not hold**'}.

Each ratio is the median of the per-round ratios (each round's run ÷ that round's plain run).

## Results

Each cell is the median over the rounds; ranges are min–max over the rounds.

| variant | req/s (min–max) | ÷ plain (min–max) | p50 µs | p99 µs | zproxy CPU µs/req | CPU/req ÷ plain | zproxy CPU busy | origin CPU busy | errors |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

## Rounds

Cells give req/s (÷ that round's plain). The last column gives the other load (proxy CPU / load CPU) in each run, in the order ${VARIANTS.join(', ')}.

| round | ${VARIANTS.join(' | ')} | other load |
| --- | ${VARIANTS.map(() => '---').join(' | ')} | --- |
${roundRows.join('\n')}

## Checks

- Non-2xx responses and socket errors over all runs: ${errors}${errors > 0 ? ' (**the bench failed**)' : ''}.
- Before the runs, the bench checked three things: the chain answers with the CORS and RateLimit fields, the chain refuses a request without a key (401), and the cache answers \`Cache-Status: hit\`. After the runs, it checked the cache again.
- Origin CPU in the cache-hit runs (hits never reach it; a run over ${pct(ORIGIN_IDLE_LIMIT)} counts as missing): ${missedRuns.length === 0 ? 'every run was under the limit' : `**${missedRuns.length} run(s) over the limit (the bench failed)**`}.
- Disturbed runs (†: other processes used more than ${pct(DISTURBANCE_LIMIT)} of a bench CPU): ${disturbed.length === 0 ? 'none' : disturbed.map((r) => `round ${r.round} ${r.variant}`).join(', ')}.
`;
  const base = writeReport(options.outDir, `${date}-filters`, md, {
    ...runParameters(startedAt, options),
    commit,
    loadAverage: { start: loadBefore, end: loadAfter },
    runs,
    chainRatio,
    cacheRatio,
    targets: { chainAtMost15PercentCost: chainHolds, cacheHitFasterThanProxying: cacheHolds },
    errors,
    disturbedRuns: disturbed.length,
    cacheRunsReachingOrigin: missedRuns.length,
  });
  console.error(
    `chain ÷ plain ${fmt(chainRatio, 2)} (target ≥ 0.85 ${chainHolds ? 'holds' : 'does not hold'}), cache-hit ÷ plain ${fmt(cacheRatio, 2)} (target > 1 ${cacheHolds ? 'holds' : 'does not hold'}), errors ${errors}, disturbed runs ${disturbed.length}`,
  );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 && missedRuns.length === 0 ? 0 : 1;
}

// Run directly (`node bench/filters.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1]) process.exitCode = await runFiltersBench(process.argv.slice(2));
