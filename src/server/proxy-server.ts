/**
 * A zproxy instance in one process: its listeners, the compiled runtime, the upstream pools and the live
 * connections. Used by `zproxy run` (once per worker) and by tests and embedders.
 */
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { compileRuntime, type Runtime } from '../config/runtime.ts';
import type { Config, HstsConfig, ListenerConfig, TlsConfig } from '../config/schema.ts';
import {
  type ConnectionContext,
  DownstreamConnection,
  type ListenerPolicy,
} from '../http1/downstream-connection.ts';
import { Http2Downstream } from '../http2/downstream.ts';
import { AccessLog } from '../observe/access-log.ts';
import type { Logger } from '../observe/logger.ts';
import { buildChains } from '../pipeline/chain.ts';
import { PoolRegistry } from '../upstream/pool.ts';
import { SlotSet } from '../util/slot-set.ts';
import { TunnelRegistry } from '../websocket/registry.ts';
import { TlsContexts } from './tls-contexts.ts';

const OVER_CAPACITY = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 94\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{"error":{"code":"ZP_ERR_UPSTREAM_UNAVAILABLE","status":503,"message":"Too many connections"}}',
  'latin1',
);

/** How long a connection refused for `max_connections` may stay open to receive its 503. */
const REFUSED_LINGER_MS = 2000;

/** The content type of a TLS handshake record: the first byte a TLS client sends. */
const TLS_HANDSHAKE_RECORD = 0x16;

function ignore(): void {}

function destroySocket(socket: net.Socket): void {
  socket.destroy();
}

/** What a listener decides for each connection it accepts. */
interface ListenerState {
  /** Certificates when the listener accepts TLS; it then detects TLS or plain HTTP per connection. */
  readonly tls: TlsContexts | null;
  readonly policy: ListenerPolicy;
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
}

export class ProxyServer {
  readonly pools = new PoolRegistry();
  private readonly logger: Logger;
  private readonly reusePort: boolean;
  private readonly baseDir: string | undefined;
  private readonly accessLog: AccessLog;
  private readonly servers: net.Server[] = [];
  private readonly ctx: ConnectionContext;
  private readonly maxConnections: number;
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
    this.maxConnections = config.max_connections;
    for (const l of config.listeners) {
      if (l.tls.enabled && !this.tlsContexts.has(l.tls)) {
        const contexts = new TlsContexts(l.tls, options.logger);
        contexts.watch();
        this.tlsContexts.set(l.tls, contexts);
      }
    }
    const accessLog = new AccessLog(options.logger);
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

  /** Live client connections. */
  get connectionCount(): number {
    return this.liveConnections;
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
    if (config.middlewares.length > 0 || config.routes.some((r) => r.middlewares.length > 0)) {
      const chains = await buildChains(config, {
        logger: this.logger,
        ...(this.baseDir === undefined ? {} : { baseDir: this.baseDir }),
      });
      this.ctx.runtime = compileRuntime(config, this.pools, this.accessLog, chains);
    }
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
      this.logger.info({ address: address.address, port: address.port }, 'listening');
    }
    // Redirects go to the first TLS listener's port (known once bound), else to 443.
    const httpsIndex = config.listeners.findIndex((l) => l.tls.enabled);
    const httpsPort = httpsIndex === -1 ? 443 : addresses[httpsIndex]!.port;
    for (const state of states) {
      if (state.policy.redirectPort !== null)
        state.policy.redirectPort = httpsPort === 443 ? '' : `:${httpsPort}`;
    }
    return addresses;
  }

  private listenerState(l: ListenerConfig): ListenerState {
    return {
      tls: l.tls.enabled ? this.tlsContexts.get(l.tls)! : null,
      policy: {
        hsts: l.tls.enabled ? hstsValue(l.tls.hsts) : null,
        redirectPort: l.redirect_https ? '' : null,
      },
    };
  }

  private accept(socket: net.Socket, listener: ListenerState): void {
    if (this.ctx.shuttingDown) {
      socket.destroy();
      return;
    }
    if (this.ctx.connections.size >= this.maxConnections) {
      socket.on('error', () => {});
      // Discard what the client sends so that its FIN is seen and the socket closes; a client that never
      // closes may not hold it (it is not counted in max_connections) beyond a short linger.
      socket.resume();
      setTimeout(destroySocket, REFUSED_LINGER_MS, socket).unref();
      socket.end(OVER_CAPACITY);
      return;
    }
    if (listener.tls === null) new DownstreamConnection(socket, this.ctx, listener.policy);
    else this.detect(socket, listener);
  }

  /**
   * One port, both protocols: the first byte of a connection tells a TLS ClientHello (0x16, a handshake
   * record) from plain HTTP. The bytes read to decide are put back before the connection is handed on.
   */
  private detect(socket: net.Socket, listener: ListenerState): void {
    socket.on('error', ignore);
    this.pending.add(socket);
    socket.once('close', () => this.pending.delete(socket));
    socket.setTimeout(this.ctx.runtime.connectionTimeoutMs, () => socket.destroy());
    socket.once('data', (chunk: Buffer) => {
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] === TLS_HANDSHAKE_RECORD) this.handshake(socket, listener);
      else {
        this.pending.delete(socket);
        new DownstreamConnection(socket, this.ctx, listener.policy);
        socket.resume();
      }
    });
  }

  /**
   * The TLS handshake; ALPN then chooses the engine: `h2` goes to node:http2, `http/1.1` (or no ALPN) to
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
    await closed;
  }
}
