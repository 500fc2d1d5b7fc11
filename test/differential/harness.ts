/**
 * Sends inputs through the proxies and collects what each one forwarded and answered. Each input goes,
 * on one fresh client connection per proxy, to the three proxies of one lane at the same time; a lane
 * handles one input at a time, so every upstream connection its recording upstreams accept meanwhile
 * belongs to that input (nothing is added to the input to tell them apart).
 *
 * The client writes the input and keeps its side open (zproxy and nginx treat a half-close as an abort),
 * then reads until one of:
 * - the proxy closes the connection;
 * - `settleMs` without a byte either way, once it has at least as many final responses as the input
 *   holds request-lines and as the upstream saw requests, and the upstream connections are closed;
 * - `idleMs` without a byte either way (the proxy waits for more input: "no answer" if it sent nothing);
 * - `hardMs` in all (recorded as a timeout).
 * Every socket has a timeout; nothing waits for ever.
 */
import net from 'node:net';
import type { FuzzInput } from './inputs.ts';
import { type Lane, type LaneTarget, PROXIES, type ProxyName } from './proxies.ts';
import type { RecordedConnection } from './recording-upstream.ts';
import { responseStatuses } from './wire.ts';

export interface Timing {
  readonly settleMs: number;
  readonly idleMs: number;
  readonly hardMs: number;
  /** How long the upstream connections of an input may stay open after the client is done. */
  readonly upstreamGraceMs: number;
  /** After a client gave up or an upstream connection was closed by force: how long late ones still count. */
  readonly lingerMs: number;
}

/** The CI run. */
export const FAST_TIMING: Timing = {
  settleMs: 30,
  idleMs: 250,
  hardMs: 3000,
  upstreamGraceMs: 500,
  lingerMs: 150,
};
/** Re-running a candidate finding, to rule out a timing artefact. */
export const CONFIRM_TIMING: Timing = {
  settleMs: 300,
  idleMs: 1200,
  hardMs: 6000,
  upstreamGraceMs: 1500,
  lingerMs: 500,
};

export type ClientEnd = 'closed' | 'settled' | 'idle' | 'timeout' | 'connect-error';

export interface ClientOutcome {
  /** Status codes received, interim ones included. */
  statuses: number[];
  /** Bytes received. */
  bytes: number;
  end: ClientEnd;
  /** From connect to the end of the wait. */
  elapsedMs: number;
}

export interface ProxyRun {
  client: ClientOutcome;
  upstream: RecordedConnection[];
}

export type InputRun = Record<ProxyName, ProxyRun>;

/** An upper bound of the requests an input may hold: its request-line-like "HTTP/" markers, at least 1. */
export function requestLineCount(bytes: string): number {
  let n = 0;
  for (let i = bytes.indexOf('HTTP/'); i !== -1; i = bytes.indexOf('HTTP/', i + 1)) n++;
  return Math.max(1, n);
}

function finals(statuses: readonly number[]): number {
  let n = 0;
  for (const s of statuses) if (s >= 200) n++;
  return n;
}

/** One input through one proxy. */
export function runOne(target: LaneTarget, input: FuzzInput, timing: Timing): Promise<ProxyRun> {
  const upstream = target.upstream;
  const expected = requestLineCount(input.bytes);
  upstream.beginWindow();
  return new Promise<ClientOutcome>((resolve) => {
    const start = Date.now();
    let last = start;
    const chunks: Buffer[] = [];
    let received = 0;
    let closed = false;
    let failed = false;
    let done = false;
    upstream.onActivity = () => {
      last = Date.now();
    };
    const socket = net.connect({ host: '127.0.0.1', port: target.port });
    socket.setTimeout(timing.hardMs);
    socket.on('connect', () => {
      last = Date.now();
      socket.write(Buffer.from(input.bytes, 'latin1'), () => {
        last = Date.now();
      });
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      received += c.length;
      last = Date.now();
    });
    socket.on('error', () => {
      if (received === 0 && !closed) failed = true;
    });
    socket.on('close', () => {
      closed = true;
    });
    socket.on('timeout', () => socket.destroy());
    const finish = (end: ClientEnd) => {
      done = true;
      clearInterval(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).latin1Slice(0, received);
      resolve({ statuses: responseStatuses(text), bytes: received, end, elapsedMs: Date.now() - start });
    };
    const check = () => {
      if (done) return;
      const now = Date.now();
      if (closed) return finish(failed ? 'connect-error' : 'closed');
      const quiet = now - last;
      if (quiet >= timing.settleMs && upstream.windowQuiet()) {
        const f = finals(responseStatuses(Buffer.concat(chunks).latin1Slice(0, received)));
        if (f >= expected && f >= upstream.windowRequests()) return finish('settled');
      }
      if (quiet >= timing.idleMs) return finish('idle');
      if (now - start >= timing.hardMs) return finish('timeout');
    };
    const timer = setInterval(check, 5);
  }).then(async (client) => {
    upstream.onActivity = () => {};
    // A proxy that was still reading when the client gave up may forward what it had afterwards
    // (HAProxy goes on with pipelined requests after the client closed): those belong to this input.
    const gaveUp = client.end === 'idle' || client.end === 'timeout';
    const connections = await upstream.endWindow(timing.upstreamGraceMs, gaveUp ? timing.lingerMs : 0);
    return { client, upstream: connections };
  });
}

/** One input through the three proxies of a lane, at the same time. */
export async function runInput(lane: Lane, input: FuzzInput, timing: Timing): Promise<InputRun> {
  const runs = await Promise.all(PROXIES.map((p) => runOne(lane[p], input, timing)));
  return { zproxy: runs[0]!, nginx: runs[1]!, haproxy: runs[2]! };
}

/**
 * Runs `inputs` over the lanes (each lane takes the next input when it is free); results in input order.
 * `stopAt` (a Date.now() value) ends the run early: inputs not started get no result.
 */
export async function runInputs(
  lanes: readonly Lane[],
  inputs: readonly FuzzInput[],
  timing: Timing,
  stopAt = Number.POSITIVE_INFINITY,
): Promise<(InputRun | undefined)[]> {
  const results: (InputRun | undefined)[] = new Array(inputs.length);
  let next = 0;
  await Promise.all(
    lanes.map(async (lane) => {
      for (;;) {
        const i = next++;
        if (i >= inputs.length || Date.now() >= stopAt) return;
        results[i] = await runInput(lane, inputs[i]!, timing);
      }
    }),
  );
  return results;
}
