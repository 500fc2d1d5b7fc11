// `npm run bench -- --only trace` (or `node bench/trace-context.ts`): what the W3C trace context
// (`tracing.traceparent`) costs on the small HTTP/1.1 keep-alive response. One zproxy per variant, all
// pinned to the proxy CPU, in front of the same nginx origin (on the load CPU, with wrk):
//   off        tracing.traceparent: false (the reference)
//   started    on, wrk sends no traceparent: zproxy starts a trace for each request (two random ids)
//   continued  on, wrk sends a valid traceparent: zproxy checks it and continues it (one random id)
// Rounds are interleaved (off, started, continued, off, ...) so that drift hits every variant alike;
// ratios are taken per round against that round's `off` run, then the median. No access log (as in the
// other benches). Before the runs the bench checks that each variant sends what it says to the upstream
// (a small recording upstream: the origin, nginx, does not show request fields). Writes
// docs/reports/<YYYY-MM-DD>-trace-context.{md,json}.
import { execSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { startOrigin } from '../src/bench/compare/nginx.ts';
import { freePort, type PinnedProcess, processTree, sleep } from '../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../src/bench/compare/results.ts';
import { FieldList } from '../src/http/fields.ts';
import { addRequestLines, ForwardedRequest, ForwardingPolicy, headLines } from '../src/http/forwarding.ts';
import { groupTmp, parseGroupOptions } from './lib/group-options.ts';
import { measurePinned } from './lib/pinned-run.ts';
import { fmt, loadAverages, machine, runParameters, spread, writeReport } from './lib/report.ts';
import { median } from './lib/stats.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { ensureBuilt, startZproxy } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');
const CLIENT_TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

type Variant = 'off' | 'started' | 'continued';
const VARIANTS: readonly Variant[] = ['off', 'started', 'continued'];
const DESCRIPTIONS: Record<Variant, string> = {
  off: '`tracing.traceparent: false` (the reference)',
  started: 'on; the client sends no traceparent: zproxy starts a trace (new trace id and span id)',
  continued: 'on; the client sends a valid traceparent: zproxy continues it (new span id)',
};

interface Run {
  readonly round: number;
  readonly variant: Variant;
  readonly rps: number;
  readonly p99Us: number;
  readonly errors: number;
  readonly cpuUsPerRequest: number;
  readonly proxyCpuBusy: number;
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  readonly disturbed: boolean;
}

/** CPU nanoseconds per call of the forwarding decisions and the HTTP/1.1 rendering, in this process. */
interface MicroCost {
  readonly off: number;
  readonly started: number;
  readonly continued: number;
}

/**
 * The same work in process, without sockets: for a request of 8 fields, the policy's trace() and
 * request() decisions and the HTTP/1.1 lines zproxy adds, with tracing off, on with a trace started, on
 * with one continued. CPU time (process.cpuUsage), the median of 5 runs of 1,000,000 calls each.
 */
function microCost(): MicroCost {
  const base = [
    'host',
    'example.test',
    'user-agent',
    'wrk',
    'accept',
    '*/*',
    'accept-encoding',
    'gzip',
    'cookie',
    'a=1',
    'x-request-id',
    'abc',
    'connection',
    'keep-alive',
  ];
  const plain = new FieldList([...base, 'x-other', '1']);
  const traced = new FieldList([...base, 'traceparent', CLIENT_TRACEPARENT]);
  const measure = (policy: ForwardingPolicy, source: FieldList): number => {
    const out = new ForwardedRequest();
    let sink = 0;
    const runs: number[] = [];
    for (let run = 0; run < 6; run++) {
      const n = 1_000_000;
      const t0 = process.cpuUsage();
      for (let i = 0; i < n; i++) {
        policy.trace(out, source);
        policy.request(out, source, '127.0.0.1', 'http', 'example.test', 'example.test', '1.1', 'o:80');
        addRequestLines(headLines.clear(), out, null);
        sink += headLines.toString().length;
      }
      const t = process.cpuUsage(t0);
      // The first run warms up the JIT.
      if (run > 0) runs.push(((t.user + t.system) * 1000) / n);
    }
    if (sink === 0) throw new Error('nothing rendered');
    return median(runs);
  };
  const on = new ForwardingPolicy(null, true, true);
  const off = new ForwardingPolicy(null, true, false);
  return { off: measure(off, plain), started: measure(on, plain), continued: measure(on, traced) };
}

