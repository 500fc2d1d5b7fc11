/** Command line -> a command description. Parsing only: nothing here reads files or starts anything. */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { type CompareOptions, parseCompareArgs } from '../bench/compare/options.ts';
import {
  BENCH_PROTOCOLS,
  type BenchOptions,
  type BenchProtocol,
  checkUrlForProtocol,
  parseDuration,
  parseHeader,
  protocolForUrl,
} from '../bench/options.ts';
import type { LogLevel } from '../server/run.ts';
import { type ExplainRequest, splitUrl } from './explain-request.ts';

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type Command =
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | {
      readonly kind: 'run';
      readonly config: string | null;
      readonly logLevel: LogLevel;
      /** Reload when the config file changes. */
      readonly watch: boolean;
    }
  | { readonly kind: 'check'; readonly config: string; readonly json: boolean }
  | { readonly kind: 'reload'; readonly config: string | null; readonly json: boolean }
  | { readonly kind: 'health'; readonly config: string | null }
  | { readonly kind: 'bench'; readonly options: BenchOptions }
  | { readonly kind: 'compare'; readonly options: CompareOptions }
  /** `compare --help`: compare's own, longer help. */
  | { readonly kind: 'compare-help' }
  | {
      readonly kind: 'explain';
      readonly config: string;
      readonly request: ExplainRequest;
      readonly json: boolean;
    }
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
      case 'reload':
        return parseReload(rest);
      case 'health':
        return parseHealth(rest);
      case 'bench':
        return parseBench(rest);
      case 'compare': {
        const line = parseCompareArgs(rest);
        if (line.kind === 'help') return { kind: 'compare-help' };
        return line.kind === 'usage-error' ? usageError(`compare: ${line.message}`) : line;
      }
      case 'explain':
        return parseExplain(rest);
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
      watch: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { kind: 'help' };
  if (positionals.length > 1) return usageError(`run takes one CONFIG, got ${positionals.length}`);
  const level = values['log-level'];
  if (!isLogLevel(level))
    return usageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
  return { kind: 'run', config: positionals[0] ?? null, logLevel: level, watch: values.watch };
}

/**
 * The command line of a command that takes at most one CONFIG (`required`: exactly one) and `--json`;
 * a usage error or help as a Command instead.
 */
function configCommandLine(
  name: string,
  args: string[],
  required: boolean,
): { config: string | null; json: boolean } | Command {
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
  if (required && positionals.length === 0) return usageError(`${name} needs a CONFIG file`);
  if (positionals.length > 1) return usageError(`${name} takes one CONFIG, got ${positionals.length}`);
  return { config: positionals[0] ?? null, json: values.json };
}

function parseCheck(args: string[]): Command {
  const line = configCommandLine('check', args, true);
  return 'kind' in line ? line : { kind: 'check', config: line.config!, json: line.json };
}

function parseReload(args: string[]): Command {
  const line = configCommandLine('reload', args, false);
  return 'kind' in line ? line : { kind: 'reload', config: line.config, json: line.json };
}

function parseHealth(args: string[]): Command {
  const line = configCommandLine('health', args, false);
  if ('kind' in line) return line;
  if (line.json) return usageError('health has no --json');
  return { kind: 'health', config: line.config };
}

/** A whole number ≥ min from an option's text, or null. */
function wholeNumber(text: string, min: number): number | null {
  if (!/^\d+$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) && n >= min ? n : null;
}

