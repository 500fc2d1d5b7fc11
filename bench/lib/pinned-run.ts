/**
 * One measured run of a pinned process (the bench groups' common step): the CPU the process tree used
 * over the run, and how much of the proxy CPU other processes took meanwhile (a run is disturbed above
 * DISTURBANCE_LIMIT).
 */
import {
  clockTicksPerSecond,
  cpuTicks,
  type PinnedProcess,
  processTree,
  readCpuTimes,
} from '../../src/bench/compare/proc.ts';
import { DISTURBANCE_LIMIT } from '../../src/bench/compare/results.ts';

export interface PinnedRun<T> {
  readonly result: T;
  /** Seconds the run took. */
  readonly wall: number;
  /** CPU seconds the process and its children used. */
  readonly cpuSeconds: number;
  /** Their share of one core over the run (1: one core fully busy). */
  readonly busy: number;
  /** Another process took more than DISTURBANCE_LIMIT of `cpu` during the run. */
  readonly disturbed: boolean;
}

/** Runs `load` while measuring `proc` (pinned to `cpu`); throws when the process exited meanwhile. */
export async function measurePinned<T>(
  proc: PinnedProcess,
  cpu: number,
  load: () => Promise<T>,
): Promise<PinnedRun<T>> {
  const clockTicks = clockTicksPerSecond();
  const pids = processTree(proc.pid);
  const ticksBefore = cpuTicks(pids);
  const cpuBefore = readCpuTimes().get(cpu);
  const t0 = performance.now();
  const result = await load();
  const wall = (performance.now() - t0) / 1000;
  const cpuAfter = readCpuTimes().get(cpu);
  const ticks = cpuTicks(pids) - ticksBefore;
  if (!proc.alive) throw new Error(`${proc.name} exited during the run:\n${proc.logTail()}`);
  const other =
    cpuBefore === undefined || cpuAfter === undefined
      ? 0
      : Math.max(0, cpuAfter.busy - cpuBefore.busy + (cpuAfter.steal - cpuBefore.steal) - ticks) /
        (clockTicks * wall);
  const cpuSeconds = ticks / clockTicks;
  return { result, wall, cpuSeconds, busy: cpuSeconds / wall, disturbed: other > DISTURBANCE_LIMIT };
}
