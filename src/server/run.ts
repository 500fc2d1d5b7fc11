import type { Config } from '../config/schema.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface RunOptions {
  /** pino level for the process logger. */
  readonly logLevel: LogLevel;
  /** The file the config came from (null for the built-in demo). */
  readonly configPath: string | null;
  /** Start the demo origin next to the proxy (the demo configuration routes to it). */
  readonly demo: boolean;
}

/** Starts zproxy for a validated config; resolves once every listener is bound. */
export async function run(config: Config, options: RunOptions): Promise<void> {
  void config;
  void options;
  throw new Error('server wiring lands with the HTTP/1.1 engine commit');
}
