/** Command line -> a command description. Parsing only: nothing here reads files or starts anything. */
import { parseArgs } from 'node:util';
import type { LogLevel } from '../server/run.ts';

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type Command =
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'run'; readonly config: string | null; readonly logLevel: LogLevel }
  | { readonly kind: 'check'; readonly config: string; readonly json: boolean }
  /** The command line is wrong: print the message and the usage, exit 2. */
  | { readonly kind: 'usage-error'; readonly message: string };

function usageError(message: string): Command {
  return { kind: 'usage-error', message };
}

function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}

/** Parses `argv` without the node and script paths (`process.argv.slice(2)`). */
export function parseCommandLine(argv: readonly string[]): Command {
  const [first, ...rest] = argv;
  if (first === undefined) return usageError('missing command');
  if (first === '-h' || first === '--help' || first === 'help') {
    return rest.length === 0 || first === 'help' ? { kind: 'help' } : usageError(`unexpected ${rest[0]}`);
  }
  if (first === '-v' || first === '--version') {
    return rest.length === 0 ? { kind: 'version' } : usageError(`unexpected ${rest[0]}`);
  }
  if (first.startsWith('-')) return usageError(`unknown option ${first}`);

  try {
    switch (first) {
      case 'run':
        return parseRun(rest);
      case 'check':
        return parseCheck(rest);
      default:
        return usageError(`unknown command ${first}`);
    }
  } catch (error) {
    // parseArgs throws a TypeError with an ERR_PARSE_ARGS_* code for unknown or malformed options.
    if (error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS')) {
      return usageError(error.message);
    }
    throw error;
  }
}

function parseRun(args: string[]): Command {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      'log-level': { type: 'string', default: 'info' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { kind: 'help' };
  if (positionals.length > 1) return usageError(`run takes one CONFIG, got ${positionals.length}`);
  const level = values['log-level'];
  if (!isLogLevel(level))
    return usageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
  return { kind: 'run', config: positionals[0] ?? null, logLevel: level };
}

function parseCheck(args: string[]): Command {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { kind: 'help' };
  if (positionals.length === 0) return usageError('check needs a CONFIG file');
  if (positionals.length > 1) return usageError(`check takes one CONFIG, got ${positionals.length}`);
  return { kind: 'check', config: positionals[0]!, json: values.json };
}
