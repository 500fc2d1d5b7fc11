/**
 * TLS certificates of a listener: the default one and those chosen by SNI (exact names and
 * `*.example.com`), built once into secure contexts. Certificate and key files are polled; when one
 * changes, every context is rebuilt and swapped for new handshakes (connections already open keep theirs).
 * A file that cannot be loaded is logged and the certificates in use keep serving. Every context refuses
 * TLS 1.2 client-initiated renegotiation.
 */
import { constants } from 'node:crypto';
import { readFileSync, type Stats, unwatchFile, watchFile } from 'node:fs';
import type { TlsConfig } from '../config/schema.ts';
import { ZpError } from '../errors.ts';
import type { Logger } from '../observe/logger.ts';
import * as tls from '../util/node-tls.ts';

/** How often certificate files are checked for changes. */
export const CERT_POLL_INTERVAL_MS = 1000;

interface Contexts {
  readonly fallback: tls.SecureContext;
  readonly exact: ReadonlyMap<string, tls.SecureContext>;
  /** Keyed by the suffix after '*.', e.g. 'example.com'. */
  readonly wildcard: ReadonlyMap<string, tls.SecureContext>;
}

function build(config: TlsConfig): Contexts {
  const context = (certFile: string, keyFile: string) => {
    try {
      return tls.createSecureContext({
        cert: readFileSync(certFile),
        key: readFileSync(keyFile),
        minVersion: config.min_version,
        // Client-initiated renegotiation (TLS 1.2) is refused: a full handshake per request is a cheap
        // way to burn the proxy's CPU. Node limits it only on sockets accepted by a tls.Server, and
        // zproxy wraps accepted sockets itself; every context (default, SNI, reloaded) is built here.
        secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
        ...(config.ciphers === null ? {} : { ciphers: config.ciphers }),
      });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ZpError(
        'ZP_ERR_CONFIG',
        `tls: cannot use certificate ${certFile} with key ${keyFile}: ${reason}`,
      );
    }
  };
  const exact = new Map<string, tls.SecureContext>();
  const wildcard = new Map<string, tls.SecureContext>();
  let first: tls.SecureContext | null = null;
  for (const c of config.certificates) {
    const ctx = context(c.cert_file, c.key_file);
    first ??= ctx;
    for (const name of c.server_names) {
      const n = name.toLowerCase().replace(/\.$/, '');
      if (n.startsWith('*.')) wildcard.set(n.slice(2), ctx);
      else exact.set(n, ctx);
    }
  }
  const fallback =
    config.cert_file !== null && config.key_file !== null
      ? context(config.cert_file, config.key_file)
      : first;
  if (fallback === null) throw new Error('tls: no certificate configured');
  return { fallback, exact, wildcard };
}

export class TlsContexts {
  private contexts: Contexts;
  private readonly config: TlsConfig;
  private readonly logger: Logger;
  private readonly files: string[];
  private readonly listeners: [string, (cur: Stats, prev: Stats) => void][] = [];

  /** Throws when the certificates cannot be loaded (the listener cannot start without them). */
  constructor(config: TlsConfig, logger: Logger) {
    this.config = config;
    this.logger = logger;
    this.contexts = build(config);
    const files = new Set<string>();
    if (config.cert_file !== null) files.add(config.cert_file);
    if (config.key_file !== null) files.add(config.key_file);
    for (const c of config.certificates) {
      files.add(c.cert_file);
      files.add(c.key_file);
    }
    this.files = [...files];
    this.sniCallback = this.sniCallback.bind(this);
  }

  /** The context for a server name (lowercase, no trailing dot expected but tolerated). */
  contextFor(serverName: string): tls.SecureContext {
    const c = this.contexts;
    const name = serverName.toLowerCase().replace(/\.$/, '');
    const exact = c.exact.get(name);
    if (exact !== undefined) return exact;
    // The longest wildcard suffix first: a.b.example.com tries b.example.com, then example.com.
    for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) {
      const ctx = c.wildcard.get(name.slice(dot + 1));
      if (ctx !== undefined) return ctx;
    }
    return c.fallback;
  }

  get defaultContext(): tls.SecureContext {
    return this.contexts.fallback;
  }

  sniCallback(serverName: string, callback: (err: Error | null, ctx?: tls.SecureContext) => void): void {
    callback(null, this.contextFor(serverName));
  }

  /** Rebuilds every context from the files; keeps the current ones when that fails. */
  reload(): boolean {
    try {
      this.contexts = build(this.config);
      this.logger.info({ files: this.files }, 'tls certificates reloaded');
      return true;
    } catch (err) {
      this.logger.error(
        { err, files: this.files },
        'tls certificates not reloaded; the previous ones keep serving',
      );
      return false;
    }
  }

  /** Starts polling the certificate and key files. */
  watch(): void {
    for (const file of this.files) {
      const listener = (cur: Stats, prev: Stats) => {
        if (cur.mtimeMs !== prev.mtimeMs || cur.size !== prev.size || cur.ino !== prev.ino) this.reload();
      };
      watchFile(file, { interval: CERT_POLL_INTERVAL_MS, persistent: false }, listener);
      this.listeners.push([file, listener]);
    }
  }

  close(): void {
    for (const [file, listener] of this.listeners) unwatchFile(file, listener);
    this.listeners.length = 0;
  }
}
