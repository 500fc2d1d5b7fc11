// `npm run bench`: HTTP/1.1 throughput, latency, CPU and memory of zproxy against nginx (and the origin
// alone), interleaved over several rounds in one run; writes docs/reports/<date>-http1.{md,json}.
// See docs/performance.md.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { availableParallelism, cpus, release, tmpdir, totalmem, type } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  LARGE_SIZE,
  NGINX_BIN,
  NginxInstance,
  originConfig,
  proxyConfig,
  SMALL_BODY,
  writeOriginFiles,
} from './lib/nginx.ts';
import {
  clockTicksPerSecond,
  cpuTicks,
  freePort,
  type PinnedProcess,
  peakRssKiB,
  readCpuTimes,
  sleep,
} from './lib/proc.ts';
import {
  type BenchResult,
  isDisturbed,
  type MachineInfo,
  type MemoryRecord,
  type MethodInfo,
  type RunRecord,
  renderMarkdown,
  SCENARIO_SPECS,
  SCENARIOS,
  type ScenarioName,
  scenarioTable,
  TARGETS,
  type TargetName,
  targetsTable,
} from './lib/report.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { ensureBuilt, nodeBinary, ZproxyInstance } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

const HELP = `Usage: npm run bench -- [options]

Runs zproxy and nginx (one worker each, pinned to one CPU) and the origin alone, with wrk on the other
CPU, interleaved over several rounds; writes docs/reports/<YYYY-MM-DD>-http1.md and .json.

Options:
  --targets LIST      targets to measure, comma-separated: direct,nginx,zproxy (default: all)
  --scenarios LIST    scenarios, comma-separated: small,64k,close (default: all)
  --rounds N          interleaved rounds (default 3)
  --duration S        seconds per measured run (default 10)
  --warmup S          seconds of unrecorded warm-up before each run (default 2)
  --connections C     wrk connections (default 64)
  --quick             1 round of 3 s runs with 1 s warm-ups (explicit options still win)
  --proxy-cpu N       the CPU the proxies run on (default 0)
  --load-cpu N        the CPU wrk and the origin run on (default 1)
  --out-dir DIR       where the report goes (default docs/reports)
  --install           install missing tools with apt-get (as root; also when CI is set)
  --keep-tmp          keep the temporary directory (configs, logs) after the run
  -h, --help          this text`;

interface Options {
  readonly rounds: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly scenarios: readonly ScenarioName[];
  readonly targets: readonly TargetName[];
  readonly proxyCpu: number;
  readonly loadCpu: number;
  readonly outDir: string;
  readonly install: boolean;
  readonly keepTmp: boolean;
}

class UsageError extends Error {}

function parseOptions(argv: readonly string[]): Options | null {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      targets: { type: 'string' },
      scenarios: { type: 'string' },
      rounds: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      connections: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'proxy-cpu': { type: 'string' },
      'load-cpu': { type: 'string' },
      'out-dir': { type: 'string' },
      install: { type: 'boolean', default: false },
      'keep-tmp': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const integer = (name: string, text: string | undefined, fallback: number, min: number): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min)
      throw new UsageError(`--${name} must be an integer >= ${min}`);
    return value;
  };
  const list = <T extends string>(name: string, text: string | undefined, known: readonly T[]): T[] => {
    if (text === undefined) return [...known];
    const items = text.split(',').map((item) => item.trim());
    for (const item of items) {
      if (!(known as readonly string[]).includes(item)) {
        throw new UsageError(`--${name}: unknown ${JSON.stringify(item)} (known: ${known.join(', ')})`);
      }
    }
    // Canonical order, no duplicates.
    return known.filter((item) => items.includes(item));
  };
  const quick = values.quick;
  const options: Options = {
    rounds: integer('rounds', values.rounds, quick ? 1 : 3, 1),
    durationS: integer('duration', values.duration, quick ? 3 : 10, 1),
    warmupS: integer('warmup', values.warmup, quick ? 1 : 2, 0),
    connections: integer('connections', values.connections, 64, 1),
    scenarios: list('scenarios', values.scenarios, SCENARIOS),
    targets: list('targets', values.targets, TARGETS),
    proxyCpu: integer('proxy-cpu', values['proxy-cpu'], 0, 0),
    loadCpu: integer('load-cpu', values['load-cpu'], 1, 0),
    outDir: resolve(values['out-dir'] ?? join(ROOT, 'docs', 'reports')),
    install: values.install || Boolean(process.env.CI),
    keepTmp: values['keep-tmp'],
  };
  if (options.proxyCpu === options.loadCpu) throw new UsageError('--proxy-cpu and --load-cpu must differ');
  if (Math.max(options.proxyCpu, options.loadCpu) >= availableParallelism()) {
    throw new UsageError(
      `CPUs ${options.proxyCpu} and ${options.loadCpu} are needed, this machine has ${availableParallelism()}`,
    );
  }
  return options;
}

