/**
 * One load run of a comparison: zproxy's own generator (`zproxy bench --json`, src/bench) as a child
 * process pinned to the load CPU, so that its CPU is its own and the proxies' CPU stays theirs.
 */
import { spawn } from 'node:child_process';
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
  /** Connections for this run (a preflight uses 1); null: the settings'. */
  readonly connections: number | null;
  readonly signal: AbortSignal;
}

function urlOf(spec: ScenarioSpec, port: number, prefix: string): string {
  const scheme = spec.protocol === 'h2' ? 'https' : spec.protocol === 'ws' ? 'ws' : 'http';
  const base = prefix === '/' ? '' : prefix;
  return `${scheme}://127.0.0.1:${port}${base}${spec.path}`;
}

const GENERATOR_PROTOCOL: Record<LoadProtocol, string> = {
  http1: 'http1',
  h2c: 'http2',
  h2: 'http2',
  ws: 'websocket',
};

/** The `zproxy bench` arguments for a scenario. */
export function benchArgs(spec: ScenarioSpec, settings: LoadSettings, run: LoadRun): string[] {
  const http2 = spec.protocol === 'h2c' || spec.protocol === 'h2';
  const connections = run.connections ?? (http2 ? settings.h2Connections : settings.connections);
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
  const headers = scenarioHeaders(spec);
  if (run.host !== null) headers.push(['host', run.host]);
  for (const [name, value] of headers) args.push('-H', `${name}: ${value}`);
  return args;
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
