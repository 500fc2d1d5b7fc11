// `npm run bench -- --only filters` (or `node bench/filters.ts`): what filters cost. One zproxy per
// variant, all pinned to the proxy CPU, in front of the same nginx origin (on the load CPU, with wrk):
//   plain       the small keep-alive response, no filters (the reference)
//   chain       the same route with a typical chain: cors + rate_limit (memory) + auth (api_key, 10 keys)
//   cache-hit   the same route with the cache; every measured request is a hit
// Rounds are interleaved (plain, chain, cache-hit, plain, ...) so that drift hits every variant alike;
// ratios are taken per round against that round's plain run, then the median. Targets (issue 5): the
// chain costs at most 15 % of throughput (ratio >= 0.85); a cache hit is faster than proxying (ratio > 1).
// Writes docs/reports/<YYYY-MM-DD>-filters.{md,json}.
import { execSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { cpus, release, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runPinnedTool } from './lib/load-tool.ts';
import { NginxInstance, originConfig, SMALL_BODY, writeOriginFiles } from './lib/nginx.ts';
import { clockTicksPerSecond, cpuTicks, freePort, PinnedProcess, processTree } from './lib/proc.ts';
import { ensureTools } from './lib/tools.ts';
import { parseWrkOutput, type WrkResult } from './lib/wrk.ts';
import { ensureBuilt, nodeBinary, shebangNodeFlags } from './lib/zproxy.ts';

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
  return variant === 'chain' ? ['-H', `Origin: ${ORIGIN}`, '-H', `x-api-key: ${KEY}`] : [];
}

