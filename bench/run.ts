// `npm run bench`: the short alias of `zproxy compare` (src/bench/compare) run from a checkout: it builds
// dist/ when it is stale, then runs the comparison with the built zproxy and writes its report to
// docs/reports/<YYYY-MM-DD>-compare/ unless --report says where. The same options as `zproxy compare`
// (`npm run bench -- --help`), plus the bench groups that measure one feature of zproxy against itself:
//   --only filters   zproxy with a typical chain and with cache hits against without (bench/filters.ts)
//   --only metrics   metrics on against off (bench/metrics.ts)
//   --only trace     the W3C trace context against without (bench/trace-context.ts)
//   --only failover  4 targets, one killed under load, with outlier detection and without (bench/failover.ts)
//   --only builds    two builds side by side: --before REF against this checkout or --after REF (bench/builds.ts)
//   --only instance  issue 15's figures for two builds (--before REF, --after REF or this checkout): req/s per
//                    core with 1 and 2 workers, rate_limit ÷ plain, peak RSS with 1, 2, 4 workers, a
//                    connection per request and h2c with the default pool against nginx (bench/instance.ts)
//   --only floor     a connection per request: bare Node `net` servers (answering, proxying) and zproxy against
//                    nginx on the same core: what Node itself costs per connection (bench/floor.ts)
// Each group has its own options (see its file); they use wrk and h2load.
import { join, resolve } from 'node:path';
import { COMPARE_USAGE, parseCompareArgs } from '../src/bench/compare/options.ts';
import { compareCommand } from '../src/cli/commands.ts';
import { ensureBuilt } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

const GROUPS: Record<string, () => Promise<number>> = {
  filters: async () => (await import('./filters.ts')).runFiltersBench(process.argv.slice(2)),
  metrics: async () => (await import('./metrics.ts')).runMetricsBench(process.argv.slice(2)),
  trace: async () => (await import('./trace-context.ts')).runTraceContextBench(process.argv.slice(2)),
  failover: async () => (await import('./failover.ts')).runFailoverBench(process.argv.slice(2)),
  builds: async () => (await import('./builds.ts')).runBuildsBench(process.argv.slice(2)),
  instance: async () => (await import('./instance.ts')).runInstanceBench(process.argv.slice(2)),
  floor: async () => (await import('./floor.ts')).runFloorBench(process.argv.slice(2)),
};

function today(): string {
  const now = new Date();
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const only = argv.indexOf('--only');
  if (only !== -1) {
    const group = GROUPS[argv[only + 1] ?? ''];
    if (group === undefined) {
      console.error(`bench: --only takes ${Object.keys(GROUPS).join(', ')} (the rest is zproxy compare's)`);
      return 2;
    }
    return group();
  }
  const line = parseCompareArgs(argv);
  if (line.kind === 'help') {
    console.log(`npm run bench -- [options]: zproxy compare from a checkout (report in docs/reports/<date>-compare
unless --report), or --only filters|metrics|trace|failover|builds|instance|floor.\n\n${COMPARE_USAGE}`);
    return 0;
  }
  if (line.kind === 'usage-error') {
    console.error(`bench: ${line.message}\n\n${COMPARE_USAGE}`);
    return 2;
  }
  ensureBuilt(ROOT);
  const options = {
    ...line.options,
    reportDir: line.options.reportDir ?? join(ROOT, 'docs', 'reports', `${today()}-compare`),
  };
  return compareCommand(
    options,
    ['compare', ...argv],
    { out: (text) => process.stdout.write(text), err: (text) => process.stderr.write(text) },
    join(ROOT, 'dist', 'cli', 'main.js'),
  );
}

process.exitCode = await main();
