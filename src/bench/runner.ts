/**
 * Runs one thread's share of the bench: opens its connections, lets them send for the duration, sweeps
 * for timeouts, then stops and returns the thread's counts with its CPU use.
 */
import { performance } from 'node:perf_hooks';
import type { LoadConnection, RunContext } from './client.ts';
import { Http1Connection, Http1Target } from './http1-client.ts';
import { Http2Connection, Http2Target } from './http2-client.ts';
import type { ThreadPlan } from './options.ts';
import { type ThreadResult, ThreadStats } from './stats.ts';
import { WebSocketConnection, WebSocketTarget } from './websocket-client.ts';

/** CPU time of the calling thread (µs): process.threadCpuUsage where Node has it, else the process's. */
function threadCpuUs(): number {
  const usage = typeof process.threadCpuUsage === 'function' ? process.threadCpuUsage() : process.cpuUsage();
  return usage.user + usage.system;
}

function connectionsFor(ctx: RunContext): LoadConnection[] {
  const n = ctx.plan.connections;
  const out: LoadConnection[] = [];
  switch (ctx.plan.protocol) {
    case 'http1': {
      const target = new Http1Target(ctx);
      for (let i = 0; i < n; i++) out.push(new Http1Connection(ctx, target, i));
      break;
    }
    case 'http2': {
      const target = new Http2Target(ctx);
      for (let i = 0; i < n; i++) out.push(new Http2Connection(ctx, target, i));
      break;
    }
    case 'websocket': {
      const target = new WebSocketTarget(ctx);
      for (let i = 0; i < n; i++) out.push(new WebSocketConnection(ctx, target, i));
      break;
    }
  }
  return out;
}

/** Runs the plan in this thread; resolves when the duration is over and the connections are closed. */
export function runThread(plan: ThreadPlan): Promise<ThreadResult> {
  const stats = new ThreadStats(plan.rate !== null);
  const start = performance.now();
  const ctx: RunContext = { plan, stats, start, running: true };
  const connections = connectionsFor(ctx);
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = threadCpuUs();
  for (const connection of connections) connection.start();
  const sweepEvery = Math.max(10, Math.min(100, plan.timeoutMs / 4));
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const connection of connections) connection.sweep(now);
  }, sweepEvery);
  return new Promise((resolve) => {
    setTimeout(() => {
      const elapsedMs = performance.now() - start;
      const cpuUs = threadCpuUs() - cpu0;
      const elu = performance.eventLoopUtilization(elu0).utilization;
      ctx.running = false;
      stats.recording = false;
      clearInterval(sweeper);
      let inFlight = 0;
      for (const connection of connections) inFlight += connection.stop();
      stats.inFlightAtStop = inFlight;
      resolve(stats.result(elapsedMs, cpuUs, elu));
    }, plan.durationMs);
  });
}
