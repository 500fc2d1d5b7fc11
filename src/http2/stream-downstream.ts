/**
 * One HTTP/2 stream from a client as the downstream of the request flow (src/proxy/flow.ts): transport
 * only. It checks what the frame layer leaves to it (the request-target, an RFC 8441 extended CONNECT),
 * hands the flow the request and its body (the stream stays paused until the flow asks for the body), and
 * frames what the flow answers: HEADERS from the forwarding decisions (writeHttp2Response), DATA with
 * HTTP/2 flow control (a closed window pauses the upstream), trailers, a reset when a started response
 * cannot complete, and for a WebSocket the 200 that opens the tunnel (the stream becomes its client end).
 */
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.ts';
import { Exchange } from '../exchange.ts';
import {
  CONNECTION_SPECIFIC_MASK,
  FieldList,
  type FieldSource,
  kindOfName,
  type MessageEdits,
} from '../http/fields.ts';
import { type ForwardedResponse, http2TrailerList, writeHttp2Response } from '../http/forwarding.ts';
import type { AccessLog } from '../observe/access-log.ts';
import type { FilterRequest } from '../pipeline/contract.ts';
import { FieldEditList } from '../pipeline/field-edits.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { FilterRequestView } from '../pipeline/filter-exchange.ts';
import type { Downstream, HandshakeRefusal } from '../proxy/downstream.ts';
import { type FlowContext, ProxyFlow } from '../proxy/flow.ts';
import { normalizePath } from '../router/normalize-path.ts';
import {
  BODY_LENGTH,
  BODY_NONE,
  REQUEST_BODY_LENGTH,
  REQUEST_BODY_NONE,
  REQUEST_BODY_STREAM,
  type UpstreamResponseHead,
} from '../upstream/contract.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import { WEBSOCKET_VERSION } from '../websocket/handshake.ts';
import type { TunnelRegistry } from '../websocket/registry.ts';
import { Tunnel } from '../websocket/tunnel.ts';
import { INTERNAL_ERROR, NO_ERROR } from './frames.ts';
import type { H2ServerStream, StreamOwner } from './server-connection.ts';
import { H2StreamDuplex } from './stream-duplex.ts';

/** What the HTTP/2 downstream needs of its process (the listener's ConnectionContext). */
export interface StreamContext extends FlowContext {
  readonly tunnels?: TunnelRegistry | null;
}

/** A 101's fields for an HTTP/2 client lose Sec-WebSocket-Accept (it answers zproxy's key, not the client's). */
const WITHOUT_ACCEPT = new FieldEditList();
WITHOUT_ACCEPT.remove('sec-websocket-accept');

export class StreamDownstream implements Downstream, StreamOwner, Timed {
  private readonly ctx: StreamContext;
  private readonly stream: H2ServerStream;
  readonly clientAddress: string;
  readonly scheme: string;
  readonly hsts: string | null;
  readonly acceptsChunked = false;
  private readonly exchange: Exchange;
  private readonly fields: FieldList;
  private flow: ProxyFlow | null = null;
  private requestTrailers: FieldSource | null = null;
  /**
   * While the request body is coming: when the next piece of it is due (`request_body_timeout_ms`), else
   * 0. A stream is watched (the shared coarse timer) only while its body is coming.
   */
  deadline = 0;
  private watched = false;

  /**
   * `hsts` is the Strict-Transport-Security value for the stream's connection, or null. Each stream gets
   * a flow of its own: a finished flow kept for the connection's next streams held its exchange's objects
   * past the young generation (measured: scavenges 0.6-0.7 ms instead of 0.4, three times the full
   * collections; docs/performance.md).
   */
  constructor(
    ctx: StreamContext,
    stream: H2ServerStream,
    clientAddress: string,
    scheme: string,
    hsts: string | null,
  ) {
    this.ctx = ctx;
    this.stream = stream;
    this.clientAddress = clientAddress;
    this.scheme = scheme;
    this.hsts = hsts;
    this.fields = new FieldList(stream.fields, stream.fieldKinds);
    const host = this.fields.indexOfField('host');
    const authority =
      stream.authority !== '' ? stream.authority : host === -1 ? '' : this.fields.fieldValue(host);
    this.exchange = new Exchange(
      performance.now(),
      stream.method,
      stream.path,
      authority,
      '2',
      clientAddress,
    );
    stream.owner = this;
  }

