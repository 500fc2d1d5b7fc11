/**
 * A log file zproxy appends to (the access log's `access_log.file`), reopened on request (SIGUSR1: after
 * logrotate has renamed it, the next lines go to a new file at the same path).
 *
 * Lines are kept in memory and written in batches: when BATCH_BYTES have gathered, at least every
 * FLUSH_INTERVAL_MS, before a reopen and when the process ends. Each batch is one write(2) of whole
 * lines on a descriptor opened with O_APPEND, so that the workers of an instance (threads or processes,
 * each with its own descriptor) can append to one file without splitting or mixing their lines. A batch
 * is written synchronously: it goes to the page cache, and there is then nothing in flight when the file
 * is reopened or the process exits (no line lost, none written twice).
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/** A batch is written once it reaches this many characters (about as many bytes: log lines are mostly ASCII). */
const BATCH_BYTES = 16384;
/** How long a line may wait in memory at most. */
const FLUSH_INTERVAL_MS = 1000;

export class LogFile {
  readonly path: string;
  private fd: number;
  private lines: string[] = [];
  private size = 0;
  private readonly timer: NodeJS.Timeout;
  /** Told about a batch that could not be written (the lines are dropped: a log must not grow memory). */
  onWriteError: ((error: Error) => void) | null = null;

  /** Opens (or creates) `path` for appending; throws the open error (a start error). */
  constructor(path: string) {
    this.path = path;
    this.fd = openSync(path, 'a', 0o640);
    this.timer = setInterval(flushLogFile, FLUSH_INTERVAL_MS, this);
    this.timer.unref();
  }

  /** pino's destination contract: one whole line (with its newline) per call. */
  write(line: string): boolean {
    if (this.fd === -1) return true;
    this.lines.push(line);
    this.size += line.length;
    if (this.size >= BATCH_BYTES) this.flush();
    return true;
  }

  /** Writes what is gathered as one batch. */
  flush(): void {
    if (this.size === 0 || this.fd === -1) return;
    const data = Buffer.from(this.lines.length === 1 ? this.lines[0]! : this.lines.join(''), 'utf8');
    this.lines = [];
    this.size = 0;
    try {
      let at = 0;
      // A regular file takes the whole batch at once; a short write (a full disk) continues where it ended.
      while (at < data.length) at += writeSync(this.fd, data, at, data.length - at);
    } catch (error) {
      this.onWriteError?.(error as Error);
    }
  }

  /** pino's flushSync (at exit). */
  flushSync(): void {
    this.flush();
  }

  /**
   * Writes what is gathered to the file open now, then opens `path` anew and closes the old descriptor.
   * When `path` cannot be opened, the old file stays in use and the error is returned.
   */
  reopen(): Error | null {
    this.flush();
    let fd: number;
    try {
      fd = openSync(this.path, 'a', 0o640);
    } catch (error) {
      return error as Error;
    }
    const old = this.fd;
    this.fd = fd;
    if (old !== -1) closeSync(old);
    return null;
  }

  /** Writes what is gathered and closes the file; later lines are dropped. */
  close(): void {
    this.flush();
    clearInterval(this.timer);
    if (this.fd !== -1) closeSync(this.fd);
    this.fd = -1;
  }
}

function flushLogFile(file: LogFile): void {
  file.flush();
}
