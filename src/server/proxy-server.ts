/**
 * A zproxy instance in one process: its listeners, the compiled runtime, the upstream pools and the live
 * connections. Used by `zproxy run` (once per worker) and by tests and embedders.
 */
import net, { type AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import type { Config, HstsConfig, ListenerConfig, TlsConfig } from '../config/schema.ts';
import { ERROR_CODES, type ErrorCode, errorBody, ZpError } from '../errors.ts';
import { BUILT_IN_FILTERS } from '../filters/index.ts';
import {
  type ConnectionContext,
  DownstreamConnection,
  type ListenerPolicy,
} from '../http1/downstream-connection.ts';
import { STATUS_TEXT } from '../http1/status-text.ts';
import type { Pool } from '../http1/upstream-pool.ts';
import { Http2Downstream } from '../http2/downstream.ts';
import { GOAWAY, PREFACE, SETTINGS, writeFrameHeader } from '../http2/frames.ts';
import { AccessLog } from '../observe/access-log.ts';
import type { LogFile } from '../observe/log-file.ts';
import { closeLogFile, type Logger, openFileLogger } from '../observe/logger.ts';
import { MetricRegistry } from '../observe/metrics.ts';
import type { Filter } from '../pipeline/contract.ts';
import { FilterRegistry } from '../pipeline/registry.ts';
import {
  buildRuntime,
  compileRuntime,
  disposeChains,
  disposeRuntime,
  filtersOf,
  type Runtime,
} from '../runtime/compile.ts';
import { PoolRegistry } from '../runtime/pools.ts';
import type { HealthTable } from '../upstream/health.ts';
import { HealthChecker } from '../upstream/health-checker.ts';
import type { Http2Pool } from '../upstream/http2-pool.ts';
import type { InstanceConnections } from '../util/instance.ts';
import * as tls from '../util/node-tls.ts';
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

/** A bound listener: its address, and what it decides for each connection (replaced by a reload). */
interface BoundListener {
  /** `host|port` as configured: what a reload compares listeners by. */
  readonly key: string;
  readonly server: net.Server;
  readonly address: AddressInfo;
  state: ListenerState;
}

/** What a reload compares listeners by. */
function listenerKey(l: ListenerConfig): string {
  return `${l.host}|${l.port}`;
}

/**
 * A reload made ready in this process (ProxyServer.prepareReload), to be committed or aborted: the new
 * runtime (its filters built, the unchanged ones taken over), the certificates of its TLS blocks and the
 * listeners it adds, already bound.
 */
export interface PreparedReload {
  readonly config: Config;
  readonly runtime: Runtime;
  readonly tlsContexts: Map<TlsConfig, TlsContexts>;
  readonly added: BoundListener[];
  /** This process's bound on open connections under the new config. */
  readonly maxConnections: number;
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

/** The certificates of each TLS block of a config (listeners without their own `tls` share the top-level one). */
function tlsContextsOf(config: Config, logger: Logger): Map<TlsConfig, TlsContexts> {
  const contexts = new Map<TlsConfig, TlsContexts>();
  try {
    for (const l of config.listeners) {
      if (l.tls.enabled && !contexts.has(l.tls)) contexts.set(l.tls, new TlsContexts(l.tls, logger));
    }
  } catch (error) {
    for (const c of contexts.values()) c.close();
    throw error;
  }
  return contexts;
}

/**
 * Where redirects to https go (known once the listeners are bound): the first TLS listener's port, else
 * 443; a TLS listener that redirects its own plain HTTP (`tls.plain_http: "redirect"`) names itself.
 */
function settleRedirects(config: Config, listeners: readonly BoundListener[]): void {
  const httpsIndex = config.listeners.findIndex((l) => l.tls.enabled);
  const httpsPort = httpsIndex === -1 ? 443 : listeners[httpsIndex]!.address.port;
  for (const listener of listeners) {
    const state = listener.state;
    if (state.policy.redirectPort === null) continue;
    const port = state.redirectToSelf ? listener.address.port : httpsPort;
    state.policy.redirectPort = port === 443 ? '' : `:${port}`;
  }
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
  /**
   * The worker's metric slots (src/observe/metrics.ts); absent: made here when `admin.metrics` is on;
   * null: metrics off.
   */
  readonly metrics?: MetricRegistry | null;
  /**
   * The targets' health records: a worker thread's is the instance's shared table. Absent: a table of
   * this process's own.
   */
  readonly health?: HealthTable;
  /**
   * Run the config's active health checks here (default: true). False in a worker: the instance checks
   * once (the main thread, or the supervisor of worker processes).
   */
  readonly checkHealth?: boolean;
}

/** How often the metric gauges (connections, pools, event-loop delay) are sampled. */
const METRICS_SAMPLE_MS = 1000;

function sampleMetrics(server: ProxyServer): void {
  server.sampleMetrics();
}

export class ProxyServer {
  readonly pools: PoolRegistry;
  /** The active health checks, when this process runs them (checkHealth). */
  readonly healthChecker: HealthChecker | null;
  /** The filter types this server builds chains from (the built-in filters and user modules). */
  readonly filters = new FilterRegistry(BUILT_IN_FILTERS);
  /**
   * This worker's metric slots, null when metrics are off. Like the pools, they belong to the server, not
   * to a runtime: a runtime compiled from another config binds the same slots for the routes it keeps.
   */
  readonly metrics: MetricRegistry | null;
  private sampler: NodeJS.Timeout | null = null;
  private readonly logger: Logger;
  private readonly reusePort: boolean;
  private readonly baseDir: string | undefined;
  /**
   * The access logs of the configs this server has run, by the file they write to (null: stdout with the
   * process log); a file stays open while a runtime that logs to it serves exchanges.
   */
  private readonly accessLogs = new Map<string | null, { log: AccessLog; file: LogFile | null }>();
  private listeners: BoundListener[] = [];
  private readonly ctx: ConnectionContext;
  /** This process's bound on open connections (`max_connections`, or a worker's share of it). */
  private maxConnections: number;
  /** Runtimes a reload replaced whose exchanges have not all ended (their pools stay meanwhile). */
  private readonly retiring = new Set<Runtime>();
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
  private tlsContexts = new Map<TlsConfig, TlsContexts>();
  private http2: Http2Downstream | null;
  /** Protocols offered by ALPN on TLS connections, in order of preference. */
  private alpn: string[];
  /** Reloads are made ready one at a time. */
  private reloading = false;
  /** Connections still being detected or in their TLS handshake (not yet owned by an engine). */
  private readonly pending = new SlotSet<net.Socket>();

  constructor(config: Config, options: ProxyServerOptions) {
    this.logger = options.logger;
    this.pools = new PoolRegistry(options.health);
    this.pools.logger = options.logger;
    this.healthChecker =
      options.checkHealth === false ? null : new HealthChecker(this.pools.health, options.logger);
    this.reusePort = options.reusePort ?? false;
    this.baseDir = options.baseDir;
    this.maxConnections = options.maxConnections ?? config.max_connections;
    this.instanceConnections = options.instanceConnections ?? null;
    // Opened first: a file that cannot be opened stops the start before anything else is set up.
    const accessLog = this.accessLogFor(config);
    this.tlsContexts = tlsContextsOf(config, options.logger);
    for (const contexts of this.tlsContexts.values()) contexts.watch();
    this.metrics =
      options.metrics !== undefined
        ? options.metrics
        : config.admin?.metrics === true
          ? new MetricRegistry(false, 1)
          : null;
    this.ctx = {
      runtime: compileRuntime(config, this.pools, accessLog, null, this.metrics),
      connections: new SlotSet(),
      shuttingDown: false,
      onConnectionClosed: () => {
        if (this.drainWaiter !== null && this.liveConnections === 0) this.drainWaiter();
      },
      releaseConnection: this.release,
      http2: null,
      http1: false,
      tunnels: null,
    };
    this.http2 = null;
    this.alpn = [];
    this.applyProtocols(config);
  }

  /** Turns the engines on and off as `protocols` says (at start and on a reload). */
  private applyProtocols(config: Config): void {
    const http2Enabled = config.protocols.includes('http2');
    if (http2Enabled && this.http2 === null) this.http2 = new Http2Downstream(this.ctx, this.logger);
    this.ctx.http2 = http2Enabled ? (socket, buffered) => this.http2!.accept(socket, buffered) : null;
    this.ctx.http1 = config.protocols.includes('http1');
    const websocket = config.protocols.includes('websocket');
    if (websocket && this.ctx.tunnels == null) this.ctx.tunnels = new TunnelRegistry();
    else if (!websocket && this.ctx.tunnels != null && this.ctx.tunnels.active === 0) this.ctx.tunnels = null;
    const alpn: string[] = [];
    if (http2Enabled) alpn.push('h2');
    if (this.ctx.http1) alpn.push('http/1.1');
    this.alpn = alpn;
  }

  get runtime(): Runtime {
    return this.ctx.runtime;
  }

  /** Open downstream connections, as counted against `max_connections` (every accepted one until it closes). */
  get connectionCount(): number {
    return this.open;
  }

  /**
   * The access log for `config` (`access_log.file`, or stdout), opened when no config before used that
   * file. Throws a ZP_ERR_CONFIG error naming the path when the file cannot be opened.
   */
  private accessLogFor(config: Config): AccessLog {
    const file = config.access_log.enabled ? config.access_log.file : null;
    const path = file === null ? null : resolve(this.baseDir ?? process.cwd(), file);
    const known = this.accessLogs.get(path);
    if (known !== undefined) return known.log;
    if (path === null) {
      const log = new AccessLog(this.logger);
      this.accessLogs.set(null, { log, file: null });
      return log;
    }
    let opened: ReturnType<typeof openFileLogger>;
    try {
      opened = openFileLogger(path, this.logger);
    } catch (error) {
      throw new ZpError(
        'ZP_ERR_CONFIG',
        `access_log.file: cannot open ${path}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    opened.file.onWriteError = (err) => this.logger.error({ err, file: path }, 'access log write failed');
    const log = new AccessLog(opened.logger);
    this.accessLogs.set(path, { log, file: opened.file });
    return log;
  }

  /**
   * Reopens the access log file (SIGUSR1, after logrotate renamed it): the lines logged so far go to the
   * old file, the next ones to a new file at the same path. When the path cannot be opened, the error is
   * logged and the old file stays in use.
   */
  reopenLogs(): void {
    for (const { file } of this.accessLogs.values()) {
      if (file === null) continue;
      const error = file.reopen();
      if (error === null) this.logger.info({ file: file.path }, 'access log reopened');
      else
        this.logger.error(
          { err: error, file: file.path },
          'access log not reopened: the old file stays in use',
        );
    }
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
      accessLog: this.accessLogFor(config),
      filters: this.filters,
      logger: this.logger,
      metrics: this.metrics,
      ...(this.baseDir === undefined ? {} : { baseDir: this.baseDir }),
    });
    this.healthChecker?.update(config);
    if (this.metrics !== null) {
      this.metrics.sampleLoop();
      this.sampler = setInterval(sampleMetrics, METRICS_SAMPLE_MS, this);
      this.sampler.unref();
    }
    const listeners: BoundListener[] = [];
    try {
      for (const l of config.listeners)
        listeners.push(await this.bind(l, this.listenerState(l, this.tlsContexts), config));
    } catch (error) {
      for (const bound of listeners) bound.server.close();
      throw error;
    }
    this.listeners = listeners;
    settleRedirects(config, listeners);
    return listeners.map((l) => l.address);
  }

  /** The addresses of the listeners, in config order. */
  get addresses(): AddressInfo[] {
    return this.listeners.map((l) => l.address);
  }

  /** Binds one listener; its connections are decided by its `state` at the time each arrives. */
  private async bind(l: ListenerConfig, state: ListenerState, config: Config): Promise<BoundListener> {
    // TCP_NODELAY is set per connection where it matters: on TLS connections here (accept), on plain
    // ones by their engine before their second write (DownstreamConnection.send, the HTTP/2 connection).
    const server = net.createServer();
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
    server.on('error', (err) => this.logger.error({ err }, 'listener error'));
    const bound: BoundListener = {
      key: listenerKey(l),
      server,
      address: server.address() as AddressInfo,
      state,
    };
    server.on('connection', (socket: net.Socket) => this.accept(socket, bound.state));
    this.logger.info(
      { address: bound.address.address, port: bound.address.port, max_connections: this.maxConnections },
      'listening',
    );
    return bound;
  }

  // ---------------------------------------------------------------- reload

  /**
   * Makes a reload ready without changing what serves: builds the new runtime (the filters whose entries
   * did not change are taken over with their state; the others are built, which may do I/O and fail),
   * loads the certificates of its TLS blocks and binds the listeners it adds. Throws, having changed
   * nothing, when any of that fails. Then commitReload swaps it in, or abortReload lets it go.
   */
  async prepareReload(
    config: Config,
    maxConnections: number = config.max_connections,
  ): Promise<PreparedReload> {
    if (this.reloading) throw new Error('a reload is already in progress');
    if (this.ctx.shuttingDown) throw new Error('the server is stopping');
    this.reloading = true;
    let runtime: Runtime | null = null;
    let tlsContexts: Map<TlsConfig, TlsContexts> | null = null;
    const added: BoundListener[] = [];
    try {
      runtime = await buildRuntime(config, {
        pools: this.pools,
        accessLog: this.accessLogFor(config),
        filters: this.filters,
        logger: this.logger,
        // The same metric slots: routes and targets the new config keeps go on counting where they were.
        metrics: this.metrics,
        previous: this.ctx.runtime,
        ...(this.baseDir === undefined ? {} : { baseDir: this.baseDir }),
      });
      tlsContexts = tlsContextsOf(config, this.logger);
      const kept = new Set(this.listeners.map((l) => l.key));
      for (const l of config.listeners) {
        if (kept.has(listenerKey(l))) continue;
        added.push(await this.bind(l, this.listenerState(l, tlsContexts), config));
      }
      return { config, runtime, tlsContexts, added, maxConnections };
    } catch (error) {
      this.reloading = false;
      for (const bound of added) bound.server.close();
      for (const contexts of tlsContexts?.values() ?? []) contexts.close();
      if (runtime !== null) await disposeChains(runtime.chains, filtersOf(this.ctx.runtime));
      throw error;
    }
  }

  /**
   * Swaps a prepared reload in: new exchanges use the new runtime from now on (on the connections already
   * open too: keep-alive, HTTP/2 and WebSocket connections stay open), the exchanges in progress finish
   * on the runtime they began with, which is let go of once they have. Listeners the new config no longer
   * has stop accepting and their connections close once idle; kept listeners take the new TLS settings for
   * new handshakes. Pools of targets no route uses any more close once the old exchanges are done.
   */
  commitReload(prepared: PreparedReload): void {
    this.reloading = false;
    const config = prepared.config;
    const old = this.ctx.runtime;
    this.ctx.runtime = prepared.runtime;
    this.maxConnections = prepared.maxConnections;
    this.applyProtocols(config);
    this.healthChecker?.update(config);
    // Listeners: kept ones take their new state; removed ones close; added ones join in config order.
    const byKey = new Map(this.listeners.map((l) => [l.key, l]));
    const addedByKey = new Map(prepared.added.map((l) => [l.key, l]));
    const next: BoundListener[] = [];
    for (const l of config.listeners) {
      const key = listenerKey(l);
      const existing = byKey.get(key);
      if (existing !== undefined) {
        byKey.delete(key);
        existing.state = this.listenerState(l, prepared.tlsContexts, existing.state.policy);
        next.push(existing);
      } else next.push(addedByKey.get(key)!);
    }
    for (const removed of byKey.values()) this.closeListener(removed);
    this.listeners = next;
    settleRedirects(config, next);
    // Certificates: the new TLS blocks' contexts serve new handshakes; the old ones stop watching files.
    for (const contexts of this.tlsContexts.values()) contexts.close();
    this.tlsContexts = prepared.tlsContexts;
    for (const contexts of this.tlsContexts.values()) contexts.watch();
    this.retiring.add(old);
    old.use.whenIdle(() => this.retired(old));
  }

  /** Lets go of a prepared reload that will not be committed (another worker could not prepare it). */
  async abortReload(prepared: PreparedReload): Promise<void> {
    this.reloading = false;
    for (const bound of prepared.added) bound.server.close();
    for (const contexts of prepared.tlsContexts.values()) contexts.close();
    await disposeChains(prepared.runtime.chains, filtersOf(this.ctx.runtime));
  }

  /** prepareReload then commitReload: a reload of this process alone (thread_count 1, tests). */
  async reload(config: Config, maxConnections: number = config.max_connections): Promise<void> {
    this.commitReload(await this.prepareReload(config, maxConnections));
  }

  /**
   * The last exchange on a replaced runtime has ended: its filters that neither the running runtime nor
   * another retiring one uses are closed, so are the pools of targets none of them uses, and the filter
   * modules let go of what no entry of the running config uses (a Redis client).
   */
  private retired(old: Runtime): void {
    this.retiring.delete(old);
    const live = [this.ctx.runtime, ...this.retiring];
    // An access log file no runtime writes to any more (a reload changed access_log.file) is closed.
    for (const [path, entry] of this.accessLogs) {
      if (entry.file !== null && !live.some((runtime) => runtime.accessLog === entry.log)) {
        this.accessLogs.delete(path);
        closeLogFile(entry.file);
      }
    }
    const filters = new Set<Filter>();
    const pools = new Set<Pool | Http2Pool>();
    for (const runtime of live) {
      for (const filter of filtersOf(runtime)) filters.add(filter);
      for (const route of runtime.routes) {
        for (const target of route.group.targets) pools.add(target.client as Pool | Http2Pool);
      }
    }
    this.pools.retain(pools);
    void disposeChains(old.chains, filters).then(() => {
      if (this.retiring.size === 0 && !this.ctx.shuttingDown)
        return this.filters.retain(this.ctx.runtime.config);
    });
  }

  /** A listener a reload removed: it accepts no more, and its connections close after their exchange. */
  private closeListener(listener: BoundListener): void {
    listener.server.close();
    const policy = listener.state.policy;
    for (const conn of this.ctx.connections) if (conn.listener === policy) conn.shutdown();
    this.logger.info({ address: listener.address.address, port: listener.address.port }, 'listener closed');
  }

  /**
   * What a listener decides, from its config. A listener kept by a reload keeps its `policy` object (its
   * fields change for the connections to come), by which its connections are known (closeListener).
   */
  private listenerState(
    l: ListenerConfig,
    tlsContexts: Map<TlsConfig, TlsContexts>,
    policy: ListenerPolicy = { hsts: null, redirectPort: null },
  ): ListenerState {
    const secure = l.tls.enabled;
    // redirect_https takes the place of tls.plain_http (and keeps redirecting to the first TLS listener).
    const redirectToSelf = secure && !l.redirect_https && l.tls.plain_http === 'redirect';
    let plain = PLAIN_SERVE;
    if (l.redirect_https || redirectToSelf) plain = PLAIN_REDIRECT;
    else if (secure && l.tls.plain_http === 'reject') plain = PLAIN_REJECT;
    policy.hsts = secure ? hstsValue(l.tls.hsts) : null;
    policy.redirectPort = l.redirect_https || redirectToSelf ? '' : null;
    return {
      tls: secure ? tlsContexts.get(l.tls)! : null,
      policy,
      plain,
      redirectToSelf,
    };
  }

  private accept(socket: net.Socket, listener: ListenerState): void {
    const shared = this.instanceConnections;
    if (
      shared === null
        ? this.open >= this.maxConnections
        : !shared.counter.tryAcquire(shared.worker, this.maxConnections)
    ) {
      // Refused connections are not counted; they linger at most REFUSED_LINGER_MS.
      this.metrics?.server.refused();
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
    // A plain connection's own close listener releases it (one `close` listener instead of two).
    if (listener.tls === null) this.serveHttp1(socket, listener, true);
    else {
      socket.on('close', this.release);
      socket.setNoDelay(true);
      this.detect(socket, listener);
    }
  }

  /**
   * An HTTP/1.x connection (or h2c, which it hands over). One accepted while zproxy stops (it was already
   * in the listener's queue) is served one request, with Connection: close, rather than dropped.
   * `counted`: the connection releases its place in the count when its socket closes (see accept).
   */
  private serveHttp1(socket: net.Socket, listener: ListenerState, counted = false): void {
    const connection = new DownstreamConnection(socket, this.ctx, listener.policy, counted);
    if (this.ctx.shuttingDown) connection.shutdown();
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
        this.serveHttp1(socket, listener);
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
    const secure = tls.wrapSocket(socket, {
      isServer: true,
      secureContext: contexts.defaultContext,
      SNICallback: contexts.sniCallback,
      ALPNProtocols: this.alpn,
    });
    secure.on('error', ignore);
    const timer = setTimeout(destroySocket, this.ctx.runtime.connectionTimeoutMs, secure);
    let secured = false;
    secure.once('secure', () => {
      secured = true;
      this.metrics?.server.handshake(true);
      clearTimeout(timer);
      this.pending.delete(socket);
      // During a graceful stop too: HTTP/2 gets GOAWAY at once, HTTP/1.1 one request and Connection: close.
      if (secure.alpnProtocol === 'h2' && this.http2 !== null)
        this.http2.acceptSecure(secure, listener.policy.hsts);
      else this.serveHttp1(secure, listener);
    });
    secure.once('close', () => {
      if (!secured) this.metrics?.server.handshake(false);
      clearTimeout(timer);
      this.pending.delete(socket);
    });
  }

  /** Writes the metric gauges: open connections by protocol, HTTP/2 streams, tunnels, pools, the event loop. */
  sampleMetrics(): void {
    const m = this.metrics;
    if (m === null) return;
    let streams = 0;
    let sessions = 0;
    if (this.http2 !== null) {
      for (const session of this.http2.sessions) streams += session.streamCount;
      sessions = this.http2.sessions.size;
    }
    m.server.connections(this.ctx.connections.size, sessions, this.pending.size, streams, this.tunnelCount);
    for (const target of m.allTargets()) target.sample();
    m.clearLoad();
    for (const route of this.ctx.runtime.routes) {
      const budget = route.group.budget;
      route.metrics?.load(budget.inFlight, route.breaker.pending, budget.retries);
      route.breaker.sample();
    }
    m.sampleLoop();
  }

  /**
   * Graceful stop: stop accepting, close idle connections, let exchanges in progress finish (their
   * connections close after the response), let WebSocket tunnels run until `websocket.drain_timeout_ms`
   * and then close them, and destroy whatever is left when `graceMs` has passed.
   */
  async stop(graceMs = this.ctx.runtime.config.shutdown_grace_ms): Promise<void> {
    this.ctx.shuttingDown = true;
    this.healthChecker?.stop();
    if (this.sampler !== null) clearInterval(this.sampler);
    this.sampler = null;
    this.metrics?.stop();
    const closed = Promise.all(
      this.listeners.map((l) => new Promise<void>((r) => l.server.close(() => r()))),
    );
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
    for (const { file } of this.accessLogs.values()) if (file !== null) closeLogFile(file);
  }
}
