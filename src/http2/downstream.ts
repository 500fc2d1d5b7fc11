/**
 * HTTP/2 from clients: connections are served by zproxy's own frame layer (server-connection.ts) on
 * sockets handed over either by an HTTP/1 connection that saw the connection preface (h2c with prior
 * knowledge) or by the listener after a TLS handshake that chose `h2` by ALPN. Each stream becomes the
 * downstream of one request flow (stream-downstream.ts).
 *
 * Hardening (docs/protocols.md, "HTTP/2 limits"): the SETTINGS and budgets come from `config.http2`
 * (session-limits.ts). The frame layer refuses malformed requests itself (they never reach an exchange),
 * and ends a connection that resets or has refused too many streams (Rapid Reset, CVE-2023-44487),
 * floods PING/SETTINGS or CONTINUATION, with GOAWAY ENHANCE_YOUR_CALM; this module logs it.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config/schema.ts';
import { errorBody } from '../errors.ts';
import type { Logger } from '../observe/logger.ts';
import { plainAddress } from '../util/address.ts';
import { SlotSet } from '../util/slot-set.ts';
import { ENHANCE_YOUR_CALM, INTERNAL_ERROR } from './frames.ts';
import { H2ServerConnection, type H2ServerOptions, type H2ServerStream } from './server-connection.ts';
import { h2ServerOptions } from './session-limits.ts';
import { type StreamContext, StreamDownstream } from './stream-downstream.ts';

/** What the HTTP/2 engine needs of its listener (the listener's Http2Context is one). */
export interface Http2Context extends StreamContext {
  /** Called when a connection has closed (used to finish a graceful shutdown). */
  onConnectionClosed(): void;
}

export class Http2Downstream {
  private readonly ctx: Http2Context;
  private readonly logger: Logger | null;
  /** The frame layer's options for the current runtime's config (recomputed when a reload changes it). */
  private options: H2ServerOptions;
  private optionsConfig: Config;
  readonly sessions = new SlotSet<H2ServerConnection>();

  /** `logger` receives the warn line of a connection closed for flooding (none when omitted). */
  constructor(ctx: Http2Context, logger?: Logger) {
    this.ctx = ctx;
    this.logger = logger ?? null;
    this.optionsConfig = ctx.runtime.config;
    this.options = h2ServerOptions(this.optionsConfig);
  }

  /** The options matching the running config; connections keep the ones they began with. */
  private currentOptions(): H2ServerOptions {
    const config = this.ctx.runtime.config;
    if (config !== this.optionsConfig) {
      this.optionsConfig = config;
      this.options = h2ServerOptions(config);
    }
    return this.options;
  }

  /** Serves a connection whose first bytes (`buffered`, the preface and maybe more) were already read. */
  accept(socket: Socket, buffered: Buffer): void {
    this.serve(socket, 'http', null, buffered);
  }

  /**
   * Serves a TLS connection whose handshake has completed with ALPN `h2`. `hsts` is the
   * Strict-Transport-Security value of its listener (`tls.hsts`), or null when HSTS is off: every response
   * on the connection, proxied or zproxy's own, then carries it (replacing the upstream's).
   */
  acceptSecure(socket: TLSSocket, hsts: string | null = null): void {
    this.serve(socket, 'https', hsts, undefined);
  }

  private serve(socket: Socket, scheme: string, hsts: string | null, buffered: Buffer | undefined): void {
    const clientAddress = plainAddress(socket.remoteAddress);
    const connection = new H2ServerConnection(socket, this.currentOptions(), (stream) =>
      this.onStream(stream, clientAddress, scheme, hsts),
    );
    this.sessions.add(connection);
    connection.onClose = (error) => {
      this.sessions.delete(connection);
      if (error !== null && error.code === ENHANCE_YOUR_CALM) {
        this.logger?.warn(
          { client: clientAddress, count: error.count, limit: error.reason },
          `HTTP/2 client exceeded the ${error.reason} limit; GOAWAY ENHANCE_YOUR_CALM`,
        );
      } else if (error !== null && error.code === INTERNAL_ERROR) {
        this.logger?.error(
          { client: clientAddress, err: error.reason },
          'HTTP/2 connection closed by an internal error (GOAWAY INTERNAL_ERROR)',
        );
      }
      this.ctx.onConnectionClosed();
    };
    if (this.ctx.shuttingDown) {
      connection.start(buffered);
      connection.close();
      return;
    }
    connection.start(buffered);
  }

  private onStream(stream: H2ServerStream, clientAddress: string, scheme: string, hsts: string | null): void {
    if (stream.tooLarge) {
      respondHeadersTooLarge(stream, hsts);
      return;
    }
    new StreamDownstream(this.ctx, stream, clientAddress, scheme, hsts).start();
  }

  /** Graceful stop: GOAWAY on every connection; streams in progress may finish. */
  shutdown(): void {
    for (const connection of this.sessions) connection.close();
  }

  destroy(): void {
    for (const connection of this.sessions) connection.destroy();
  }
}

/** 431 with the usual JSON error body (not forwarded, so no upstream and no exchange). */
function respondHeadersTooLarge(stream: H2ServerStream, hsts: string | null): void {
  const body = Buffer.from(errorBody('ZP_ERR_HEADERS_TOO_LARGE'));
  const fields = [
    'content-type',
    'application/json',
    'content-length',
    String(body.length),
    'cache-control',
    'no-store',
  ];
  if (hsts !== null) fields.push('strict-transport-security', hsts);
  stream.respond(431, fields, false);
  stream.end(body);
}
