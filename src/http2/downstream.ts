/**
 * HTTP/2 from clients: sessions are served by `node:http2` on sockets handed over either by an HTTP/1
 * connection that saw the connection preface (h2c with prior knowledge) or by the listener after a TLS
 * handshake that chose `h2` by ALPN. Each stream becomes a StreamExchange.
 */
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ConnectionContext } from '../http1/downstream-connection.ts';
import { plainAddress } from '../util/address.ts';
import { StreamExchange } from './stream-exchange.ts';

/** The HTTP/2 connection preface (RFC 9113 §3.4). */
export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export class Http2Downstream {
  private readonly server: http2.Http2Server;
  private readonly ctx: ConnectionContext;
  readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(ctx: ConnectionContext) {
    this.ctx = ctx;
    this.server = http2.createServer({
      settings: { maxConcurrentStreams: 128 },
      maxSessionMemory: 16,
    });
    this.server.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      session.on('error', ignore);
      session.once('close', () => {
        this.sessions.delete(session);
        this.ctx.onConnectionClosed();
      });
    });
    this.server.on('stream', (stream, headers) => {
      const socket = stream.session?.socket;
      const scheme = stream.session?.encrypted === true ? 'https' : 'http';
      new StreamExchange(this.ctx.runtime, stream, headers, plainAddress(socket?.remoteAddress), scheme);
    });
  }

  /** Serves a connection whose first bytes (`buffered`, the preface and maybe more) were already read. */
  accept(socket: Socket, buffered: Buffer): void {
    // The session replays bytes left in the socket's buffer on its next tick; the socket stays paused
    // until then so that nothing else consumes them.
    socket.unshift(buffered);
    this.server.emit('connection', socket);
  }

  /** Serves a TLS connection whose handshake has completed with ALPN `h2`. */
  acceptSecure(socket: TLSSocket): void {
    // node:http2 waits for 'secureConnect' while `secureConnecting` is set, an event only client sockets
    // emit; a server-side TLSSocket made outside a tls.Server keeps the flag, so it is cleared here as
    // tls.Server does before 'secureConnection'.
    (socket as TLSSocket & { secureConnecting: boolean }).secureConnecting = false;
    this.server.emit('connection', socket);
  }

  /** Graceful stop: GOAWAY on every session; streams in progress may finish. */
  shutdown(): void {
    for (const session of this.sessions) session.close();
  }

  destroy(): void {
    for (const session of this.sessions) session.destroy();
  }
}

function ignore(): void {}
