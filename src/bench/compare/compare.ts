/**
 * `zproxy compare`: starts the origin, then every proxy found (missing ones are reported and skipped),
 * checks each scenario on each proxy once, then measures them in interleaved rounds after warm-ups: the
 * proxy's CPU time from /proc, the other load on both CPUs, the generator's verdict; then peak memory.
 * The result is summarised (results.ts) and, with --report, written as report.json, report.md and
 * report.html with charts (report.ts).
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchReport } from '../report.ts';
import { caddyDriver } from './caddy.ts';
import { writeCertificate } from './certificate.ts';
import { envoyDriver } from './envoy.ts';
import { haproxyDriver } from './haproxy.ts';
import { checkLoad, type LoadSettings, runLoad } from './load.ts';
import { nginxBinary, nginxDriver, startOrigin } from './nginx.ts';
import type { CompareOptions } from './options.ts';
import { generatedPlan, type PlanTarget, type ProxyPlan, type UserConfig, userPlan } from './plan.ts';
import {
  clockTicksPerSecond,
  cpuTicks,
  freePort,
  PinnedProcess,
  peakRssKiB,
  readCpuTimes,
  reapedChildrenCpuTicks,
  resetPeakRss,
  sleep,
} from './proc.ts';
import { findOnPath, type ProxyDriver, type ProxyName, type RunningProxy } from './proxies.ts';
import {
  type CompareResult,
  isDisturbed,
  type MemoryFigure,
  type ProxyStatus,
  type RunRecord,
  roundTo,
  type Skip,
  summarise,
} from './results.ts';
import { SCENARIOS, type ScenarioSpec } from './scenarios.ts';
import { zproxyDriver } from './zproxy.ts';

const DRIVERS: Record<ProxyName, ProxyDriver> = {
  zproxy: zproxyDriver,
  nginx: nginxDriver,
  haproxy: haproxyDriver,
  caddy: caddyDriver,
  envoy: envoyDriver,
};

/** How long each scenario is tried on each proxy, with one connection, before the runs. */
const PREFLIGHT_MS = 250;

/** Where the running zproxy's files are: the CLI entry and the origin server's module, .ts or .js. */
const EXT = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
export const DEFAULT_ZPROXY_MAIN = new URL(`../../cli/main.${EXT}`, import.meta.url).pathname;
const ORIGIN_SERVER = new URL(`./origin-server.${EXT}`, import.meta.url).pathname;

export interface CompareEnvironment {
  /** The Node binary for zproxy, the generator and the origin server. */
  readonly node: string;
  /** The zproxy CLI entry (dist/cli/main.js; `npm run bench` builds it first). */
  readonly zproxyMain: string;
  /** How the comparison was asked for (the report shows it). */
  readonly command: string;
  /** Progress lines. */
  log(line: string): void;
  readonly signal?: AbortSignal;
  /** Reads and validates --config (the cli does: src/cli/compare-config.ts); throws with the problems. */
  loadUserConfig(file: string): UserConfig;
  /** A throw-away self-signed certificate for 127.0.0.1 and localhost (the demo's). */
  makeCertificate(): { readonly cert: string; readonly key: string };
}

interface Measured {
  readonly name: ProxyName;
  readonly proxy: RunningProxy;
}

/** The origin and the echo server of a comparison. */
interface Origins {
  readonly http: PlanTarget;
  readonly echo: PlanTarget | null;
  /** The processes on the load CPU that serve a scenario. */
  pids(spec: ScenarioSpec): number[];
  readonly description: string;
}

async function startOrigins(
  options: CompareOptions,
  env: CompareEnvironment,
  tmp: string,
  started: { stop(): Promise<void> }[],
): Promise<Origins> {
  const nginx = findOnPath('nginx');
  const useNginx = options.origin === 'nginx' || (options.origin === 'auto' && nginx !== null);
  if (options.origin === 'nginx' && nginx === null)
    throw new Error('--origin nginx: nginx is not on the PATH');
  const needsNode = !useNginx || options.scenarios.includes('ws');
  let node: PinnedProcess | null = null;
  let nodePort = 0;
  if (needsNode) {
    nodePort = await freePort();
    node = new PinnedProcess(
      'origin-server',
      options.loadCpu,
      env.node,
      [ORIGIN_SERVER, String(nodePort)],
      join(tmp, 'origin-server.log'),
    );
    started.push(node);
    await node.waitForPort(nodePort, 10_000);
  }
  const nodeTarget = { host: '127.0.0.1', port: nodePort };
  if (useNginx) {
    const origin = await startOrigin(tmp, options.loadCpu, nginx ?? nginxBinary());
    started.push(origin);
    return {
      http: { host: '127.0.0.1', port: origin.port },
      echo: node === null ? null : nodeTarget,
      pids: (spec) => (spec.protocol === 'ws' && node !== null ? [node.pid] : origin.workerPids()),
      description: 'nginx (one worker) for HTTP; zproxy’s Node origin server as the WebSocket echo',
    };
  }
  const nodePid = node!.pid;
  return {
    http: nodeTarget,
    echo: nodeTarget,
    pids: () => [nodePid],
    description: `zproxy’s Node origin server (${options.origin === 'node' ? '--origin node' : 'nginx not found'}) for HTTP and as the WebSocket echo`,
  };
}