// ---- targets ----------------------------------------------------------------------------------------

/** One thing wrk is pointed at: its port, the processes whose CPU counts, how its memory is read. */
interface Target {
  readonly name: TargetName;
  readonly port: number;
  readonly process: PinnedProcess;
  cpuPids(): number[];
  memory(): MemoryRecord;
}

function maxRss(pids: readonly number[], rule: string): MemoryRecord {
  const processes = pids.map((pid) => ({ pid, peakRssKiB: peakRssKiB(pid) }));
  return { peakRssKiB: Math.max(0, ...processes.map((p) => p.peakRssKiB ?? 0)), rule, processes };
}

function sumRss(pids: readonly number[], rule: string): MemoryRecord {
  const processes = pids.map((pid) => ({ pid, peakRssKiB: peakRssKiB(pid) }));
  return { peakRssKiB: processes.reduce((sum, p) => sum + (p.peakRssKiB ?? 0), 0), rule, processes };
}

function nginxTarget(name: TargetName, instance: NginxInstance, cpuPids: () => number[]): Target {
  return {
    name,
    port: instance.port,
    process: instance.process,
    cpuPids,
    memory: () => maxRss(instance.workerPids(), 'VmHWM of the nginx worker'),
  };
}

function zproxyTarget(instance: ZproxyInstance): Target {
  return {
    name: 'zproxy',
    port: instance.port,
    process: instance.process,
    cpuPids: () => instance.pids(),
    memory: () => sumRss(instance.pids(), 'sum of VmHWM over the zproxy processes'),
  };
}

/** GET over a fresh connection; resolves with the status and the body. */
function fetchOnce(port: number, path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolvePromise, reject) => {
    const request = get({ host: '127.0.0.1', port, path, agent: false, timeout: 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('end', () =>
        resolvePromise({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }),
      );
      response.once('error', reject);
    });
    request.once('timeout', () => request.destroy(new Error('no response within 5 s')));
    request.once('error', reject);
  });
}

/** Checks that a target answers both paths correctly before any figure is taken. */
async function preflight(target: Target): Promise<void> {
  const expectations: [string, (body: Buffer) => boolean, string][] = [
    ['/small', (body) => body.toString('latin1') === SMALL_BODY, `${JSON.stringify(SMALL_BODY)}`],
    ['/64k', (body) => body.length === LARGE_SIZE, `${LARGE_SIZE} bytes`],
  ];
  for (const [path, check, expected] of expectations) {
    let answer: { status: number; body: Buffer };
    try {
      answer = await fetchOnce(target.port, path);
    } catch (error) {
      throw new Error(`${target.name}: GET ${path} failed: ${(error as Error).message}`);
    }
    if (answer.status !== 200 || !check(answer.body)) {
      throw new Error(
        `${target.name}: GET ${path} answered ${answer.status} with ${answer.body.length} bytes, expected 200 with ${expected}`,
      );
    }
  }
}

// ---- machine ----------------------------------------------------------------------------------------

