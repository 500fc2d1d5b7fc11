/**
 * One HTTP/2 stream from a client, routed like an HTTP/1.1 exchange and forwarded to an HTTP/1.1 upstream
 * over the same pools and error codes, or handed to an Http2UpstreamExchange when the picked target is an
 * HTTP/2 upstream (h2c://, h2://). For HTTP/1.1 upstreams the request head is rebuilt as HTTP/1.1
 * (pseudo-headers become the request line and Host, split `cookie` fields are joined, connection-specific
 * fields never appear), the response head is mapped back (hop-by-hop fields dropped), bodies stream both
 * ways with backpressure, and trailers cross in both directions (request trailers go out in a chunked
 * body; the trailer section of a chunked response becomes HTTP/2 trailers).
 *
 * A WebSocket over HTTP/2 (RFC 8441: an extended CONNECT with `:protocol websocket`) becomes an HTTP/1.1
 * Upgrade on a dedicated upstream connection, with a fresh `Sec-WebSocket-Key`; the upstream's 101 is
 * checked and answered to the client as 200, and then the stream and the upstream socket are joined by a
 * Tunnel (src/websocket/). Any other answer is forwarded as a normal response (a 2xx that did not switch
 * is a 502: to an HTTP/2 client a 2xx would mean the tunnel is open).
 */

import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http2';
import { type CompiledRoute, forwardPathFor, type Runtime } from '../config/runtime.ts';
import { ERROR_CODES, type ErrorCode, errorBody, type ZpError } from '../errors.ts';
import { Exchange } from '../exchange.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FieldList, type FieldSource, fieldObject } from '../http/fields.ts';
import {
  CONTENT_LENGTH_BIT,
  ForwardedRequest,
  ForwardedResponse,
  http1Lines,
  http1RequestAdded,
  http1TrailerLines,
  http2RequestList,
  http2ResponseList,
  http2TrailerList,
} from '../http/forwarding.ts';
import { HeldResponse } from '../http1/held-response.ts';
import type { ResponseHead } from '../http1/parse-head.ts';
import { type UpgradeHandler, UpstreamConnection } from '../http1/upstream-connection.ts';
import { FieldEditList } from '../pipeline/field-edits.ts';
import { HeadFieldReader, ObjectFieldReader } from '../pipeline/field-readers.ts';
import { FilterExchange, FilterRequestView, isPending } from '../pipeline/filter-exchange.ts';
import { renderLocal } from '../pipeline/local-response.ts';
import { normalizePath } from '../router/normalize-path.ts';
import { BODY_CHUNKED, BODY_LENGTH, BODY_NONE } from '../upstream/contract.ts';
import type { UpstreamTarget } from '../upstream/group.ts';
import type { Pool } from '../upstream/pool.ts';
import { acceptValue, switchesToWebSocket, WEBSOCKET_VERSION } from '../websocket/handshake.ts';
import type { TunnelRegistry } from '../websocket/registry.ts';
import { Tunnel } from '../websocket/tunnel.ts';
import { INTERNAL_ERROR, NO_ERROR } from './frames.ts';
import type { H2ServerStream, StreamOwner } from './server-connection.ts';
import { H2StreamDuplex } from './stream-duplex.ts';
import { Http2UpstreamExchange } from './upstream-exchange.ts';

/** A 101's fields for an HTTP/2 client lose Sec-WebSocket-Accept (it answers zproxy's key, not the client's). */
const WITHOUT_ACCEPT = new FieldEditList();
WITHOUT_ACCEPT.remove('sec-websocket-accept');

const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');
const CRLF = Buffer.from('\r\n', 'latin1');

/**
 * The request head of a stream as a header object (node:http2's shape, which the filters' field reader
 * and the forwarding rules read): pseudo-header fields first, repeated fields as lists (split `cookie`
 * fields too: the forwarding rules join them with "; " for HTTP/1.1, RFC 9113 §8.2.3).
 */
