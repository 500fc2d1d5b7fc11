/**
 * The scenarios of `zproxy compare`: what each one asks of the proxies (the protocol the generator speaks,
 * the path, keep-alive, the WebSocket message, the filter chain) and how it is named in the report.
 */

/** How the generator reaches a proxy: HTTP/1.1, HTTP/2 with prior knowledge, HTTP/2 over TLS, WebSocket. */
export type LoadProtocol = 'http1' | 'h2c' | 'h2' | 'ws';

export const SCENARIO_NAMES = ['small', '64k', '1m', 'close', 'h2c', 'h2', 'ws', 'filters'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface ScenarioSpec {
  readonly name: ScenarioName;
  readonly protocol: LoadProtocol;
  /** The path under the measured route's prefix (the origin answers by this suffix). */
  readonly path: string;
  /** HTTP/1.1: false opens one connection per request. */
  readonly keepAlive: boolean;
  /** WebSocket: the size of each message (the echo sends it back); 0 for HTTP. */
  readonly messageBytes: number;
  /** The size of the response body the origin sends (WebSocket: of the echoed message). */
  readonly bodyBytes: number;
  /** The route with the filter chain (an API key check and CORS answer fields) instead of the plain one. */
  readonly filterChain: boolean;
  /** What the throughput counts: requests, or WebSocket round trips (a message and its echo). */
  readonly unit: 'req' | 'msg';
  readonly title: string;
}

/** The body of `…/small`: 13 bytes. */
export const SMALL_BODY = 'hello world!\n';
export const SIZE_64K = 64 * 1024;
export const SIZE_1M = 1024 * 1024;
/** The bytes of the origin's `/64k` and `/1m` (a-z repeated). */
export function originBody(size: number): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = 97 + (i % 26);
  return body;
}

/** The WebSocket scenario's message size. */
export const WS_MESSAGE_BYTES = 32;

/** The filter-chain scenario's request fields: the allowed CORS origin and the API key. */
export const FILTER_ORIGIN = 'https://app.example.com';
export const FILTER_API_KEY = 'compare-key-7-xxxxxxxxxxxxxxxxxxxxxxxx';

const http1 = (
  name: ScenarioName,
  path: string,
  bodyBytes: number,
  keepAlive: boolean,
  title: string,
): ScenarioSpec => ({
  name,
  protocol: 'http1',
  path,
  keepAlive,
  messageBytes: 0,
  bodyBytes,
  filterChain: false,
  unit: 'req',
  title,
});

export const SCENARIOS: Record<ScenarioName, ScenarioSpec> = {
  small: http1('small', '/small', SMALL_BODY.length, true, 'HTTP/1.1, 13-byte response, keep-alive'),
  '64k': http1('64k', '/64k', SIZE_64K, true, 'HTTP/1.1, 64 KiB response, keep-alive'),
  '1m': http1('1m', '/1m', SIZE_1M, true, 'HTTP/1.1, 1 MiB response, keep-alive'),
  close: http1(
    'close',
    '/small',
    SMALL_BODY.length,
    false,
    'HTTP/1.1, 13-byte response, one connection per request',
  ),
  h2c: {
    name: 'h2c',
    protocol: 'h2c',
    path: '/small',
    keepAlive: true,
    messageBytes: 0,
    bodyBytes: SMALL_BODY.length,
    filterChain: false,
    unit: 'req',
    title: 'HTTP/2 with prior knowledge (h2c), 13-byte response',
  },
  h2: {
    name: 'h2',
    protocol: 'h2',
    path: '/small',
    keepAlive: true,
    messageBytes: 0,
    bodyBytes: SMALL_BODY.length,
    filterChain: false,
    unit: 'req',
    title: 'HTTP/2 over TLS (ALPN h2), 13-byte response',
  },
  ws: {
    name: 'ws',
    protocol: 'ws',
    path: '/ws',
    keepAlive: true,
    messageBytes: WS_MESSAGE_BYTES,
    bodyBytes: WS_MESSAGE_BYTES,
    filterChain: false,
    unit: 'msg',
    title: 'WebSocket echo, 32-byte messages',
  },
  filters: {
    ...http1('filters', '/small', SMALL_BODY.length, true, ''),
    filterChain: true,
    title: 'HTTP/1.1 through a filter chain (API key check, CORS), 13-byte response',
  },
};

/** The scenarios without --all or --scenarios. */
export const DEFAULT_SCENARIOS: readonly ScenarioName[] = ['small'];

/** The request fields a scenario sends (the filter chain's Origin and API key). */
export function scenarioHeaders(spec: ScenarioSpec): [string, string][] {
  return spec.filterChain
    ? [
        ['origin', FILTER_ORIGIN],
        ['x-api-key', FILTER_API_KEY],
      ]
    : [];
}
