// `npm run bench`: HTTP/1.1 (wrk), HTTP/2 (h2load: h2c and h2 over TLS) and WebSocket (an echo load over
// HTTP/1.1 Upgrade) throughput, latency, CPU and memory of zproxy against nginx (and the origin alone),
// interleaved over several rounds in one run; writes docs/reports/<date>-<groups>.{md,json}. See
// docs/performance.md.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect as connectHttp2 } from 'node:http2';
import { availableParallelism, cpus, release, tmpdir, totalmem, type } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runH2load } from './lib/h2load.ts';
import type { LoadResult } from './lib/load-tool.ts';
import { LARGE_SIZE, NGINX_BIN, NginxInstance, proxyConfig, SMALL_BODY, startOrigin } from './lib/nginx.ts';
import {
  clockTicksPerSecond,
  cpuTicks,
  freePort,
  type PinnedProcess,
  peakRssKiB,
  readCpuTimes,
  resetPeakRss,
  sleep,
} from './lib/proc.ts';
import {
  type BenchResult,
  GROUP_FILE_NAMES,
  type GroupName,
  groupsOf,
  isDisturbed,
  isLoadSaturated,
  type LoadProtocol,
  loadCpuBusy,
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
  unitOf,
} from './lib/report.ts';
import { type CertificateFiles, makeSelfSignedCertificate } from './lib/tls.ts';
import { ensureTools } from './lib/tools.ts';
import { runWrk } from './lib/wrk.ts';
import { checkWebSocketEcho, runWsLoad, startEchoServer, WS_PATH } from './lib/ws-load.ts';
import { ensureBuilt, nodeBinary, ZproxyInstance } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

const HELP = `Usage: npm run bench -- [options]

Runs zproxy and nginx (one worker each, pinned to one CPU) and the origin alone, with wrk (HTTP/1.1),
h2load (HTTP/2) or a WebSocket echo load (Node, bench/lib/ws-load-client.ts) on the other CPU,
interleaved over several rounds; writes docs/reports/<YYYY-MM-DD>-<groups>.md and .json (groups: http1,
http2, websocket, joined with - when several run).

Groups (--only):
  h1                  HTTP/1.1 with wrk: small, 64k, close
  h2                  HTTP/2 with h2load: h2c-small, h2c-64k (h2c), h2-small, h2-64k (TLS)
  ws                  WebSocket over HTTP/1.1 Upgrade: ws-small (32-byte text messages), ws-16k (16 KiB
                      binary messages); each connection sends a message, waits for its echo from a \`ws\`
                      echo server (the upstream, on the load CPU) and sends the next; msg/s and round-trip
                      percentiles, with ratios to direct (the echo server alone) and to nginx

Options:
  --only GROUP        only the scenarios of one group: h1, h2 or ws (see above); or filters: zproxy with
                      a typical chain (cors + rate_limit + auth) and with cache hits against zproxy
                      without filters (bench/filters.ts, its own options: --rounds --duration --warmup
                      --connections --proxy-cpu --load-cpu --quick --keep-tmp --out-dir); metrics:
                      zproxy with metrics on against off, HTTP/1.1 and h2c small (bench/metrics.ts, the
                      same options and --h2-clients --h2-streams --scenarios); or trace:
                      zproxy with the W3C trace context (tracing.traceparent, a trace started and one
                      continued) against without (bench/trace-context.ts, the same options); or
                      failover: 4 targets behind one route, one killed under load, with outlier detection
                      and without (bench/failover.ts, the same options); or builds: two builds side
                      by side, --before REF against this checkout, every HTTP scenario, both started
                      anew each round (bench/builds.ts, the same options and --scenarios)
  --scenarios LIST    scenarios, comma-separated: small,64k,close,h2c-small,h2c-64k,h2-small,h2-64k,
                      ws-small,ws-16k (default: all, or all of --only's group)
  --targets LIST      targets to measure, comma-separated: direct,nginx,zproxy (default: all; direct is
                      the origin alone: the nginx origin in the HTTP/1.1 scenarios, the echo server in the
                      WebSocket ones; it does not run in the HTTP/2 scenarios)
  --rounds N          interleaved rounds (default 3)
  --duration S        seconds per measured run (default 10)
  --warmup S          seconds of unrecorded warm-up before each run (default 2)
  --connections C     wrk connections (default 64)
  --h2-clients C      h2load connections, -c (default 16)
  --h2-streams M      h2load concurrent streams per connection, -m (default 10)
  --ws-connections N  WebSocket connections, each with one message in flight (default 64)
  --quick             1 round of 3 s runs with 1 s warm-ups (explicit options still win)
  --proxy-cpu N       the CPU the proxies run on (default 0)
  --load-cpu N        the CPU the load generator and the origin (or echo server) run on (default 1)
  --out-dir DIR       where the report goes (default docs/reports)
  --install           install missing tools with apt-get (as root; also when CI is set)
  --keep-tmp          keep the temporary directory (configs, logs) after the run
  -h, --help          this text`;

