// One bounded load run of the bench groups, whichever tool sends it: wrk for HTTP/1.1 (keep-alive, or a
// connection per request), h2load for HTTP/2 (h2c with prior knowledge, or TLS with ALPN h2).
import { runH2load } from './h2load.ts';
import { runWrk } from './wrk.ts';

export type LoadSpec =
  | {
      readonly tool: 'wrk';
      readonly url: string;
      readonly connections: number;
      /** `Connection: close` on every request: a new connection each. */
      readonly close: boolean;
    }
  | {
      readonly tool: 'h2load';
      readonly url: string;
      readonly clients: number;
      readonly streams: number;
      /** h2load's per-request log (for the percentiles); removed after it is read. null: no percentiles. */
      readonly logFile: string | null;
    };

/** What the reports keep of a run. */
export interface LoadFigures {
  readonly requests: number;
  readonly rps: number;
  /** 0 when the run measured no latencies (h2load without a log file). */
  readonly p99Us: number;
  readonly errors: number;
  /** The tool's own CPU time in clock ticks, null when it could not be read. */
  readonly cpuTicks: number | null;
}

/** Sends `spec`'s load for `seconds` from the tool pinned to `cpu`. */
export async function runLoad(spec: LoadSpec, seconds: number, cpu: number): Promise<LoadFigures> {
  const r =
    spec.tool === 'wrk'
      ? await runWrk({
          url: spec.url,
          connections: spec.connections,
          durationS: seconds,
          cpu,
          closeConnections: spec.close,
        })
      : await runH2load({
          url: spec.url,
          clients: spec.clients,
          streams: spec.streams,
          durationS: seconds,
          cpu,
          logFile: spec.logFile,
        });
  return {
    requests: r.requests,
    rps: r.requestsPerSecond,
    p99Us: r.latencyUs.p99,
    errors: r.errorCount,
    cpuTicks: r.cpuTicks,
  };
}