export function requestHeaders(stream: H2ServerStream): IncomingHttpHeaders {
  const headers: IncomingHttpHeaders = {
    ':method': stream.method,
    ':path': stream.path,
    ':scheme': stream.scheme,
    ':authority': stream.authority,
    ...fieldObject(stream.fields),
  };
  if (stream.protocol !== '') headers[':protocol'] = stream.protocol;
  return headers;
}

export class StreamExchange implements UpgradeHandler, StreamOwner {
  private readonly stream: H2ServerStream;
  private readonly exchange: Exchange;
  private readonly runtime: Runtime;
  private readonly headRequest: boolean;
  /** The Strict-Transport-Security value for this session (TLS with `tls.hsts` on), else null. */
  private readonly hsts: string | null;
  private upstream: UpstreamConnection | null = null;
  private waitingPool: Pool | null = null;
  /** The upstream request head (latin1: one char per byte) until a connection has taken it. */
  private upstreamHead: string | null = null;
  /** The request body is sent with chunked framing (no content-length from the client). */
  private chunkedRequest = false;
  private requestDone = false;
  private finished = false;
  /** The upstream's response, held while a response filter waits for I/O (holdResponse). */
  private held: HeldResponse | null = null;
  /** Trailers of the client's request (sent in the last chunk), names and values alternately. */
  private requestTrailers: string[] | null = null;
  /** Trailer section of the upstream's chunked response (sent as HTTP/2 trailers). */
  private responseTrailers: string[] | null = null;
  /** The process's tunnels; null when WebSocket is off. */
  private readonly tunnels: TunnelRegistry | null;
  /**
   * An extended CONNECT for a WebSocket (RFC 8441) holding a place in `tunnels`: the Sec-WebSocket-Key
   * sent to the upstream on the client's behalf; null otherwise (and once the place is used or given back).
   */
  private websocketKey: string | null = null;
  /** Kept between routing and forward() while the route's filters run. */
  private fwdHeaders: IncomingHttpHeaders | null = null;
  private fwdTarget: UpstreamTarget | null = null;
  private fwdPath = '';
  private fwdScheme = '';
  private fwdContentLength = -1;

  /** `hsts` is the Strict-Transport-Security value for the stream's connection, or null. */
  constructor(
    runtime: Runtime,
    stream: H2ServerStream,
    clientAddress: string,
    scheme: string,
    hsts: string | null,
    tunnels: TunnelRegistry | null = null,
  ) {
    this.stream = stream;
    this.runtime = runtime;
    this.hsts = hsts;
    this.tunnels = tunnels;
    const headers = requestHeaders(stream);
    const method = stream.method;
    const target = stream.path;
    const authority = stream.authority !== '' ? stream.authority : String(headers.host ?? '');
    this.headRequest = method === 'HEAD';
    const ex = new Exchange(performance.now(), method, target, authority, '2', clientAddress);
    this.exchange = ex;
    stream.owner = this;
    this.start(headers, method, target, authority, scheme);
  }

  onStreamDrain(): void {
    // The client's flow-control window reopened: read the upstream again.
    this.upstream?.resume();
  }

  onRequestTrailers(fields: string[]): void {
    this.requestTrailers = fields;
  }

