// `node bench/worker-model.ts [--rounds N] [--duration S] [--out-dir DIR] [--models threads]
// [--no-crash]`: measures the two worker
// models of one instance (`worker_mode`) on this machine, for docs/architecture.md ("Workers"):
//   processes  a supervisor and `thread_count` worker processes (SO_REUSEPORT), the rate limiter's memory
//              store in the supervisor, reached over IPC;
//   threads    one process, `thread_count` worker threads each binding the port with SO_REUSEPORT, the
//              rate limiter's table in shared memory.
// For thread_count 1, 2 and 4: idle RSS, peak RSS under wrk, req/s and req/s per core (the instance pinned
// to one CPU, wrk and the origin to the other), rounds interleaved; with 2 workers the same with a
// rate_limit filter that never refuses (its cost, and for processes the supervisor's CPU); then a crash
// test: a worker ends by an uncaught exception, then by running out of memory, while wrk runs — what the
// other workers do, what the clients see, how fast the worker is back. Writes <date>-worker-model.md/.json.
// `--models` keeps one model (a comma-separated list) and `--no-crash` leaves out the crash test: a
// shorter run while iterating (for instance on a worker's memory).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  clockTicksPerSecond,
  cpuTicks,
  freePort,
  PinnedProcess,
  peakRssKiB,
  processTree,
  sleep,
} from '../src/bench/compare/proc.ts';
import { V8_FLAGS } from '../src/cli/v8-flags.ts';
import { runWrk, type WrkResult } from './lib/wrk.ts';
import { ensureBuilt, nodeBinary } from './lib/zproxy.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PROXY_CPU = 0;
const LOAD_CPU = 1;
type Model = 'processes' | 'threads';
const ALL_MODELS: readonly Model[] = ['processes', 'threads'];

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '8' },
    'out-dir': { type: 'string', default: join(ROOT, 'docs', 'reports') },
    models: { type: 'string', default: ALL_MODELS.join(',') },
    crash: { type: 'boolean', default: true },
  },
  allowNegative: true,
});
const MODELS = ALL_MODELS.filter((m) => values.models.split(',').includes(m));
if (MODELS.length === 0) throw new Error(`--models: one or more of ${ALL_MODELS.join(', ')}`);
const ROUNDS = Number(values.rounds);
const DURATION_S = Number(values.duration);
const NODE = nodeBinary(ROOT);
const TICKS = clockTicksPerSecond();

function rssKiB(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Number(match[1]);
  } catch {
    return 0;
  }
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;
const int = (n: number): string => Math.round(n).toLocaleString('en-US');

/** The origin: a Node HTTP server on the load CPU answering 13 bytes (long keep-alive). */
function startOrigin(port: number, dir: string): PinnedProcess {
  const file = join(dir, 'origin.mjs');
  writeFileSync(
    file,
    `import http from 'node:http';
const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 13 }); res.end('hello, world\\n'); });
s.keepAliveTimeout = 120000; s.listen(${port}, '127.0.0.1');
`,
  );
  return new PinnedProcess('origin', LOAD_CPU, NODE, [file], join(dir, 'origin.log'));
}

/** A user filter that ends its worker: /crash throws outside any request, /oom allocates without bound. */
const CRASH_MODULE = `export default {
  create() {
    return {
      onRequest(ctx) {
        if (ctx.request.path === '/crash') setImmediate(() => { throw new Error('crash test'); });
        if (ctx.request.path === '/oom') { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); }
        return undefined;
      },
    };
  },
};
`;

function writeConfig(
  dir: string,
  model: Model,
  name: string,
  port: number,
  originPort: number,
  workers: number,
  filters: object[],
): string {
  const file = join(dir, `${name}.json`);
  const config = {
    host: '127.0.0.1',
    port,
    thread_count: workers,
    worker_mode: model,
    access_log: { enabled: false },
    upstream_defaults: { max_idle_per_target: 256 },
    routes: [{ path: '/', upstream: `http://127.0.0.1:${originPort}`, middlewares: filters }],
  };
  writeFileSync(file, JSON.stringify(config));
  return file;
}

/** Starts `zproxy run` pinned to the proxy CPU, with the bin's V8 flags (V8_FLAGS) and the heap capped at 512 MiB. */
function startInstance(model: Model, config: string, log: string): PinnedProcess {
  const flags = [...V8_FLAGS, '--max-old-space-size=512'];
  // Worker processes are forked with the supervisor's flags (process.execArgv); threads share them.
  return new PinnedProcess(
    model,
    PROXY_CPU,
    NODE,
    [...flags, join(ROOT, 'dist/cli/main.js'), 'run', config],
    log,
  );
}