interface Options {
  readonly rounds: number;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly h2Clients: number;
  readonly h2Streams: number;
  readonly wsConnections: number;
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
      'h2-clients': { type: 'string' },
      'h2-streams': { type: 'string' },
      'ws-connections': { type: 'string' },
      only: { type: 'string' },
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
  let only: GroupName | null = null;
  if (values.only !== undefined) {
    const aliases: Record<string, GroupName> = {
      h1: 'h1',
      http1: 'h1',
      h2: 'h2',
      http2: 'h2',
      ws: 'ws',
      websocket: 'ws',
    };
    const group = Object.hasOwn(aliases, values.only) ? aliases[values.only] : undefined;
    if (group === undefined)
      throw new UsageError(`--only: unknown group ${JSON.stringify(values.only)} (h1, h2, ws)`);
    only = group;
  }
  const scenarios = list('scenarios', values.scenarios, SCENARIOS).filter(
    (scenario) => only === null || SCENARIO_SPECS[scenario].group === only,
  );
  if (scenarios.length === 0)
    throw new UsageError(`--scenarios: none of them is in the group --only ${only}`);
  const options: Options = {
    rounds: integer('rounds', values.rounds, quick ? 1 : 3, 1),
    durationS: integer('duration', values.duration, quick ? 3 : 10, 1),
    warmupS: integer('warmup', values.warmup, quick ? 1 : 2, 0),
    connections: integer('connections', values.connections, 64, 1),
    h2Clients: integer('h2-clients', values['h2-clients'], 16, 1),
    h2Streams: integer('h2-streams', values['h2-streams'], 10, 1),
    wsConnections: integer('ws-connections', values['ws-connections'], 64, 1),
    scenarios,
    targets: list('targets', values.targets, TARGETS),
    proxyCpu: integer('proxy-cpu', values['proxy-cpu'], 0, 0),
    loadCpu: integer('load-cpu', values['load-cpu'], 1, 0),
    outDir: resolve(values['out-dir'] ?? join(ROOT, 'docs', 'reports')),
    install: values.install || Boolean(process.env.CI),
    keepTmp: values['keep-tmp'],
  };
  const selectedGroups = groupsOf(options.scenarios);
  if (
    options.targets.every((target) => target === 'direct') &&
    !selectedGroups.includes('h1') &&
    !selectedGroups.includes('ws')
  ) {
    throw new UsageError(
      'direct (the origin alone) serves only the HTTP/1.1 and WebSocket scenarios: add a proxy target',
    );
  }
  if (options.proxyCpu === options.loadCpu) throw new UsageError('--proxy-cpu and --load-cpu must differ');
  if (Math.max(options.proxyCpu, options.loadCpu) >= availableParallelism()) {
    throw new UsageError(
      `CPUs ${options.proxyCpu} and ${options.loadCpu} are needed, this machine has ${availableParallelism()}`,
    );
  }
  return options;
}

// ---- targets ----------------------------------------------------------------------------------------

/**
 * One thing the load generators are pointed at: its port for each protocol it serves in this run, the
 * processes whose CPU counts, how its memory is read.
 */
interface Target {
  readonly name: TargetName;
  readonly ports: Partial<Record<LoadProtocol, number>>;
  readonly process: PinnedProcess;
  cpuPids(): number[];
  memory(): MemoryRecord;
  /** Resets the peak RSS of the processes memory() reads; false if that failed for one of them. */
  resetPeakMemory(): boolean;
}

function maxRss(pids: readonly number[], rule: string): MemoryRecord {
  const processes = pids.map((pid) => ({ pid, peakRssKiB: peakRssKiB(pid) }));
  return { peakRssKiB: Math.max(0, ...processes.map((p) => p.peakRssKiB ?? 0)), rule, processes };
}

