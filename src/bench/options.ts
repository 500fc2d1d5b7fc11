/**
 * What `zproxy bench` is asked to do, and the parsing of its option values (durations, headers, the URL).
 * Pure functions: nothing here opens a file or a socket.
 */

export type BenchProtocol = 'http1' | 'http2' | 'websocket';

export const BENCH_PROTOCOLS: readonly BenchProtocol[] = ['http1', 'http2', 'websocket'];

/** The bench as the command line describes it (the body still as a file name when `--body-file`). */
export interface BenchOptions {
  readonly url: string;
  readonly protocol: BenchProtocol;
  /** Connections in all (HTTP/2: sessions; WebSocket: WebSocket connections). */
  readonly connections: number;
  /** Requests in flight per connection: HTTP/1.1 pipelining depth, HTTP/2 streams, WebSocket messages. */
  readonly concurrency: number;
  readonly durationMs: number;
  /** HTTP/1.1 only: false opens one connection per request (`Connection: close`). */
  readonly keepAlive: boolean;
  readonly method: string;
  /** Extra request fields, in order, as given with -H. */
  readonly headers: readonly (readonly [name: string, value: string])[];
  /** The request body (`--body`), or null. */
  readonly body: string | null;
  /** A file whose bytes are the request body (`--body-file`), or null. */
  readonly bodyFile: string | null;
  /** Worker threads, each running its share of the connections. */
  readonly threads: number;
  /** Requests (WebSocket: messages) per second for the whole run, or null for closed-loop. */
  readonly rate: number | null;
  /** WebSocket: the size of each message. */
  readonly messageBytes: number;
  /** A request without its response after this long counts as a timeout error. */
  readonly timeoutMs: number;
  /** Do not verify the target's TLS certificate. */
  readonly insecure: boolean;
  readonly json: boolean;
}

/** What one thread runs: the options with the body resolved, its share of connections and of the rate. */
export interface ThreadPlan {
  readonly url: string;
  readonly protocol: BenchProtocol;
  readonly connections: number;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly keepAlive: boolean;
  readonly method: string;
  readonly headers: readonly (readonly [string, string])[];
  readonly body: Uint8Array | null;
  /** This thread's share of the rate, or null for closed-loop. */
  readonly rate: number | null;
  readonly messageBytes: number;
  readonly timeoutMs: number;
  readonly insecure: boolean;
  /** Index of this thread's first connection among all connections (spreads the rate's phases). */
  readonly firstConnection: number;
  /** All connections of the run (for the rate's phases). */
  readonly totalConnections: number;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m)?$/;

/** `10s`, `500ms`, `1m`, `2.5` (seconds) -> milliseconds; null when it is not such a duration. */
export function parseDuration(text: string): number | null {
  const m = DURATION.exec(text.trim());
  if (m === null) return null;
  const value = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = unit === 'ms' ? value : unit === 's' ? value * 1000 : value * 60_000;
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : null;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `name: value` (or `name:value`) -> [name, value]; null when the name is not a token or the value has CR/LF. */
export function parseHeader(text: string): [string, string] | null {
  const colon = text.indexOf(':');
  if (colon <= 0) return null;
  const name = text.slice(0, colon).trim();
  const value = text.slice(colon + 1).trim();
  if (!TOKEN.test(name) || /[\r\n\0]/.test(value)) return null;
  return [name, value];
}

/** The protocol a URL implies: ws: and wss: -> websocket, http: and https: -> http1. */
export function protocolForUrl(url: URL): BenchProtocol | null {
  switch (url.protocol) {
    case 'http:':
    case 'https:':
      return 'http1';
    case 'ws:':
    case 'wss:':
      return 'websocket';
    default:
      return null;
  }
}

/** Whether the URL's scheme suits the protocol; the message when it does not. */
export function checkUrlForProtocol(url: URL, protocol: BenchProtocol): string | null {
  const web = url.protocol === 'http:' || url.protocol === 'https:';
  const ws = url.protocol === 'ws:' || url.protocol === 'wss:';
  if (protocol === 'websocket' ? !ws : !web) {
    const wanted = protocol === 'websocket' ? 'ws:// or wss://' : 'http:// or https://';
    return `--protocol ${protocol} needs a ${wanted} URL, got ${url.protocol}//`;
  }
  if (url.username !== '' || url.password !== '') return 'the URL must not carry user info';
  return null;
}

/** The connections of thread `index` of `threads`: an equal share, the first threads taking the rest. */
export function shareOf(total: number, threads: number, index: number): { first: number; count: number } {
  const base = Math.floor(total / threads);
  const extra = total % threads;
  const count = base + (index < extra ? 1 : 0);
  const first = index * base + Math.min(index, extra);
  return { first, count };
}

/** The plan of each thread: its share of the connections, and of the rate in proportion to them. */
export function planThreads(options: BenchOptions, body: Uint8Array | null): ThreadPlan[] {
  const plans: ThreadPlan[] = [];
  for (let i = 0; i < options.threads; i++) {
    const { first, count } = shareOf(options.connections, options.threads, i);
    if (count === 0) continue;
    plans.push({
      url: options.url,
      protocol: options.protocol,
      connections: count,
      concurrency: options.concurrency,
      durationMs: options.durationMs,
      keepAlive: options.keepAlive,
      method: options.method,
      headers: options.headers,
      body,
      rate: options.rate === null ? null : (options.rate * count) / options.connections,
      messageBytes: options.messageBytes,
      timeoutMs: options.timeoutMs,
      insecure: options.insecure,
      firstConnection: first,
      totalConnections: options.connections,
    });
  }
  return plans;
}