function commandOutput(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', cwd: ROOT });
  return `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
}

function machineInfo(): MachineInfo {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match !== null) cpuModel = match[1]!.trim();
  } catch {
    // keep os.cpus()'s model
  }
  const commit = commandOutput('git', ['rev-parse', '--short', 'HEAD']) || 'unknown';
  const dirty = commandOutput('git', ['status', '--porcelain', '--', 'src']) !== '';
  return {
    cpuModel,
    cores: availableParallelism(),
    memoryGiB: totalmem() / 2 ** 30,
    kernel: `${type()} ${release()}`,
    node: commandOutput(nodeBinary(ROOT), ['--version']),
    nginx: commandOutput(NGINX_BIN, ['-v']).replace(/^nginx version:\s*/, ''),
    wrk: commandOutput('wrk', ['-v'])
      .split('\n')[0]!
      .replace(/\s*Copyright.*$/, ''),
    commit: dirty ? `${commit} + uncommitted changes in src/` : commit,
  };
}

function localDate(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

// ---- the run ----------------------------------------------------------------------------------------

function progressLine(run: RunRecord, rounds: number): string {
  const perCore =
    run.requestsPerCore === null ? '–' : Math.round(run.requestsPerCore).toLocaleString('en-US');
  const errors = run.errorCount > 0 ? `  ERRORS ${JSON.stringify(run.errors)}` : '';
  const percent = (value: number | null): string => (value === null ? '?' : `${Math.round(value * 100)} %`);
  const other = `  other load ${percent(run.otherLoad.proxyCpu)} / ${percent(run.otherLoad.loadCpu)}`;
  const disturbed = isDisturbed(run) ? ' DISTURBED' : '';
  return (
    `[round ${run.round}/${rounds}] ${run.scenario.padEnd(5)} ${run.target.padEnd(6)} ` +
    `${Math.round(run.requestsPerSecond).toLocaleString('en-US').padStart(9)} req/s  ` +
    `p50 ${(run.latencyUs.p50 / 1000).toFixed(2)} ms  p99 ${(run.latencyUs.p99 / 1000).toFixed(2)} ms  ` +
    `cpu ${Math.round(run.cpuFraction * 100)} %  ${perCore} req/s per core${other}${disturbed}${errors}`
  );
}

async function main(): Promise<number> {
  let options: Options | null;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`bench: ${(error as Error).message}\n\n${HELP}`);
    return 1;
  }
  if (options === null) {
    console.log(HELP);
    return 0;
  }
  if (!ensureTools(options.install)) return 1;
  if (options.targets.includes('zproxy')) {
    try {
      ensureBuilt(ROOT);
    } catch (error) {
      console.error(`bench: FAILED, no report written: ${(error as Error).message}`);
      return 1;
    }
  }

  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`bench: ${signal}: stopping`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const tmp = mkdtempSync(join(tmpdir(), 'zproxy-bench-'));
  // nginx workers run as `nobody` when the bench runs as root: they must reach the files inside.
  chmodSync(tmp, 0o755);
  const started: { stop(): Promise<void> }[] = [];
  let failed = false;
  try {
    const clockTicks = clockTicksPerSecond();
    const machine = machineInfo();
    const startedAt = new Date();

    const originDir = join(tmp, 'origin');
    const originPort = await freePort();
    writeOriginFiles(originDir);
    const origin = await NginxInstance.start(
      'nginx (origin)',
      originDir,
      originConfig(originDir, originPort),
      originPort,
      options.loadCpu,
    );
    started.push(origin);
    const originWorkers = (): number[] => origin.workerPids();

    const targets: Target[] = [];
    for (const name of options.targets) {
      if (name === 'direct') {
        targets.push(nginxTarget('direct', origin, originWorkers));
      } else if (name === 'nginx') {
        const dir = join(tmp, 'nginx');
        const port = await freePort();
        const config = proxyConfig(dir, port, originPort, Math.max(64, options.connections));
        const proxy = await NginxInstance.start('nginx (proxy)', dir, config, port, options.proxyCpu);
        started.push(proxy);
        targets.push(nginxTarget('nginx', proxy, () => [proxy.process.pid, ...proxy.workerPids()]));
      } else {
        const dir = join(tmp, 'zproxy');
        mkdirSync(dir);
        const zproxy = await ZproxyInstance.start(ROOT, dir, await freePort(), originPort, options.proxyCpu);
        started.push(zproxy);
        targets.push(zproxyTarget(zproxy));
      }
    }
    for (const target of targets) await preflight(target);

    console.error(
      `bench: ${options.rounds} round(s) × ${options.scenarios.length} scenario(s) × ${targets.length} target(s), ` +
        `${options.durationS} s runs after ${options.warmupS} s warm-ups, ${options.connections} connections`,
    );
    const runs: RunRecord[] = [];
    for (let round = 1; round <= options.rounds; round++) {
      for (const scenario of options.scenarios) {
        const spec = SCENARIO_SPECS[scenario];
        for (const target of targets) {
          const wrk = {
            url: `http://127.0.0.1:${target.port}${spec.path}`,
            connections: options.connections,
            cpu: options.loadCpu,
            closeConnections: spec.closeConnections,
            signal: abort.signal,
          };
          if (options.warmupS > 0) await runWrk({ ...wrk, durationS: options.warmupS });
          const pids = target.cpuPids();
          const originPids = originWorkers();
          const before = { target: cpuTicks(pids), origin: cpuTicks(originPids) };
          const cpuBefore = readCpuTimes();
          const wallStart = performance.now();
          const result = await runWrk({ ...wrk, durationS: options.durationS });
          const wallSeconds = (performance.now() - wallStart) / 1000;
          const cpuAfter = readCpuTimes();
          const ticks = cpuTicks(pids) - before.target;
          const originTicks = cpuTicks(originPids) - before.origin;
          for (const service of [target.process, origin.process]) {
            if (!service.alive) {
              throw new Error(
                `${service.name} exited during the run (${service.exitDescription}):\n${service.logTail()}`,
              );
            }
          }
          // CPU time on each bench CPU that none of the bench's processes used (other users, steal).
          const otherLoad = (cpu: number, known: number | null): number | null => {
            const a = cpuBefore.get(cpu);
            const b = cpuAfter.get(cpu);
            if (a === undefined || b === undefined || known === null) return null;
            const used = b.busy - a.busy + (b.steal - a.steal) - known;
            return Math.max(0, used) / (clockTicks * wallSeconds);
          };
          // The proxies run on the proxy CPU; the origin and wrk on the load CPU (direct measures the origin).
          const proxyCpuKnown = target.name === 'direct' ? 0 : ticks;
          const loadCpuKnown = result.cpuTicks === null ? null : originTicks + result.cpuTicks;
          const cpuFraction = ticks / (clockTicks * result.seconds);
          const run: RunRecord = {
            round,
            scenario,
            target: target.name,
            requests: result.requests,
            seconds: result.seconds,
            requestsPerSecond: result.requestsPerSecond,
            latencyUs: result.latencyUs,
            errors: result.errors,
            errorCount: result.errorCount,
            cpuFraction,
            requestsPerCore: cpuFraction > 0 ? result.requestsPerSecond / cpuFraction : null,
            originCpuFraction: originTicks / (clockTicks * result.seconds),
            wrkCpuFraction: result.cpuTicks === null ? null : result.cpuTicks / (clockTicks * wallSeconds),
            otherLoad: {
              proxyCpu: otherLoad(options.proxyCpu, proxyCpuKnown),
              loadCpu: otherLoad(options.loadCpu, loadCpuKnown),
            },
          };
          runs.push(run);
          console.error(progressLine(run, options.rounds));
          // Let closed connections drain before the next run.
          await sleep(500);
        }
      }
    }

    const memory: Partial<Record<TargetName, MemoryRecord>> = {};
    for (const target of targets) memory[target.name] = target.memory();

    const method: MethodInfo = {
      rounds: options.rounds,
      durationS: options.durationS,
      warmupS: options.warmupS,
      connections: options.connections,
      proxyCpu: options.proxyCpu,
      loadCpu: options.loadCpu,
      scenarios: options.scenarios,
      targets: options.targets,
      clockTicksPerSecond: clockTicks,
    };
    const date = localDate(startedAt);
    const result: BenchResult = {
      date,
      startedAt: startedAt.toISOString(),
      finishedAt: new Date().toISOString(),
      machine,
      method,
      runs,
      memory,
    };
    mkdirSync(options.outDir, { recursive: true });
    const base = `${date}-http1`;
    const jsonFile = join(options.outDir, `${base}.json`);
    const markdownFile = join(options.outDir, `${base}.md`);
    writeFileSync(jsonFile, `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(markdownFile, renderMarkdown(result, `${base}.json`));

    for (const scenario of options.scenarios) {
      console.log(`\n${scenario}: ${SCENARIO_SPECS[scenario].title}\n${scenarioTable(result, scenario)}`);
    }
    console.log(`\nTargets\n${targetsTable(result)}`);
    const withErrors = runs.filter((run) => run.errorCount > 0).length;
    if (withErrors > 0)
      console.error(`\nbench: WARNING: ${withErrors} run(s) had errors (flagged in the report)`);
    const disturbed = runs.filter(isDisturbed).length;
    if (disturbed > 0) {
      console.error(
        `bench: WARNING: ${disturbed} run(s) were disturbed by other load on the machine (flagged in the report)`,
      );
    }
    console.log(
      `\nReport: ${relative(process.cwd(), markdownFile)} (raw: ${relative(process.cwd(), jsonFile)})`,
    );
    return 0;
  } catch (error) {
    if (abort.signal.aborted) return 130;
    failed = true;
    console.error(`bench: FAILED, no report written: ${(error as Error).message}`);
    return 1;
  } finally {
    for (const service of started.reverse()) await service.stop();
    if (options.keepTmp || failed) console.error(`bench: configs and logs kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

process.exitCode = await main();