  private start(
    headers: IncomingHttpHeaders,
    method: string,
    target: string,
    authority: string,
    scheme: string,
  ) {
    const rt = this.runtime;
    const ex = this.exchange;
    // RFC 8441: the frame layer lets `:protocol` through only on a CONNECT with :scheme, :path and
    // :authority, and only when SETTINGS_ENABLE_CONNECT_PROTOCOL was sent (WebSocket enabled).
    const protocol = this.stream.protocol;
    const websocket = method === 'CONNECT' && protocol !== '';
    if (websocket) {
      if (protocol.toLowerCase() !== 'websocket') {
        this.respondError('ZP_ERR_WEBSOCKET_HANDSHAKE', `Unsupported :protocol ${JSON.stringify(protocol)}`);
        return;
      }
    } else if (method === 'CONNECT' || target.charCodeAt(0) !== 0x2f) {
      this.respondError('ZP_ERR_BAD_REQUEST', 'Unsupported request-target');
      return;
    }
    const q = target.indexOf('?');
    const rawPath = q === -1 ? target : target.slice(0, q);
    const query = q === -1 ? '' : target.slice(q);
    const path = normalizePath(rawPath);
    if (path === null) {
      this.respondError('ZP_ERR_BAD_REQUEST', 'Invalid request path');
      return;
    }
    ex.path = path;
    ex.query = query;
    const lengthField = headers['content-length'];
    const contentLength = lengthField === undefined ? -1 : Number(lengthField);
    if (rt.maxBodyBytes > 0 && contentLength > rt.maxBodyBytes) {
      this.respondError('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    // A WebSocket is routed as the GET it is over HTTP/1.1, so that method rules apply the same to both.
    const m = rt.router.match(authority, websocket ? 'GET' : method, path);
    if (m.status !== 200) {
      if (m.status === 405) this.respondError('ZP_ERR_METHOD_NOT_ALLOWED', undefined, { allow: m.allow });
      else this.respondError('ZP_ERR_NOT_FOUND');
      return;
    }
    const route: CompiledRoute = m.value;
    ex.route = route;
    ex.params = m.params;
    const forwardPath = forwardPathFor(route, path, m.matchedLength);
    const upstreamTarget = route.group.pick();
    ex.upstream = upstreamTarget.authority;
    this.fwdHeaders = headers;
    this.fwdTarget = upstreamTarget;
    this.fwdPath = `${forwardPath}${query}`;
    this.fwdScheme = scheme;
    this.fwdContentLength = contentLength;
    const chain = route.filters;
    if (chain === null) {
      this.forward(websocket);
      return;
    }
    const request = new FilterRequestView(
      ex,
      websocket ? 'GET' : method,
      scheme,
      websocket,
      new ObjectFieldReader(headers),
    );
    const fx = new FilterExchange(chain, ex, request, this.fwdPath);
    ex.filters = fx;
    if (route.filterOnlyMethods?.has(method) === true) fx.methodNotAllowed = route.allow;
    const outcome = fx.runRequest();
    if (isPending(outcome)) {
      this.awaitFilters(outcome, (local) => this.afterRequestFilters(websocket, local));
      return;
    }
    this.afterRequestFilters(websocket, outcome);
  }

  private afterRequestFilters(websocket: boolean, local: LocalResponse | undefined): void {
    if (this.finished || this.stream.closed) return;
    const ex = this.exchange;
    if (local !== undefined) {
      ex.upstream = '';
      this.respondFiltered(local);
      return;
    }
    const allow = ex.filters!.methodNotAllowed;
    if (allow !== null) {
      ex.upstream = '';
      this.respondError('ZP_ERR_METHOD_NOT_ALLOWED', undefined, { allow });
      return;
    }
    this.forward(websocket);
  }

  /** Answers with a filter's LocalResponse (the chain's response edits applied). */
  private respondFiltered(local: LocalResponse): void {
    const stream = this.stream;
    this.upstream?.destroy();
    this.upstream = null;
    this.waitingPool?.cancel(this);
    this.waitingPool = null;
    respondWithLocal(stream, this.exchange, local, this.headRequest, this.hsts);
    this.finish(null);
  }

  /** Sends a routed request to its upstream target (after the route's filters, when it has any). */
  private forward(websocket: boolean): void {
    const rt = this.runtime;
    const ex = this.exchange;
    const headers = this.fwdHeaders!;
    const upstreamTarget = this.fwdTarget!;
    const scheme = this.fwdScheme;
    const contentLength = this.fwdContentLength;
    const lengthField = headers['content-length'];
    const method = ex.method;
    const authority = ex.host;
    const fx = ex.filters;
    const edits = fx === null ? null : fx.upstreamEditsOrNull;
    const target = fx?.targetOverride ?? this.fwdPath;
    this.fwdHeaders = null;
    const h2pool = upstreamTarget.http2;
    const source = new FieldList(this.stream.fields);
    const fwd = new ForwardedRequest();
    rt.forwarding.request(
      fwd,
      source,
      ex.clientAddress,
      scheme,
      authority,
      null,
      '2',
      upstreamTarget.hostHeader,
    );
    // A request without content-length whose stream is still open has a body of unknown length.
    const requestDone = this.stream.bodyless || contentLength === 0;

    if (websocket) {
      this.startWebSocket(headers, source, fwd, upstreamTarget.pool, target, edits);
      return;
    }
    if (h2pool !== null) {
      // An HTTP/2 upstream: the stream is handed over whole (this object no longer takes part).
      this.finished = true;
      const out = http2RequestList(fwd, source, method, h2pool.scheme, target, edits);
      new Http2UpstreamExchange(rt, this.stream, ex, h2pool, out, requestDone, this.headRequest, this.hsts);
      return;
    }

    const pool = upstreamTarget.pool!;
    let head = `${method} ${target} HTTP/1.1\r\n${http1Lines(source, fwd.dropMask | CONTENT_LENGTH_BIT, edits)}${http1RequestAdded(fwd, edits)}`;
    this.requestDone = requestDone;
    // Chunked framing when the length is unknown, or when the client announces trailers (only a chunked
    // body can carry them to an HTTP/1.1 upstream).
    if (!requestDone && (contentLength < 0 || headers.trailer !== undefined)) {
      this.chunkedRequest = true;
      head += 'Transfer-Encoding: chunked\r\n';
    } else if (lengthField !== undefined) {
      head += `content-length: ${String(lengthField)}\r\n`;
    }
    head += '\r\n';
    this.upstreamHead = head;
    const conn = pool.acquire(this, false);
    if (conn !== null) this.onUpstreamReady(conn);
    else this.waitingPool = pool;
  }

  /**
   * An extended CONNECT for a WebSocket (RFC 8441), routed: checked as RFC 8441 §5 asks
   * (`sec-websocket-version: 13`, no body), given a place among the tunnels, and sent to the upstream as
   * an HTTP/1.1 Upgrade on a connection of its own (onUpstreamReady, then onUpgraded).
   */
  private startWebSocket(
    headers: IncomingHttpHeaders,
    source: FieldList,
    fwd: ForwardedRequest,
    pool: Pool | null,
    target: string,
    edits: FieldEditList | null,
  ): void {
    const tunnels = this.tunnels;
    if (tunnels === null) {
      this.respondError('ZP_ERR_WEBSOCKET_DISABLED', 'WebSocket is not enabled (protocols)');
      return;
    }
    const version = headers['sec-websocket-version'];
    if (version === undefined) {
      this.respondError('ZP_ERR_WEBSOCKET_HANDSHAKE', 'sec-websocket-version is missing');
      return;
    }
    if (String(version).trim() !== WEBSOCKET_VERSION) {
      this.respondError(
        'ZP_ERR_WEBSOCKET_VERSION',
        `sec-websocket-version ${JSON.stringify(String(version))} is not supported; use 13`,
        { 'sec-websocket-version': WEBSOCKET_VERSION },
      );
      return;
    }
    if (headers['content-length'] !== undefined && headers['content-length'] !== '0') {
      this.respondError('ZP_ERR_WEBSOCKET_HANDSHAKE', 'A WebSocket handshake has no request body');
      return;
    }
    if (pool === null) {
      this.respondError('ZP_ERR_WEBSOCKET_UPSTREAM_UNSUPPORTED');
      return;
    }
    if (!tunnels.reserve(this.runtime.maxTunnels)) {
      this.respondError('ZP_ERR_TUNNEL_LIMIT');
      return;
    }
    const key = randomBytes(16).toString('base64');
    this.websocketKey = key;
    const head = `GET ${target} HTTP/1.1\r\n${http1Lines(source, fwd.dropMask | CONTENT_LENGTH_BIT, edits)}${http1RequestAdded(fwd, edits)}`;
    this.upstreamHead = `${head}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n\r\n`;
    // The handshake has no body; what the client sends on the stream afterwards belongs to the tunnel.
    this.requestDone = true;
    this.upstream = new UpstreamConnection(pool, this, true);
  }

  /**
   * The upstream answered the WebSocket handshake with 101: it must switch to websocket with the accept
   * value of the key zproxy sent. The client gets 200 with the upstream's end-to-end fields (sub-protocol,
   * extensions), then the stream and the upstream socket are joined by a Tunnel, which owns both and
   * writes the access log line when it ends.
   */
  onUpgraded(conn: UpstreamConnection, rh: ResponseHead, buf: Buffer, rest: number): void {
    const stream = this.stream;
    const key = this.websocketKey;
    if (this.finished || conn !== this.upstream || key === null || stream.closed) {
      conn.socket.destroy();
      return;
    }
    this.upstream = null;
    if (!switchesToWebSocket(rh) || rh.get('sec-websocket-accept')?.trim() !== acceptValue(key)) {
      conn.socket.destroy();
      this.respondError(
        'ZP_ERR_UPSTREAM_BAD_RESPONSE',
        'The upstream answered 101 without switching to websocket for this handshake',
      );
      return;
    }
    const fr = new ForwardedResponse();
    this.runtime.forwarding.response(fr, 101, rh.versionMinor === 1 ? '1.1' : '1.0', this.hsts, false);
    // The accept value answers zproxy's key, not the client's (an extended CONNECT has none).
    const fields = http2ResponseList(fr, rh, WITHOUT_ACCEPT);
    stream.respond(200, fields, false);
    const ex = this.exchange;
    ex.status = 200;
    ex.filters?.finish(false);
    // From here on the tunnel owns the stream and writes the access log line.
    this.websocketKey = null;
    this.finished = true;
    const tunnel = new Tunnel(
      this.tunnels!,
      ex,
      this.runtime.accessLog,
      new H2StreamDuplex(stream),
      conn.socket,
      ex.route!.websocketIdleTimeoutMs,
    );
    tunnel.start(null, rest < buf.length ? buf.subarray(rest) : null);
  }

  onUpstreamReady(conn: UpstreamConnection): void {
    // (An upgrade connection is this.upstream from its creation.)
    if (this.finished || (this.upstream !== null && this.upstream !== conn) || this.upstreamHead === null) {
      conn.pool.release(conn);
      return;
    }
    this.waitingPool = null;
    this.upstream = conn;
    // Chunked upstream bodies are decoded: HTTP/2 frames the data itself.
    conn.beginRequest(this.headRequest, true);
    conn.write(this.upstreamHead);
    this.upstreamHead = null;
    if (this.requestDone) {
      conn.requestSent();
      return;
    }
    this.stream.resume();
  }

  onRequestData(chunk: Buffer): void {
    const conn = this.upstream;
    if (conn === null) return;
    this.exchange.bytesIn += chunk.length;
    const max = this.runtime.maxBodyBytes;
    if (max > 0 && this.exchange.bytesIn > max) {
      this.respondError('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    let ok: boolean;
    if (this.chunkedRequest) {
      conn.socket.cork();
      conn.write(`${chunk.length.toString(16)}\r\n`);
      conn.write(chunk);
      ok = conn.write(CRLF);
      conn.socket.uncork();
    } else {
      ok = conn.write(chunk);
    }
    if (!ok) this.stream.pause();
  }

  onRequestEnd(): void {
    const conn = this.upstream;
    this.requestDone = true;
    if (conn === null) return;
    if (this.chunkedRequest) {
      const trailers = this.requestTrailers;
      conn.write(trailers === null ? LAST_CHUNK : `0\r\n${http1TrailerLines(new FieldList(trailers))}\r\n`);
    }
    conn.requestSent();
  }

  onUpstreamDrain(): void {
    this.stream.resume();
  }

  holdsResponseBytes(): boolean {
    // onResponseBody copies what it writes (HTTP/2 writes are queued in the session and sent later), so
    // the upstream's read buffer may be reused at once.
    return false;
  }

  onUpstreamError(error: ZpError): void {
    this.upstream = null;
    this.respondError(error.code, error.message);
  }

  onResponseHead(
    conn: UpstreamConnection,
    rh: ResponseHead,
    framing: number,
    body: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    const stream = this.stream;
    if (this.finished || conn !== this.upstream || stream.closed) return;
    if (this.websocketKey !== null && rh.status < 300) {
      // To an HTTP/2 client a 2xx answer to the extended CONNECT would mean the tunnel is open.
      this.respondError('ZP_ERR_UPSTREAM_BAD_RESPONSE', 'The upstream did not switch to websocket');
      return;
    }
    const fx = this.exchange.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(rh.status, new HeadFieldReader(rh));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(outcome, new HeldResponse(conn, rh, framing, body, bodyStart, bodyEnd));
          return;
        }
        this.respondFiltered(outcome);
        return;
      }
    }
    this.sendResponseHead(rh, framing, body, bodyStart, bodyEnd);
  }

  /**
   * A response filter waits for I/O: the upstream's response is held (nothing more read, nothing sent)
   * for at most connection_timeout_ms (then 504 ZP_ERR_FILTER_TIMEOUT).
   */
  private holdResponse(outcome: Promise<undefined | LocalResponse>, held: HeldResponse): void {
    this.held = held;
    this.awaitFilters(outcome, (local) => this.releaseResponse(held, local));
  }

  /**
   * A filter phase waits for I/O: `done` gets its result, unless the stream ended meanwhile or ran out of
   * time first (connection_timeout_ms, then 504 ZP_ERR_FILTER_TIMEOUT). A timer only on this path.
   */
  private awaitFilters(
    outcome: Promise<undefined | LocalResponse>,
    done: (local: LocalResponse | undefined) => void,
  ): void {
    const timer = setTimeout(() => {
      if (!this.finished) this.respondErrorNow('ZP_ERR_FILTER_TIMEOUT');
    }, this.runtime.connectionTimeoutMs);
    const settle = (local: LocalResponse | undefined): void => {
      clearTimeout(timer);
      if (!this.finished && !this.stream.closed) done(local);
    };
    outcome.then(settle, () => settle(undefined));
  }

  /** The response filters are done: send the held response (or their answer instead). */
  private releaseResponse(held: HeldResponse, local: LocalResponse | undefined): void {
    if (this.held !== held) return;
    this.held = null;
    if (this.finished || this.stream.closed || held.conn !== this.upstream) return;
    if (local !== undefined) {
      this.respondFiltered(local);
      return;
    }
    this.sendResponseHead(held.head, held.framing, held.body, held.bodyStart, held.bodyEnd);
    if (this.finished) return;
    let more = true;
    for (const chunk of held.chunks) more = this.onResponseBody(chunk, 0, chunk.length);
    if (held.ended) this.onResponseEnd(held.conn, held.trailers);
    else if (more) held.conn.resume();
  }

  /** Responds with the upstream's head (the filters' edits applied) and the body bytes that came with it. */
  private sendResponseHead(
    rh: ResponseHead,
    framing: number,
    body: Buffer,
    bodyStart: number,
    bodyEnd: number,
  ): void {
    const stream = this.stream;
    const fx = this.exchange.filters;
    const edits: FieldEditList | null = fx === null ? null : fx.responseEditsOrNull;
    this.exchange.status = rh.status;
    const noBody = framing === BODY_NONE;
    // The whole (small) body of a content-length response came with the head: the response is complete.
    const whole = framing === BODY_LENGTH && bodyEnd > bodyStart;
    const fr = new ForwardedResponse();
    this.runtime.forwarding.response(
      fr,
      rh.status,
      rh.versionMinor === 1 ? '1.1' : '1.0',
      this.hsts,
      framing === BODY_CHUNKED,
    );
    stream.respond(rh.status, http2ResponseList(fr, rh, edits), noBody);
    if (whole) {
      // HEADERS, then DATA with END_STREAM, in the same write.
      this.exchange.bytesOut += bodyEnd - bodyStart;
      if (fx !== null) {
        const copy = Buffer.from(body.subarray(bodyStart, bodyEnd));
        fx.body(copy);
        stream.end(copy);
      } else stream.endFrom(body, bodyStart, bodyEnd);
    } else if (bodyEnd > bodyStart) this.onResponseBody(body, bodyStart, bodyEnd);
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    if (this.held !== null) {
      this.held.hold(buf, start, end);
      return false;
    }
    const stream = this.stream;
    if (stream.closed) return true;
    this.exchange.bytesOut += end - start;
    // writeFrom copies what it keeps, and holdsResponseBytes() lets the upstream reuse its read buffer.
    const fx = this.exchange.filters;
    if (fx !== null) {
      const copy = Buffer.from(buf.subarray(start, end));
      fx.body(copy);
      return stream.write(copy);
    }
    return stream.writeFrom(buf, start, end);
  }

  onResponseEnd(conn: UpstreamConnection, trailerSection: FieldSource | null): void {
    if (conn !== this.upstream) return;
    if (this.held !== null) {
      this.held.ended = true;
      this.held.trailers = trailerSection;
      return;
    }
    if (trailerSection !== null) this.responseTrailers = http2TrailerList(trailerSection);
    this.upstream = null;
    if (this.requestDone) conn.pool.release(conn);
    else conn.destroy();
    const stream = this.stream;
    const trailers = this.responseTrailers;
    if (trailers !== null && trailers.length > 0) stream.sendTrailers(trailers);
    else stream.end();
    this.finish(null);
  }

  onResponseAborted(error: ZpError): void {
    this.upstream = null;
    if (this.held !== null) {
      // Nothing was sent yet (a response filter was waiting): the client gets an error response.
      this.held = null;
      this.respondError(error.code, error.message);
      return;
    }
    this.stream.reset(INTERNAL_ERROR);
    this.finish(error.code);
  }

  /** Answers locally with a JSON error, or resets the stream when the response has already started. */
  private respondError(code: ErrorCode, message?: string, extra?: Record<string, string>): void {
    const info = ERROR_CODES[code];
    const fx = this.exchange.filters;
    if (fx !== null && info.side === 'upstream' && !this.stream.headersSent && fx.wantsUpstreamError) {
      // Filters may answer instead of zproxy's 502/504 (the cache's stale-if-error).
      this.upstream?.destroy();
      this.upstream = null;
      this.waitingPool?.cancel(this);
      this.waitingPool = null;
      const outcome = fx.runUpstreamError(info.status);
      if (isPending(outcome)) {
        this.awaitFilters(outcome, (local) => this.answerUpstreamError(code, message, extra, local));
        return;
      }
      this.answerUpstreamError(code, message, extra, outcome);
      return;
    }
    this.respondErrorNow(code, message, extra);
  }

  /** After onUpstreamError: the filters' answer (the upstream's failure stays in the log), or zproxy's. */
  private answerUpstreamError(
    code: ErrorCode,
    message: string | undefined,
    extra: Record<string, string> | undefined,
    local: LocalResponse | undefined,
  ): void {
    if (local === undefined) {
      this.respondErrorNow(code, message, extra);
      return;
    }
    this.exchange.errorCode = code;
    this.respondFiltered(local);
  }

  private respondErrorNow(code: ErrorCode, message?: string, extra?: Record<string, string>): void {
    const stream = this.stream;
    this.upstream?.destroy();
    this.upstream = null;
    this.waitingPool?.cancel(this);
    this.waitingPool = null;
    respondWithError(stream, this.exchange, code, message, this.headRequest, this.hsts, extra);
    this.finish(code);
  }

  onStreamClose(code: number): void {
    // A clean close after zproxy ended the response: whoever ended it finishes the exchange.
    if (this.finished || (code === NO_ERROR && this.stream.localEnded)) return;
    // The client reset or closed the stream before the response was complete.
    this.upstream?.destroy();
    this.upstream = null;
    this.waitingPool?.cancel(this);
    this.waitingPool = null;
    if (this.exchange.status === 0) this.exchange.status = 499;
    this.finish('ZP_ERR_CLIENT_ABORTED');
  }

  private finish(code: ErrorCode | null): void {
    if (this.finished) return;
    this.finished = true;
    this.held = null;
    if (this.websocketKey !== null) {
      // A WebSocket handshake that did not become a tunnel gives its place back.
      this.websocketKey = null;
      this.tunnels?.release();
    }
    const ex = this.exchange;
    if (code !== null) ex.errorCode = code;
    ex.endTime = performance.now();
    ex.filters?.finish(code !== null);
    this.runtime.accessLog?.write(ex);
  }
}

/** Answers a stream with a filter's LocalResponse (shared by both kinds of upstream). */
export function respondWithLocal(
  stream: H2ServerStream,
  ex: Exchange,
  local: LocalResponse,
  headRequest: boolean,
  hsts: string | null,
): void {
  if (stream.closed) return;
  if (stream.headersSent) {
    stream.reset(INTERNAL_ERROR);
    return;
  }
  const r = renderLocal(local, ex.filters?.responseEditsOrNull ?? null, headRequest);
  const fields = r.fields.slice();
  if (hsts !== null) fields.push('strict-transport-security', hsts);
  ex.status = r.status;
  const body = r.body === null || headRequest ? null : r.body;
  stream.respond(r.status, fields, body === null);
  if (body !== null) {
    ex.bytesOut += body.length;
    stream.end(body);
  }
}

/**
 * Answers a stream with zproxy's JSON error for `code`, or resets it when its response has already
 * started (shared by both kinds of upstream).
 */
export function respondWithError(
  stream: H2ServerStream,
  ex: Exchange,
  code: ErrorCode,
  message: string | undefined,
  headRequest: boolean,
  hsts: string | null,
  extra?: Record<string, string>,
): void {
  const status = ERROR_CODES[code].status;
  if (stream.closed) return;
  if (stream.headersSent) {
    if (ex.status === 0) ex.status = status;
    stream.reset(INTERNAL_ERROR);
    return;
  }
  ex.status = status;
  ex.bytesOut += sendError(stream, code, message, headRequest, hsts, extra);
}

/**
 * Sends zproxy's JSON error for `code` as the whole response of a stream whose response has not started;
 * returns the body's length. `extra` holds fields to add (`allow`, ...).
 */
export function sendError(
  stream: H2ServerStream,
  code: ErrorCode,
  message: string | undefined,
  headRequest: boolean,
  hsts: string | null,
  extra?: Record<string, string>,
): number {
  const body = Buffer.from(errorBody(code, message));
  const fields: string[] = [];
  if (extra !== undefined)
    for (const name of Object.keys(extra)) fields.push(name.toLowerCase(), extra[name]!);
  fields.push(
    'content-type',
    'application/json',
    'content-length',
    String(body.length),
    'cache-control',
    'no-store',
  );
  if (hsts !== null) fields.push('strict-transport-security', hsts);
  stream.respond(ERROR_CODES[code].status, fields, headRequest);
  if (!headRequest) stream.end(body);
  return body.length;
}
