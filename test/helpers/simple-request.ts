/**
 * Small HTTP/1.1 clients for fault and lifecycle tests, on node:http so that every connection is visible
 * and closed: `sendRequest()` opens one connection per request (`Connection: close`) unless an agent is
 * given; the whole body is collected; a connection that ends early rejects.
 */
import http from 'node:http';

export interface SimpleResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  readonly text: string;
}

export interface SimpleRequestOptions {
  readonly method?: string;
  readonly body?: string | Buffer;
  readonly headers?: Record<string, string>;
  /** Keep-alive agent to reuse connections; default: a new connection closed after the response. */
  readonly agent?: http.Agent;
  /** Rejects when the response has not completed by then (default 5000 ms). */
  readonly timeoutMs?: number;
}

export function sendRequest(
  port: number,
  path: string,
  options: SimpleRequestOptions = {},
): Promise<SimpleResponse> {
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = String(Buffer.byteLength(options.body));
    const req = http.request({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      headers,
      agent: options.agent ?? false,
    });
    const timer = setTimeout(
      () => req.destroy(new Error(`no complete response within ${timeoutMs} ms`)),
      timeoutMs,
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const body = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text: body.toString('utf8') });
      });
    });
    req.end(options.body);
  });
}

/** The `error.code` of a zproxy JSON error body (throws when the body is not one). */
export function errorCodeOf(res: SimpleResponse): string {
  const parsed = JSON.parse(res.text) as { error?: { code?: unknown } };
  const code = parsed.error?.code;
  if (typeof code !== 'string') throw new Error(`not a zproxy error body: ${res.text}`);
  return code;
}

/** Resolves when `check()` is true, polling every `intervalMs`; rejects after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what = 'condition',
  intervalMs = 10,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
