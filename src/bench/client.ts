/** What the generator's protocol clients share: the thread's context and the contract the runner drives. */
import net from 'node:net';
import tls from 'node:tls';
import type { ThreadPlan } from './options.ts';
import type { ThreadStats } from './stats.ts';

/** One thread's run, shared by all its connections. */
export interface RunContext {
  readonly plan: ThreadPlan;
  readonly stats: ThreadStats;
  /** When the run started (performance.now()). */
  readonly start: number;
  /** False once the run is over: no new request is sent. */
  running: boolean;
}

/** One connection of any protocol, as the runner drives it. */
export interface LoadConnection {
  /** Opens the connection and starts sending. */
  start(): void;
  /** Closes the connection; returns the number of requests sent and not answered. */
  stop(): number;
  /** Called every few tens of milliseconds: timeouts. */
  sweep(now: number): void;
}

/** Delay before connecting again after a failure to connect (so that a refused port is not a busy loop). */
export const RECONNECT_DELAY_MS = 20;

/** A host as a TLS server name: nothing for an IP address (SNI carries names only). */
export function serverName(hostname: string): string | undefined {
  const bare = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
  return /^[\d.]+$/.test(bare) || bare.includes(':') ? undefined : bare;
}

/** The host to connect to, without the brackets of an IPv6 literal. */
export function connectHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

/** The port of the URL, or the scheme's default. */
export function connectPort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' || url.protocol === 'wss:' ? 443 : 80;
}

/** Where the connections of a thread connect, and how. */
export interface SocketTarget {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly servername: string | undefined;
  readonly insecure: boolean;
}

/**
 * A TCP socket to the target, or a TLS one offering `alpn`, without Nagle's delay, with a connection's
 * listeners (bound once per connection): `onConnect` once it is connected (over TLS, once the handshake
 * is done).
 */
export function openSocket(
  t: SocketTarget,
  alpn: string,
  onConnect: () => void,
  onData: (chunk: Buffer) => void,
  onEnd: () => void,
  onError: (error: Error) => void,
  onClose: () => void,
): net.Socket {
  const socket = t.secure
    ? tls.connect({
        host: t.host,
        port: t.port,
        servername: t.servername,
        rejectUnauthorized: !t.insecure,
        ALPNProtocols: [alpn],
      })
    : net.connect({ host: t.host, port: t.port });
  socket.setNoDelay(true);
  socket.on(t.secure ? 'secureConnect' : 'connect', onConnect);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('error', onError);
  socket.on('close', onClose);
  return socket;
}
