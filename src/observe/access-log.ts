/**
 * The access log: one JSON line per exchange, written in the log phase through the shared asynchronous
 * destination. Built only when enabled, so a disabled access log costs nothing per request.
 */
import type { Logger } from 'pino';
import type { Exchange, TunnelRecord } from '../exchange.ts';
import { spanIdOf, traceIdOf } from '../http/trace-context.ts';

export interface AccessLogRecord {
  readonly kind: 'access';
  readonly id: number;
  readonly client: string;
  readonly method: string;
  readonly target: string;
  readonly host: string;
  readonly version: string;
  readonly status: number;
  readonly bytes_in: number;
  readonly bytes_out: number;
  readonly duration_ms: number;
  readonly route: string | null;
  readonly upstream: string | null;
  /** Attempts at an upstream (retries included); 0 when none was made. */
  readonly attempts: number;
  /** The targets tried, in order, when there was more than one attempt. */
  readonly upstreams?: readonly string[];
  readonly error: string | null;
  /** The request id, when the `headers` filter gives or passes one. */
  readonly request_id?: string;
  /** The W3C trace id the upstream was given (`tracing.traceparent`): the client's, or a new one. */
  readonly trace_id?: string;
  /** zproxy's span in that trace: the parent id the upstream was given. */
  readonly span_id?: string;
  /** Only for an exchange that became a WebSocket tunnel. */
  readonly tunnel?: TunnelRecord;
}

export class AccessLog {
  private readonly logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger;
  }

  write(ex: Exchange): void {
    const record: AccessLogRecord = {
      kind: 'access',
      id: ex.id,
      client: ex.clientAddress,
      method: ex.method,
      target: ex.logTarget ?? ex.target,
      host: ex.host,
      version: ex.httpVersion,
      status: ex.status,
      bytes_in: ex.bytesIn,
      bytes_out: ex.bytesOut,
      duration_ms: Math.round((ex.endTime - ex.startTime) * 1000) / 1000,
      route: ex.route === null ? null : ex.route.pattern,
      upstream: ex.upstream === '' ? null : ex.upstream,
      attempts: ex.attempts,
      upstreams: ex.tried ?? undefined,
      error: ex.errorCode,
      request_id: ex.requestId ?? undefined,
      trace_id: ex.traceparent === null ? undefined : traceIdOf(ex.traceparent),
      span_id: ex.traceparent === null ? undefined : spanIdOf(ex.traceparent),
      // Undefined (left out of the line) for every exchange but a tunnel's.
      tunnel: ex.tunnel ?? undefined,
    };
    this.logger.info(record, 'access');
  }
}
