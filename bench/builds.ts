// `npm run bench -- --only builds --before REF` (or `node bench/builds.ts --before REF`): two builds of
// zproxy side by side, for a refactor that must keep the speed ("before and after, alternating runs").
// `before` is the commit REF, checked out with `git archive` into a temporary folder and built there with
// `npm run build` (this checkout's node_modules); `after` is this checkout's dist/ (or `--after REF`, built
// the same way). Both serve the same
// config (bench/lib/zproxy.ts zproxyConfig: one worker, no access log, a TLS listener for h2) in front of
// one nginx origin; zproxy pinned to the proxy CPU, nginx and the load tool (wrk, h2load) to the load CPU.
// Every round starts both builds anew (a process's own luck then falls on both alike over the rounds),
// and within it the runs alternate (before, after; the next round after, before) scenario by scenario.
// The figure is the median over the rounds of the per-round ratio after ÷ before of req/s per core, over
// the rounds in which neither run was disturbed; peak RSS is each run's VmHWM (reset before the run).
// Writes docs/reports/<YYYY-MM-DD>-builds-<before>-<after>.{md,json}.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { writeCertificate } from '../src/bench/compare/certificate.ts';
import { startOrigin } from '../src/bench/compare/nginx.ts';
import { freePort, type PinnedProcess, peakRssKiB, resetPeakRss, sleep } from '../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { makeDemoCertificate } from '../src/demo/certificate.ts';
import { buildBoth, resolveBuilds, TWO_BUILDS_OPTIONS, type Variant } from './lib/builds.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { type LoadSpec, runLoad } from './lib/load.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, writeReport } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { ensureTools } from './lib/tools.ts';
import { ensureBuilt, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** The scenarios: HTTP/1.1 with wrk (keep-alive, or a connection per request), HTTP/2 with h2load. */
const SCENARIO_SPECS = {
  small: { tool: 'wrk', path: '/small', close: false, tls: false },
  '64k': { tool: 'wrk', path: '/64k', close: false, tls: false },
  close: { tool: 'wrk', path: '/small', close: true, tls: false },
  'h2c-small': { tool: 'h2load', path: '/small', close: false, tls: false },
  'h2c-64k': { tool: 'h2load', path: '/64k', close: false, tls: false },
  'h2-small': { tool: 'h2load', path: '/small', close: false, tls: true },
  'h2-64k': { tool: 'h2load', path: '/64k', close: false, tls: true },
} as const;
type ScenarioName = keyof typeof SCENARIO_SPECS;
const HTTP_SCENARIOS = Object.keys(SCENARIO_SPECS) as ScenarioName[];

/**
 * What both builds serve: one worker, no access log, everything to the origin, a plain listener (HTTP/1.1
 * and h2c) and a TLS one (ALPN h2); only fields every build since the request flow knows.
 */
function buildsConfig(
  port: number,
  tlsPort: number,
  originPort: number,
  idle: number,
  cert: { certFile: string; keyFile: string },
): object {
  return {
    listeners: [
      { host: '127.0.0.1', port },
      {
        host: '127.0.0.1',
        port: tlsPort,
        tls: { enabled: true, cert_file: cert.certFile, key_file: cert.keyFile },
      },
    ],
    protocols: ['http1', 'http2'],
    thread_count: 1,
    access_log: { enabled: false },
    upstream_defaults: { max_idle_per_target: idle },
    routes: [{ path: '/', upstream: `http://127.0.0.1:${originPort}` }],
  };
}

interface Run {
  readonly round: number;
  readonly scenario: ScenarioName;
  readonly variant: Variant;
  readonly rps: number;
  readonly rpsPerCore: number;
  readonly cpuUsPerRequest: number;
  readonly p99Us: number;
  readonly peakRssMiB: number | null;
  readonly errors: number;
  readonly disturbed: boolean;
}

export async function runBuildsBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(
    argv,
    ROOT,
    { rounds: 6, duration: 8 },
    {
      ...TWO_BUILDS_OPTIONS,
      scenarios: { type: 'string', default: HTTP_SCENARIOS.join(',') },
      // Fields merged into the after build's config only (JSON), e.g. '{"tracing":{"traceparent":false}}'
      // to compare like for like with a before build that lacks a feature the after build has on by default.
      'after-config': { type: 'string', default: '' },
    },
  );
  const { rounds, durationS, warmupS, connections, h2Clients, h2Streams, proxyCpu, loadCpu, values } =
    options;
  if (typeof values.before !== 'string')
    throw new Error('--before REF is required (a commit to compare with)');
  const scenarios = String(values.scenarios).split(',') as ScenarioName[];
  for (const s of scenarios) if (!HTTP_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}`);
  const http2 = scenarios.some((s) => SCENARIO_SPECS[s].tool === 'h2load');
  const afterConfigText = String(values['after-config']);
  const afterConfig = afterConfigText === '' ? {} : (JSON.parse(afterConfigText) as object);
  if (!ensureTools(options.install, http2 ? ['h1', 'h2'] : ['h1'])) return 1;
  ensureBuilt(ROOT);
  const { beforeCommit, afterCommit, afterRef } = resolveBuilds(
    ROOT,
    values.before,
    typeof values.after === 'string' ? values.after : null,
  );
  const tmp = groupTmp('builds');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  try {
    const mains = buildBoth(ROOT, { beforeCommit, afterCommit, afterRef }, tmp);
    const origin = await startOrigin(tmp, loadCpu);
    started.push(origin);
    mkdirSync(join(tmp, 'tls'), { recursive: true });
    const certificate = writeCertificate(join(tmp, 'tls'), makeDemoCertificate());
    const idle = Math.max(64, connections, http2 ? h2Clients * h2Streams : 0);
    for (let round = 1; round <= rounds; round++) {
      const order: Variant[] = round % 2 === 1 ? ['before', 'after'] : ['after', 'before'];
      const proxies = new Map<Variant, { port: number; tlsPort: number; process: PinnedProcess }>();
      for (const variant of ['before', 'after'] as const) {
        const port = await freePort();
        const tlsPort = await freePort();
        const file = join(tmp, `zproxy-${variant}.json`);
        const config = buildsConfig(port, tlsPort, origin.port, idle, certificate);
        if (variant === 'after') Object.assign(config, afterConfig);
        writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
        const main = mains[variant];
        const proc = startZproxy(
          ROOT,
          `zproxy ${variant} (round ${round})`,
          proxyCpu,
          main,
          file,
          join(tmp, `${variant}-${round}.log`),
        );
        started.push(proc);
        await proc.waitForPort(port, 15_000);
        proxies.set(variant, { port, tlsPort, process: proc });
      }
      for (const scenario of scenarios) {
        const wanted = SCENARIO_SPECS[scenario];
        for (const variant of order) {
          const { port, tlsPort, process: proc } = proxies.get(variant)!;
          const spec: LoadSpec =
            wanted.tool === 'wrk'
              ? {
                  tool: 'wrk',
                  url: `http://127.0.0.1:${port}${wanted.path}`,
                  connections,
                  close: wanted.close,
                }
              : {
                  tool: 'h2load',
                  url: wanted.tls
                    ? `https://localhost:${tlsPort}${wanted.path}`
                    : `http://127.0.0.1:${port}${wanted.path}`,
                  clients: h2Clients,
                  streams: h2Streams,
                  logFile: join(tmp, 'h2load.log'),
                };
          const load = (seconds: number) => runLoad(spec, seconds, loadCpu);
          if (warmupS > 0) await load(warmupS);
          resetPeakRss(proc.pid);
          const m = await measurePinned(proc, proxyCpu, () => load(durationS));
          const result = m.result;
          const rss = peakRssKiB(proc.pid);
          const run: Run = {
            round,
            scenario,
            variant,
            rps: result.rps,
            rpsPerCore: m.busy > 0 ? result.rps / m.busy : 0,
            cpuUsPerRequest: result.requests > 0 ? (m.cpuSeconds * 1e6) / result.requests : 0,
            p99Us: result.p99Us,
            peakRssMiB: rss === null ? null : rss / 1024,
            errors: result.errors,
            disturbed: m.disturbed,
          };
          runs.push(run);
          console.error(
            `round ${round} ${scenario} ${variant}: ${Math.round(run.rps)} req/s, ${Math.round(run.rpsPerCore)} per core, ${run.cpuUsPerRequest.toFixed(1)} µs CPU/req, errors ${run.errors}${run.disturbed ? ' DISTURBED' : ''}`,
          );
          await sleep(300);
        }
      }
      for (const { process: proc } of proxies.values()) await proc.stop();
    }
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const of = (scenario: ScenarioName, variant: Variant) =>
    runs.filter((r) => r.scenario === scenario && r.variant === variant);
  const pairs = (scenario: ScenarioName) => {
    const all = of(scenario, 'after').map((after) => ({
      after,
      before: runs.find((r) => r.scenario === scenario && r.variant === 'before' && r.round === after.round)!,
    }));
    const clean = all.filter((p) => !p.after.disturbed && !p.before.disturbed);
    return clean.length > 0 ? clean : all;
  };
  const rows = scenarios.map((scenario) => {
    const ps = pairs(scenario);
    const perCore = ps.map((p) => p.after.rpsPerCore / p.before.rpsPerCore);
    const cpu = ps.map((p) => p.after.cpuUsPerRequest / p.before.cpuUsPerRequest);
    const rssBefore = median(
      of(scenario, 'before').flatMap((r) => (r.peakRssMiB === null ? [] : [r.peakRssMiB])),
    );
    const rssAfter = median(
      of(scenario, 'after').flatMap((r) => (r.peakRssMiB === null ? [] : [r.peakRssMiB])),
    );
    return {
      scenario,
      rounds: ps.map((p) => p.after.round),
      perCoreRatio: median(perCore),
      perCoreMin: Math.min(...perCore),
      perCoreMax: Math.max(...perCore),
      cpuRatio: median(cpu),
      before: median(of(scenario, 'before').map((r) => r.rpsPerCore)),
      after: median(of(scenario, 'after').map((r) => r.rpsPerCore)),
      rssBefore,
      rssAfter,
      holds: median(perCore) >= 0.97,
    };
  });
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const date = startedAt.toISOString().slice(0, 10);
  const md = `# Two builds side by side: ${beforeCommit} (before) and ${afterCommit} (after) (${date})

${machine()}.
\`npm run bench -- --only builds --before ${beforeCommit}${afterRef === null ? '' : ` --after ${afterCommit}`}${afterConfigText === '' ? '' : ` --after-config '${afterConfigText}'`}\` (bench/builds.ts): ${rounds} rounds of ${durationS} s runs (after ${warmupS} s of
warm-up each); both builds started anew each round, one process each, pinned to CPU ${proxyCpu}; nginx (the origin) and
the load tool on CPU ${loadCpu}. Runs alternate within a round (before, after; the next round after, before).
HTTP/1.1: wrk \`-t1 -c${connections}\`; HTTP/2: h2load \`-c${h2Clients} -m${h2Streams}\` (h2c, and TLS with ALPN h2).
Load average (1 / 5 / 15 min) at the start: ${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)}.

## After ÷ before

The median over the rounds of the per-round ratio (rounds in which neither run was disturbed: another
process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU). Target of a refactor: req/s per core within 3 % of before
(≥ 0.97) and peak RSS not higher.

| scenario | rounds used | req/s per core, after ÷ before (min–max) | CPU µs per request, after ÷ before | req/s per core before → after (medians) | peak RSS MiB before → after (medians) | within 3 % |
| --- | --- | --- | --- | --- | --- | --- |
${rows
  .map(
    (r) =>
      `| ${r.scenario} | ${r.rounds.join(', ')} | **${fmt(r.perCoreRatio, 3)}** (${fmt(r.perCoreMin, 3)}–${fmt(r.perCoreMax, 3)}) | ${fmt(r.cpuRatio, 3)} | ${fmt(r.before)} → ${fmt(r.after)} | ${fmt(r.rssBefore, 1)} → ${fmt(r.rssAfter, 1)} | ${r.holds ? 'yes' : '**no**'} |`,
  )
  .join('\n')}

Errors over all runs: ${errors}${errors > 0 ? ' (**the bench failed**)' : ''}.

## Runs

| round | scenario | build | req/s | req/s per core | CPU µs/req | p99 µs | peak RSS MiB |
| --- | --- | --- | --- | --- | --- | --- | --- |
${runs.map((r) => `| ${r.round} | ${r.scenario} | ${r.variant} | ${fmt(r.rps)} | ${fmt(r.rpsPerCore)} | ${fmt(r.cpuUsPerRequest, 2)} | ${fmt(r.p99Us)} | ${r.peakRssMiB === null ? '?' : fmt(r.peakRssMiB, 1)}${r.disturbed ? ' †' : ''} |`).join('\n')}

† another process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU during the run.
`;
  const base = writeReport(
    options.outDir,
    `${date}-builds-${beforeCommit}-${afterCommit.replace('+', '')}${afterConfigText === '' ? '' : '-after-config'}`,
    md,
    {
      ...runParameters(startedAt, options),
      before: beforeCommit,
      after: afterCommit,
      afterConfig,
      h2Clients,
      h2Streams,
      rows,
      runs,
      errors,
    },
  );
  for (const r of rows)
    console.error(
      `${r.scenario}: after ÷ before per core ${fmt(r.perCoreRatio, 3)}, RSS ${fmt(r.rssBefore, 1)} → ${fmt(r.rssAfter, 1)} MiB`,
    );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 ? 0 : 1;
}

// Run directly (`node bench/builds.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1]) process.exitCode = await runBuildsBench(process.argv.slice(2));
