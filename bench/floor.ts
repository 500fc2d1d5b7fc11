// `npm run bench -- --only floor` (or `node bench/floor.ts`): the floor of one connection per request
// (wrk `-H 'Connection: close'`): what Node's `net` costs per connection before any zproxy code runs, read
// against nginx on the same core in the same rounds. The variants, each pinned to the proxy CPU:
//   nginx-return  nginx answering `return 200` itself (the origin's config: src/bench/compare/nginx.ts)
//   node-bare     a bare `net` server: reads one request head, writes a canned 200 with
//                 `Connection: close`, closes at once (bench/floor-server.ts bare)
//   node-bare-end the same, closing with end() (half-close, then close on the client's FIN)
//   node-raw      node-bare's work on libuv's TCP handle without net.Socket (bench/floor-server.ts raw):
//                 what Node's socket and stream layer costs per connection
//   node-proxy    a bare `net` server forwarding to the origin over kept-alive connections
//                 (bench/floor-server.ts proxy): the least a Node proxy pays
//   nginx-proxy   nginx as a proxy to the origin, as `zproxy compare` configures it
//   zproxy        this checkout's zproxy, or `--after REF` built (one worker, the instance bench's config)
//   zproxy-before with `--before REF`: that commit built (bench/lib/builds.ts), in the same rounds
// With `--keep-alive`, wrk keeps its connections (no `Connection: close`) and node-bare-end and node-raw are
// left out: what a request costs without a connection, to read the close figures against.
// The origin (nginx) and wrk run on the load CPU. Every round starts every process anew; the variants run
// one after the other, in reverse order in even rounds. Per-round ratios of req/s per core (over the
// rounds in which neither run was disturbed) and CPU µs per request (per connection, without --keep-alive);
// medians over the rounds.
// Writes docs/reports/<YYYY-MM-DD>-connection-floor.{md,json}.
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { nginxBinary, nginxDriver, startOrigin } from '../src/bench/compare/nginx.ts';
import { generatedPlan } from '../src/bench/compare/plan.ts';
import { freePort, PinnedProcess, processTree, sleep } from '../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { instanceConfig } from './instance.ts';
import { buildBoth, buildRef, resolveBuilds, TWO_BUILDS_OPTIONS } from './lib/builds.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { runLoad } from './lib/load.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, spread, writeReport } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { ensureTools } from './lib/tools.ts';
import { ensureBuilt, nodeBinary, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

const ALL_VARIANTS = [
  'nginx-return',
  'node-bare',
  'node-bare-end',
  'node-raw',
  'node-proxy',
  'nginx-proxy',
  'zproxy-before',
  'zproxy',
] as const;
type Who = (typeof ALL_VARIANTS)[number];

/** The ratios the report gives: numerator ÷ denominator of req/s per core, and what each says. */
const RATIOS: readonly { num: Who; den: Who; says: string }[] = [
  { num: 'node-bare', den: 'nginx-return', says: "Node's floor against nginx, no upstream" },
  { num: 'node-bare-end', den: 'nginx-return', says: 'the same, closing with a half-close' },
  { num: 'node-raw', den: 'nginx-return', says: 'the same work without net.Socket (the TCP handle)' },
  { num: 'node-proxy', den: 'nginx-proxy', says: "a bare Node proxy's floor against nginx proxying" },
  { num: 'zproxy', den: 'nginx-proxy', says: "zproxy against nginx (issue 15's goal with close: ≥ 0.8)" },
  { num: 'zproxy', den: 'node-proxy', says: "zproxy against the bare Node proxy (zproxy's own code)" },
  { num: 'zproxy-before', den: 'nginx-proxy', says: 'the --before build against nginx' },
  { num: 'zproxy', den: 'zproxy-before', says: 'zproxy against the --before build' },
];

interface Run {
  readonly round: number;
  readonly who: Who;
  readonly rps: number;
  readonly rpsPerCore: number;
  readonly cores: number;
  readonly cpuUsPerConnection: number;
  readonly p99Us: number;
  readonly errors: number;
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  readonly disturbed: boolean;
}

export async function runFloorBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(
    argv,
    ROOT,
    { rounds: 4, duration: 6 },
    { ...TWO_BUILDS_OPTIONS, 'keep-alive': { type: 'boolean', default: false } },
  );
  const { rounds, durationS, warmupS, connections, proxyCpu, loadCpu, values } = options;
  if (!ensureTools(options.install, ['h1'])) return 1;
  const before = typeof values.before === 'string' ? values.before : null;
  const after = typeof values.after === 'string' ? values.after : null;
  if (after === null) ensureBuilt(ROOT);
  const keepAlive = values['keep-alive'] === true;
  const VARIANTS = ALL_VARIANTS.filter(
    (v) =>
      (v !== 'zproxy-before' || before !== null) &&
      (!keepAlive || (v !== 'node-bare-end' && v !== 'node-raw')),
  );
  const tmp = groupTmp('floor');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  let nginxVersion = '';
  let mains: Record<'zproxy' | 'zproxy-before', string | null> = { zproxy: null, 'zproxy-before': null };
  let builds = '';
  const floorServer = join(ROOT, 'bench', 'floor-server.ts');
  try {
    if (before !== null) {
      const two = resolveBuilds(ROOT, before, after);
      const built = buildBoth(ROOT, two, tmp);
      mains = { zproxy: built.after, 'zproxy-before': built.before };
      builds = `zproxy-before: ${two.beforeCommit}, zproxy: ${two.afterCommit}`;
    } else if (after !== null) {
      mains.zproxy = buildRef(ROOT, after, join(tmp, 'after'));
      builds = `zproxy: ${resolveBuilds(ROOT, after, after).afterCommit}`;
    } else {
      mains.zproxy = join(ROOT, 'dist', 'cli', 'main.js');
      builds = `zproxy: ${resolveBuilds(ROOT, 'HEAD', null).afterCommit}`;
    }
    const origin = await startOrigin(tmp, loadCpu);
    started.push(origin);
    const originPids = processTree(origin.process.pid);
    const plan = generatedPlan(
      { host: '127.0.0.1', port: origin.port },
      { host: '127.0.0.1', port: origin.port },
      Math.max(64, connections),
    );
    nginxVersion = nginxDriver.version(nginxBinary());
    for (let round = 1; round <= rounds; round++) {
      const procs = new Map<Who, { proc: PinnedProcess; port: number }>();
      const running: { stop(): Promise<void> }[] = [];
      try {
        const ret = await startOrigin(join(tmp, `return-${round}`), proxyCpu);
        running.push(ret);
        procs.set('nginx-return', { proc: ret.process, port: ret.port });
        for (const [who, mode] of [
          ['node-bare', 'bare'],
          ['node-bare-end', 'bare-end'],
          ['node-raw', 'raw'],
          ['node-proxy', 'proxy'],
        ] as const) {
          if (!VARIANTS.includes(who)) continue;
          const port = await freePort();
          const proc = new PinnedProcess(
            `${who} (round ${round})`,
            proxyCpu,
            nodeBinary(ROOT),
            [floorServer, mode, String(port), String(origin.port)],
            join(tmp, `${who}-${round}.log`),
          );
          running.push(proc);
          await proc.waitForPort(port, 10_000);
          procs.set(who, { proc, port });
        }
        const nginx = await nginxDriver.start({
          dir: join(tmp, `nginx-${round}`),
          binary: nginxBinary(),
          plan,
          cpu: proxyCpu,
          needs: { h2c: false, tls: null },
          node: nodeBinary(ROOT),
          zproxyMain: '',
        });
        running.push(nginx);
        procs.set('nginx-proxy', { proc: nginx.process, port: nginx.ports.http1! });
        for (const who of ['zproxy', 'zproxy-before'] as const) {
          const main = mains[who];
          if (main === null) continue;
          const zport = await freePort();
          const file = join(tmp, `${who}-${round}.json`);
          writeFileSync(file, `${JSON.stringify(instanceConfig(zport, origin.port, 1, false), null, 2)}\n`);
          const zproxy = startZproxy(
            ROOT,
            `${who} (round ${round})`,
            proxyCpu,
            main,
            file,
            join(tmp, `${who}-${round}.log`),
          );
          running.push(zproxy);
          await zproxy.waitForPort(zport, 15_000);
          procs.set(who, { proc: zproxy, port: zport });
        }
        const order = round % 2 === 1 ? VARIANTS : [...VARIANTS].reverse();
        for (const who of order) {
          const { proc, port } = procs.get(who)!;
          const spec = {
            tool: 'wrk',
            url: `http://127.0.0.1:${port}/small`,
            connections,
            close: !keepAlive,
          } as const;
          if (warmupS > 0) await runLoad(spec, warmupS, loadCpu);
          const m = await measurePinned(proc, proxyCpu, () => runLoad(spec, durationS, loadCpu), {
            cpu: loadCpu,
            pids: originPids,
          });
          const r = m.result;
          const run: Run = {
            round,
            who,
            rps: r.rps,
            rpsPerCore: m.busy > 0 ? r.rps / m.busy : 0,
            cores: m.busy,
            cpuUsPerConnection: r.requests > 0 ? (m.cpuSeconds * 1e6) / r.requests : 0,
            p99Us: r.p99Us,
            errors: r.errors,
            otherLoad: m.otherLoad,
            disturbed: m.disturbed,
          };
          runs.push(run);
          console.error(
            `round ${round} ${who}: ${Math.round(run.rps)} req/s, ${Math.round(run.rpsPerCore)} per core (${run.cores.toFixed(2)} cores), ${run.cpuUsPerConnection.toFixed(1)} µs/req, errors ${run.errors}${run.disturbed ? ' DISTURBED' : ''}`,
          );
          await sleep(300);
        }
      } finally {
        for (const r of running.reverse()) await r.stop();
      }
    }
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  const of = (who: Who) => runs.filter((r) => r.who === who);
  const ratioValues = (num: Who, den: Who) => {
    const pairs = of(num).flatMap((n) => {
      const d = runs.find((r) => r.who === den && r.round === n.round);
      return d === undefined ? [] : [{ n, d }];
    });
    const clean = pairs.filter((p) => !p.n.disturbed && !p.d.disturbed);
    return (clean.length > 0 ? clean : pairs).map((p) => p.n.rpsPerCore / p.d.rpsPerCore);
  };
  const ratios = RATIOS.filter((r) => VARIANTS.includes(r.num) && VARIANTS.includes(r.den)).map((r) => ({
    ...r,
    values: ratioValues(r.num, r.den),
  }));
  const variants = VARIANTS.map((who) => ({
    who,
    rps: of(who).map((r) => r.rps),
    perCore: of(who).map((r) => r.rpsPerCore),
    cores: of(who).map((r) => r.cores),
    cpuUs: of(who).map((r) => r.cpuUsPerConnection),
  }));
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const pct = (x: number | null) => (x === null ? '?' : `${fmt(100 * x)} %`);
  const date = startedAt.toISOString().slice(0, 10);
  const command = `npm run bench -- --only floor --rounds ${rounds} --duration ${durationS}${before === null ? '' : ` --before ${before}`}${after === null ? '' : ` --after ${after}`}${keepAlive ? ' --keep-alive' : ''}${options.quick ? ' --quick' : ''}`;
  const md = `# The floor of ${keepAlive ? 'a request on a kept-alive connection' : 'a connection per request'} (${date})

${machine()}, ${nginxVersion}; ${builds}. \`${command}\` (bench/floor.ts): ${rounds} round(s) of ${durationS} s runs after ${warmupS} s of
warm-up each; wrk \`-t1 -c${connections}${keepAlive ? '' : " -H 'Connection: close'"}\` on CPU ${loadCpu} (with the nginx origin), every variant pinned
to CPU ${proxyCpu}; every process started anew each round, the variants in turn (reversed in even rounds).
Per core: req/s ÷ the CPU the variant's processes used. Ratios per round, over the rounds in which neither run was
disturbed (another process above ${fmt(100 * DISTURBANCE_LIMIT)} % of either CPU).
Load average (1 / 5 / 15 min) at the start: ${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)}.${options.quick ? '\n\n**A --quick run: a check of the bench, not figures to quote.**' : ''}

## Ratios of req/s per core

| ratio | median (min–max) | per round | what it says |
| --- | --- | --- | --- |
${ratios.map((r) => `| ${r.num} ÷ ${r.den} | **${fmt(median(r.values), 3)}** (${fmt(Math.min(...r.values), 3)}–${fmt(Math.max(...r.values), 3)}) | ${r.values.map((v) => fmt(v, 2)).join(', ')} | ${r.says} |`).join('\n')}

## Variants (medians over the rounds, min–max)

| variant | req/s | req/s per core | cores | CPU µs per request${keepAlive ? '' : ' (a connection each)'} |
| --- | --- | --- | --- | --- |
${variants.map((v) => `| ${v.who} | ${spread(v.rps)} | ${spread(v.perCore)} | ${spread(v.cores, 2)} | ${spread(v.cpuUs, 1)} |`).join('\n')}

Errors over all runs: ${errors}${errors > 0 ? ' (**the bench failed**)' : ''}.

## Runs

| round | variant | req/s | req/s per core | cores | CPU µs/req | p99 µs | other load, proxy / load CPU |
| --- | --- | --- | --- | --- | --- | --- | --- |
${runs.map((r) => `| ${r.round} | ${r.who} | ${fmt(r.rps)} | ${fmt(r.rpsPerCore)} | ${fmt(r.cores, 2)} | ${fmt(r.cpuUsPerConnection, 1)} | ${fmt(r.p99Us)} | ${pct(r.otherLoad.proxyCpu)} / ${pct(r.otherLoad.loadCpu)}${r.disturbed ? ' †' : ''} |`).join('\n')}

† disturbed: another process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU or of the load CPU.
`;
  const base = writeReport(options.outDir, `${date}-connection-floor${keepAlive ? '-keep-alive' : ''}`, md, {
    ...runParameters(startedAt, options),
    command,
    builds,
    ratios,
    variants,
    runs,
    errors,
  });
  for (const r of ratios) console.error(`${r.num} ÷ ${r.den}: ${fmt(median(r.values), 3)}`);
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 ? 0 : 1;
}

// Run directly (`node bench/floor.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1]) process.exitCode = await runFloorBench(process.argv.slice(2));