function sumRss(pids: readonly number[], rule: string): MemoryRecord {
  const processes = pids.map((pid) => ({ pid, peakRssKiB: peakRssKiB(pid) }));
  return { peakRssKiB: processes.reduce((sum, p) => sum + (p.peakRssKiB ?? 0), 0), rule, processes };
}

function nginxTarget(
  name: TargetName,
  instance: NginxInstance,
  ports: Partial<Record<LoadProtocol, number>>,
  cpuPids: () => number[],
): Target {
  return {
    name,
    ports,
    process: instance.process,
    cpuPids,
    memory: () => maxRss(instance.workerPids(), 'VmHWM of the nginx worker'),
    resetPeakMemory: () => instance.workerPids().map(resetPeakRss).every(Boolean),
  };
}

/** The WebSocket echo server alone: `direct` in the WebSocket scenarios. */
function echoTarget(echo: PinnedProcess, port: number): Target {
  return {
    name: 'direct',
    ports: { ws: port },
    process: echo,
    cpuPids: () => [echo.pid],
    memory: () => maxRss([echo.pid], 'VmHWM of the echo server'),
    resetPeakMemory: () => resetPeakRss(echo.pid),
  };
}

function zproxyTarget(instance: ZproxyInstance): Target {
  const ports: Partial<Record<LoadProtocol, number>> = { http1: instance.port };
  if (instance.tlsPort !== null) {
    ports.h2c = instance.port;
    ports.h2 = instance.tlsPort;
  }
  if (instance.websocket) ports.ws = instance.port;
  return {
    name: 'zproxy',
    ports,
    process: instance.process,
    cpuPids: () => instance.pids(),
    memory: () => sumRss(instance.pids(), 'sum of VmHWM over the zproxy processes'),
    resetPeakMemory: () => instance.pids().map(resetPeakRss).every(Boolean),
  };
}

interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

/** GET over a fresh HTTP/1.1 connection; resolves with the status and the body. */
function fetchOnce(port: number, path: string): Promise<Answer> {
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

/**
 * GET over a fresh HTTP/2 connection: h2c with prior knowledge, or TLS where ALPN must choose h2 and the
 * certificate must verify against the bench's own (self-signed) one.
 */
function fetchHttp2(
  port: number,
  path: string,
  certificate: CertificateFiles | null,
  protocol: 'h2c' | 'h2',
): Promise<Answer> {
  return new Promise((resolvePromise, reject) => {
    const authority = protocol === 'h2' ? `https://127.0.0.1:${port}` : `http://127.0.0.1:${port}`;
    const session =
      protocol === 'h2'
        ? connectHttp2(authority, {
            ca: readFileSync(certificate!.certFile),
            servername: certificate!.serverName,
            ALPNProtocols: ['h2'],
          })
        : connectHttp2(authority);
    const fail = (error: Error): void => {
      session.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error('no response within 5 s')), 5000);
    session.once('error', fail);
    const request = session.request({ ':path': path });
    request.once('error', fail);
    let status = 0;
    request.once('response', (headers) => {
      status = Number(headers[':status']);
    });
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.once('end', () => {
      clearTimeout(timer);
      const alpn = session.alpnProtocol;
      session.close();
      if (alpn !== protocol)
        reject(new Error(`the connection used ${alpn ?? 'no protocol'}, not ${protocol}`));
      else resolvePromise({ status, body: Buffer.concat(chunks) });
    });
  });
}

/**
 * Checks that a target answers both paths correctly, on every protocol it serves in this run, before any
 * figure is taken. For zproxy it also checks that the TLS port serves plain HTTP/1.1 and h2c (one port for
 * all three; the HTTP/1.1 and h2c runs use the plain listener).
 */
async function preflight(target: Target, certificate: CertificateFiles | null): Promise<void> {
  const expectations: [string, (body: Buffer) => boolean, string][] = [
    ['/small', (body) => body.toString('latin1') === SMALL_BODY, `${JSON.stringify(SMALL_BODY)}`],
    ['/64k', (body) => body.length === LARGE_SIZE, `${LARGE_SIZE} bytes`],
  ];
  const checks: ['http1' | 'h2c' | 'h2', number][] = [];
  for (const protocol of ['http1', 'h2c', 'h2'] as const) {
    const port = target.ports[protocol];
    if (port !== undefined) checks.push([protocol, port]);
  }
  if (target.name === 'zproxy' && target.ports.h2 !== undefined) {
    checks.push(['http1', target.ports.h2], ['h2c', target.ports.h2]);
  }
  for (const [protocol, port] of checks) {
    for (const [path, check, expected] of expectations) {
      let answer: Answer;
      const what = `${protocol} GET ${path} on port ${port}`;
      try {
        answer =
          protocol === 'http1'
            ? await fetchOnce(port, path)
            : await fetchHttp2(port, path, certificate, protocol);
      } catch (error) {
        throw new Error(`${target.name}: ${what} failed: ${(error as Error).message}`);
      }
      if (answer.status !== 200 || !check(answer.body)) {
        throw new Error(
          `${target.name}: ${what} answered ${answer.status} with ${answer.body.length} bytes, expected 200 with ${expected}`,
        );
      }
    }
  }
  if (target.ports.ws !== undefined) {
    try {
      await checkWebSocketEcho(target.ports.ws, WS_PATH);
    } catch (error) {
      throw new Error(`${target.name}: ${(error as Error).message}`);
    }
  }
}

