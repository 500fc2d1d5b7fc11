/**
 * The process logger: JSON lines (pino) on stdout through one asynchronous buffered destination, shared
 * by the process log and the access log so their lines never interleave.
 */
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });

export function createLogger(level: string, bindings: Record<string, unknown> = {}): Logger {
  return pino(
    { level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime },
    destination,
  );
}

/** Writes what is buffered (call before the process exits). */
export function flushLogs(): void {
  try {
    destination.flushSync();
  } catch {
    // Nothing more can be done about a log that cannot be written.
  }
}