/** What a zproxy variant sends upstream: its traceparent, seen by a recording upstream on a second route. */
async function upstreamTraceparent(
  port: number,
  headers: Record<string, string>,
): Promise<string | undefined> {
  return new Promise((resolveField, reject) => {
    const req = get({ host: '127.0.0.1', port, path: '/check/', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolveField(body === '' ? undefined : body));
    });
    req.on('error', reject);
  });
}

export async function runTraceContextBench(argv: readonly string[]): Promise<number> {
  const options = parseGroupOptions(argv, ROOT, { rounds: 5, duration: 10 });
  const { rounds, durationS, warmupS, connections, proxyCpu, loadCpu } = options;
  if (!ensureTools(options.install, ['h1'])) return 1;
  ensureBuilt(ROOT);
  const micro = microCost();
  console.error(
    `in process, ns per request (decisions + HTTP/1.1 lines): off ${micro.off.toFixed(0)}, started ${micro.started.toFixed(0)}, continued ${micro.continued.toFixed(0)}`,
  );
  const tmp = groupTmp('trace');
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  const loadBefore = loadavg();
  let loadAfter = loadBefore;
  // Answers with the traceparent it got (only for the checks, never under load).
  const recorder = createServer((req, res) => {
    const field = req.headers.traceparent;
    res.end(typeof field === 'string' ? field : '');
  });
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  const recorderPort = (recorder.address() as AddressInfo).port;
  const checks: string[] = [];
  try {
    const origin = await startOrigin(tmp, loadCpu);
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
        tracing: { traceparent: variant !== 'off' },
        upstream_defaults: { max_idle_per_target: connections },
        routes: [
          { path: '/check', upstream: `http://127.0.0.1:${recorderPort}` },
          { path: '/', upstream: `http://127.0.0.1:${originPort}` },
        ],
      };
      writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
      const main = join(ROOT, 'dist', 'cli', 'main.js');
      const proc = startZproxy(ROOT, `zproxy ${variant}`, proxyCpu, main, file, join(tmp, `${variant}.log`));
      started.push(proc);
      await proc.waitForPort(port, 15_000);
      proxies.set(variant, { port, process: proc });
    }
    // Each variant sends upstream what it says before anything is measured.
    const off = await upstreamTraceparent(proxies.get('off')!.port, {});
    if (off !== undefined) throw new Error(`the off variant sends a traceparent: ${off}`);
    const start = await upstreamTraceparent(proxies.get('started')!.port, {});
    if (start === undefined || !/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/.test(start))
      throw new Error(`the started variant does not start a trace: ${start}`);
    const cont = await upstreamTraceparent(proxies.get('continued')!.port, {
      traceparent: CLIENT_TRACEPARENT,
    });
    if (
      cont === undefined ||
      cont.slice(0, 36) !== CLIENT_TRACEPARENT.slice(0, 36) ||
      cont === CLIENT_TRACEPARENT
    )
      throw new Error(`the continued variant does not continue the trace: ${cont}`);
    checks.push(
      'off sends no traceparent upstream',
      `started sends a new trace (e.g. \`${start}\`)`,
      `continued sends the client's trace with a new span (\`${CLIENT_TRACEPARENT}\` became \`${cont}\`)`,
    );

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
            headers: variant === 'continued' ? [`traceparent: ${CLIENT_TRACEPARENT}`] : [],
          });
        if (warmupS > 0) await load(warmupS);
        const m = await measurePinned(proc, proxyCpu, () => load(durationS), {
          cpu: loadCpu,
          pids: processTree(origin.process.pid),
        });
        const result = m.result;
        const otherLoad = m.otherLoad;
        const run: Run = {
          round,
          variant,
          rps: result.requestsPerSecond,
          p99Us: result.latencyUs.p99,
          errors: result.errorCount,
          cpuUsPerRequest: result.requests > 0 ? (m.cpuSeconds * 1e6) / result.requests : 0,
          proxyCpuBusy: m.busy,
          otherLoad,
          disturbed: m.disturbed,
        };
        runs.push(run);
        const pct = (x: number | null) => (x === null ? '?' : `${(100 * x).toFixed(0)} %`);
        console.error(
          `round ${round} ${variant}: ${Math.round(run.rps)} req/s, ${run.cpuUsPerRequest.toFixed(1)} µs CPU/req, p99 ${Math.round(run.p99Us)} µs, errors ${run.errors}, zproxy CPU ${pct(run.proxyCpuBusy)}, other load ${pct(otherLoad.proxyCpu)} / ${pct(otherLoad.loadCpu)}${run.disturbed ? ' DISTURBED' : ''}`,
        );
        await sleep(500);
      }
    }
    loadAfter = loadavg();
  } finally {
    for (const s of started.reverse()) await s.stop();
    await new Promise<void>((r) => recorder.close(() => r()));
    if (!options.keepTmp) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const by = (variant: Variant) => runs.filter((r) => r.variant === variant);
  const offOf = (round: number) => runs.find((p) => p.variant === 'off' && p.round === round)!;
  const ratio = (variant: Variant) => by(variant).map((r) => r.rps / offOf(r.round).rps);
  const cpuRatio = (variant: Variant) =>
    by(variant).map((r) => r.cpuUsPerRequest / offOf(r.round).cpuUsPerRequest);
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const disturbed = runs.filter((r) => r.disturbed);
  // Rounds in which no run was disturbed: on a shared machine, the figures that hold.
  const quiet = Array.from({ length: rounds }, (_, i) => i + 1).filter(
    (round) => !runs.some((r) => r.round === round && r.disturbed),
  );
  const quietRatio = (variant: Variant, cpu: boolean): number | null => {
    const xs = by(variant)
      .filter((r) => quiet.includes(r.round))
      .map((r) => (cpu ? r.cpuUsPerRequest / offOf(r.round).cpuUsPerRequest : r.rps / offOf(r.round).rps));
    return xs.length === 0 ? null : median(xs);
  };
  const date = startedAt.toISOString().slice(0, 10);
  const pct = (x: number | null) => (x === null ? '?' : `${fmt(100 * x)} %`);
  const q = (x: number | null) => (x === null ? '–' : fmt(x, 3));
  const rows = VARIANTS.map((variant) => {
    const rs = by(variant);
    return `| ${variant} | ${spread(rs.map((r) => r.rps))} | ${spread(ratio(variant), 3)} | ${spread(
      rs.map((r) => r.cpuUsPerRequest),
      1,
    )} | ${spread(cpuRatio(variant), 3)} | ${fmt(median(rs.map((r) => r.p99Us)))} | ${rs.reduce((n, r) => n + r.errors, 0)} |`;
  });
  const roundRows = Array.from({ length: rounds }, (_, i) => i + 1).map((round) => {
    const cells = VARIANTS.map((variant) => {
      const r = runs.find((x) => x.variant === variant && x.round === round)!;
      const mark = r.disturbed ? ' †' : '';
      return variant === 'off'
        ? `${fmt(r.rps)}${mark}`
        : `${fmt(r.rps)} (${fmt(r.rps / offOf(round).rps, 3)})${mark}`;
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
  const md = `# Trace context: what \`tracing.traceparent\` costs (${date})

zproxy ${commit}, ${machine()}.
\`npm run bench -- --only trace\` (bench/trace-context.ts): ${rounds} interleaved rounds of ${durationS} s (after ${warmupS} s of
warm-up each), wrk \`-t1 -c${connections}\` on CPU ${loadCpu} with the nginx origin; each zproxy (one process, no access
log) pinned to CPU ${proxyCpu}; the origin's small keep-alive response. Load average (1 / 5 / 15 min) at the start:
${loadAverages(loadBefore)}; at the end: ${loadAverages(loadAfter)} (the bench's own load included).

| variant | what |
| --- | --- |
${VARIANTS.map((v) => `| ${v} | ${DESCRIPTIONS[v]} |`).join('\n')}

## Results

Medians over the rounds (min–max); each ratio is taken against the same round's \`off\` run.

Over the ${quiet.length} round(s) in which no run was disturbed (${quiet.length === 0 ? 'none' : quiet.join(', ')}): started ÷ off ${q(quietRatio('started', false))} req/s and ${q(quietRatio('started', true))} CPU per request; continued ÷ off ${q(quietRatio('continued', false))} req/s and ${q(quietRatio('continued', true))} CPU per request.

| variant | req/s | ÷ off | zproxy CPU µs/req | CPU/req ÷ off | p99 µs | errors |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

## In process

The forwarding decisions and the HTTP/1.1 field lines zproxy adds, for a request of 8 fields, without
sockets (\`microCost\` in bench/trace-context.ts; CPU time, median of 5 runs of 1,000,000 calls), in
nanoseconds per request: off ${fmt(micro.off)}, started ${fmt(micro.started)} (+${fmt(micro.started - micro.off)}), continued
${fmt(micro.continued)} (+${fmt(micro.continued - micro.off)}). Against the ${fmt(median(by('off').map((r) => r.cpuUsPerRequest)), 1)} µs of CPU a request costs zproxy with tracing off
(the median above), that is ${fmt((100 * (micro.started - micro.off)) / 1000 / median(by('off').map((r) => r.cpuUsPerRequest)), 1)} % (started) and ${fmt((100 * (micro.continued - micro.off)) / 1000 / median(by('off').map((r) => r.cpuUsPerRequest)), 1)} % (continued), before the
68 more bytes each request carries to the upstream.

## Rounds

Cells give req/s (÷ that round's off). The last column gives the other load (proxy CPU / load CPU) in each run, in the order ${VARIANTS.join(', ')}.

| round | ${VARIANTS.join(' | ')} | other load |
| --- | ${VARIANTS.map(() => '---').join(' | ')} | --- |
${roundRows.join('\n')}

## Checks

${checks.map((c) => `- ${c}.`).join('\n')}
- Non-2xx responses and socket errors over all runs: ${errors}.
- Disturbed runs (†: other processes used more than ${pct(DISTURBANCE_LIMIT)} of a bench CPU): ${disturbed.length === 0 ? 'none' : disturbed.map((r) => `round ${r.round} ${r.variant}`).join(', ')}.
`;
  const base = writeReport(options.outDir, `${date}-trace-context`, md, {
    ...runParameters(startedAt, options),
    commit,
    loadAverage: { start: loadBefore, end: loadAfter },
    runs,
    microNsPerRequest: micro,
    quietRounds: quiet,
    quietRatios: {
      started: { rps: quietRatio('started', false), cpuPerRequest: quietRatio('started', true) },
      continued: { rps: quietRatio('continued', false), cpuPerRequest: quietRatio('continued', true) },
    },
    ratios: { started: median(ratio('started')), continued: median(ratio('continued')) },
    cpuRatios: { started: median(cpuRatio('started')), continued: median(cpuRatio('continued')) },
    errors,
    disturbedRuns: disturbed.length,
  });
  console.error(
    `started ÷ off ${fmt(median(ratio('started')), 3)} (CPU/req ${fmt(median(cpuRatio('started')), 3)}), continued ÷ off ${fmt(median(ratio('continued')), 3)} (CPU/req ${fmt(median(cpuRatio('continued')), 3)}), errors ${errors}, disturbed runs ${disturbed.length}`,
  );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 ? 0 : 1;
}

// Run directly (`node bench/trace-context.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1])
  process.exitCode = await runTraceContextBench(process.argv.slice(2));
