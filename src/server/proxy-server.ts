/**
 * A zproxy instance in one process: its listeners, the compiled runtime, the upstream pools and the live
 * connections. Used by `zproxy run` (once per worker) and by tests and embedders.
 */
import net, { type AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import tls from 'node:tls';
import type { Config, HstsConfig, ListenerConfig, TlsConfig } from '../config/schema.ts';
import { ERROR_CODES, type ErrorCode, errorBody, ZpError } from '../errors.ts';
import { BUILT_IN_FILTERS } from '../filters/index.ts';
import {
  type ConnectionContext,
  DownstreamConnection,
  type ListenerPolicy,
} from '../http1/downstream-connection.ts';
import { STATUS_TEXT } from '../http1/status-text.ts';
import { Http2Downstream } from '../http2/downstream.ts';
import { GOAWAY, PREFACE, SETTINGS, writeFrameHeader } from '../http2/frames.ts';
import { AccessLog } from '../observe/access-log.ts';
import type { LogFile } from '../observe/log-file.ts';
import { closeLogFile, type Logger, openFileLogger } from '../observe/logger.ts';
import { FilterRegistry } from '../pipeline/registry.ts';
import { buildRuntime, compileRuntime, disposeRuntime, type Runtime } from '../runtime/compile.ts';
import { PoolRegistry } from '../runtime/pools.ts';
import type { InstanceConnections } from '../util/instance.ts';
import { SlotSet } from '../util/slot-set.ts';
import { TunnelRegistry } from '../websocket/registry.ts';
import { TlsContexts } from './tls-contexts.ts';

const OVER_CAPACITY = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 94\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{"error":{"code":"ZP_ERR_UPSTREAM_UNAVAILABLE","status":503,"message":"Too many connections"}}',
  'latin1',
);

/** How long a refused connection (`max_connections`, plain HTTP on a TLS port) may stay open to read its answer. */
const REFUSED_LINGER_MS = 2000;

/** The content type of a TLS handshake record: the first byte a TLS client sends. */
const TLS_HANDSHAKE_RECORD = 0x16;