interface Sample {
  readonly model: Model;
  readonly workers: number;
  readonly chain: boolean;
  readonly round: number;
  readonly reqPerS: number;
  readonly cpuCores: number;
  readonly perCore: number;
  readonly idleRssKiB: number;
  readonly peakRssKiB: number;
  readonly supervisorCpuUsPerReq: number | null;
  readonly errors: number;
}

async function measure(
  model: Model,
  workers: number,
  chain: boolean,
  round: number,
  dir: string,
  originPort: number,
): Promise<Sample> {
  const port = await freePort();
  const filters = chain ? [{ type: 'rate_limit', config: { requests_per_minute: 1_000_000_000 } }] : [];
  const config = writeConfig(dir, model, `${model}-${workers}-${chain}`, port, originPort, workers, filters);
  const instance = startInstance(model, config, join(dir, `${model}-${workers}-${chain}-${round}.log`));
  try {
    await instance.waitForPort(port, 15_000);
    // Every worker listening (the kernel spreads connections only over bound sockets).
    await sleep(1500 + 300 * workers);
    const tree = processTree(instance.pid);
    const idle = sum(tree.map(rssKiB));
    // A short warm-up, then the measured run.
    await runWrk({
      url: `http://127.0.0.1:${port}/`,
      connections: 64,
      durationS: 2,
      cpu: LOAD_CPU,
      closeConnections: false,
    });
    const before = cpuTicks(tree);
    const supBefore = cpuTicks([instance.pid]);
    const wrk: WrkResult = await runWrk({
      url: `http://127.0.0.1:${port}/`,
      connections: 64,
      durationS: DURATION_S,
      cpu: LOAD_CPU,
      closeConnections: false,
    });
    const cores = (cpuTicks(tree) - before) / TICKS / DURATION_S;
    const supervisorTicks = cpuTicks([instance.pid]) - supBefore;
    const peak = sum(tree.map((pid) => peakRssKiB(pid) ?? 0));
    const requests = wrk.requests;
    return {
      model,
      workers,
      chain,
      round,
      reqPerS: wrk.requestsPerSecond,
      cpuCores: cores,
      perCore: wrk.requestsPerSecond / Math.max(cores, 0.01),
      idleRssKiB: idle,
      peakRssKiB: peak,
      supervisorCpuUsPerReq:
        model === 'processes' && workers > 1 ? ((supervisorTicks / TICKS) * 1e6) / requests : null,
      errors: sum(Object.values(wrk.errors)),
    };
  } finally {
    await instance.stop();
  }
}

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 3000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

interface CrashResult {
  readonly model: Model;
  readonly kind: 'uncaught exception' | 'out of memory';
  readonly wrk: WrkResult;
  readonly servedAfter: number;
  readonly lines: string[];
}

/** Two workers under wrk; one of them ends by `kind` 2 s in; then 20 requests must all be answered 200. */
async function crash(
  model: Model,
  kind: CrashResult['kind'],
  dir: string,
  originPort: number,
): Promise<CrashResult> {
  const port = await freePort();
  const module = join(dir, 'crash-filter.mjs');
  writeFileSync(module, CRASH_MODULE);
  const config = writeConfig(dir, model, `crash-${model}`, port, originPort, 2, [
    { type: 'module', path: module },
  ]);
  const log = join(dir, `crash-${model}-${kind.replace(/ /g, '-')}.log`);
  const instance = startInstance(model, config, log);
  try {
    await instance.waitForPort(port, 15_000);
    await sleep(2500);
    const load = runWrk({
      url: `http://127.0.0.1:${port}/`,
      connections: 16,
      durationS: 8,
      cpu: LOAD_CPU,
      closeConnections: false,
    });
    await sleep(2000);
    const t0 = Date.now();
    await get(port, kind === 'uncaught exception' ? '/crash' : '/oom');
    const wrk = await load;
    let served = 0;
    for (let i = 0; i < 20; i++) if ((await get(port, '/')) === 200) served++;
    const lines = readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => /worker (exited|started|error)|uncaught|out of memory|heap/i.test(l))
      .map((l) => {
        const time = /"time":"?([^,"]+)"?/.exec(l)?.[1];
        const at = time === undefined ? NaN : Number.isNaN(Number(time)) ? Date.parse(time) : Number(time);
        return `${Number.isNaN(at) ? '?' : `+${at - t0} ms`}: ${l.slice(0, 160)}`;
      });
    return { model, kind, wrk, servedAfter: served, lines };
  } finally {
    await instance.stop();
  }
}

