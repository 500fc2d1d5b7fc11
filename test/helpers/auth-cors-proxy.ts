/**
 * A small HTTP/1.1 proxy on node:http that runs filters by the contract of src/filters/contract.ts in
 * front of a real upstream (onRequest answers or continues, awaiting only promises; upstream request
 * edits and target; onResponse edits; edits to local answers), with a real Exchange per request so the
 * auth filter's principal and claims can be checked. Used by the auth and cors tests until the engines'
 * runner serves them; the runner is the production path.
 */
import http from 'node:http';
import type net from 'node:net';
import { Exchange } from '../../src/exchange.ts';
import type {
  FieldEdits,
  FieldReader,
  Filter,
  FilterContext,
  FilterRequest,
  LocalResponse,
} from '../../src/filters/contract.ts';

class Reader implements FieldReader {
  readonly #headers: http.IncomingHttpHeaders;
  constructor(headers: http.IncomingHttpHeaders) {
    this.#headers = headers;
  }
  get(name: string): string | undefined {
    const value = this.#headers[name];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : value;
  }
  getAll(name: string): readonly string[] {
    const value = this.#headers[name];
    if (value === undefined) return [];
    return Array.isArray(value) ? value : [value];
  }
  names(): Iterable<string> {
    return Object.keys(this.#headers);
  }
}

class Edits implements FieldEdits {
  readonly list: ['set' | 'add' | 'remove', string, string][] = [];
  set(name: string, value: string): void {
    this.list.push(['set', name.toLowerCase(), value]);
  }
  add(name: string, value: string): void {
    this.list.push(['add', name.toLowerCase(), value]);
  }
  remove(name: string): void {
    this.list.push(['remove', name.toLowerCase(), '']);
  }
  /** Applies the edits made since `from` to `headers`. */
  apply(headers: Record<string, string | string[]>, from = 0): void {
    for (let i = from; i < this.list.length; i++) {
      const [op, name, value] = this.list[i] as ['set' | 'add' | 'remove', string, string];
      if (op === 'remove') delete headers[name];
      else if (op === 'set') headers[name] = value;
      else {
        const previous = headers[name];
        headers[name] =
          previous === undefined ? value : [...(Array.isArray(previous) ? previous : [previous]), value];
      }
    }
  }
}

export interface AuthCorsProxy {
  readonly url: string;
  readonly port: number;
  /** Every exchange, in order (principal and claims as the filters left them). */
  readonly exchanges: Exchange[];
  close(): Promise<void>;
}

function flatten(headers: http.IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined) out[name] = value;
  return out;
}

export async function startAuthCorsProxy(
  filters: readonly Filter[],
  upstreamUrl: string,
): Promise<AuthCorsProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new http.Agent({ keepAlive: true });
  const exchanges: Exchange[] = [];

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const exchange = new Exchange(
      performance.now(),
      req.method ?? 'GET',
      target,
      req.headers.host ?? '',
      req.httpVersion,
      req.socket.remoteAddress ?? '',
    );
    exchanges.push(exchange);
    const request: FilterRequest = {
      method: req.method ?? 'GET',
      path: q < 0 ? target : target.slice(0, q),
      query: q < 0 ? '' : target.slice(q),
      host: req.headers.host ?? '',
      scheme: 'http',
      clientAddress: req.socket.remoteAddress ?? '',
      httpVersion: req.httpVersion,
      params: null,
      websocket: false,
      headers: new Reader(req.headers),
    };
    const upstreamHeaders = new Edits();
    const responseHeaders = new Edits();
    let upstreamTarget = target;
    const ctx: FilterContext = {
      exchange,
      request,
      upstreamHeaders,
      responseHeaders,
      setUpstreamTarget(pathAndQuery: string) {
        upstreamTarget = pathAndQuery;
      },
      get upstreamTarget() {
        return upstreamTarget;
      },
      state: new Array(filters.length).fill(undefined),
    };
    const body: Buffer[] = [];
    for await (const chunk of req) body.push(chunk as Buffer);
    for (const filter of filters) {
      let result = filter.onRequest?.(ctx);
      if (result instanceof Promise) result = await result;
      if (result !== undefined) {
        sendLocal(res, result, responseHeaders);
        return;
      }
    }
    const headers = flatten(req.headers);
    delete headers.connection;
    upstreamHeaders.apply(headers);
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: request.method,
      path: upstreamTarget,
      headers,
      agent,
    });
    upstreamReq.on('response', (up) => {
      const response = { status: up.statusCode ?? 502, headers: new Reader(up.headers) };
      for (const filter of filters) filter.onResponse?.(ctx, response);
      const out = flatten(up.headers);
      delete out.connection;
      delete out['keep-alive'];
      responseHeaders.apply(out);
      res.writeHead(response.status, out);
      up.pipe(res);
    });
    upstreamReq.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    upstreamReq.end(Buffer.concat(body));
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    exchanges,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendLocal(res: http.ServerResponse, local: LocalResponse, edits: Edits): void {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(local.headers ?? {})) headers[name] = value as string | string[];
  edits.apply(headers);
  const body = local.body === undefined ? Buffer.alloc(0) : Buffer.from(local.body);
  headers['content-length'] = String(body.length);
  res.writeHead(local.status, headers);
  res.end(body);
}
