// `npm run bench -- --only instance --before REF` (or `node bench/instance.ts --before REF`): the figures of
// issue 15's acceptance in one run, for two builds of zproxy (bench/lib/builds.ts: `before` = REF built from
// `git archive`, `after` = this checkout's dist/ or `--after REF`):
//   plain-1, plain-2, plain-4  HTTP/1.1 keep-alive, small answer (wrk -c64) with thread_count 1, 2, 4:
//                              req/s, req/s per core (the CPU of the whole instance: every process of its
//                              tree, every thread), peak RSS of the tree under the load;
//   rate_limit-2               the same with 2 workers and a rate_limit filter (memory store, a limit never
//                              reached), read against plain-2 of the same round;
//   close-1                    one connection per request (wrk -H 'Connection: close'), 1 worker, against
//                              nginx as a proxy (src/bench/compare/nginx.ts, configured as `zproxy compare`
//                              does);
//   h2c-1                      HTTP/2 with prior knowledge (h2load -c16 -m10: 160 streams in flight), 1
//                              worker, against the same nginx.
// Every zproxy config leaves the upstream pool at its defaults (no max_idle_per_target) and names only
// fields both builds know (each build's `zproxy check` must accept it before the rounds start); with
// thread_count > 1 each build runs its own default worker model. nginx keeps as many idle upstream
// connections as `zproxy compare` gives it (the most requests in flight of any scenario, at least 64).
// zproxy and nginx are pinned to the proxy CPU, the nginx origin and the load tools to the load CPU. Every
// round starts every process anew; within a round the variants alternate scenario by scenario (before,
// after; the next round after, before; nginx first in odd rounds, last in even ones). The figures are
// medians over the rounds (min–max); ratios are taken per round, over the rounds in which no run of the
// ratio was disturbed (bench/lib/pinned-run.ts). Writes docs/reports/<YYYY-MM-DD>-instance.{md,json}.
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { nginxBinary, nginxDriver, startOrigin } from '../src/bench/compare/nginx.ts';
import { generatedPlan } from '../src/bench/compare/plan.ts';
import {
  freePort,
  type PinnedProcess,
  peakRssKiB,
  processTree,
  resetPeakRss,
  sleep,
} from '../src/bench/compare/proc.ts';
import type { RunningProxy } from '../src/bench/compare/proxies.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { shebangNodeFlags } from '../src/bench/compare/zproxy.ts';
import { buildBoth, resolveBuilds, TWO_BUILDS_OPTIONS, type Variant } from './lib/builds.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { type LoadSpec, runLoad } from './lib/load.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, spread, writeReport } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { ensureTools } from './lib/tools.ts';
import { ensureBuilt, nodeBinary, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

type Who = Variant | 'nginx';

/** One zproxy configuration of a round, and the scenarios measured on it. */
interface Setup {
  readonly workers: number;
  readonly rateLimit: boolean;
  readonly scenarios: readonly ScenarioName[];
}

const SCENARIOS = ['plain-1', 'close-1', 'h2c-1', 'plain-2', 'rate_limit-2', 'plain-4'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const SETUPS: readonly Setup[] = [
  { workers: 1, rateLimit: false, scenarios: ['plain-1', 'close-1', 'h2c-1'] },
  { workers: 2, rateLimit: false, scenarios: ['plain-2'] },
  { workers: 2, rateLimit: true, scenarios: ['rate_limit-2'] },
  { workers: 4, rateLimit: false, scenarios: ['plain-4'] },
];

/** The scenarios nginx is measured in too. */
const AGAINST_NGINX: readonly ScenarioName[] = ['close-1', 'h2c-1'];

/** A rate never reached: every request is decided, none refused. */
const NEVER_REACHED_PER_MINUTE = 1_000_000_000;

/**
 * The instance both builds serve: one plain listener (HTTP/1.1 and h2c), `workers` workers, no access log,
 * the upstream pool's defaults, everything to the origin, with or without a rate_limit filter.
 */
export function instanceConfig(
  port: number,
  originPort: number,
  workers: number,
  rateLimit: boolean,
): object {
  return {
    listeners: [{ host: '127.0.0.1', port }],
    thread_count: workers,
    access_log: { enabled: false },
    routes: [
      {
        path: '/',
        upstream: `http://127.0.0.1:${originPort}`,
        ...(rateLimit
          ? {
              middlewares: [
                {
                  type: 'rate_limit',
                  config: { requests_per_minute: NEVER_REACHED_PER_MINUTE, store: 'memory' },
                },
              ],
            }
          : {}),
      },
    ],
  };
}

interface Run {
  readonly round: number;
  readonly scenario: ScenarioName;
  readonly who: Who;
  readonly rps: number;
  readonly rpsPerCore: number;
  /** CPU the whole tree used, in cores. */
  readonly cores: number;
  readonly cpuUsPerRequest: number;
  readonly p99Us: number;
  /** Summed over the tree: each process's VmHWM, reset after the warm-up. */
  readonly peakRssMiB: number | null;
  /** Processes in the tree. */
  readonly processes: number;
  readonly errors: number;
  /** The share of a core other processes took on the proxy CPU and on the load CPU (null: unknown). */
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  readonly disturbed: boolean;
}

/** Each build's `zproxy check` of every config this run serves; throws with its output on a refusal. */
function checkConfigs(mains: Record<Variant, string>, tmp: string, originPort: number): void {
  for (const setup of SETUPS) {
    const file = join(tmp, `check-${setup.workers}-${setup.rateLimit}.json`);
    writeFileSync(file, `${JSON.stringify(instanceConfig(1, originPort, setup.workers, setup.rateLimit))}\n`);
    for (const variant of ['before', 'after'] as const) {
      const main = mains[variant];
      const result = spawnSync(nodeBinary(ROOT), [...shebangNodeFlags(main), main, 'check', file], {
        encoding: 'utf8',
      });
      if (result.status !== 0) {
        throw new Error(
          `the ${variant} build refuses the config of ${setup.workers} worker(s)${setup.rateLimit ? ' with rate_limit' : ''}:\n${result.stdout}${result.stderr}`,
        );
      }
    }
  }
}

export async function runInstanceBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(
    argv,
    ROOT,
    { rounds: 5, duration: 8 },
    {
      ...TWO_BUILDS_OPTIONS,
    },
  );
  const { rounds, durationS, warmupS, connections, h2Clients, h2Streams, proxyCpu, loadCpu, values } =
    options;
  if (typeof values.before !== 'string')
    throw new Error('--before REF is required (issue 15: 766f669, the last commit before the worker model)');
  if (!ensureTools(options.install, ['h1', 'h2'])) return 1;
  ensureBuilt(ROOT);
  const builds = resolveBuilds(ROOT, values.before, typeof values.after === 'string' ? values.after : null);
  const { beforeCommit, afterCommit, afterRef } = builds;
  // As `zproxy compare` sizes nginx's `keepalive` (src/bench/compare/compare.ts).
  const nginxKeepalive = Math.max(64, connections, h2Clients * h2Streams);
  const tmp = groupTmp('instance');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  let nginxVersion = '';
  try {
    const mains = buildBoth(ROOT, builds, tmp);
    const origin = await startOrigin(tmp, loadCpu);
    started.push(origin);
    checkConfigs(mains, tmp, origin.port);
    const plan = generatedPlan(
      { host: '127.0.0.1', port: origin.port },
      { host: '127.0.0.1', port: origin.port },
      nginxKeepalive,
    );
    nginxVersion = nginxDriver.version(nginxBinary());
    const originPids = processTree(origin.process.pid);
    for (let round = 1; round <= rounds; round++) {
      const order: Who[] = round % 2 === 1 ? ['nginx', 'before', 'after'] : ['after', 'before', 'nginx'];
      for (const setup of SETUPS) {
        const ports = new Map<Who, { http1: number; h2c: number }>();
        const procs = new Map<Who, PinnedProcess>();
        const running: { stop(): Promise<void> }[] = [];
        try {
          for (const variant of ['before', 'after'] as const) {
            const port = await freePort();
            const file = join(tmp, `zproxy-${variant}-${setup.workers}-${setup.rateLimit}.json`);
            const config = instanceConfig(port, origin.port, setup.workers, setup.rateLimit);
            writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
            const main = mains[variant];
            const proc = startZproxy(
              ROOT,
              `zproxy ${variant} ×${setup.workers}${setup.rateLimit ? ' rate_limit' : ''} (round ${round})`,
              proxyCpu,
              main,
              file,
              join(tmp, `${variant}-${setup.workers}-${setup.rateLimit}-${round}.log`),
            );
            running.push(proc);
            await proc.waitForPort(port, 15_000);
            ports.set(variant, { http1: port, h2c: port });
            procs.set(variant, proc);
          }
          if (setup.scenarios.some((s) => AGAINST_NGINX.includes(s))) {
            const nginx: RunningProxy = await nginxDriver.start({
              dir: join(tmp, `nginx-${round}`),
              binary: nginxBinary(),
              plan,
              cpu: proxyCpu,
              needs: { h2c: true, tls: null },
              node: nodeBinary(ROOT),
              zproxyMain: '',
            });
            running.push(nginx);
            ports.set('nginx', { http1: nginx.ports.http1!, h2c: nginx.ports.h2c! });
            procs.set('nginx', nginx.process);
          }
          // Every worker listening: the kernel spreads connections over the sockets bound so far.
          if (setup.workers > 1) await sleep(1500 + 300 * setup.workers);
          for (const scenario of setup.scenarios) {
            for (const who of order) {
              if (who === 'nginx' && !AGAINST_NGINX.includes(scenario)) continue;
              const port = ports.get(who)!;
              const proc = procs.get(who)!;
              const spec: LoadSpec =
                scenario === 'h2c-1'
                  ? {
                      tool: 'h2load',
                      url: `http://127.0.0.1:${port.h2c}/small`,
                      clients: h2Clients,
                      streams: h2Streams,
                      logFile: join(tmp, 'h2load.log'),
                    }
                  : {
                      tool: 'wrk',
                      url: `http://127.0.0.1:${port.http1}/small`,
                      connections,
                      close: scenario === 'close-1',
                    };
              if (warmupS > 0) await runLoad(spec, warmupS, loadCpu);
              const tree = processTree(proc.pid);
              for (const pid of tree) resetPeakRss(pid);
              const m = await measurePinned(proc, proxyCpu, () => runLoad(spec, durationS, loadCpu), {
                cpu: loadCpu,
                pids: originPids,
              });
              const peaks = tree.map(peakRssKiB);
              const result = m.result;
              const run: Run = {
                round,
                scenario,
                who,
                rps: result.rps,
                rpsPerCore: m.busy > 0 ? result.rps / m.busy : 0,
                cores: m.busy,
                cpuUsPerRequest: result.requests > 0 ? (m.cpuSeconds * 1e6) / result.requests : 0,
                p99Us: result.p99Us,
                peakRssMiB: peaks.includes(null)
                  ? null
                  : peaks.reduce<number>((a, b) => a + (b ?? 0), 0) / 1024,
                processes: tree.length,
                errors: result.errors,
                otherLoad: m.otherLoad,
                disturbed: m.disturbed,
              };
              runs.push(run);
              console.error(
                `round ${round} ${scenario} ${who}: ${Math.round(run.rps)} req/s, ${Math.round(run.rpsPerCore)} per core (${run.cores.toFixed(2)} cores, ${run.processes} process(es)), peak RSS ${run.peakRssMiB?.toFixed(1) ?? '?'} MiB, errors ${run.errors}${run.disturbed ? ' DISTURBED' : ''}`,
              );
              await sleep(300);
            }
          }
        } finally {
          for (const r of running.reverse()) await r.stop();
        }
      }
    }
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const pct = (x: number | null) => (x === null ? '?' : `${fmt(100 * x)} %`);
  const of = (scenario: ScenarioName, who: Who) =>
    runs.filter((r) => r.scenario === scenario && r.who === who);
  /** Per-round ratios num ÷ den of req/s per core, over the rounds in which neither run was disturbed. */
  const ratios = (num: readonly Run[], den: readonly Run[]) => {
    const all = num.flatMap((n) => {
      const d = den.find((r) => r.round === n.round);
      return d === undefined ? [] : [{ n, d }];
    });
    const clean = all.filter((p) => !p.n.disturbed && !p.d.disturbed);
    const used = clean.length > 0 ? clean : all;
    return {
      values: used.map((p) => p.n.rpsPerCore / p.d.rpsPerCore),
      rounds: used.map((p) => p.n.round),
    };
  };
  const ratioCell = (r: { values: number[]; rounds: number[] }) =>
    r.values.length === 0
      ? '–'
      : `**${fmt(median(r.values), 3)}** (${fmt(Math.min(...r.values), 3)}–${fmt(Math.max(...r.values), 3)})`;
  const mib = (rs: readonly Run[]) => rs.flatMap((r) => (r.peakRssMiB === null ? [] : [r.peakRssMiB]));

  const throughput = (['plain-1', 'plain-2'] as const).map((scenario) => ({
    scenario,
    before: {
      rps: of(scenario, 'before').map((r) => r.rps),
      perCore: of(scenario, 'before').map((r) => r.rpsPerCore),
    },
    after: {
      rps: of(scenario, 'after').map((r) => r.rps),
      perCore: of(scenario, 'after').map((r) => r.rpsPerCore),
    },
    afterOverBefore: ratios(of(scenario, 'after'), of(scenario, 'before')),
  }));
  const rateLimit = (['before', 'after'] as const).map((variant) => ({
    variant,
    ratio: ratios(of('rate_limit-2', variant), of('plain-2', variant)),
  }));
  const memory = (['plain-1', 'plain-2', 'plain-4'] as const).map((scenario) => ({
    scenario,
    workers: Number(scenario.slice(-1)),
    before: mib(of(scenario, 'before')),
    after: mib(of(scenario, 'after')),
  }));
  const againstNginx = AGAINST_NGINX.map((scenario) => ({
    scenario,
    before: ratios(of(scenario, 'before'), of(scenario, 'nginx')),
    after: ratios(of(scenario, 'after'), of(scenario, 'nginx')),
    nginxPerCore: of(scenario, 'nginx').map((r) => r.rpsPerCore),
  }));
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const disturbed = runs.filter((r) => r.disturbed).length;
  const date = startedAt.toISOString().slice(0, 10);
  const command = `npm run bench -- --only instance --before ${beforeCommit}${afterRef === null ? '' : ` --after ${afterCommit}`}${options.quick ? ' --quick' : ''}`;
  const md = `# One instance, many cores: ${beforeCommit} (before) and ${afterCommit} (after) (${date})

The bench report of issue 15's acceptance. ${machine()}, ${nginxVersion}.
\`${command}\` (bench/instance.ts): ${rounds} round(s) of ${durationS} s runs (after ${warmupS} s of warm-up each). Every process
is started anew each round; zproxy (every worker) and nginx pinned to CPU ${proxyCpu}, the nginx origin and the load tool on CPU ${loadCpu}.
Within a round the runs alternate scenario by scenario: odd rounds nginx, before, after; even rounds after, before, nginx.
HTTP/1.1: wrk \`-t1 -c${connections}\`, a 13-byte answer; HTTP/2: h2load \`-c${h2Clients} -m${h2Streams}\` (h2c, ${h2Clients * h2Streams} streams in flight).
zproxy's config (both builds): one plain listener, \`thread_count\` 1, 2 or 4 (each build's default worker model: worker
processes before the worker-model work), no access log, **the upstream pool's defaults** (no \`max_idle_per_target\`);
the rate-limit chain is one \`rate_limit\` filter (memory store, ${fmt(NEVER_REACHED_PER_MINUTE)} per minute: never reached).
nginx: one worker, \`keepalive ${nginxKeepalive}\` to the origin, as \`zproxy compare\` configures it.
"Per core" divides req/s by the CPU the whole instance used (every process of its tree, every thread); with 2 or 4
workers on one CPU it shows what the extra workers cost, not what they gain. Peak RSS is the sum over the tree of each
process's VmHWM, reset after the warm-up. Figures: median over the rounds (min–max); ratios are per round, over the rounds
in which neither run was disturbed (another process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU or of the load CPU).
Load average (1 / 5 / 15 min) at the start: ${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)}.${options.quick ? '\n\n**A --quick run: one short round, a check of the bench, not figures to quote.**' : ''}

## req/s per core, thread_count 1 and 2 (HTTP/1.1 keep-alive)

| thread_count | req/s before | req/s after | req/s per core before | req/s per core after | per core, after ÷ before |
| --- | --- | --- | --- | --- | --- |
${throughput
  .map(
    (t) =>
      `| ${t.scenario.slice(-1)} | ${spread(t.before.rps)} | ${spread(t.after.rps)} | ${spread(t.before.perCore)} | ${spread(t.after.perCore)} | ${ratioCell(t.afterOverBefore)} |`,
  )
  .join('\n')}

## Rate-limit chain ÷ plain, 2 workers (goal ≥ 0.9)

req/s per core with the \`rate_limit\` filter ÷ without it, the same build in the same round.

| build | rate_limit ÷ plain | goal ≥ 0.9 |
| --- | --- | --- |
${rateLimit
  .map(
    (r) =>
      `| ${r.variant} | ${ratioCell(r.ratio)} | ${r.ratio.values.length === 0 ? '–' : median(r.ratio.values) >= 0.9 ? 'met' : '**not met**'} |`,
  )
  .join('\n')}

## Peak RSS under the HTTP/1.1 load (MiB, the whole instance)

Targets of the issue: 1 worker ≤ 80 MiB, each additional worker ≤ 40 MiB more (2: ≤ 120, 4: ≤ 200).

| thread_count | before | after | target |
| --- | --- | --- | --- |
${memory.map((m) => `| ${m.workers} | ${spread(m.before, 1)} | ${spread(m.after, 1)} | ≤ ${80 + 40 * (m.workers - 1)} |`).join('\n')}

## Against nginx, 1 worker

zproxy's req/s per core ÷ nginx's in the same round. \`close-1\`: one connection per request (wrk \`-H 'Connection: close'\`),
goal ≥ 0.8. \`h2c-1\`: HTTP/2, ${h2Clients * h2Streams} streams in flight, zproxy with the default pool.

| scenario | before ÷ nginx | after ÷ nginx | nginx req/s per core |
| --- | --- | --- | --- |
${againstNginx.map((a) => `| ${a.scenario} | ${ratioCell(a.before)} | ${ratioCell(a.after)} | ${spread(a.nginxPerCore)} |`).join('\n')}

Errors over all runs: ${errors}${errors > 0 ? ' (**the bench failed**)' : ''}. Disturbed runs: ${disturbed}.

## Runs

| round | scenario | who | req/s | req/s per core | cores | CPU µs/req | p99 µs | peak RSS MiB | processes | other load, proxy / load CPU |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
${runs.map((r) => `| ${r.round} | ${r.scenario} | ${r.who} | ${fmt(r.rps)} | ${fmt(r.rpsPerCore)} | ${fmt(r.cores, 2)} | ${fmt(r.cpuUsPerRequest, 2)} | ${fmt(r.p99Us)} | ${r.peakRssMiB === null ? '?' : fmt(r.peakRssMiB, 1)} | ${r.processes} | ${pct(r.otherLoad.proxyCpu)} / ${pct(r.otherLoad.loadCpu)}${r.disturbed ? ' †' : ''} |`).join('\n')}

† another process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU or of the load CPU during the run.
`;
  const base = writeReport(options.outDir, `${date}-instance`, md, {
    ...runParameters(startedAt, options),
    command,
    before: beforeCommit,
    after: afterCommit,
    h2Clients,
    h2Streams,
    nginxKeepalive,
    throughput,
    rateLimit,
    memory,
    againstNginx,
    runs,
    errors,
  });
  for (const t of throughput)
    console.error(`${t.scenario}: per core after ÷ before ${fmt(median(t.afterOverBefore.values), 3)}`);
  for (const r of rateLimit)
    console.error(`rate_limit-2 ÷ plain-2, ${r.variant}: ${fmt(median(r.ratio.values), 3)}`);
  for (const m of memory)
    console.error(`peak RSS ×${m.workers}: ${fmt(median(m.before), 1)} → ${fmt(median(m.after), 1)} MiB`);
  for (const a of againstNginx)
    console.error(
      `${a.scenario} ÷ nginx: before ${fmt(median(a.before.values), 3)}, after ${fmt(median(a.after.values), 3)}`,
    );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 ? 0 : 1;
}

// Run directly (`node bench/instance.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1])
  process.exitCode = await runInstanceBench(process.argv.slice(2));