async function main(): Promise<void> {
  ensureBuilt(ROOT);
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-worker-model-'));
  const originPort = await freePort();
  const origin = startOrigin(originPort, dir);
  const samples: Sample[] = [];
  const crashes: CrashResult[] = [];
  try {
    await origin.waitForPort(originPort, 10_000);
    const cases: [number, boolean][] = [
      [1, false],
      [2, false],
      [4, false],
      [2, true],
    ];
    for (let round = 1; round <= ROUNDS; round++) {
      for (const [workers, chain] of cases) {
        for (const model of MODELS) {
          const s = await measure(model, workers, chain, round, dir, originPort);
          samples.push(s);
          console.error(
            `[${round}/${ROUNDS}] ${model} ×${workers}${chain ? ' rate_limit' : ''}: ${int(s.reqPerS)} req/s, ` +
              `${s.cpuCores.toFixed(2)} cores, ${int(s.perCore)} per core, idle ${mib(s.idleRssKiB)}, peak ${mib(s.peakRssKiB)}`,
          );
        }
      }
    }
    for (const model of values.crash ? MODELS : []) {
      for (const kind of ['uncaught exception', 'out of memory'] as const) {
        const c = await crash(model, kind, dir, originPort);
        crashes.push(c);
        console.error(
          `crash ${model} ${kind}: ${int(c.wrk.requestsPerSecond)} req/s, errors ${JSON.stringify(c.wrk.errors)}, served after ${c.servedAfter}/20`,
        );
      }
    }
  } finally {
    await origin.stop();
  }
  const date = new Date().toISOString().slice(0, 10);
  const outDir = values['out-dir']!;
  mkdirSync(outDir, { recursive: true });
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT,
    encoding: 'utf8',
  }).stdout.trim();
  writeFileSync(
    join(outDir, `${date}-worker-model.json`),
    `${JSON.stringify({ date, commit, rounds: ROUNDS, durationS: DURATION_S, samples, crashes }, null, 2)}\n`,
  );
  writeFileSync(join(outDir, `${date}-worker-model.md`), report(date, commit, samples, crashes));
  rmSync(dir, { recursive: true, force: true });
}

function report(
  date: string,
  commit: string,
  samples: readonly Sample[],
  crashes: readonly CrashResult[],
): string {
  const out: string[] = [
    `# Worker model measurement, ${date}`,
    '',
    `zproxy commit ${commit}; \`node bench/worker-model.ts ${process.argv.slice(2).join(' ')}\`. The instance is pinned to CPU ${PROXY_CPU}, wrk (-t1 -c64) and a Node origin to CPU ${LOAD_CPU}; rounds interleaved; medians over ${ROUNDS} rounds (min–max). Every worker's V8 heap is capped at 512 MiB. "per core" is req/s divided by the CPU the whole instance used (supervisor and workers, or every thread). With 4 workers on one CPU, the figures show the cost of the extra workers, not their gain. See docs/architecture.md, "Workers".`,
    '',
    '| model | workers | filters | req/s | CPU used | req/s per core | idle RSS | peak RSS under load | supervisor CPU per request |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  const range = (xs: number[], f: (n: number) => string): string =>
    `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
  for (const [workers, chain] of [
    [1, false],
    [2, false],
    [4, false],
    [2, true],
  ] as const) {
    for (const model of MODELS) {
      const group = samples.filter((s) => s.model === model && s.workers === workers && s.chain === chain);
      if (group.length === 0) continue;
      const sup = group.map((s) => s.supervisorCpuUsPerReq).filter((v): v is number => v !== null);
      out.push(
        `| ${model} | ${workers} | ${chain ? 'rate_limit (memory)' : 'none'} | ${range(
          group.map((s) => s.reqPerS),
          int,
        )} | ` +
          `${median(group.map((s) => s.cpuCores * 100)).toFixed(0)} % | ${range(
            group.map((s) => s.perCore),
            int,
          )} | ` +
          `${mib(median(group.map((s) => s.idleRssKiB)))} | ${range(
            group.map((s) => s.peakRssKiB),
            mib,
          )} | ` +
          `${sup.length === 0 ? '–' : `${median(sup).toFixed(1)} µs`} |`,
      );
    }
  }
  if (crashes.length === 0) return `${out.join('\n')}\n`;
  out.push('', '## A worker that ends', '');
  out.push(
    'Two workers serve wrk (-c16, 8 s); 2 s in, one request ends one worker: `/crash` throws outside any request (an uncaught exception), `/oom` allocates until the heap limit. Afterwards, 20 requests on new connections.',
    '',
  );
  out.push(
    '| model | how the worker ends | req/s during the run | errors seen by wrk | answered 200 afterwards |',
    '| --- | --- | --- | --- | --- |',
  );
  for (const c of crashes) {
    out.push(
      `| ${c.model} | ${c.kind} | ${int(c.wrk.requestsPerSecond)} | ${JSON.stringify(c.wrk.errors)} | ${c.servedAfter}/20 |`,
    );
  }
  for (const c of crashes) {
    out.push(
      '',
      `${c.model}, ${c.kind} (log lines, time from the request that ends the worker):`,
      '',
      '```text',
      ...c.lines,
      '```',
    );
  }
  return `${out.join('\n')}\n`;
}

await main();
