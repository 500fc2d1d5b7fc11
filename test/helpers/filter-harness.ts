/**
 * A small HTTP/1.1 proxy on node:http that runs filters by the contract of src/filters/contract.ts
 * against a real upstream: onRequest (answer or continue, awaiting only promises), the edits to the
 * upstream request, onResponse (edit or replace), onResponseBody per chunk as it is written to the
 * client, onResponseEnd (aborted or not), onLog once. It lets a filter be tested over real sockets on its
 * own; the engines' runner is the production path.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Exchange } from '../../src/exchange.ts';
import type {
  FieldEdits,
  FieldReader,
  Filter,
  FilterContext,
  FilterRequest,
  FilterResponse,
  LocalResponse,
} from '../../src/filters/contract.ts';

class Reader implements FieldReader {
  readonly headers: http.IncomingHttpHeaders;
  constructor(headers: http.IncomingHttpHeaders) {
    this.headers = headers;
  }
  get(name: string): string | undefined {
    const value = this.headers[name];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value.join(name === 'cookie' ? '; ' : ', ') : value;
  }
  getAll(name: string): readonly string[] {
    const value = this.headers[name];
    if (value === undefined) return [];
    return Array.isArray(value) ? value : [value];
  }
  names(): Iterable<string> {
    return Object.keys(this.headers);
  }
}

type Edit = ['set' | 'add' | 'remove', string, string];

class Edits implements FieldEdits {
  readonly list: Edit[] = [];
  set(name: string, value: string): void {
    this.list.push(['set', name.toLowerCase(), value]);
  }
  add(name: string, value: string): void {
    this.list.push(['add', name.toLowerCase(), value]);
  }
  remove(name: string): void {
    this.list.push(['remove', name.toLowerCase(), '']);
  }
  apply(headers: Record<string, string | string[]>): void {
    for (const [op, name, value] of this.list) {
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

export interface FilterProxy {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

function sendLocal(res: http.ServerResponse, method: string, local: LocalResponse, edits: Edits): void {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(local.headers ?? {})) headers[name] = value as string | string[];
  edits.apply(headers);
  const body = local.body === undefined ? undefined : Buffer.from(local.body);
  if (body !== undefined && headers['content-length'] === undefined)
    headers['content-length'] = String(body.length);
  if (body === undefined && headers['content-length'] === undefined && local.status !== 304) {
    headers['content-length'] = '0';
  }
  res.writeHead(local.status, headers);
  res.end(method === 'HEAD' ? undefined : body);
}

/** Starts the harness proxy in front of `upstreamUrl` with one filter chain for every request. */
export async function startFilterProxy(
  filters: readonly Filter[],
  upstreamUrl: string,
): Promise<FilterProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer((req, res) => {
    void handle(req, res);
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const request: FilterRequest = {
      method: req.method ?? 'GET',
      path: q === -1 ? target : target.slice(0, q),
      query: q === -1 ? '' : target.slice(q),
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
      exchange: null as unknown as Exchange,
      request,
      upstreamHeaders,
      setUpstreamTarget(pathAndQuery: string) {
        upstreamTarget = pathAndQuery;
      },
      get upstreamTarget() {
        return upstreamTarget;
      },
      responseHeaders,
      state: new Array(filters.length).fill(undefined),
    };
    const log = (): void => {
      for (const f of filters) f.onLog?.(ctx);
    };
    for (const f of filters) {
      const result = await f.onRequest?.(ctx);
      if (result !== undefined) {
        sendLocal(res, request.method, result, responseHeaders);
        log();
        return;
      }
    }
    for (const f of filters) await f.onUpstreamRequest?.(ctx);
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && name !== 'connection') headers[name] = value;
    }
    upstreamHeaders.apply(headers);
    const upstreamReq = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: request.method,
      path: upstreamTarget,
      headers,
      agent,
    });
    req.pipe(upstreamReq);
    upstreamReq.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-length': '0' });
        res.end();
      } else res.destroy();
      for (const f of filters) f.onResponseEnd?.(ctx, true);
      log();
    });
    upstreamReq.on('response', async (upRes) => {
      const response: FilterResponse = {
        status: upRes.statusCode ?? 502,
        headers: new Reader(upRes.headers),
      };
      for (const f of filters) {
        const result = await f.onResponse?.(ctx, response);
        if (result !== undefined) {
          upRes.resume();
          sendLocal(res, request.method, result, responseHeaders);
          log();
          return;
        }
      }
      const out: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(upRes.headers)) {
        if (value !== undefined && name !== 'connection' && name !== 'keep-alive') out[name] = value;
      }
      responseHeaders.apply(out);
      res.writeHead(response.status, out);
      res.flushHeaders();
      let ended = false;
      const finish = (aborted: boolean): void => {
        if (ended) return;
        ended = true;
        for (const f of filters) f.onResponseEnd?.(ctx, aborted);
        log();
      };
      upRes.on('data', (chunk: Buffer) => {
        for (const f of filters) f.onResponseBody?.(ctx, chunk);
        if (!res.write(chunk)) {
          upRes.pause();
          res.once('drain', () => upRes.resume());
        }
      });
      upRes.on('end', () => {
        res.end();
        finish(false);
      });
      upRes.on('aborted', () => {
        res.destroy();
        finish(true);
      });
      upRes.on('error', () => {
        res.destroy();
        finish(true);
      });
      res.on('close', () => {
        if (!res.writableFinished) {
          upRes.destroy();
          finish(true);
        }
      });
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
