/**
 * One load run of a comparison: zproxy's own generator (`zproxy bench --json`, src/bench) as a child
 * process pinned to the load CPU, so that its CPU is its own and the proxies' CPU stays theirs.
 */
import { spawn } from 'node:child_process';
import { runBench } from '../bench.ts';
import type { BenchOptions, BenchProtocol } from '../options.ts';
import type { BenchReport } from '../report.ts';
import type { LoadProtocol, ScenarioSpec } from './scenarios.ts';
import { scenarioHeaders } from './scenarios.ts';

export interface LoadSettings {
  /** HTTP/1.1 and WebSocket connections. */
  readonly connections: number;
  /** HTTP/2 connections, each with `h2Streams` streams in flight. */
  readonly h2Connections: number;
  readonly h2Streams: number;
  readonly cpu: number;
  readonly node: string;
  /** The zproxy CLI entry the generator runs from. */
  readonly zproxyMain: string;
}

export interface LoadRun {
  readonly port: number;
  /** The measured route's prefix (`/` or `/api`) and host (null: 127.0.0.1). */
  readonly prefix: string;
  readonly host: string | null;
  readonly durationMs: number;
  readonly signal: AbortSignal;
}

function urlOf(spec: ScenarioSpec, port: number, prefix: string): string {
  const scheme = spec.protocol === 'h2' ? 'https' : spec.protocol === 'ws' ? 'ws' : 'http';
  const base = prefix === '/' ? '' : prefix;
  return `${scheme}://127.0.0.1:${port}${base}${spec.path}`;
}

const GENERATOR_PROTOCOL: Record<LoadProtocol, BenchProtocol> = {
  http1: 'http1',
  h2c: 'http2',
  h2: 'http2',
  ws: 'websocket',
};

/** The `zproxy bench` arguments for a scenario. */
export function benchArgs(spec: ScenarioSpec, settings: LoadSettings, run: LoadRun): string[] {
  const http2 = spec.protocol === 'h2c' || spec.protocol === 'h2';
  const connections = http2 ? settings.h2Connections : settings.connections;
  const args = [
    'bench',
    urlOf(spec, run.port, run.prefix),
    '--json',
    '--protocol',
    GENERATOR_PROTOCOL[spec.protocol],
    '-c',
    String(connections),
    '-d',
    `${run.durationMs}ms`,
    '--concurrency',
    String(http2 ? settings.h2Streams : 1),
    '--timeout',
    '5s',
  ];
  if (!spec.keepAlive) args.push('--no-keepalive');
  if (spec.protocol === 'h2') args.push('--insecure');
  if (spec.protocol === 'ws') args.push('--message-bytes', String(spec.messageBytes));
  for (const [name, value] of requestHeaders(spec, run)) args.push('-H', `${name}: ${value}`);
  return args;
}

/** The scenario's request fields, and Host for a route of a host. */
function requestHeaders(spec: ScenarioSpec, run: LoadRun): [string, string][] {
  const headers = scenarioHeaders(spec);
  if (run.host !== null) headers.push(['host', run.host]);
  return headers;
}

/**
 * A check before the runs: the generator in this process, one connection, one request at a time. (No CPU
 * is measured, so it need not be pinned; it saves starting a process per scenario and proxy.)
 */
export function checkLoad(spec: ScenarioSpec, run: LoadRun): Promise<BenchReport> {
  const options: BenchOptions = {
    url: urlOf(spec, run.port, run.prefix),
    protocol: GENERATOR_PROTOCOL[spec.protocol],
    connections: 1,
    concurrency: 1,
    durationMs: run.durationMs,
    keepAlive: spec.keepAlive,
    method: 'GET',
    headers: requestHeaders(spec, run),
    body: null,
    bodyFile: null,
    threads: 1,
    rate: null,
    messageBytes: spec.messageBytes,
    timeoutMs: 5000,
    insecure: spec.protocol === 'h2',
    json: true,
  };
  return runBench(options, null);
}

/** Runs the generator; resolves with its report (throws when it fails or prints no report). */
export function runLoad(spec: ScenarioSpec, settings: LoadSettings, run: LoadRun): Promise<BenchReport> {
  const args = [
    '-c',
    String(settings.cpu),
    settings.node,
    settings.zproxyMain,
    ...benchArgs(spec, settings, run),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'], signal: run.signal });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.once('error', reject);
    child.once('close', (status) => {
      try {
        resolve(JSON.parse(stdout) as BenchReport);
      } catch {
        reject(
          new Error(
            `the generator (zproxy bench) exited ${status} without a report: ${stderr.trim() || stdout.trim()}`,
          ),
        );
      }
    });
  });
}