/** A whole zproxy error response (JSON body, `Connection: close`), built once. */
function prebuiltErrorResponse(code: ErrorCode): Buffer {
  const status = ERROR_CODES[code].status;
  const body = errorBody(code);
  return Buffer.from(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

/** The answer to a plain HTTP/1.x request on a TLS listener that refuses plain HTTP (`tls.plain_http`). */
const PLAIN_HTTP_REFUSED = prebuiltErrorResponse('ZP_ERR_PLAIN_HTTP_ON_TLS');

/** HTTP/2 error code INADEQUATE_SECURITY (RFC 9113 §7): the transport is not secure enough. */
const INADEQUATE_SECURITY = 0xc;

/**
 * The answer to an h2c preface on a TLS listener that does not serve plain HTTP: the server preface (an
 * empty SETTINGS frame, RFC 9113 §3.4), then GOAWAY (last stream 0, INADEQUATE_SECURITY) whose debug data
 * says why. The connection is closed after it.
 */
const H2C_REFUSED = (() => {
  const reason = Buffer.from(ERROR_CODES.ZP_ERR_PLAIN_HTTP_ON_TLS.message, 'latin1');
  const out = Buffer.alloc(9 + 9 + 8 + reason.length);
  writeFrameHeader(out, 0, 0, SETTINGS, 0, 0);
  writeFrameHeader(out, 9, 8 + reason.length, GOAWAY, 0, 0);
  out.writeUInt32BE(0, 18);
  out.writeUInt32BE(INADEQUATE_SECURITY, 22);
  reason.copy(out, 26);
  return out;
})();

/** True when a connection's first bytes are the HTTP/2 preface, or enough of it to tell ("PRI"). */
function startsWithH2Preface(chunk: Buffer): boolean {
  const n = Math.min(chunk.length, PREFACE.length);
  return n >= 3 && chunk.compare(PREFACE, 0, n, 0, n) === 0;
}

/** What a TLS listener does with a connection whose first byte is not a TLS record (`tls.plain_http`). */
const PLAIN_REJECT = 0;
const PLAIN_REDIRECT = 1;
const PLAIN_SERVE = 2;

function ignore(): void {}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

/**
 * The first bytes of a connection refused for `max_connections` on a TLS listener: a TLS client is closed
 * without a handshake; plain text gets the 503. Registered as a listener, so `this` is the socket.
 */
function refuseOverCapacityOnTls(this: net.Socket, chunk: Buffer): void {
  if (chunk[0] === TLS_HANDSHAKE_RECORD) {
    this.destroy();
    return;
  }
  this.resume(); // the linger timer is already set
  this.end(OVER_CAPACITY);
}

/**
 * Sends a prebuilt answer and closes. What the client sends meanwhile is read and discarded, so that its
 * FIN is seen and the answer is not lost to a reset; a client that never closes is dropped after a linger.
 */
function refuse(socket: net.Socket, answer: Buffer): void {
  socket.resume();
  setTimeout(destroySocket, REFUSED_LINGER_MS, socket).unref();
  socket.end(answer);
}

/** What a listener decides for each connection it accepts. */
interface ListenerState {
  /** Certificates when the listener accepts TLS; it then detects TLS or plain HTTP per connection. */
  readonly tls: TlsContexts | null;
  readonly policy: ListenerPolicy;
  /** On a TLS listener, plain-HTTP connections are refused, redirected or served (PLAIN_*). */
  readonly plain: number;
  /** The https redirect names this listener's own port (`tls.plain_http: "redirect"`), not the first TLS one's. */
  readonly redirectToSelf: boolean;
}

/** The Strict-Transport-Security value for a TLS block (`max-age=...`), or null when HSTS is off. */
export function hstsValue(hsts: HstsConfig): string | null {
  if (!hsts.enabled) return null;
  let value = `max-age=${hsts.max_age_seconds}`;
  if (hsts.include_subdomains) value += '; includeSubDomains';
  if (hsts.preload) value += '; preload';
  return value;
}

export interface ProxyServerOptions {
  readonly logger: Logger;
  /** Bind with SO_REUSEPORT so several worker processes can listen on the same port. */
  readonly reusePort?: boolean;
  /** Relative paths in filter configs (user filter modules) are resolved against this (the config file's directory). */
  readonly baseDir?: string;
  /**
   * The most connections this process holds open: a worker's share of `max_connections` (see
   * `connectionShare` in workers.ts). Default: `max_connections` itself (one process).
   */
  readonly maxConnections?: number;
  /**
   * A worker thread's place in the instance's shared connection count: `maxConnections` then bounds the
   * whole instance exactly (every worker checks the shared total). Without it, this process counts alone.
   */
  readonly instanceConnections?: { readonly counter: InstanceConnections; readonly worker: number };
}

export class ProxyServer {
  readonly pools = new PoolRegistry();
  /** The filter types this server builds chains from (the built-in filters and user modules). */
  readonly filters = new FilterRegistry(BUILT_IN_FILTERS);
  private readonly logger: Logger;
  private readonly reusePort: boolean;
  private readonly baseDir: string | undefined;
  private readonly accessLog: AccessLog;
  /** The file the access log goes to (`access_log.file`), null when it goes to stdout. */
  private readonly accessLogFile: LogFile | null;
  private readonly servers: net.Server[] = [];
  private readonly ctx: ConnectionContext;
  /** This process's bound on open connections (`max_connections`, or a worker's share of it). */
  private readonly maxConnections: number;
  /**
   * Accepted connections not yet closed, whatever they became: being detected, in their TLS handshake,
   * refused plain HTTP, HTTP/1.x, HTTP/2 (h2c or over TLS), WebSocket tunnels. Counted once per accepted
   * socket: up at accept, down on that socket's `close` (a TLS socket or an engine that takes the
   * connection over keeps the same underlying socket, which closes once).
   */
  private open = 0;
  private readonly release = (): void => {
    this.open--;
    this.instanceConnections?.counter.release(this.instanceConnections.worker);
  };
  private readonly instanceConnections: NonNullable<ProxyServerOptions['instanceConnections']> | null;
  private drainWaiter: (() => void) | null = null;
  /** Certificates of each TLS block in use; listeners without their own `tls` share the top-level one. */
  private readonly tlsContexts = new Map<TlsConfig, TlsContexts>();
  private readonly http2: Http2Downstream | null;
  /** Protocols offered by ALPN on TLS connections, in order of preference. */
  private readonly alpn: string[];
  /** Connections still being detected or in their TLS handshake (not yet owned by an engine). */
  private readonly pending = new SlotSet<net.Socket>();

  constructor(config: Config, options: ProxyServerOptions) {
    this.logger = options.logger;
    this.pools.logger = options.logger;
    this.reusePort = options.reusePort ?? false;
    this.baseDir = options.baseDir;
    this.maxConnections = options.maxConnections ?? config.max_connections;
    this.instanceConnections = options.instanceConnections ?? null;
    // Opened first: a file that cannot be opened stops the start before anything else is set up.
    let accessLogger = options.logger;
    this.accessLogFile = null;
    if (config.access_log.enabled && config.access_log.file !== null) {
      const path = resolve(this.baseDir ?? process.cwd(), config.access_log.file);
      try {
        const opened = openFileLogger(path, options.logger);
        accessLogger = opened.logger;
        this.accessLogFile = opened.file;
      } catch (error) {
        throw new ZpError(
          'ZP_ERR_CONFIG',
          `access_log.file: cannot open ${path}: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
      }
      this.accessLogFile.onWriteError = (err) =>
        this.logger.error({ err, file: path }, 'access log write failed');
    }
    for (const l of config.listeners) {
      if (l.tls.enabled && !this.tlsContexts.has(l.tls)) {
        const contexts = new TlsContexts(l.tls, options.logger);
        contexts.watch();
        this.tlsContexts.set(l.tls, contexts);
      }
    }
    const accessLog = new AccessLog(accessLogger);
    this.accessLog = accessLog;
    const http2Enabled = config.protocols.includes('http2');
    this.ctx = {
      runtime: compileRuntime(config, this.pools, accessLog),
      connections: new SlotSet(),
      shuttingDown: false,
      onConnectionClosed: () => {
        if (this.drainWaiter !== null && this.liveConnections === 0) this.drainWaiter();
      },
      http2: http2Enabled ? (socket, buffered) => this.http2!.accept(socket, buffered) : null,
      http1: config.protocols.includes('http1'),
      tunnels: config.protocols.includes('websocket') ? new TunnelRegistry() : null,
    };
    this.http2 = http2Enabled ? new Http2Downstream(this.ctx, options.logger) : null;
    this.alpn = [];
    if (http2Enabled) this.alpn.push('h2');
    if (this.ctx.http1) this.alpn.push('http/1.1');
  }

  get runtime(): Runtime {
    return this.ctx.runtime;
  }

  /** Open downstream connections, as counted against `max_connections` (every accepted one until it closes). */
  get connectionCount(): number {
    return this.open;
  }

  /**
   * Reopens the access log file (SIGUSR1, after logrotate renamed it): the lines logged so far go to the
   * old file, the next ones to a new file at the same path. When the path cannot be opened, the error is
   * logged and the old file stays in use.
   */
  reopenLogs(): void {
    const file = this.accessLogFile;
    if (file === null) return;
    const error = file.reopen();
    if (error === null) this.logger.info({ file: file.path }, 'access log reopened');
    else
      this.logger.error(
        { err: error, file: file.path },
        'access log not reopened: the old file stays in use',
      );
  }

  /** Open WebSocket tunnels. */
  get tunnelCount(): number {
    return this.ctx.tunnels?.active ?? 0;
  }

  private get liveConnections(): number {
    return this.ctx.connections.size + (this.http2 === null ? 0 : this.http2.sessions.size);
  }

  /** Binds every listener of the config; resolves with their addresses (port 0 gets a free port). */
  async start(): Promise<AddressInfo[]> {
    const config = this.ctx.runtime.config;
    // Filters are built before the first connection (a factory may do I/O: a JWKS, a user module).
    this.ctx.runtime = await buildRuntime(config, {
      pools: this.pools,
      accessLog: this.accessLog,
      filters: this.filters,
      logger: this.logger,
      ...(this.baseDir === undefined ? {} : { baseDir: this.baseDir }),
    });
    const addresses: AddressInfo[] = [];
    const states: ListenerState[] = [];
    for (const l of config.listeners) {
      const state = this.listenerState(l);
      states.push(state);
      const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket, state));
      server.on('error', (err) => this.logger.error({ err }, 'listener error'));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(
          { host: l.host, port: l.port, backlog: config.backlog, reusePort: this.reusePort },
          () => {
            server.off('error', reject);
            resolve();
          },
        );
      });
      this.servers.push(server);
      const address = server.address() as AddressInfo;
      addresses.push(address);
      this.logger.info(
        { address: address.address, port: address.port, max_connections: this.maxConnections },
        'listening',
      );
    }
    // Redirects go to the first TLS listener's port (known once bound), else to 443.
    const httpsIndex = config.listeners.findIndex((l) => l.tls.enabled);
    const httpsPort = httpsIndex === -1 ? 443 : addresses[httpsIndex]!.port;
    states.forEach((state, i) => {
      if (state.policy.redirectPort === null) return;
      const port = state.redirectToSelf ? addresses[i]!.port : httpsPort;
      state.policy.redirectPort = port === 443 ? '' : `:${port}`;
    });
    return addresses;
  }

  private listenerState(l: ListenerConfig): ListenerState {
    const secure = l.tls.enabled;
    // redirect_https takes the place of tls.plain_http (and keeps redirecting to the first TLS listener).
    const redirectToSelf = secure && !l.redirect_https && l.tls.plain_http === 'redirect';
    let plain = PLAIN_SERVE;
    if (l.redirect_https || redirectToSelf) plain = PLAIN_REDIRECT;
    else if (secure && l.tls.plain_http === 'reject') plain = PLAIN_REJECT;
    return {
      tls: secure ? this.tlsContexts.get(l.tls)! : null,
      policy: {
        hsts: secure ? hstsValue(l.tls.hsts) : null,
        redirectPort: l.redirect_https || redirectToSelf ? '' : null,
      },
      plain,
      redirectToSelf,
    };
  }

  private accept(socket: net.Socket, listener: ListenerState): void {
    if (this.ctx.shuttingDown) {
      socket.destroy();
      return;
    }
    const shared = this.instanceConnections;
    if (
      shared === null
        ? this.open >= this.maxConnections
        : !shared.counter.tryAcquire(shared.worker, this.maxConnections)
    ) {
      // Refused connections are not counted; they linger at most REFUSED_LINGER_MS.
      socket.on('error', ignore);
      if (listener.tls === null) refuse(socket, OVER_CAPACITY);
      else {
        // A TLS client gets no handshake (no work spent on it): the first byte decides.
        setTimeout(destroySocket, REFUSED_LINGER_MS, socket).unref();
        socket.once('data', refuseOverCapacityOnTls);
      }
      return;
    }
    this.open++;
    socket.on('close', this.release);
    if (listener.tls === null) new DownstreamConnection(socket, this.ctx, listener.policy);
    else this.detect(socket, listener);
  }

  /**
   * A TLS listener: the first byte of a connection tells a TLS ClientHello (0x16, a handshake record) from
   * plain HTTP, which is then refused, redirected or served as the listener says (`tls.plain_http`). The
   * bytes read to decide are put back before the connection is handed on.
   */
  private detect(socket: net.Socket, listener: ListenerState): void {
    socket.on('error', ignore);
    this.pending.add(socket);
    socket.once('close', () => this.pending.delete(socket));
    socket.setTimeout(this.ctx.runtime.connectionTimeoutMs, () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      socket.setTimeout(0);
      if (chunk[0] === TLS_HANDSHAKE_RECORD) {
        socket.pause();
        socket.unshift(chunk);
        this.handshake(socket, listener);
        return;
      }
      const plain = listener.plain;
      // HTTP/2 with prior knowledge cannot be redirected: only a listener that serves plain HTTP takes it.
      if (plain === PLAIN_SERVE || (plain === PLAIN_REDIRECT && !startsWithH2Preface(chunk))) {
        socket.pause();
        socket.unshift(chunk);
        this.pending.delete(socket);
        new DownstreamConnection(socket, this.ctx, listener.policy);
        socket.resume();
      } else {
        refuse(socket, startsWithH2Preface(chunk) ? H2C_REFUSED : PLAIN_HTTP_REFUSED);
      }
    });
  }

  /**
   * The TLS handshake; ALPN then chooses the engine: `h2` goes to the HTTP/2 engine, `http/1.1` (or no ALPN) to
   * the HTTP/1 engine. A client that stalls during the handshake is dropped after the connection timeout.
   */
  private handshake(socket: net.Socket, listener: ListenerState): void {
    const contexts = listener.tls!;
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: contexts.defaultContext,
      SNICallback: contexts.sniCallback,
      ALPNProtocols: this.alpn,
    });
    secure.on('error', ignore);
    const timer = setTimeout(destroySocket, this.ctx.runtime.connectionTimeoutMs, secure);
    secure.once('secure', () => {
      clearTimeout(timer);
      this.pending.delete(socket);
      if (this.ctx.shuttingDown) secure.destroy();
      else if (secure.alpnProtocol === 'h2' && this.http2 !== null)
        this.http2.acceptSecure(secure, listener.policy.hsts);
      else new DownstreamConnection(secure, this.ctx, listener.policy);
    });
    secure.once('close', () => {
      clearTimeout(timer);
      this.pending.delete(socket);
    });
  }

  /**
   * Graceful stop: stop accepting, close idle connections, let exchanges in progress finish (their
   * connections close after the response), let WebSocket tunnels run until `websocket.drain_timeout_ms`
   * and then close them, and destroy whatever is left when `graceMs` has passed.
   */
  async stop(graceMs = this.ctx.runtime.config.shutdown_grace_ms): Promise<void> {
    this.ctx.shuttingDown = true;
    const closed = Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    for (const socket of this.pending) socket.destroy();
    for (const conn of this.ctx.connections) conn.shutdown();
    this.http2?.shutdown();
    this.ctx.tunnels?.drain(this.ctx.runtime.tunnelDrainTimeoutMs);
    if (this.liveConnections > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.drainWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.drainWaiter = null;
      for (const conn of this.ctx.connections) conn.destroy();
      this.http2?.destroy();
      this.ctx.tunnels?.destroyAll();
    }
    this.pools.closeIdle();
    for (const contexts of this.tlsContexts.values()) contexts.close();
    await disposeRuntime(this.ctx.runtime);
    await closed;
    if (this.accessLogFile !== null) closeLogFile(this.accessLogFile);
  }
}
