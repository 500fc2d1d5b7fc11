/**
 * What one thread of the generator counts: completed requests and their latencies, bytes, statuses and
 * errors by kind. Recording stops at the end of the run, so that what arrives while the connections are
 * being closed is not counted.
 */
import type { Histogram } from 'hdr-histogram-js';
import { encodeHistogram, newLatencyHistogram } from './histogram.ts';

/**
 * The kinds of error the report counts:
 * - `connect_refused`: the target refused the connection (nothing listens there);
 * - `connect_timeout`: no connection within the timeout;
 * - `connect`: any other failure to connect (unreachable, name not found, ...);
 * - `tls`: the TLS handshake failed (an unverifiable certificate without `--insecure`, ...);
 * - `reset`: the connection was reset (TCP RST), or an HTTP/2 stream was reset by the target;
 * - `closed`: the target closed the connection with a request still unanswered;
 * - `timeout`: a request had no complete response within the timeout;
 * - `protocol`: the response broke the protocol (malformed head or framing, unexpected 101, a refused
 *   WebSocket handshake, an HTTP/2 protocol error);
 * - `other`: anything else.
 */
export type ErrorKind =
  | 'connect_refused'
  | 'connect_timeout'
  | 'connect'
  | 'tls'
  | 'reset'
  | 'closed'
  | 'timeout'
  | 'protocol'
  | 'other';

export const ERROR_KINDS: readonly ErrorKind[] = [
  'connect_refused',
  'connect_timeout',
  'connect',
  'tls',
  'reset',
  'closed',
  'timeout',
  'protocol',
  'other',
];

export type ErrorCounts = Record<ErrorKind, number>;

export function noErrors(): ErrorCounts {
  return {
    connect_refused: 0,
    connect_timeout: 0,
    connect: 0,
    tls: 0,
    reset: 0,
    closed: 0,
    timeout: 0,
    protocol: 0,
    other: 0,
  };
}

const TLS_CODES =
  /^(ERR_SSL_|ERR_TLS_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_|CERT_|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** The kind of a socket or session error; `connected` tells whether the connection was established. */
export function classifyError(error: unknown, connected: boolean): ErrorKind {
  const code = String((error as NodeJS.ErrnoException | null)?.code ?? '');
  if (code === 'ECONNREFUSED') return 'connect_refused';
  if (TLS_CODES.test(code)) return 'tls';
  if (!connected) {
    if (code === 'ETIMEDOUT') return 'connect_timeout';
    if (code === 'ECONNRESET' || code === 'EPIPE') return 'connect';
    return 'connect';
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED') return 'reset';
  if (code === 'ETIMEDOUT') return 'timeout';
  if (code.startsWith('ERR_HTTP2_') || code.startsWith('HPE_')) return 'protocol';
  return 'other';
}

/** One thread's counts, as the thread sends them to the main thread. */
export interface ThreadResult {
  readonly requests: number;
  readonly bytesReceived: number;
  readonly bytesSent: number;
  /** Responses by status code (`"200": 1234`). */
  readonly statuses: Record<string, number>;
  readonly errors: ErrorCounts;
  /** The latency histogram (corrected for coordinated omission in constant-rate mode), encoded. */
  readonly latency: string;
  /** Constant-rate mode: latencies from the actual send, encoded; null in closed-loop mode. */
  readonly uncorrected: string | null;
  /** Connections established during the run. */
  readonly connectionsOpened: number;
  /** Requests sent and not answered when the run stopped. */
  readonly inFlightAtStop: number;
  readonly elapsedMs: number;
  /** CPU time of this thread during the run (µs), or of the whole process where threads cannot be told apart. */
  readonly cpuUs: number;
  /** Share of the run the thread's event loop was busy (0..1). */
  readonly eventLoopUtilization: number;
}

/** The counters one thread's clients write into. */
export class ThreadStats {
  requests = 0;
  bytesReceived = 0;
  bytesSent = 0;
  connectionsOpened = 0;
  inFlightAtStop = 0;
  /** False once the run is over: late completions and errors are not counted. */
  recording = true;
  readonly statuses = new Uint32Array(1000);
  readonly errors: ErrorCounts = noErrors();
  readonly latency: Histogram = newLatencyHistogram();
  readonly uncorrected: Histogram | null;

  constructor(constantRate: boolean) {
    this.uncorrected = constantRate ? newLatencyHistogram() : null;
  }

  /**
   * A complete response (or echoed message) at `now`, to a request meant to go at `intended` and sent at
   * `sent` (milliseconds on the same clock; closed-loop: intended = sent).
   */
  complete(status: number, intended: number, sent: number, now: number): void {
    if (!this.recording) return;
    this.requests++;
    if (status > 0 && status < 1000) this.statuses[status]!++;
    this.latency.recordValue(Math.max(1, Math.round((now - intended) * 1000)));
    if (this.uncorrected !== null) {
      this.uncorrected.recordValue(Math.max(1, Math.round((now - sent) * 1000)));
    }
  }

  error(kind: ErrorKind, count = 1): void {
    if (this.recording) this.errors[kind] += count;
  }

  result(elapsedMs: number, cpuUs: number, eventLoopUtilization: number): ThreadResult {
    const statuses: Record<string, number> = {};
    for (let code = 0; code < this.statuses.length; code++) {
      if (this.statuses[code]! > 0) statuses[String(code)] = this.statuses[code]!;
    }
    return {
      requests: this.requests,
      bytesReceived: this.bytesReceived,
      bytesSent: this.bytesSent,
      statuses,
      errors: { ...this.errors },
      latency: encodeHistogram(this.latency),
      uncorrected: this.uncorrected === null ? null : encodeHistogram(this.uncorrected),
      connectionsOpened: this.connectionsOpened,
      inFlightAtStop: this.inFlightAtStop,
      elapsedMs,
      cpuUs,
      eventLoopUtilization,
    };
  }
}
