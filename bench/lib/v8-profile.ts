// The shapes of V8's profiles as the inspector and `node --cpu-prof` write them (a CPU profile, a sampling
// heap profile), for bench/cpuprofile-top.ts and bench/profile.ts.

export interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
  readonly columnNumber: number;
}

export interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  /** The ids of the nodes this one calls. */
  readonly children?: readonly number[];
}

export interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface SamplingHeapNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly selfSize: number;
  readonly children: readonly SamplingHeapNode[];
}

export interface SamplingHeapSample {
  readonly size: number;
  readonly nodeId: number;
}