// ---- machine ----------------------------------------------------------------------------------------

function commandOutput(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', cwd: ROOT });
  return `${result.stdout ?? ''}${result.stderr ?? ''}`.trim();
}

/** The version of an installed npm package (from its package.json); 'unknown' when it cannot be read. */
function packageVersion(name: string): string {
  try {
    const json = JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8'));
    return typeof json.version === 'string' ? json.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

function machineInfo(groups: readonly GroupName[]): MachineInfo {
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
    wrk: groups.includes('h1')
      ? commandOutput('wrk', ['-v'])
          .split('\n')[0]!
          .replace(/\s*Copyright.*$/, '')
      : null,
    h2load: groups.includes('h2') ? commandOutput('h2load', ['--version']).split('\n')[0]! : null,
    ws: groups.includes('ws') ? packageVersion('ws') : null,
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
  const unit = unitOf(run.scenario);
  const busy = loadCpuBusy(run);
  const load = `  load CPU ${percent(busy)}${isLoadSaturated(run) ? ' (saturated)' : ''}`;
  return (
    `[round ${run.round}/${rounds}] ${run.scenario.padEnd(9)} ${run.target.padEnd(6)} ` +
    `${Math.round(run.requestsPerSecond).toLocaleString('en-US').padStart(9)} ${unit}/s  ` +
    `p50 ${(run.latencyUs.p50 / 1000).toFixed(2)} ms  p99 ${(run.latencyUs.p99 / 1000).toFixed(2)} ms  ` +
    `cpu ${Math.round(run.cpuFraction * 100)} %  ${perCore} ${unit}/s per core${load}${other}${disturbed}${errors}`
  );
}

async function main(): Promise<number> {
  // The filters group has its own runner (zproxy against zproxy without filters; see bench/filters.ts).
  const only = process.argv.indexOf('--only');
  if (only !== -1 && process.argv[only + 1] === 'filters') {
    const { runFiltersBench } = await import('./filters.ts');
    return runFiltersBench(process.argv.slice(2));
  }
  // So has the metrics group (zproxy with metrics on against off; see bench/metrics.ts).
  if (only !== -1 && process.argv[only + 1] === 'metrics') {
    const { runMetricsBench } = await import('./metrics.ts');
    return runMetricsBench(process.argv.slice(2));
  }
  // Two builds side by side (a refactor before and after; see bench/builds.ts).
  if (only !== -1 && process.argv[only + 1] === 'builds') {
    const { runBuildsBench } = await import('./builds.ts');
    return runBuildsBench(process.argv.slice(2));
  }
  // And the failover group (a target killed under load; see bench/failover.ts).
  if (only !== -1 && process.argv[only + 1] === 'failover') {
    const { runFailoverBench } = await import('./failover.ts');
    return runFailoverBench(process.argv.slice(2));
  }
  // The trace group too (zproxy with tracing.traceparent against without; see bench/trace-context.ts).
  if (only !== -1 && process.argv[only + 1] === 'trace') {
    const { runTraceContextBench } = await import('./trace-context.ts');
    return runTraceContextBench(process.argv.slice(2));
  }
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
  const groups = groupsOf(options.scenarios);
  const http2 = groups.includes('h2');
  const websocket = groups.includes('ws');
  if (!ensureTools(options.install, groups)) return 1;
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
    const machine = machineInfo(groups);
    const startedAt = new Date();

    const origin = await startOrigin(tmp, options.loadCpu);
    const originPort = origin.port;
    started.push(origin);
    const originWorkers = (): number[] => origin.workerPids();
    // The WebSocket upstream: the echo server, on the load CPU like the origin.
    const echoPort = websocket ? await freePort() : null;
    const echo = echoPort === null ? null : await startEchoServer(tmp, echoPort, options.loadCpu);
    if (echo !== null) started.push(echo);
    /** What the load generator shares its CPU with in a group: the echo server for WebSocket. */
    const originOf = (group: GroupName): { process: PinnedProcess; pids: () => number[] } =>
      group === 'ws' && echo !== null
        ? { process: echo, pids: () => [echo.pid] }
        : { process: origin.process, pids: originWorkers };
    // Every request in flight may hold an upstream connection: both proxies may keep that many idle.
    const upstreamKeepalive = Math.max(
      64,
      options.connections,
      http2 ? options.h2Clients * options.h2Streams : 0,
    );
    const certificate = http2 ? makeSelfSignedCertificate(join(tmp, 'tls')) : null;

    const targets: Target[] = [];
    for (const name of options.targets) {
      if (name === 'direct') {
        if (groups.includes('h1'))
          targets.push(nginxTarget('direct', origin, { http1: originPort }, originWorkers));
        // A second `direct`: the echo server alone, for the WebSocket scenarios.
        if (echo !== null && echoPort !== null) targets.push(echoTarget(echo, echoPort));
      } else if (name === 'nginx') {
        const dir = join(tmp, 'nginx');
        const ports: Partial<Record<LoadProtocol, number>> = { http1: await freePort() };
        if (echoPort !== null) ports.ws = ports.http1;
        if (certificate !== null) {
          ports.h2c = await freePort();
          ports.h2 = await freePort();
        }
        const listeners =
          certificate === null
            ? null
            : {
                h2cPort: ports.h2c!,
                tlsPort: ports.h2!,
                certFile: certificate.certFile,
                keyFile: certificate.keyFile,
              };
        const config = proxyConfig(dir, ports.http1!, originPort, upstreamKeepalive, listeners, echoPort);
        const proxy = await NginxInstance.start('nginx (proxy)', dir, config, ports.http1!, options.proxyCpu);
        started.push(proxy);
        for (const port of [ports.h2c, ports.h2])
          if (port !== undefined) await proxy.process.waitForPort(port, 5000);
        targets.push(nginxTarget('nginx', proxy, ports, () => [proxy.process.pid, ...proxy.workerPids()]));
      } else {
        const dir = join(tmp, 'zproxy');
        mkdirSync(dir);
        const tls =
          certificate === null
            ? null
            : { port: await freePort(), certFile: certificate.certFile, keyFile: certificate.keyFile };
        const zproxy = await ZproxyInstance.start(
          ROOT,
          dir,
          {
            port: await freePort(),
            originPort,
            idleUpstreamConnections: upstreamKeepalive,
            tls,
            wsOriginPort: echoPort,
          },
          options.proxyCpu,
        );
        started.push(zproxy);
        targets.push(zproxyTarget(zproxy));
      }
    }
    for (const target of targets) await preflight(target, certificate);

    const runsPerRound = options.scenarios.reduce(
      (sum, scenario) =>
        sum +
        targets.filter((target) => target.ports[SCENARIO_SPECS[scenario].protocol] !== undefined).length,
      0,
    );
    const load = [
      ...(groups.includes('h1') ? [`wrk ${options.connections} connections`] : []),
      ...(http2 ? [`h2load ${options.h2Clients} connections × ${options.h2Streams} streams`] : []),
      ...(websocket ? [`ws-load ${options.wsConnections} connections`] : []),
    ].join(', ');
    // `direct` may be two targets (the HTTP origin and the echo server): one name.
    const targetNames = [...new Set(targets.map((target) => target.name))];
    console.error(
      `bench: ${options.rounds} round(s) × ${runsPerRound} run(s) (${options.scenarios.join(', ')} × ` +
        `${targetNames.join(', ')}), ${options.durationS} s runs after ` +
        `${options.warmupS} s warm-ups, ${load}; about ` +
        `${Math.ceil((options.rounds * runsPerRound * (options.durationS + options.warmupS + 1)) / 60)} min`,
    );
    const runs: RunRecord[] = [];
    const memory: Partial<Record<GroupName, Partial<Record<TargetName, MemoryRecord>>>> = {};
    // One group after the other (HTTP/1.1, then HTTP/2, then WebSocket), each with its own interleaved
    // rounds, so that each group's peak memory is its own.
    for (const group of groups) {
      const groupOrigin = originOf(group);
      const groupScenarios = options.scenarios.filter((scenario) => SCENARIO_SPECS[scenario].group === group);
      const groupTargets = targets.filter((target) =>
        groupScenarios.some((scenario) => target.ports[SCENARIO_SPECS[scenario].protocol] !== undefined),
      );
      const peaksReset = groupTargets.map((target) => target.resetPeakMemory()).every(Boolean);
      for (let round = 1; round <= options.rounds; round++) {
        for (const scenario of groupScenarios) {
          const spec = SCENARIO_SPECS[scenario];
          for (const target of groupTargets) {
            const port = target.ports[spec.protocol];
            if (port === undefined) continue;
            const runLoad = (durationS: number, measured: boolean): Promise<LoadResult> => {
              if (spec.tool === 'wrk') {
                return runWrk({
                  url: `http://127.0.0.1:${port}${spec.path}`,
                  connections: options.connections,
                  cpu: options.loadCpu,
                  closeConnections: spec.closeConnections,
                  durationS,
                  signal: abort.signal,
                });
              }
              if (spec.tool === 'ws-load') {
                return runWsLoad({
                  port,
                  path: spec.path,
                  connections: options.wsConnections,
                  messageBytes: spec.message!.bytes,
                  binary: spec.message!.binary,
                  durationS,
                  cpu: options.loadCpu,
                  signal: abort.signal,
                });
              }
              return runH2load({
                url: `${spec.protocol === 'h2' ? 'https' : 'http'}://127.0.0.1:${port}${spec.path}`,
                clients: options.h2Clients,
                streams: options.h2Streams,
                durationS,
                cpu: options.loadCpu,
                logFile: measured ? join(tmp, 'h2load.log') : null,
                signal: abort.signal,
              });
            };
            if (options.warmupS > 0) await runLoad(options.warmupS, false);
            const pids = target.cpuPids();
            const originPids = groupOrigin.pids();
            const before = { target: cpuTicks(pids), origin: cpuTicks(originPids) };
            const cpuBefore = readCpuTimes();
            const wallStart = performance.now();
            const result = await runLoad(options.durationS, true);
            const wallSeconds = (performance.now() - wallStart) / 1000;
            const cpuAfter = readCpuTimes();
            const ticks = cpuTicks(pids) - before.target;
            const originTicks = cpuTicks(originPids) - before.origin;
            for (const service of [target.process, groupOrigin.process]) {
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
            // The proxies run on the proxy CPU; the origin (or echo server) and the load generator on the load
            // CPU (direct measures the origin).
            const proxyCpuKnown = target.name === 'direct' ? 0 : ticks;
            const loadCpuKnown = result.cpuTicks === null ? null : originTicks + result.cpuTicks;
            const cpuFraction = ticks / (clockTicks * result.seconds);
            const run: RunRecord = {
              round,
              scenario,
              target: target.name,
              negotiatedProtocol: result.negotiatedProtocol,
              tls: result.tls,
              requests: result.requests,
              seconds: result.seconds,
              requestsPerSecond: result.requestsPerSecond,
              latencyUs: result.latencyUs,
              errors: result.errors,
              errorCount: result.errorCount,
              cpuFraction,
              requestsPerCore: cpuFraction > 0 ? result.requestsPerSecond / cpuFraction : null,
              originCpuFraction: originTicks / (clockTicks * result.seconds),
              loadGeneratorCpuFraction:
                result.cpuTicks === null ? null : result.cpuTicks / (clockTicks * wallSeconds),
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
      const groupMemory: Partial<Record<TargetName, MemoryRecord>> = {};
      for (const target of groupTargets) {
        const record = target.memory();
        groupMemory[target.name] = peaksReset
          ? record
          : { ...record, rule: `${record.rule} (peak not reset: includes the groups before)` };
      }
      memory[group] = groupMemory;
    }

    const method: MethodInfo = {
      rounds: options.rounds,
      durationS: options.durationS,
      warmupS: options.warmupS,
      connections: options.connections,
      h2Clients: options.h2Clients,
      h2Streams: options.h2Streams,
      wsConnections: options.wsConnections,
      upstreamKeepalive,
      proxyCpu: options.proxyCpu,
      loadCpu: options.loadCpu,
      scenarios: options.scenarios,
      // The targets that ran (direct only with HTTP/1.1 and WebSocket scenarios).
      targets: targetNames,
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
    const base = `${date}-${groups.map((group) => GROUP_FILE_NAMES[group]).join('-')}`;
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
