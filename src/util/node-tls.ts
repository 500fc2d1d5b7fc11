/**
 * The part of node:tls that zproxy uses, loaded at its first use: a configuration without TLS (no TLS
 * listener, no https:// or h2:// upstream) never loads node:tls, its crypto classes and its native
 * bindings (about 3 MiB of RSS per worker; docs/architecture.md, "Workers"). Import it as a namespace
 * (`import * as tls from '../util/node-tls.ts'`): the calls read as node:tls's own.
 *
 * process.getBuiltinModule loads a built-in synchronously and, unlike an ESM import of it, reads none of
 * its lazily loaded properties. test/unit/serving-imports.test.ts checks that a plain HTTP/1.1 worker does
 * not load it.
 */
import type * as NodeTls from 'node:tls';

export type {
  ConnectionOptions,
  PeerCertificate,
  SecureContext,
  SecureContextOptions,
  TLSSocket,
  TLSSocketOptions,
} from 'node:tls';

let loaded: typeof NodeTls | null = null;

function nodeTls(): typeof NodeTls {
  if (loaded === null) loaded = process.getBuiltinModule('node:tls');
  return loaded;
}

/** tls.connect: a client connection. */
export function connect(options: NodeTls.ConnectionOptions): NodeTls.TLSSocket {
  return nodeTls().connect(options);
}

/** tls.createSecureContext. */
export function createSecureContext(options: NodeTls.SecureContextOptions): NodeTls.SecureContext {
  return nodeTls().createSecureContext(options);
}

/** tls.checkServerIdentity. */
export function checkServerIdentity(hostname: string, cert: NodeTls.PeerCertificate): Error | undefined {
  return nodeTls().checkServerIdentity(hostname, cert);
}

/** `new tls.TLSSocket(socket, options)`: wraps an accepted socket (the server side of a handshake). */
export function wrapSocket(
  socket: NonNullable<ConstructorParameters<typeof NodeTls.TLSSocket>[0]>,
  options: NodeTls.TLSSocketOptions,
): NodeTls.TLSSocket {
  return new (nodeTls().TLSSocket)(socket, options);
}
