/**
 * The process logger: JSON lines (pino) on stdout through one asynchronous buffered destination, shared
 * by the process log and the access log so their lines never interleave. With `access_log.file` the
 * access log goes to that file instead (src/observe/log-file.ts) and the process log stays on stdout.
 */
import pino, { type DestinationStream, type Logger } from 'pino';
import { LogFile } from './log-file.ts';

export type { Logger } from 'pino';

const destination = pino.destination({ dest: 1, sync: false, minLength: 4096 });

/** The log files open in this process or thread (written out by flushLogs). */
const files = new Set<LogFile>();

export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  dest: DestinationStream = destination,
): Logger {
  return pino(
    { level, base: { pid: process.pid, ...bindings }, timestamp: pino.stdTimeFunctions.isoTime },
    dest,
  );
}

/**
 * Opens `path` for appending as a log file and gives a logger writing to it with the same fields as
 * `like` (pid, worker). Throws when the file cannot be opened.
 */
export function openFileLogger(path: string, like: Logger): { logger: Logger; file: LogFile } {
  const file = new LogFile(path);
  files.add(file);
  const { pid: _pid, ...bindings } = like.bindings();
  return { logger: createLogger('info', bindings, file), file };
}

/** Writes out and closes a file opened by openFileLogger. */
export function closeLogFile(file: LogFile): void {
  files.delete(file);
  file.close();
}

/** Writes what is buffered (call before the process exits). */
export function flushLogs(): void {
  try {
    destination.flushSync();
  } catch {
    // Nothing more can be done about a log that cannot be written.
  }
  for (const file of files) file.flush();
}