  /** Checks what the frame layer leaves to it and hands the request to the flow. */
  start(): void {
    const stream = this.stream;
    const ex = this.exchange;
    const flow = new ProxyFlow(this.ctx, this, ex);
    this.flow = flow;
    // RFC 8441: the frame layer lets `:protocol` through only on a CONNECT with :scheme, :path and
    // :authority, and only when SETTINGS_ENABLE_CONNECT_PROTOCOL was sent (WebSocket enabled).
    const method = stream.method;
    const target = stream.path;
    const protocol = stream.protocol;
    const websocket = method === 'CONNECT' && protocol !== '';
    if (websocket) {
      if (protocol.toLowerCase() !== 'websocket') {
        flow.onRequestError(
          'ZP_ERR_WEBSOCKET_HANDSHAKE',
          `Unsupported :protocol ${JSON.stringify(protocol)}`,
        );
        return;
      }
    } else if (method === 'CONNECT' || target.charCodeAt(0) !== 0x2f) {
      flow.onRequestError('ZP_ERR_BAD_REQUEST', 'Unsupported request-target');
      return;
    }
    const q = target.indexOf('?');
    const path = normalizePath(q === -1 ? target : target.slice(0, q));
    if (path === null) {
      flow.onRequestError('ZP_ERR_BAD_REQUEST', 'Invalid request path');
      return;
    }
    ex.path = path;
    ex.query = q === -1 ? '' : target.slice(q);
    const length = stream.contentLength;
    flow.fieldsSource = this.fields;
    flow.websocket = websocket;
    flow.contentLength = length;
    // No body, a body with a length, or one of unknown length (or announcing trailers: an HTTP/1.1
    // upstream gets it chunked, the only framing that carries them).
    flow.requestBody =
      stream.bodyless || length === 0
        ? REQUEST_BODY_NONE
        : length < 0 || this.fields.indexOfField('trailer') !== -1
          ? REQUEST_BODY_STREAM
          : REQUEST_BODY_LENGTH;
    flow.requestTrailers = flow.requestBody !== REQUEST_BODY_NONE;
    if (flow.requestBody !== REQUEST_BODY_NONE && !websocket && !this.stream.remoteEnded) {
      this.watched = true;
      this.deadline = Date.now() + this.ctx.runtime.requestBodyTimeoutMs;
      watchDeadline(this);
    }
    flow.start();
  }

  /** The request body is complete, or the stream is over: its timer stops. */
  private unwatchBody(): void {
    if (!this.watched) return;
    this.watched = false;
    this.deadline = 0;
    unwatchDeadline(this);
  }

  /** The client sent no piece of the request body for request_body_timeout_ms: 408, the upstream request aborted. */
  onDeadline(): void {
    this.unwatchBody();
    const flow = this.flow;
    if (flow === null || flow.done) return;
    flow.onRequestError('ZP_ERR_REQUEST_TIMEOUT', 'The request body did not arrive in time');
  }

  // ---------------------------------------------------------------- request (Downstream)

  get responseStarted(): boolean {
    return this.stream.headersSent;
  }

  filterRequest(websocket: boolean): FilterRequest {
    const ex = this.exchange;
    return new FilterRequestView(
      ex,
      websocket ? 'GET' : ex.method,
      this.scheme,
      websocket,
      new HeadFieldReader(this.fields),
    );
  }

  resumeRequest(): void {
    this.stream.resume();
    if (this.watched) this.deadline = Date.now() + this.ctx.runtime.requestBodyTimeoutMs;
  }

  pauseRequest(): void {
    this.stream.pause();
    // zproxy holds the body back (the upstream is slow to take it): the client is not late meanwhile.
    if (this.watched) this.deadline = 0;
  }

  /** RFC 8441 §5: `sec-websocket-version: 13` and no body. */
  checkWebSocket(): HandshakeRefusal | null {
    const versions = this.fields;
    const i = versions.indexOfField('sec-websocket-version');
    if (i === -1) return refusal('ZP_ERR_WEBSOCKET_HANDSHAKE', 'sec-websocket-version is missing');
    const version = versions.fieldValue(i);
    if (version.trim() !== WEBSOCKET_VERSION) {
      return refusal(
        'ZP_ERR_WEBSOCKET_VERSION',
        `sec-websocket-version ${JSON.stringify(version)} is not supported; use 13`,
        ['sec-websocket-version', WEBSOCKET_VERSION],
      );
    }
    if (this.stream.contentLength > 0) {
      return refusal('ZP_ERR_WEBSOCKET_HANDSHAKE', 'A WebSocket handshake has no request body');
    }
    return null;
  }

  // ---------------------------------------------------------------- StreamOwner (the frame layer's events)

  onRequestData(chunk: Buffer): void {
    const flow = this.flow;
    if (flow === null || flow.done) return;
    const ex = this.exchange;
    ex.bytesIn += chunk.length;
    const max = this.ctx.runtime.maxBodyBytes;
    if (max > 0 && ex.bytesIn > max) {
      this.unwatchBody();
      flow.onRequestError('ZP_ERR_BODY_TOO_LARGE');
      return;
    }
    if (this.deadline !== 0) this.deadline = Date.now() + this.ctx.runtime.requestBodyTimeoutMs;
    flow.onRequestBody(chunk);
  }

