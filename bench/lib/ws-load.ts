// The WebSocket side of the bench: the echo server (the upstream of the `ws` scenarios), the load generator
// run (bench/lib/ws-load-client.ts, pinned to the load CPU like wrk and h2load), and the check that a target
// really echoes before it is measured.
import { join, resolve } from 'node:path';
import WebSocket from 'ws';
import { type LoadResult, runPinnedTool } from './load-tool.ts';
import { PinnedProcess } from './proc.ts';
import type { WsLoadErrors, WsLoadReport } from './ws-load-client.ts';
import { nodeBinary } from './zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..', '..');
const CLIENT = join(import.meta.dirname, 'ws-load-client.ts');
const ECHO_SERVER = join(import.meta.dirname, 'ws-echo-server.ts');

/** The path the load generator and the checks use (the echo server accepts any path). */
export const WS_PATH = '/ws';

/** Starts the echo server pinned to `cpu` and waits until it listens on `port`. */
export async function startEchoServer(dir: string, port: number, cpu: number): Promise<PinnedProcess> {
  const process = new PinnedProcess(
    'ws echo server (origin)',
    cpu,
    nodeBinary(ROOT),
    [ECHO_SERVER, String(port)],
    join(dir, 'ws-echo-server.log'),
  );
  try {
    await process.waitForPort(port, 10_000);
  } catch (error) {
    await process.stop();
    throw new Error(`${(error as Error).message}\n--- echo server output ---\n${process.logTail()}`);
  }
  return process;
}

export interface WsLoadOptions {
  readonly port: number;
  readonly path: string;
  readonly connections: number;
  /** The size of each message. */
  readonly messageBytes: number;
  /** Binary frames instead of text. */
  readonly binary: boolean;
  readonly durationS: number;
  /** The CPU the load generator is pinned to. */
  readonly cpu: number;
  readonly signal?: AbortSignal;
}

export interface WsLoadResult extends LoadResult {
  readonly errors: WsLoadErrors;
  /** The client's own report (also in `raw`). */
  readonly report: WsLoadReport;
}

/** Maps the client's report onto the bench's LoadResult: a request is one round trip (message + echo). */
export function parseWsLoadOutput(raw: string): WsLoadResult {
  const line = raw.trim().split('\n').pop() ?? '';
  let report: WsLoadReport;
  try {
    report = JSON.parse(line) as WsLoadReport;
  } catch {
    throw new Error(`ws-load-client printed no report:\n${raw}`);
  }
  const { errors } = report;
  return {
    requests: report.messages,
    seconds: report.seconds,
    requestsPerSecond: report.messagesPerSecond,
    latencyUs: {
      p50: report.latencyUs.p50,
      p75: report.latencyUs.p75,
      p90: report.latencyUs.p90,
      p99: report.latencyUs.p99,
    },
    errors,
    errorCount: errors.connect + errors.closed + errors.mismatch + errors.timeout,
    cpuTicks: null,
    negotiatedProtocol: null,
    tls: null,
    raw,
    report,
  };
}

/** One load run: `taskset -c <cpu> node bench/lib/ws-load-client.ts --port P ...`. */
export async function runWsLoad(options: WsLoadOptions): Promise<WsLoadResult> {
  const args = [
    CLIENT,
    '--port',
    String(options.port),
    '--path',
    options.path,
    '--connections',
    String(options.connections),
    '--duration',
    String(options.durationS),
    '--bytes',
    String(options.messageBytes),
    ...(options.binary ? ['--binary'] : []),
  ];
  const run = await runPinnedTool(nodeBinary(ROOT), args, options.cpu, options.durationS, options.signal);
  return { ...parseWsLoadOutput(run.stdout), cpuTicks: run.cpuTicks };
}

/**
 * Checks with the `ws` client (an implementation independent of the load generator) that `port` carries a
 * WebSocket to the echo server: a text message and a 1 MiB binary message come back unchanged, and the
 * close code and reason the client sends come back in the echo server's close frame. Throws with what went
 * wrong.
 */
export function checkWebSocketEcho(port: number, path: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const url = `ws://127.0.0.1:${port}${path}`;
    const socket = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 5000 });
    const text = 'zproxy bench: WebSocket check';
    const binary = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < binary.length; i++) binary[i] = (i * 131) & 0xff;
    let step = 0;
    const fail = (message: string): void => {
      clearTimeout(timer);
      socket.terminate();
      reject(new Error(`WebSocket ${url}: ${message}`));
    };
    const timer = setTimeout(() => fail(`no answer within 5 s (step ${step})`), 5000);
    socket.once('unexpected-response', (_request, response) => {
      fail(`the upgrade was answered ${response.statusCode} ${response.statusMessage ?? ''}`.trim());
    });
    socket.once('error', (error: Error) => fail(error.message));
    socket.once('open', () => socket.send(text));
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (step === 0) {
        if (isBinary || data.toString('utf8') !== text) return fail('the text message came back changed');
        step = 1;
        socket.send(binary);
      } else if (step === 1) {
        if (!isBinary || !data.equals(binary)) return fail('the 1 MiB binary message came back changed');
        step = 2;
        socket.close(4000, 'bench check');
      } else {
        fail('a message nobody sent');
      }
    });
    socket.once('close', (code: number, reason: Buffer) => {
      if (step !== 2) return fail(`closed early (code ${code})`);
      clearTimeout(timer);
      if (code !== 4000 || reason.toString() !== 'bench check') {
        reject(
          new Error(
            `WebSocket ${url}: close code ${code} ${JSON.stringify(reason.toString())}, expected 4000 "bench check"`,
          ),
        );
      } else resolvePromise();
    });
  });
}