/** Why a scenario cannot run on this plan at all (null: it can). */
function planSkip(
  spec: ScenarioSpec,
  plan: ProxyPlan,
  userProtocols: readonly string[] | null,
): string | null {
  if (spec.protocol === 'ws' && plan.measured.websocket === null)
    return 'the WebSocket scenario needs the generated set-up (its echo route), not --config';
  if (spec.filterChain && plan.measured.filterChain === null)
    return 'the filter-chain scenario needs the generated set-up, not --config (your routes with filters run in zproxy only)';
  if (spec.protocol === 'h2' && userProtocols !== null)
    return 'HTTP/2 over TLS needs the generated set-up (compare makes its certificate), not --config';
  if (spec.protocol === 'h2c' && userProtocols !== null && !userProtocols.includes('http2'))
    return 'the config’s protocols do not include http2';
  return null;
}

function routeFor(spec: ScenarioSpec, plan: ProxyPlan) {
  if (spec.protocol === 'ws') return plan.measured.websocket!;
  if (spec.filterChain) return plan.measured.filterChain!;
  return plan.measured.plain;
}

function latencyMs(report: BenchReport): RunRecord['latency_ms'] {
  const ms = (us: number): number => roundTo(us / 1000, 3);
  const l = report.latency_us;
  return { p50: ms(l.p50), p90: ms(l.p90), p99: ms(l.p99), p99_9: ms(l.p99_9), max: ms(l.max) };
}

/** What a preflight run must show: answers, all 2xx, no errors, at least the body's bytes each. */
function preflightProblem(report: BenchReport, spec: ScenarioSpec): string | null {
  if (report.requests === 0) {
    const errors = Object.entries(report.errors)
      .filter(([kind, count]) => kind !== 'total' && count > 0)
      .map(([kind, count]) => `${kind} ${count}`);
    return `no answer (${errors.join(', ') || 'nothing completed'})`;
  }
  if (report.non_2xx_total > 0) return `answers other than 2xx: ${JSON.stringify(report.non_2xx)}`;
  if (report.errors.total > 0) return `${report.errors.total} error(s)`;
  if (report.bytes_received < report.requests * spec.bodyBytes)
    return `${report.bytes_received} bytes for ${report.requests} answers of ${spec.bodyBytes} bytes`;
  return null;
}

