/**
 * One measured run of a pinned process (the bench groups' common step): the CPU the process tree used
 * over the run, and how much of the proxy CPU (and, when asked, of the load CPU) other processes took
 * meanwhile (a run is disturbed above DISTURBANCE_LIMIT on either).
 */
import {
  clockTicksPerSecond,
  cpuTicks,
  type PinnedProcess,
  processTree,
  readCpuTimes,
} from '../../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../../src/bench/compare/results.ts';

/** What runs on the load CPU on the bench's behalf besides the load tool (whose result has its CPU time). */
export interface LoadSide {
  readonly cpu: number;
  /** The origin's processes (their CPU time is the bench's own, not another process's). */
  readonly pids: readonly number[];
}

export interface PinnedRun<T> {
  readonly result: T;
  /** Seconds the run took. */
  readonly wall: number;
  /** CPU seconds the process and its children used. */
  readonly cpuSeconds: number;
  /** Their share of one core over the run (1: one core fully busy). */
  readonly busy: number;
  /** CPU seconds the load side's processes (the origin) used; 0 without a load side. */
  readonly loadSideCpuSeconds: number;
  /**
   * The share of one core other processes took on the proxy CPU and on the load CPU; null when it could
   * not be read (the load CPU: also without a load side or when the tool's CPU time is unknown).
   */
  readonly otherLoad: { readonly proxyCpu: number | null; readonly loadCpu: number | null };
  /** Another process took more than DISTURBANCE_LIMIT of either CPU during the run. */
  readonly disturbed: boolean;
}

/**
 * Runs `load` while measuring `proc` (pinned to `cpu`) and, with `loadSide`, what else ran on the load CPU
 * (the load tool's own CPU time is its result's `cpuTicks`); throws when the process exited meanwhile.
 */
export async function measurePinned<T extends { readonly cpuTicks: number | null }>(
  proc: PinnedProcess,
  cpu: number,
  load: () => Promise<T>,
  loadSide?: LoadSide,
): Promise<PinnedRun<T>> {
  const clockTicks = clockTicksPerSecond();
  const pids = processTree(proc.pid);
  const ticksBefore = cpuTicks(pids);
  const sideBefore = loadSide === undefined ? 0 : cpuTicks(loadSide.pids);
  const cpuBefore = readCpuTimes();
  const t0 = performance.now();
  const result = await load();
  const wall = (performance.now() - t0) / 1000;
  const cpuAfter = readCpuTimes();
  const ticks = cpuTicks(pids) - ticksBefore;
  const sideTicks = loadSide === undefined ? 0 : cpuTicks(loadSide.pids) - sideBefore;
  if (!proc.alive) throw new Error(`${proc.name} exited during the run:\n${proc.logTail()}`);
  /** The share of one core that others took on `c`, besides the `known` ticks of the bench's own. */
  const other = (c: number, known: number | null): number | null => {
    const a = cpuBefore.get(c);
    const b = cpuAfter.get(c);
    if (a === undefined || b === undefined || known === null) return null;
    return Math.max(0, b.busy - a.busy + (b.steal - a.steal) - known) / (clockTicks * wall);
  };
  const toolTicks = result.cpuTicks;
  const otherLoad = {
    proxyCpu: other(cpu, ticks),
    loadCpu: loadSide === undefined || toolTicks === null ? null : other(loadSide.cpu, sideTicks + toolTicks),
  };
  const cpuSeconds = ticks / clockTicks;
  return {
    result,
    wall,
    cpuSeconds,
    busy: cpuSeconds / wall,
    loadSideCpuSeconds: sideTicks / clockTicks,
    otherLoad,
    disturbed: (otherLoad.proxyCpu ?? 0) > DISTURBANCE_LIMIT || (otherLoad.loadCpu ?? 0) > DISTURBANCE_LIMIT,
  };
}
