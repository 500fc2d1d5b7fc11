// `npm run bench -- --only failover` (or `node bench/failover.ts`): a target killed under load (issue 17).
// One zproxy (one process, no access log) pinned to the proxy CPU in front of 4 nginx origins (on the load
// CPU with wrk), one route over the 4 targets, round robin. Each round runs three phases of wrk HTTP/1.1
// keep-alive: `before` (4 targets), `kill` (one origin is killed with SIGKILL a quarter into the phase:
// the connections zproxy holds to it are reset and new ones refused) and `after` (3 targets). Two
// variants alternate, each started anew each round: `outlier` (the defaults: outlier detection ejects the
// dead target after its first failures, retries send the failed requests to another target) and `retries`
// (outlier_detection off: every pick of the dead target costs a refused connection and a retry). The
// report gives the client requests that failed in the `kill` phase (the goal: none, the retries going to
// another target), the req/s per core before and after, the retries zproxy made and the ejections it logged.
// Writes docs/reports/<YYYY-MM-DD>-failover.{md,json}.
import { execSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { type NginxInstance, startOrigin } from '../src/bench/compare/nginx.ts';
import { freePort, processTree, sleep } from '../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, spread, writeReport } from './lib/report.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { ensureBuilt, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');
const TARGETS = 4;

type Variant = 'outlier' | 'retries';
type Phase = 'before' | 'kill' | 'after';
const PHASES: readonly Phase[] = ['before', 'kill', 'after'];

interface Run {
  readonly round: number;
  readonly variant: Variant;
  readonly phase: Phase;
  readonly requests: number;
  readonly rps: number;
  readonly rpsPerCore: number;
  readonly p99Us: number;
  /** Failed client requests: non-2xx answers and socket errors, as wrk counts them. */
  readonly failed: number;
  readonly disturbed: boolean;
}

interface RoundCounts {
  readonly round: number;
  readonly variant: Variant;
  readonly retries: number;
  readonly ejections: number;
}

function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function fetchText(port: number, path: string): Promise<string> {
  return new Promise((resolveText, reject) => {
    get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        text += c;
      });
      res.on('end', () => resolveText(text));
    }).on('error', reject);
  });
}