const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function parseBench(args: string[]): Command {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      connections: { type: 'string', short: 'c', default: '10' },
      duration: { type: 'string', short: 'd', default: '10s' },
      concurrency: { type: 'string' },
      'no-keepalive': { type: 'boolean', default: false },
      protocol: { type: 'string' },
      method: { type: 'string' },
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      body: { type: 'string' },
      'body-file': { type: 'string' },
      threads: { type: 'string', short: 't', default: '1' },
      rate: { type: 'string' },
      'message-bytes': { type: 'string', default: '64' },
      timeout: { type: 'string', default: '10s' },
      insecure: { type: 'boolean', short: 'k', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { kind: 'help' };
  if (positionals.length === 0) return usageError('bench needs a URL');
  if (positionals.length > 1) return usageError(`bench takes one URL, got ${positionals.length}`);
  let url: URL;
  try {
    url = new URL(positionals[0]!);
  } catch {
    return usageError(`bench: not a URL: ${positionals[0]}`);
  }
  const implied = protocolForUrl(url);
  if (implied === null)
    return usageError(`bench: the URL must be http://, https://, ws:// or wss://, got ${url.protocol}//`);
  let protocol: BenchProtocol = implied;
  if (values.protocol !== undefined) {
    if (!(BENCH_PROTOCOLS as readonly string[]).includes(values.protocol)) {
      return usageError(`--protocol must be one of ${BENCH_PROTOCOLS.join(', ')}, got ${values.protocol}`);
    }
    protocol = values.protocol as BenchProtocol;
  }
  const urlProblem = checkUrlForProtocol(url, protocol);
  if (urlProblem !== null) return usageError(`bench: ${urlProblem}`);

  const connections = wholeNumber(values.connections, 1);
  if (connections === null)
    return usageError(`--connections must be a whole number ≥ 1, got ${values.connections}`);
  const durationMs = parseDuration(values.duration);
  if (durationMs === null)
    return usageError(`--duration must be a duration such as 10s, 500ms or 1m, got ${values.duration}`);
  const timeoutMs = parseDuration(values.timeout);
  if (timeoutMs === null)
    return usageError(`--timeout must be a duration such as 10s or 500ms, got ${values.timeout}`);
  const defaultConcurrency = protocol === 'http2' ? '10' : '1';
  const concurrency = wholeNumber(values.concurrency ?? defaultConcurrency, 1);
  if (concurrency === null || concurrency > 1024) {
    return usageError(`--concurrency must be a whole number from 1 to 1024, got ${values.concurrency}`);
  }
  const keepAlive = !values['no-keepalive'];
  if (!keepAlive && protocol !== 'http1') return usageError('--no-keepalive is for --protocol http1 only');
  if (!keepAlive && concurrency > 1)
    return usageError('--no-keepalive sends one request per connection: --concurrency must be 1');
  const threads = wholeNumber(values.threads, 1);
  if (threads === null || threads > 256)
    return usageError(`--threads must be a whole number from 1 to 256, got ${values.threads}`);
  if (threads > connections)
    return usageError(`--threads (${threads}) must not exceed --connections (${connections})`);
  let rate: number | null = null;
  if (values.rate !== undefined) {
    rate = Number(values.rate);
    if (!/^\d+(\.\d+)?$/.test(values.rate) || !(rate > 0))
      return usageError(`--rate must be a number of requests per second > 0, got ${values.rate}`);
  }
  const messageBytes = wholeNumber(values['message-bytes'], 0);
  if (messageBytes === null || messageBytes > 256 * 1024 * 1024) {
    return usageError(
      `--message-bytes must be a whole number from 0 to 268435456, got ${values['message-bytes']}`,
    );
  }
  if (values.body !== undefined && values['body-file'] !== undefined)
    return usageError('--body and --body-file exclude each other');
  const headers: [string, string][] = [];
  for (const text of values.header) {
    const header = parseHeader(text);
    if (header === null) return usageError(`-H must be "name: value", got ${JSON.stringify(text)}`);
    headers.push(header);
  }
  const hasBody = values.body !== undefined || values['body-file'] !== undefined;
  const method =
    values.method === undefined
      ? hasBody && protocol !== 'websocket'
        ? 'POST'
        : 'GET'
      : values.method.toUpperCase();
  if (!METHOD.test(method))
    return usageError(`--method must be a method name such as GET, got ${values.method}`);
  return {
    kind: 'bench',
    options: {
      url: url.href,
      protocol,
      connections,
      concurrency,
      durationMs,
      keepAlive,
      method,
      headers,
      body: values.body ?? null,
      bodyFile: values['body-file'] ?? null,
      threads,
      rate,
      messageBytes,
      timeoutMs,
      insecure: values.insecure,
      json: values.json,
    },
  };
}

function parseExplain(args: string[]): Command {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      header: { type: 'string', short: 'H', multiple: true, default: [] },
      client: { type: 'string', default: '127.0.0.1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return { kind: 'help' };
  if (positionals.length !== 3) {
    return usageError(`explain takes CONFIG METHOD URL, got ${positionals.length} argument(s)`);
  }
  const [config, method, url] = positionals as [string, string, string];
  if (!METHOD.test(method))
    return usageError(`explain: METHOD must be a method name such as GET, got ${method}`);
  if (splitUrl(url) === null) {
    return usageError(
      `explain: URL must be http://, https://, ws:// or wss:// with a host and no user info, got ${url}`,
    );
  }
  if (isIP(values.client) === 0) return usageError(`--client must be an IP address, got ${values.client}`);
  const fields: [string, string][] = [];
  for (const text of values.header) {
    const field = parseHeader(text);
    if (field === null) return usageError(`-H must be "name: value", got ${JSON.stringify(text)}`);
    fields.push(field);
  }
  return {
    kind: 'explain',
    config,
    json: values.json,
    request: { method, url, fields, clientAddress: values.client },
  };
}