interface Run {
  readonly round: number;
  readonly variant: Variant;
  readonly rps: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly errors: number;
  /** zproxy CPU time per request, in microseconds. */
  readonly cpuUsPerRequest: number;
  /** Share of the proxy CPU zproxy used during the run. */
  readonly proxyCpuBusy: number;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

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
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      only: { type: 'string' },
      rounds: { type: 'string', default: '5' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      connections: { type: 'string', default: '64' },
      'proxy-cpu': { type: 'string', default: '0' },
      'load-cpu': { type: 'string', default: '1' },
      'out-dir': { type: 'string', default: join(ROOT, 'docs', 'reports') },
      install: { type: 'boolean', default: false },
      'keep-tmp': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick === true;
  const rounds = quick ? 1 : Number(values.rounds);
  const durationS = quick ? 3 : Number(values.duration);
  const warmupS = quick ? 1 : Number(values.warmup);
  const connections = Number(values.connections);
  const proxyCpu = Number(values['proxy-cpu']);
  const loadCpu = Number(values['load-cpu']);
  if (!ensureTools(values.install === true || process.env.CI !== undefined, ['h1'])) return 1;
  ensureBuilt(ROOT);
  const tmp = mkdtempSync(join(tmpdir(), 'zproxy-bench-filters-'));
  const started: { stop(): Promise<void> }[] = [];
  const runs: Run[] = [];
  const startedAt = new Date();
  try {
    const originDir = join(tmp, 'origin');
    const originPort = await freePort();
    writeOriginFiles(originDir);
    started.push(
      await NginxInstance.start(
        'nginx (origin)',
        originDir,
        originConfig(originDir, originPort),
        originPort,
        loadCpu,
      ),
    );
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
      const args = [...shebangNodeFlags(main), main, 'run', file];
      const proc = new PinnedProcess(
        `zproxy ${variant}`,
        proxyCpu,
        nodeBinary(ROOT),
        args,
        join(tmp, `${variant}.log`),
      );
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
    const clockTicks = clockTicksPerSecond();
    for (let round = 1; round <= rounds; round++) {
      for (const variant of VARIANTS) {
        const { port, process: proc } = proxies.get(variant)!;
        const url = `http://127.0.0.1:${port}/small`;
        const args = (seconds: number) => [
          '-t1',
          `-c${connections}`,
          `-d${seconds}s`,
          '--latency',
          ...headersFor(variant),
          url,
        ];
        if (warmupS > 0) await runPinnedTool('wrk', args(warmupS), loadCpu, warmupS);
        const pids = processTree(proc.pid);
        const before = cpuTicks(pids);
        const t0 = performance.now();
        const out = await runPinnedTool('wrk', args(durationS), loadCpu, durationS);
        const wall = (performance.now() - t0) / 1000;
        const ticks = cpuTicks(pids) - before;
        const result: WrkResult = parseWrkOutput(out.stdout);
        const cpuSeconds = ticks / clockTicks;
        runs.push({
          round,
          variant,
          rps: result.requestsPerSecond,
          p50Us: result.latencyUs.p50,
          p99Us: result.latencyUs.p99,
          errors: result.errorCount,
          cpuUsPerRequest: result.requests > 0 ? (cpuSeconds * 1e6) / result.requests : 0,
          proxyCpuBusy: cpuSeconds / wall,
        });
        console.error(
          `round ${round} ${variant}: ${Math.round(result.requestsPerSecond)} req/s, p99 ${Math.round(result.latencyUs.p99)} µs, errors ${result.errorCount}, zproxy CPU ${((100 * cpuSeconds) / wall).toFixed(0)} %`,
        );
      }
    }
    const hitAfter = await fetchHeaders(cachePort, {});
    if (!String(hitAfter['cache-status']).includes('hit'))
      throw new Error('the cache variant stopped hitting');
  } finally {
    for (const s of started.reverse()) await s.stop();
    if (values['keep-tmp'] !== true) rmSync(tmp, { recursive: true, force: true });
  }

  // ------------------------------------------------------------------ the report
  const by = (variant: Variant) => runs.filter((r) => r.variant === variant);
  const ratio = (variant: Variant): number[] =>
    by(variant).map((r) => r.rps / by('plain').find((p) => p.round === r.round)!.rps);
  const chainRatio = median(ratio('chain'));
  const cacheRatio = median(ratio('cache-hit'));
  const errors = runs.reduce((n, r) => n + r.errors, 0);
  const date = startedAt.toISOString().slice(0, 10);
  const fmt = (n: number, d = 0) =>
    n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  const rows = VARIANTS.map((variant) => {
    const rs = by(variant);
    const rps = rs.map((r) => r.rps);
    const rat = ratio(variant);
    return `| ${variant} | ${fmt(median(rps))} (${fmt(Math.min(...rps))}–${fmt(Math.max(...rps))}) | ${fmt(median(rat), 2)} (${fmt(Math.min(...rat), 2)}–${fmt(Math.max(...rat), 2)}) | ${fmt(median(rs.map((r) => r.p50Us)))} | ${fmt(median(rs.map((r) => r.p99Us)))} | ${fmt(median(rs.map((r) => r.cpuUsPerRequest)), 1)} | ${fmt(100 * median(rs.map((r) => r.proxyCpuBusy)))} % |`;
  });
  const commit = (() => {
    try {
      return execSync('git rev-parse --short HEAD', { cwd: ROOT }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const md = `# Filters: what a typical chain and a cache hit cost (${date})

zproxy ${commit}, Node ${process.versions.node}, ${cpus()[0]?.model ?? 'unknown CPU'}, Linux ${release()}.
\`npm run bench -- --only filters\` (bench/filters.ts): ${rounds} interleaved rounds of ${durationS} s (after ${warmupS} s of
warm-up each), wrk \`-t1 -c${connections}\` on CPU ${loadCpu} with the nginx origin; each zproxy (one process,
no access log) pinned to CPU ${proxyCpu}. The response is the origin's \`/small\` (${JSON.stringify(SMALL_BODY)}), keep-alive.

| variant | what | 
| --- | --- |
${VARIANTS.map((v) => `| ${v} | ${DESCRIPTIONS[v]} |`).join('\n')}

| variant | req/s, median (min–max) | ÷ plain, median of per-round ratios (min–max) | p50 µs | p99 µs | zproxy CPU µs/req | zproxy CPU busy |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Targets (issue 5):

- the typical chain costs at most 15 % of throughput: chain ÷ plain = **${fmt(chainRatio, 2)}** — ${chainRatio >= 0.85 ? 'holds' : '**does not hold**'};
- a cache hit is faster than proxying to the upstream: cache-hit ÷ plain = **${fmt(cacheRatio, 2)}** — ${cacheRatio > 1 ? 'holds' : '**does not hold**'}.

Non-2xx responses and socket errors over all runs: ${errors}. Before the runs the bench checked that the chain
answers with CORS and RateLimit fields and refuses a request without a key (401), and that the cache
answers \`Cache-Status: hit\`; after them, that it still does.
`;
  const outDir = resolve(String(values['out-dir']));
  const base = join(outDir, `${date}-filters`);
  writeFileSync(`${base}.md`, md);
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ date: startedAt.toISOString(), commit, rounds, durationS, warmupS, connections, runs, chainRatio, cacheRatio, errors }, null, 2)}\n`,
  );
  console.error(`wrote ${relative(process.cwd(), base)}.md and .json`);
  return errors === 0 ? 0 : 1;
}

// Run directly (`node bench/filters.ts`), not when bench/run.ts imports it.
if (import.meta.filename === process.argv[1]) process.exitCode = await runFiltersBench(process.argv.slice(2));
