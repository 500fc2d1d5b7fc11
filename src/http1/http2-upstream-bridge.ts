/**
 * One HTTP/1.1 (or 1.0) exchange forwarded to an HTTP/2 upstream (h2c://, h2://) on a stream of the
 * target's session pool (upstream/http2-pool.ts).
 *
 * DownstreamConnection parses and routes the request and decides what is forwarded exactly as for an
 * HTTP/1.1 upstream (the same drop mask, X-Forwarded-*, Via and Host / preserve_host rules); this file only
 * maps that result onto HTTP/2 (`http2RequestHeaders`) and runs the stream: the request body arrives
 * through the connection (content-length counted, chunked decoded by its ChunkedDecoder with this bridge as
 * the sink, chunked trailers sent as HTTP/2 trailers), the response goes back through the connection's own
 * head, framing and completion code (`Http1BridgeHost`). Backpressure both ways: a full stream pauses the
 * client socket, a full client socket pauses the stream.
 *
 * Failures before the response head are answered with zproxy's JSON error (502/503/504); an upstream reset
 * after the response started aborts the client connection (never a truncated body that looks complete);
 * a client that goes away cancels the upstream stream at once (RST_STREAM CANCEL).
 */
import http2, { type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import type { ErrorCode, ZpError } from '../errors.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FIELD_CONTENT_LENGTH, FieldList, fieldObject } from '../http/fields.ts';
import {
  ForwardedResponse,
  type ForwardingPolicy,
  http1Lines,
  http1ResponseAdded,
  http1TrailerLines,
  http2TrailerList,
} from '../http/forwarding.ts';
import { HeldUpstreamResponse } from '../http2/held-upstream-response.ts';
import { ObjectFieldReader } from '../pipeline/field-readers.ts';
import { type FilterExchange, isPending } from '../pipeline/filter-exchange.ts';
import { BODY_LENGTH, BODY_NONE, BODY_UNTIL_END } from '../upstream/contract.ts';
import type { Http2Pool, Http2Requester, Http2UpstreamSession } from '../upstream/http2-pool.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { ChunkSink } from './chunked.ts';
import { parseTrailerSection } from './fields.ts';

const { NGHTTP2_CANCEL, NGHTTP2_NO_ERROR, NGHTTP2_FLAG_END_STREAM } = http2.constants;

/** What the bridge needs from the client connection (implemented by DownstreamConnection). */
export interface Http1BridgeHost {
  /** The upstream stream is open and takes the request body: forward what arrived with the head, read on. */
  bridgeStreamReady(): void;
  /**
   * Writes the response head: status line, `fields` (HTTP/1.1 field lines, each ending in CRLF), then
   * Via, HSTS, framing and Connection as decided for this client. `framing` is BODY_NONE, BODY_LENGTH or
   * BODY_UNTIL_END (no length: re-chunked for HTTP/1.1 clients). False when the socket buffer is full.
   */
  bridgeResponseHead(status: number, fields: string, framing: number): boolean;
  /** Writes response body bytes (framed as decided); false when the socket buffer is full. */
  onResponseBody(buf: Buffer, start: number, end: number): boolean;
  /** The response is complete; `trailerLines` go into the last chunk when the body is chunked. */
  bridgeResponseEnd(trailerLines: string | null): void;
  /** A filter answered in place of the upstream's response (only before the response head). */
  bridgeLocal(local: LocalResponse): void;
  /** Answers with zproxy's JSON error (only before the response head). */
  bridgeFail(code: ErrorCode, message?: string): void;
  /** The response cannot be completed: the client connection is aborted. */
  bridgeAbort(code: ErrorCode): void;
  /** The upstream stream cannot take more request body for now. */
  pauseRequest(): void;
  /** The upstream stream takes request body again. */
  onUpstreamDrain(): void;
}

/** The bridge of a stream, for the stream's event handlers (no closures per exchange). */
const kBridge = Symbol('zproxy.bridge');
type BridgedStream = ClientHttp2Stream & { [kBridge]: Http2UpstreamBridge };

export class Http2UpstreamBridge implements Http2Requester, ChunkSink, Timed {
  private readonly host: Http1BridgeHost;
  private readonly pool: Http2Pool;
  /** The request as node:http2's raw header list (http2RequestList). */
  private readonly headers: string[];
  private readonly headRequest: boolean;
  /** The request body is chunked: it may end with trailers (the stream waits for them). */
  private readonly chunkedRequest: boolean;
  /** The client sent `TE: trailers`: response trailers go into the last chunk. */
  private readonly teTrailers: boolean;
  /** The listener's Strict-Transport-Security (it replaces the upstream's), or null. */
  private readonly hsts: string | null;
  private readonly forwarding: ForwardingPolicy;
  private requestDone: boolean;
  /** The exchange's filters (their response phase runs on the upstream's head), or null. */
  filters: FilterExchange | null = null;
  /** How long a response filter may wait for I/O (the listener's connection_timeout_ms). */
  filterTimeoutMs = 60_000;
  /** The upstream's response, held while a response filter waits for I/O (holdResponse). */
  private held: HeldUpstreamResponse | null = null;
  /** The client's socket is full: the stream stays paused until resume(). */
  private clientBlocked = false;
  private session: Http2UpstreamSession | null = null;
  private stream: ClientHttp2Stream | null = null;
  private waiting = false;
  private responded = false;
  /** The response has no body (HEAD, 204, 304): DATA is not forwarded. */
  private bodyless = false;
  private finished = false;
  /** The last write to the stream returned false (until its 'drain'). */
  blocked = false;
  private requestTrailers: string[] | null = null;
  /** The upstream's response trailers (set by the stream's handler). */
  responseTrailers: IncomingHttpHeaders | null = null;
  deadline = 0;

  constructor(
    host: Http1BridgeHost,
    pool: Http2Pool,
    headers: string[],
    headRequest: boolean,
    chunkedRequest: boolean,
    requestDone: boolean,
    teTrailers: boolean,
    hsts: string | null,
    forwarding: ForwardingPolicy,
  ) {
    this.host = host;
    this.pool = pool;
    this.headers = headers;
    this.headRequest = headRequest;
    this.chunkedRequest = chunkedRequest;
    this.requestDone = requestDone;
    this.teTrailers = teTrailers;
    this.hsts = hsts;
    this.forwarding = forwarding;
  }

  /** True once the upstream stream is open and the request body is still being sent. */
  get streaming(): boolean {
    return this.stream !== null && !this.requestDone && !this.finished;
  }

  /** Takes a stream slot (now, or when a session is ready). Call once the host holds this bridge. */
  start(): void {
    watchDeadline(this);
    const session = this.pool.acquire(this);
    if (session !== null) this.onSessionReady(session);
    else if (!this.finished) {
      this.waiting = true;
      this.deadline = Date.now() + this.pool.settings.connectTimeoutMs + 1000;
    }
  }

  onSessionReady(session: Http2UpstreamSession): void {
    this.waiting = false;
    if (this.finished) {
      session.release();
      return;
    }
    this.session = session;
    let stream: ClientHttp2Stream;
    try {
      stream = session.session!.request(this.headers, {
        endStream: this.requestDone,
        waitForTrailers: !this.requestDone && this.chunkedRequest,
      });
    } catch (err) {
      session.release();
      this.session = null;
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // A field HTTP/2 cannot carry (node:http2 validates names and values) is the request's fault.
      const invalid = code === 'ERR_INVALID_CHAR' || code.startsWith('ERR_HTTP2_INVALID');
      this.fail(
        invalid ? 'ZP_ERR_BAD_REQUEST' : 'ZP_ERR_UPSTREAM_RESET',
        `Could not open a stream to the upstream: ${(err as Error).message}`,
      );
      return;
    }
    this.stream = stream;
    (stream as BridgedStream)[kBridge] = this;
    stream.on('error', ignore);
    stream.on('response', onStreamResponse);
    stream.on('data', onStreamData);
    stream.on('trailers', onStreamTrailers);
    stream.on('end', onStreamEnd);
    stream.on('close', onStreamClose);
    if (this.requestDone) {
      this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
      return;
    }
    this.deadline = 0;
    stream.on('drain', onStreamDrain);
    if (this.chunkedRequest) stream.on('wantTrailers', onStreamWantTrailers);
    this.host.bridgeStreamReady();
  }

  onSessionError(error: ZpError): void {
    this.waiting = false;
    this.fail(error.code, error.message);
  }

  // ---------------------------------------------------------------- request body (called by the host)

  /** Body bytes of a content-length request. */
  write(data: Buffer): void {
    const stream = this.stream;
    if (stream === null || this.finished) return;
    if (!stream.write(data)) {
      this.blocked = true;
      this.host.pauseRequest();
    }
  }

  /** ChunkSink: decoded data of a chunked request body. */
  chunkData(buf: Buffer, start: number, end: number): void {
    if (end > start) this.write(start === 0 && end === buf.length ? buf : buf.subarray(start, end));
  }

  /** ChunkSink: the trailer section of a chunked request, sent as HTTP/2 trailers. */
  chunkTrailers(fields: string): void {
    this.requestTrailers = http2TrailerList(parseTrailerSection(fields));
  }

  /** The whole request body was forwarded. */
  requestEnd(): void {
    this.requestDone = true;
    const stream = this.stream;
    if (stream === null || this.finished) return;
    // With a chunked request 'wantTrailers' follows: its trailers (or none) close the request.
    stream.end();
    if (!this.responded) this.deadline = Date.now() + this.pool.settings.responseHeaderTimeoutMs;
  }

  /** Stream event (see the handlers at the end of the file). */
  sendRequestTrailers(): void {
    const stream = this.stream;
    if (stream !== null && !stream.destroyed && !stream.closed)
      stream.sendTrailers(this.requestTrailers === null ? {} : fieldObject(this.requestTrailers));
  }

  /** Stream event (see the handlers at the end of the file). */
  onDrain(): void {
    this.blocked = false;
    if (!this.finished) this.host.onUpstreamDrain();
  }

  // ---------------------------------------------------------------- response

  /** Stream event (see the handlers at the end of the file). */
  onResponse(headers: IncomingHttpHeaders, flags: number): void {
    if (this.finished) return;
    this.responded = true;
    this.deadline = 0;
    const status = Number(headers[':status']);
    const fx = this.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(status, new ObjectFieldReader(headers));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(outcome, new HeldUpstreamResponse(headers, flags));
          return;
        }
        this.cancel();
        this.host.bridgeLocal(outcome);
        return;
      }
    }
    this.sendResponseHead(status, headers, flags);
  }

  /**
   * A response filter waits for I/O: the upstream's response is held (nothing sent) for at most
   * filterTimeoutMs (onDeadline: 504 ZP_ERR_FILTER_TIMEOUT).
   */
  private holdResponse(outcome: Promise<undefined | LocalResponse>, held: HeldUpstreamResponse): void {
    this.held = held;
    this.deadline = Date.now() + this.filterTimeoutMs;
    outcome.then(
      (local) => this.releaseResponse(held, local),
      () => this.releaseResponse(held, undefined),
    );
  }

  /** The response filters are done: send the held response (or their answer instead). */
  private releaseResponse(held: HeldUpstreamResponse, local: LocalResponse | undefined): void {
    if (this.held !== held) return;
    this.held = null;
    this.deadline = 0;
    if (this.finished) return;
    if (local !== undefined) {
      this.cancel();
      this.host.bridgeLocal(local);
      return;
    }
    this.sendResponseHead(Number(held.headers[':status']), held.headers, held.flags);
    for (const chunk of held.chunks) this.onData(chunk);
    if (held.ended) this.onEnd();
    if (held.closed) this.onClose();
    // A client that is not reading what was replayed resumes the stream itself (resume(), on its drain).
    else if (held.paused && !this.finished && !this.clientBlocked) this.stream?.resume();
  }

  /** Hands the upstream's head (the filters' edits applied) to the host. */
  private sendResponseHead(status: number, headers: IncomingHttpHeaders, flags: number): void {
    const fx = this.filters;
    const edits = fx === null ? null : fx.responseEditsOrNull;
    const source = FieldList.fromObject(headers);
    const fr = new ForwardedResponse();
    this.forwarding.response(fr, status, '2', this.hsts, false);
    let fields = http1Lines(source, fr.dropMask, edits) + http1ResponseAdded(fr, edits);
    let length = false;
    for (let i = 0; i < source.fieldCount; i++)
      if (source.fieldKind(i) === FIELD_CONTENT_LENGTH) length = true;
    let framing: number;
    if (this.headRequest || status === 204 || status === 304 || status < 200) framing = BODY_NONE;
    else if (length) framing = BODY_LENGTH;
    else if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      // A response that is its head alone: an empty body with a length, not an empty chunked body.
      fields += 'content-length: 0\r\n';
      framing = BODY_LENGTH;
    } else framing = BODY_UNTIL_END;
    this.bodyless = framing === BODY_NONE;
    if (!this.host.bridgeResponseHead(status, fields, framing)) this.stream?.pause();
  }

  /** Stream event (see the handlers at the end of the file). */
  onData(chunk: Buffer): void {
    if (this.held !== null) {
      this.held.hold(chunk, this.stream);
      return;
    }
    if (this.finished || !this.responded || this.bodyless) return;
    if (!this.host.onResponseBody(chunk, 0, chunk.length)) {
      this.clientBlocked = true;
      this.stream?.pause();
    }
  }

  /** The client socket drained: read the upstream stream again. */
  resume(): void {
    this.clientBlocked = false;
    this.stream?.resume();
  }

  /** Stream event (see the handlers at the end of the file). */
  onEnd(): void {
    if (this.held !== null) {
      this.held.ended = true;
      return;
    }
    const stream = this.stream!;
    if (this.finished || !this.responded) return;
    // A reset stream ends too: onClose aborts the client connection instead.
    if ((stream.rstCode ?? NGHTTP2_NO_ERROR) !== NGHTTP2_NO_ERROR) return;
    let trailerLines: string | null = null;
    if (this.teTrailers && this.responseTrailers !== null)
      trailerLines = http1TrailerLines(FieldList.fromObject(this.responseTrailers));
    // The upstream answered before the request body was complete: the rest is not sent.
    if (!this.requestDone && !stream.closed) stream.close(NGHTTP2_CANCEL);
    this.finish();
    this.host.bridgeResponseEnd(trailerLines);
  }

  /** Stream event (see the handlers at the end of the file). */
  onClose(): void {
    const stream = this.stream!;
    const session = this.session;
    this.session = null;
    session?.release();
    if (this.finished) return;
    const held = this.held;
    if (held !== null) {
      // A response filter is waiting: a clean close is replayed after the held response; a reset is an
      // error answer, since nothing was sent yet.
      const code = stream.rstCode ?? NGHTTP2_NO_ERROR;
      if (code === NGHTTP2_NO_ERROR) {
        held.closed = true;
        return;
      }
      this.held = null;
      this.fail('ZP_ERR_UPSTREAM_RESET', `The upstream reset the stream (HTTP/2 error code ${code})`);
      return;
    }
    if (!this.responded) {
      this.fail(
        'ZP_ERR_UPSTREAM_RESET',
        `The upstream reset the stream before answering (HTTP/2 error code ${stream.rstCode ?? NGHTTP2_NO_ERROR})`,
      );
      return;
    }
    // The response started and did not end cleanly: the client must not take it as complete.
    this.finish();
    this.host.bridgeAbort('ZP_ERR_UPSTREAM_RESET');
  }

  // ---------------------------------------------------------------- endings

  onDeadline(): void {
    if (this.finished) return;
    if (this.held !== null) {
      this.held = null;
      this.fail('ZP_ERR_FILTER_TIMEOUT');
      return;
    }
    if (this.waiting) {
      this.fail('ZP_ERR_UPSTREAM_UNAVAILABLE', 'No HTTP/2 session to the upstream became available in time');
    } else if (!this.responded) {
      this.fail('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream did not send a response in time');
    }
  }

  /**
   * The exchange ended on the client side (client gone, request body invalid or too slow): the upstream
   * stream is cancelled at once. Called by the host; the host answers or aborts by itself.
   */
  cancel(): void {
    if (this.finished) return;
    this.finish();
    const stream = this.stream;
    if (stream !== null && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
  }

  /** Answers with zproxy's error before the response head; the upstream stream is cancelled. */
  private fail(code: ErrorCode, message?: string): void {
    if (this.finished) return;
    this.finish();
    const stream = this.stream;
    if (stream !== null && !stream.closed && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
    this.host.bridgeFail(code, message);
  }

  private finish(): void {
    this.finished = true;
    this.deadline = 0;
    unwatchDeadline(this);
    if (this.waiting) {
      this.waiting = false;
      this.pool.cancel(this);
    }
  }
}

function bridgeOf(stream: ClientHttp2Stream): Http2UpstreamBridge {
  return (stream as BridgedStream)[kBridge];
}

// Stream event handlers, shared by every stream (`this` is the stream).
function onStreamResponse(this: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  bridgeOf(this).onResponse(headers, flags);
}
function onStreamData(this: ClientHttp2Stream, chunk: Buffer): void {
  bridgeOf(this).onData(chunk);
}
function onStreamTrailers(this: ClientHttp2Stream, trailers: IncomingHttpHeaders): void {
  bridgeOf(this).responseTrailers = trailers;
}
function onStreamEnd(this: ClientHttp2Stream): void {
  bridgeOf(this).onEnd();
}
function onStreamClose(this: ClientHttp2Stream): void {
  bridgeOf(this).onClose();
}
function onStreamDrain(this: ClientHttp2Stream): void {
  bridgeOf(this).onDrain();
}
function onStreamWantTrailers(this: ClientHttp2Stream): void {
  bridgeOf(this).sendRequestTrailers();
}
function ignore(): void {}