  onRequestTrailers(fields: string[]): void {
    this.requestTrailers = new FieldList(fields);
  }

  onRequestEnd(): void {
    this.unwatchBody();
    this.flow?.onRequestEnd(this.requestTrailers);
  }

  onStreamDrain(): void {
    // The client's flow-control window reopened: read the upstream again.
    this.flow?.onClientDrain();
  }

  onStreamClose(code: number): void {
    this.unwatchBody();
    const flow = this.flow;
    // A clean close after zproxy ended the response: the flow has finished the exchange.
    if (flow === null || flow.done || (code === NO_ERROR && this.stream.localEnded)) return;
    // The client reset or closed the stream before the response was complete.
    flow.onClientGone();
  }

  // ---------------------------------------------------------------- response (Downstream)

  respond(
    head: UpstreamResponseHead,
    framing: number,
    forwarded: ForwardedResponse,
    edits: MessageEdits | null,
    buf: Buffer,
    start: number,
    end: number,
  ): boolean {
    const stream = this.stream;
    if (stream.closed) return true;
    const enc = stream.startResponseHead(head.status);
    if (enc !== null) {
      writeHttp2Response(enc, forwarded, head, edits);
      stream.sendResponseHead(framing === BODY_NONE);
    }
    if (framing === BODY_LENGTH && end > start) {
      // The whole (small) body came with the head: HEADERS, then DATA with END_STREAM, in the same write.
      this.exchange.bytesOut += end - start;
      stream.endFrom(buf, start, end);
      return true;
    }
    if (end > start) return this.write(buf, start, end);
    return true;
  }

  write(buf: Buffer, start: number, end: number): boolean {
    const stream = this.stream;
    if (stream.closed) return true;
    this.exchange.bytesOut += end - start;
    // writeFrom copies what it keeps: the upstream may reuse its read buffer at once.
    return stream.writeFrom(buf, start, end);
  }

  holdsResponseBytes(): boolean {
    return false;
  }

  end(trailers: FieldSource | null): void {
    const stream = this.stream;
    if (trailers !== null) {
      const list = http2TrailerList(trailers);
      if (list.length > 0) {
        stream.sendTrailers(list);
        return;
      }
    }
    stream.end();
  }

  respondLocal(status: number, fields: readonly string[], body: Buffer | null): void {
    const stream = this.stream;
    if (stream.closed) return;
    if (stream.headersSent) {
      stream.reset(INTERNAL_ERROR);
      return;
    }
    const out: string[] = [];
    for (let i = 0; i < fields.length; i += 2) {
      const name = fields[i]!.toLowerCase();
      // Fields an HTTP/1.1 answer would carry (a 426's Upgrade) have no place in HTTP/2.
      if ((CONNECTION_SPECIFIC_MASK & (1 << kindOfName(name))) === 0) out.push(name, fields[i + 1]!);
    }
    if (this.hsts !== null) out.push('strict-transport-security', this.hsts);
    const sendBody = body !== null && body.length > 0 && this.exchange.method !== 'HEAD';
    stream.respond(status, out, !sendBody);
    if (sendBody) {
      this.exchange.bytesOut += body.length;
      stream.end(body);
    }
  }

  abort(_code: ErrorCode, resetCode: number): void {
    this.stream.reset(resetCode === 0 || resetCode === NO_ERROR ? INTERNAL_ERROR : resetCode);
  }

  switchToTunnel(
    head: UpstreamResponseHead,
    forwarded: ForwardedResponse,
    upstream: Duplex,
    rest: Buffer | null,
    idleTimeoutMs: number,
  ): void {
    const stream = this.stream;
    const ex = this.exchange;
    const enc = stream.startResponseHead(200);
    if (enc !== null) {
      writeHttp2Response(enc, forwarded, head, WITHOUT_ACCEPT);
      stream.sendResponseHead(false);
    }
    ex.status = 200;
    const accessLog: AccessLog | null = this.ctx.runtime.accessLog;
    new Tunnel(this.ctx.tunnels!, ex, accessLog, new H2StreamDuplex(stream), upstream, idleTimeoutMs).start(
      null,
      rest,
    );
  }

  /**
   * The flow has finished the exchange: the stream lets go of it (what the client still sends or does
   * is no longer the flow's).
   */
  finished(): void {
    this.unwatchBody();
    this.flow = null;
  }
}

function refusal(code: ErrorCode, message: string, fields: readonly string[] = []): HandshakeRefusal {
  return { code, message, fields };
}