export async function runCompare(options: CompareOptions, env: CompareEnvironment): Promise<CompareResult> {
  const startedAt = new Date();
  const signal = env.signal ?? new AbortController().signal;
  const tmp = mkdtempSync(join(tmpdir(), 'zproxy-compare-'));
  // nginx workers run as `nobody` when compare runs as root: they must reach the files inside.
  chmodSync(tmp, 0o755);
  const started: { stop(): Promise<void> }[] = [];
  const statuses: ProxyStatus[] = [];
  const skipped: Skip[] = [];
  const notes: string[] = [];
  const runs: RunRecord[] = [];
  const memory: MemoryFigure[] = [];
  let keep = options.keepTmp;
  try {
    const origins = await startOrigins(options, env, tmp, started);
    const idleUpstream = Math.max(64, options.connections, options.h2Connections * options.h2Streams);
    let plan: ProxyPlan;
    let userProtocols: readonly string[] | null = null;
    if (options.configFile === null) {
      plan = generatedPlan(origins.http, origins.echo ?? origins.http, idleUpstream);
    } else {
      const user = env.loadUserConfig(options.configFile);
      const made = userPlan(user, origins.http, idleUpstream);
      plan = made.plan;
      userProtocols = user.protocols;
      for (const line of made.leftOut) notes.push(`Not given to the other proxies: ${line}.`);
    }

    const scenarios: ScenarioSpec[] = [];
    for (const name of options.scenarios) {
      const spec = SCENARIOS[name];
      const reason = planSkip(spec, plan, userProtocols);
      if (reason === null) scenarios.push(spec);
      else {
        skipped.push({ scenario: name, proxy: null, reason });
        env.log(`compare: ${name}: skipped: ${reason}`);
      }
    }
    const needs = {
      h2c: scenarios.some((spec) => spec.protocol === 'h2c'),
      tls: scenarios.some((spec) => spec.protocol === 'h2')
        ? writeCertificate(join(tmp, 'tls'), env.makeCertificate())
        : null,
    };

    const measured: Measured[] = [];
    for (const name of options.proxies) {
      const driver = DRIVERS[name];
      const binary = name === 'zproxy' ? env.zproxyMain : findOnPath(driver.command);
      if (binary === null) {
        const reason = `${driver.command} not found on the PATH`;
        statuses.push({ name, status: 'missing', binary: null, version: null, reason });
        env.log(`compare: ${name}: MISSING (${reason}): skipped`);
        continue;
      }
      const version = driver.version(binary);
      try {
        const proxy = await driver.start({
          dir: join(tmp, name),
          binary,
          plan,
          cpu: options.proxyCpu,
          needs,
          node: env.node,
          zproxyMain: env.zproxyMain,
        });
        started.push(proxy);
        measured.push({ name, proxy });
        statuses.push({ name, status: 'measured', binary, version, reason: null });
        env.log(`compare: ${name}: ${version} (${binary})`);
      } catch (error) {
        const reason = `did not start: ${(error as Error).message.split('\n')[0]}`;
        statuses.push({ name, status: 'failed', binary, version, reason });
        env.log(`compare: ${name}: FAILED, skipped: ${(error as Error).message}`);
        keep = true;
      }
    }

    const settings: LoadSettings = {
      connections: options.connections,
      h2Connections: options.h2Connections,
      h2Streams: options.h2Streams,
      cpu: options.loadCpu,
      node: env.node,
      zproxyMain: env.zproxyMain,
    };
    const load = (spec: ScenarioSpec, proxy: RunningProxy, durationMs: number) => {
      const route = routeFor(spec, plan);
      return runLoad(spec, settings, {
        port: proxy.ports[spec.protocol]!,
        prefix: route.pathPrefix,
        host: route.host,
        durationMs,
        signal,
      });
    };

    // Every scenario on every proxy once, before any figure is taken.
    const pairs: { spec: ScenarioSpec; target: Measured }[] = [];
    for (const spec of scenarios) {
      for (const target of measured) {
        const why =
          DRIVERS[target.name].unsupported(spec.protocol, spec.filterChain) ??
          (target.proxy.ports[spec.protocol] === undefined ? `no listener for ${spec.protocol}` : null);
        if (why !== null) {
          skipped.push({ scenario: spec.name, proxy: target.name, reason: why });
          env.log(`compare: ${spec.name} on ${target.name}: skipped: ${why}`);
          continue;
        }
        const route = routeFor(spec, plan);
        const check = await checkLoad(spec, {
          port: target.proxy.ports[spec.protocol]!,
          prefix: route.pathPrefix,
          host: route.host,
          durationMs: PREFLIGHT_MS,
          signal,
        });
        const problem = preflightProblem(check, spec);
        if (problem !== null) {
          skipped.push({ scenario: spec.name, proxy: target.name, reason: `check failed: ${problem}` });
          env.log(`compare: ${spec.name} on ${target.name}: CHECK FAILED, skipped: ${problem}`);
          keep = true;
          continue;
        }
        pairs.push({ spec, target });
      }
    }

    const clockTicks = clockTicksPerSecond();
    for (const target of measured) for (const pid of target.proxy.pids()) resetPeakRss(pid);
    const perRound = pairs.length;
    const estimateS = Math.ceil(
      (options.rounds * perRound * (options.durationMs + options.warmupMs + 600)) / 1000,
    );
    env.log(
      `compare: ${options.rounds} round(s) × ${perRound} run(s) of ${options.durationMs} ms after ${options.warmupMs} ms warm-ups; about ${estimateS} s`,
    );
    for (let round = 1; round <= options.rounds; round++) {
      for (const spec of scenarios) {
        const here = pairs.filter((pair) => pair.spec === spec);
        // The order of the proxies turns each round, so that no proxy always runs first.
        const shift = here.length === 0 ? 0 : (round - 1) % here.length;
        const ordered = [...here.slice(shift), ...here.slice(0, shift)];
        for (const { target } of ordered) {
          if (signal.aborted) throw new Error('stopped');
          if (options.warmupMs > 0) await load(spec, target.proxy, options.warmupMs);
          const pids = target.proxy.pids();
          const originPids = origins.pids(spec);
          const before = {
            proxy: cpuTicks(pids),
            origin: cpuTicks(originPids),
            generator: reapedChildrenCpuTicks(),
            cpu: readCpuTimes(),
          };
          const wallStart = performance.now();
          const report = await load(spec, target.proxy, options.durationMs);
          const wallSeconds = (performance.now() - wallStart) / 1000;
          const cpuAfter = readCpuTimes();
          const proxyTicks = cpuTicks(pids) - before.proxy;
          const originTicks = cpuTicks(originPids) - before.origin;
          // The generator has exited and been waited for: its whole CPU time, start-up included.
          const generatorTicks = reapedChildrenCpuTicks() - before.generator;
          if (!target.proxy.process.alive)
            throw new Error(
              `${target.name} exited during a run (${target.proxy.process.exitDescription}):\n${target.proxy.process.logTail()}`,
            );
          const seconds = report.duration_s;
          const other = (cpu: number, knownTicks: number): number | null => {
            const a = before.cpu.get(cpu);
            const b = cpuAfter.get(cpu);
            if (a === undefined || b === undefined) return null;
            const used = b.busy - a.busy + (b.steal - a.steal) - knownTicks;
            return roundTo(Math.max(0, used) / (clockTicks * wallSeconds), 3);
          };
          const otherLoad = {
            proxy_cpu: other(options.proxyCpu, proxyTicks),
            load_cpu: other(options.loadCpu, originTicks + generatorTicks),
          };
          const proxyCpu = proxyTicks / (clockTicks * seconds);
          const run: RunRecord = {
            round,
            scenario: spec.name,
            proxy: target.name,
            requests: report.requests,
            seconds,
            requests_per_second: Math.round(report.requests_per_second),
            latency_ms: latencyMs(report),
            errors: report.errors.total,
            non_2xx: report.non_2xx_total,
            proxy_cpu: roundTo(proxyCpu, 3),
            requests_per_core: proxyCpu > 0 ? Math.round(report.requests_per_second / proxyCpu) : null,
            origin_cpu: roundTo(originTicks / (clockTicks * seconds), 3),
            generator_cpu: roundTo(report.generator.process_cpu_percent / 100, 3),
            generator_limited: report.generator.limited,
            other_load: otherLoad,
            disturbed: isDisturbed(otherLoad),
          };
          runs.push(run);
          env.log(
            `compare: round ${round}/${options.rounds} ${spec.name} ${target.name}: ${run.requests_per_second} ${spec.unit}/s, ` +
              `${run.requests_per_core ?? '-'} per core (CPU ${Math.round(proxyCpu * 100)} %), p99 ${run.latency_ms.p99} ms` +
              `${run.errors + run.non_2xx > 0 ? `, ${run.errors} errors, ${run.non_2xx} non-2xx` : ''}` +
              `${run.disturbed ? ', DISTURBED' : ''}${run.generator_limited ? ', generator-limited' : ''}`,
          );
          // Let closed connections drain before the next run (briefly after short runs).
          await sleep(Math.min(300, options.durationMs / 4));
        }
      }
    }
    for (const target of measured) {
      const kib = target.proxy.pids().reduce((sum, pid) => sum + (peakRssKiB(pid) ?? 0), 0);
      memory.push({ proxy: target.name, peak_rss_mib: roundTo(kib / 1024, 1) });
    }
    if (runs.some((run) => run.disturbed))
      notes.push(
        'Runs marked disturbed had more than 10 % of a CPU taken by other work; their figures are less sure.',
      );
    if (runs.some((run) => run.generator_limited))
      notes.push(
        'In runs marked generator-limited the generator, not the proxy, was the limit: compare the per-core figures.',
      );
    const cpu = cpus()[0];
    return {
      title: 'zproxy compare',
      command: env.command,
      note: options.note,
      started_at: startedAt.toISOString(),
      finished_at: new Date().toISOString(),
      machine: {
        cpu_model: cpu?.model.trim() ?? 'unknown',
        cpus: cpus().length,
        kernel: release(),
        node: process.version,
      },
      method: {
        rounds: options.rounds,
        duration_s: options.durationMs / 1000,
        warmup_s: options.warmupMs / 1000,
        connections: options.connections,
        h2_connections: options.h2Connections,
        h2_streams: options.h2Streams,
        proxy_cpu: options.proxyCpu,
        load_cpu: options.loadCpu,
        idle_upstream: idleUpstream,
        origin: origins.description,
        plan: plan.source,
        generator: 'zproxy bench (one thread, pinned to the load CPU)',
      },
      proxies: statuses,
      scenarios: options.scenarios.map((name) => ({
        name,
        title: SCENARIOS[name].title,
        unit: SCENARIOS[name].unit,
      })),
      skipped,
      results: summarise(runs),
      memory,
      charts: [],
      notes,
      runs,
    };
  } finally {
    for (const service of started.reverse()) await service.stop();
    if (keep) env.log(`compare: configurations and logs kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }
}
