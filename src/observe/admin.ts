/**
 * The admin listener (`admin` in the config; docs/operations.md): GET /metrics, /healthz, /readyz,
 * /status and POST /reload for one instance, on an address of its own (never a proxy listener). It runs
 * once per instance, in the per-instance place, and reads the instance through an InstanceView. With
 * `admin.token`, every request must carry `Authorization: Bearer <token>` (compared in constant time).
 * It is not on the proxy's hot path: node:http is used as it is.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../config/schema.ts';
import { ERROR_CODES, type ErrorCode, errorBody } from '../errors.ts';
import type { InstanceView } from './instance-view.ts';
import type { Logger } from './logger.ts';

/** The content type of the Prometheus text exposition. */
const EXPOSITION_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function send(
  res: http.ServerResponse,
  status: number,
  type: string,
  body: string,
  extra?: http.OutgoingHttpHeaders,
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extra,
  });
  res.end(body);
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json', `${JSON.stringify(value)}\n`);
}

function sendError(
  res: http.ServerResponse,
  status: number,
  code: ErrorCode,
  message: string,
  extra?: http.OutgoingHttpHeaders,
): void {
  // The code table's status is the usual one; an admin answer may use another (errorBody names the code).
  const body = JSON.parse(errorBody(code, message)) as { error: { status: number } };
  body.error.status = status;
  send(res, status, 'application/json', `${JSON.stringify(body)}\n`, extra);
}

/** The token's SHA-256, so that the comparison is in constant time whatever the length sent. */
function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export class AdminServer {
  private readonly server: http.Server;
  private readonly tokenDigest: Buffer | null;
  private readonly config: AdminConfig;
  private readonly view: InstanceView;
  private readonly logger: Logger;

  constructor(config: AdminConfig, view: InstanceView, logger: Logger) {
    this.config = config;
    this.view = view;
    this.logger = logger;
    this.tokenDigest = config.token === null ? null : digest(config.token);
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.logger.error({ err }, 'admin request failed');
        if (!res.headersSent) sendError(res, 500, 'ZP_ERR_INTERNAL', 'The admin request failed');
        else res.destroy();
      });
    });
    // Admin requests are short: slow or idle clients are let go.
    this.server.headersTimeout = 10_000;
    this.server.requestTimeout = 30_000;
    this.server.keepAliveTimeout = 5_000;
  }

  /** Binds the admin address; resolves with it. */
  async start(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: this.config.host, port: this.config.port }, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.server.on('error', (err) => this.logger.error({ err }, 'admin listener error'));
    const address = this.server.address() as AddressInfo;
    this.logger.info({ address: address.address, port: address.port }, 'admin listening');
    return address;
  }

  /** Stops accepting and closes the admin connections. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private authorized(req: http.IncomingMessage): boolean {
    if (this.tokenDigest === null) return true;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    return timingSafeEqual(digest(match === null ? '' : match[1]!), this.tokenDigest) && match !== null;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (!this.authorized(req)) {
      // What is sent with the request is not read: the connection closes after the answer.
      res.shouldKeepAlive = false;
      sendError(
        res,
        401,
        'ZP_ERR_UNAUTHORIZED',
        'The admin listener needs Authorization: Bearer <admin.token>',
        {
          'www-authenticate': 'Bearer realm="zproxy admin"',
        },
      );
      return;
    }
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const method = req.method ?? 'GET';
    const view = this.view;
    if (path === '/reload') {
      if (method !== 'POST') {
        sendError(res, 405, 'ZP_ERR_METHOD_NOT_ALLOWED', 'POST /reload', { allow: 'POST' });
        return;
      }
      req.resume();
      const result = await view.reload();
      if (result.ok) {
        sendJson(res, 200, result);
        return;
      }
      // zproxy's error shape, with every problem listed (each names its JSON path).
      const status = result.status ?? 422;
      const code = result.code ?? 'ZP_ERR_CONFIG';
      sendJson(res, status, {
        ok: false,
        error: { code, status, message: result.errors[0] ?? ERROR_CODES[code].message },
        errors: result.errors,
      });
      return;
    }
    const get = method === 'GET' || method === 'HEAD';
    switch (path) {
      case '/healthz':
      case '/readyz':
      case '/status':
      case '/metrics':
        if (!get) {
          sendError(res, 405, 'ZP_ERR_METHOD_NOT_ALLOWED', `GET ${path}`, { allow: 'GET, HEAD' });
          return;
        }
        break;
      default:
        sendError(
          res,
          404,
          'ZP_ERR_NOT_FOUND',
          'No admin endpoint at this path (/metrics, /healthz, /readyz, /status, /reload)',
        );
        return;
    }
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok' });
    } else if (path === '/readyz') {
      if (view.ready) sendJson(res, 200, { status: 'ready' });
      else sendJson(res, 503, { status: view.draining ? 'draining' : 'starting' });
    } else if (path === '/status') {
      sendJson(res, 200, await view.status());
    } else if (view.metrics === null) {
      sendError(res, 404, 'ZP_ERR_NOT_FOUND', 'Metrics are off (admin.metrics)');
    } else {
      send(res, 200, EXPOSITION_TYPE, (await view.collect()).render());
    }
  }
}
