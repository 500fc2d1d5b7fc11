/**
 * The WebSocket opening handshake as a proxy sees it (RFC 6455 §4): which HTTP/1.1 requests ask for a
 * WebSocket, whether such a request is well formed, whether an upstream's 101 really switched to
 * WebSocket, and which fields go on to the next hop. The proxy never reads WebSocket frames: after the
 * handshake both connections are joined as a byte tunnel (tunnel.ts).
 *
 * `Upgrade` and `Connection` are hop-by-hop fields: they are dropped from ordinary requests, but a tunnel
 * request forwards `Upgrade` as received and says `Connection: Upgrade` itself (fields named by the
 * client's Connection stay dropped). `Sec-WebSocket-Key`, `-Version`, `-Protocol` and `-Extensions` are
 * end-to-end fields and pass untouched both ways, so sub-protocols and extensions (permessage-deflate) are
 * negotiated between the client and the upstream.
 */
import { createHash } from 'node:crypto';
import type { ErrorCode } from '../errors.ts';
import { FIELD_UPGRADE } from '../http/fields.ts';
import { stringEqualsLower } from '../http1/chars.ts';
import type { MessageHead, RequestHead } from '../http1/parse-head.ts';

/** And-ed into a drop mask (serialize.ts) so that the Upgrade field is forwarded. */
export const KEEP_UPGRADE = ~(1 << FIELD_UPGRADE);

/** The only WebSocket version (RFC 6455 §4.1: 13). */
export const WEBSOCKET_VERSION = '13';

/** A base64 string of 16 bytes (RFC 6455 §4.1, item 7), as `ws` checks it. */
const KEY_PATTERN = /^[A-Za-z0-9+/]{22}==$/;

/** RFC 6455 §1.3: appended to the key before hashing for `Sec-WebSocket-Accept`. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** True when one of the head's Upgrade fields lists the `websocket` protocol (any case). */
export function hasWebSocketToken(head: MessageHead): boolean {
  for (let i = 0; i < head.fieldCount; i++) {
    if (head.fieldKind(i) !== FIELD_UPGRADE) continue;
    const tokens = head.fieldValue(i).split(',');
    for (let j = 0; j < tokens.length; j++) {
      if (stringEqualsLower(tokens[j]!.trim(), 'websocket')) return true;
    }
  }
  return false;
}

/**
 * An HTTP/1.1 request with `Connection: upgrade` (recorded by the parser) and `Upgrade: websocket`. Other
 * requests that name `upgrade` in Connection (`Upgrade: h2c`, ...) are served as ordinary HTTP/1.1, and
 * so are HTTP/1.0 ones (RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored).
 */
export function isWebSocketUpgrade(head: RequestHead): boolean {
  return head.connectionUpgrade && head.versionMinor === 1 && hasWebSocketToken(head);
}

/** Why a WebSocket upgrade request is refused: the code to answer with and fields to add to the answer. */
export interface HandshakeProblem {
  readonly code: ErrorCode;
  readonly message: string;
  /** Fields added to the error response: names and values alternately. */
  readonly fields: readonly string[];
}

function problem(code: ErrorCode, message: string, fields: readonly string[] = []): HandshakeProblem {
  return { code, message, fields };
}

/**
 * Checks an upgrade request against RFC 6455 §4.1/§4.2.1: GET, no body, exactly one
 * `Sec-WebSocket-Key` that is the base64 of 16 bytes, `Sec-WebSocket-Version: 13`. Returns null when it
 * may be forwarded. A missing version is a malformed handshake (400); another version is answered 426
 * with the version zproxy speaks (§4.4), with `Upgrade: websocket` as RFC 9110 §15.5.22 asks of a 426.
 */
export function checkUpgradeRequest(head: RequestHead): HandshakeProblem | null {
  if (head.method !== 'GET') {
    return problem('ZP_ERR_WEBSOCKET_HANDSHAKE', 'A WebSocket handshake must be a GET request');
  }
  if (head.chunked || head.contentLength > 0) {
    return problem('ZP_ERR_WEBSOCKET_HANDSHAKE', 'A WebSocket handshake has no request body');
  }
  const versions = head.getAll('sec-websocket-version');
  if (versions.length === 0) {
    return problem('ZP_ERR_WEBSOCKET_HANDSHAKE', 'Sec-WebSocket-Version is missing');
  }
  if (versions.length !== 1 || versions[0]!.trim() !== WEBSOCKET_VERSION) {
    return problem(
      'ZP_ERR_WEBSOCKET_VERSION',
      `Sec-WebSocket-Version ${JSON.stringify(versions.join(', '))} is not supported; use 13`,
      ['Sec-WebSocket-Version', WEBSOCKET_VERSION, 'Upgrade', 'websocket', 'Connection', 'Upgrade'],
    );
  }
  const keys = head.getAll('sec-websocket-key');
  if (keys.length !== 1) {
    return problem(
      'ZP_ERR_WEBSOCKET_HANDSHAKE',
      keys.length === 0 ? 'Sec-WebSocket-Key is missing' : 'Sec-WebSocket-Key appears more than once',
    );
  }
  if (!KEY_PATTERN.test(keys[0]!.trim())) {
    return problem('ZP_ERR_WEBSOCKET_HANDSHAKE', 'Sec-WebSocket-Key is not the base64 encoding of 16 bytes');
  }
  return null;
}

/** An upstream's 101 switches to WebSocket: `Connection: upgrade` and `Upgrade: websocket`. */
export function switchesToWebSocket(head: MessageHead): boolean {
  return head.connectionUpgrade && hasWebSocketToken(head);
}

/**
 * The `Sec-WebSocket-Accept` value for a key (RFC 6455 §4.2.2). The HTTP/1.1 tunnel does not need it
 * (the client checks the upstream's answer end to end); a handshake zproxy makes on a client's behalf
 * (RFC 8441: an HTTP/2 client has no key of its own) checks the upstream's answer with it.
 */
export function acceptValue(key: string): string {
  return createHash('sha1').update(`${key}${ACCEPT_GUID}`).digest('base64');
}