/** The sum of a family's series in a Prometheus text exposition. */
function summed(exposition: string, family: string): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (line.startsWith(`${family}{`) || line.startsWith(`${family} `))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export async function runFailoverBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(argv, ROOT, { rounds: 3, duration: 8 });
  const { rounds, durationS, warmupS, connections, proxyCpu, loadCpu } = options;
  if (!ensureTools(options.install, ['h1'])) return 1;
  ensureBuilt(ROOT);
  const tmp = groupTmp('failover');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const counts: RoundCounts[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  try {
    for (let round = 1; round <= rounds; round++) {
      const order: Variant[] = round % 2 === 1 ? ['outlier', 'retries'] : ['retries', 'outlier'];
      for (const variant of order) {
        const origins: NginxInstance[] = [];
        for (let i = 0; i < TARGETS; i++) {
          const origin = await startOrigin(join(tmp, `r${round}-${variant}-${i}`), loadCpu);
          origins.push(origin);
          started.push(origin);
        }
        const port = await freePort();
        const admin = await freePort();
        const file = join(tmp, `zproxy-${round}-${variant}.json`);
        writeFileSync(
          file,
          `${JSON.stringify(
            {
              host: '127.0.0.1',
              port,
              thread_count: 1,
              protocols: ['http1'],
              access_log: { enabled: false },
              admin: { port: admin },
              upstream_defaults: {
                ...(variant === 'retries' ? { outlier_detection: { enabled: false } } : {}),
              },
              routes: [{ path: '/', upstream: origins.map((o) => `http://127.0.0.1:${o.port}`) }],
            },
            null,
            2,
          )}\n`,
        );
        const main = join(ROOT, 'dist', 'cli', 'main.js');
        const logFile = join(tmp, `zproxy-${round}-${variant}.log`);
        const proc = startZproxy(
          ROOT,
          `zproxy failover ${variant} (round ${round})`,
          proxyCpu,
          main,
          file,
          logFile,
        );
        started.push(proc);
        await proc.waitForPort(port, 15_000);
        const url = `http://127.0.0.1:${port}/small`;
        if (warmupS > 0)
          await runWrk({ url, connections, durationS: warmupS, cpu: loadCpu, closeConnections: false });
        for (const phase of PHASES) {
          const m = await measurePinned(proc, proxyCpu, async () => {
            const load = runWrk({ url, connections, durationS, cpu: loadCpu, closeConnections: false });
            if (phase === 'kill') {
              await sleep((durationS * 1000) / 4);
              // Abruptly: the master and its worker, by PID.
              for (const pid of processTree(origins[1]!.process.pid).reverse()) {
                try {
                  process.kill(pid, 'SIGKILL');
                } catch {
                  // already gone
                }
              }
            }
            return load;
          });
          const result = m.result;
          const busy = m.busy;
          const run: Run = {
            round,
            variant,
            phase,
            requests: result.requests,
            rps: result.requestsPerSecond,
            rpsPerCore: busy > 0 ? result.requestsPerSecond / busy : 0,
            p99Us: result.latencyUs.p99,
            failed: result.errorCount,
            disturbed: m.disturbed,
          };
          runs.push(run);
          console.error(
            `round ${round} ${variant} ${phase}: ${Math.round(run.rps)} req/s, ${Math.round(run.rpsPerCore)} req/s per core, failed ${run.failed}${run.disturbed ? ' DISTURBED' : ''}`,
          );
        }
        const exposition = await fetchText(admin, '/metrics');
        const ejections = readFileSync(logFile, 'utf8')
          .split('\n')
          .filter((l) => l.includes('upstream target ejected')).length;
        counts.push({ round, variant, retries: summed(exposition, 'zproxy_retries_total'), ejections });
        await proc.stop();
        for (const o of origins) await o.stop();
        await sleep(300);
      }
    }
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const of = (variant: Variant, phase: Phase) =>
    runs.filter((r) => r.variant === variant && r.phase === phase);
  const failedAfterKill = (variant: Variant) => of(variant, 'kill').reduce((n, r) => n + r.failed, 0);
  const otherFailed = runs.filter((r) => r.phase !== 'kill').reduce((n, r) => n + r.failed, 0);
  const summary = (['outlier', 'retries'] as const).map((variant) => {
    const before = median(of(variant, 'before').map((r) => r.rpsPerCore));
    const after = median(of(variant, 'after').map((r) => r.rpsPerCore));
    const c = counts.filter((x) => x.variant === variant);
    return {
      variant,
      failedAfterKill: failedAfterKill(variant),
      requestsInKillPhase: of(variant, 'kill').reduce((n, r) => n + r.requests, 0),
      rpsPerCoreBefore: before,
      rpsPerCoreKill: median(of(variant, 'kill').map((r) => r.rpsPerCore)),
      rpsPerCoreAfter: after,
      afterOverBefore: before > 0 ? after / before : 0,
      retries: median(c.map((x) => x.retries)),
      ejections: median(c.map((x) => x.ejections)),
    };
  });
  const date = startedAt.toISOString().slice(0, 10);
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const goal = summary.find((s) => s.variant === 'outlier')!.failedAfterKill === 0;
  const md = `# Failover: a target killed under load (${date})

zproxy ${commit}, ${machine()}.
\`npm run bench -- --only failover\` (bench/failover.ts): ${rounds} rounds; in each, each variant is started anew
(zproxy, one process, no access log, pinned to CPU ${proxyCpu}; ${TARGETS} nginx origins and wrk \`-t1 -c${connections}\`
HTTP/1.1 keep-alive on CPU ${loadCpu}), warmed up ${warmupS} s, then three phases of ${durationS} s: \`before\` (${TARGETS}
targets), \`kill\` (one origin killed with SIGKILL ${fmt(durationS / 4, 1)} s into it) and \`after\` (${TARGETS - 1} targets).
One route over the ${TARGETS} targets, round robin. \`outlier\`: the defaults (outlier detection on: 5 failures in a
row eject a target; retries on connect failures and resets). \`retries\`: \`outlier_detection\` off, so every
pick of the dead target costs a refused connection and a retry. Variants alternate within a round.
Load average (1 / 5 / 15 min) at the start: ${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)}.

## Target (issue 17)

Once the first failure is seen, no client request fails: the requests that met the dead target go to
another one (retries), and it leaves the rotation (outlier detection).

| variant | failed client requests in the kill phase (all rounds) | requests in the kill phase | req/s per core before | in the kill phase | after | after ÷ before | retries (median per round) | ejections logged (median per round) |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
${summary
  .map(
    (s) =>
      `| ${s.variant} | **${fmt(s.failedAfterKill)}** | ${fmt(s.requestsInKillPhase)} | ${fmt(s.rpsPerCoreBefore)} | ${fmt(s.rpsPerCoreKill)} | ${fmt(s.rpsPerCoreAfter)} | ${fmt(s.afterOverBefore, 3)} | ${fmt(s.retries)} | ${fmt(s.ejections)} |`,
  )
  .join('\n')}

The goal ${goal ? 'holds' : '**does not hold**'} with the defaults (\`outlier\`). Failed client requests outside the
kill phase, all variants: ${fmt(otherFailed)}.

## Runs

Medians per variant and phase (min–max over the rounds):

| variant | phase | req/s | req/s per core | p99 µs |
| --- | --- | --- | --- | --- |
${(['outlier', 'retries'] as const)
  .flatMap((v) =>
    PHASES.map((p) => {
      const rs = of(v, p);
      return `| ${v} | ${p} | ${spread(rs.map((r) => r.rps))} | ${spread(rs.map((r) => r.rpsPerCore))} | ${fmt(median(rs.map((r) => r.p99Us)))} |`;
    }),
  )
  .join('\n')}

| round | variant | phase | req/s | req/s per core | failed |
| --- | --- | --- | --- | --- | --- |
${runs.map((r) => `| ${r.round} | ${r.variant} | ${r.phase} | ${fmt(r.rps)} | ${fmt(r.rpsPerCore)} | ${r.failed}${r.disturbed ? ' †' : ''} |`).join('\n')}

† another process used more than ${fmt(100 * DISTURBANCE_LIMIT)} % of the proxy CPU during the run.
`;
  const base = writeReport(options.outDir, `${date}-failover`, md, {
    ...runParameters(startedAt, options),
    commit,
    summary,
    counts,
    runs,
    goal,
  });
  console.error(
    summary
      .map(
        (s) =>
          `${s.variant}: failed after kill ${s.failedAfterKill}, after/before ${fmt(s.afterOverBefore, 3)}, retries ${s.retries}, ejections ${s.ejections}`,
      )
      .join('\n'),
  );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return goal ? 0 : 1;
}

// Run directly (`node bench/failover.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1])
  process.exitCode = await runFailoverBench(process.argv.slice(2));
