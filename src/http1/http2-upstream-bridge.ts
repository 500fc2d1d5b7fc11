/**
 * One HTTP/1.1 (or 1.0) exchange forwarded to an HTTP/2 upstream (h2c://, h2://) on a stream of the
 * target's session pool, through the upstream client contract (src/upstream/http2-stream.ts).
 *
 * DownstreamConnection parses and routes the request and decides what is forwarded with the forwarding
 * policy (src/http/forwarding.ts); this file runs the stream: the request body arrives through the
 * connection (content-length counted, chunked decoded by its ChunkedDecoder with this bridge as the sink,
 * chunked trailers sent as HTTP/2 trailers), the response goes back through the connection's own head,
 * framing and completion code (`Http1BridgeHost`). Backpressure both ways: a full stream pauses the client
 * socket, a full client socket pauses the stream.
 *
 * Failures before the response head are answered with zproxy's JSON error (502/503/504); an upstream reset
 * after the response started aborts the client connection (never a truncated body that looks complete);
 * a client that goes away cancels the upstream stream at once (RST_STREAM CANCEL).
 */
import type { ErrorCode, ZpError } from '../errors.ts';
import type { LocalResponse } from '../filters/contract.ts';
import { FIELD_CONTENT_LENGTH, type FieldSource } from '../http/fields.ts';
import {
  ForwardedResponse,
  type ForwardingPolicy,
  http1Lines,
  http1ResponseAdded,
  http1TrailerLines,
} from '../http/forwarding.ts';
import { HeldUpstreamResponse } from '../http2/held-upstream-response.ts';
import { HeadFieldReader } from '../pipeline/field-readers.ts';
import { type FilterExchange, isPending } from '../pipeline/filter-exchange.ts';
import {
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_END,
  type UpstreamAttempt,
  type UpstreamHandler,
  type UpstreamResponseHead,
} from '../upstream/contract.ts';
import type { Http2Pool } from '../upstream/http2-pool.ts';
import type { Http2UpstreamStream } from '../upstream/http2-stream.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { ChunkSink } from './chunked.ts';
import { parseTrailerSection } from './fields.ts';

/** What the bridge needs from the client connection (implemented by DownstreamConnection). */
export interface Http1BridgeHost {
  /** The upstream stream is open and takes the request body: forward what arrived with the head, read on. */
  bridgeStreamReady(): void;
  /**
   * Writes the response head: status line, `fields` (HTTP/1.1 field lines, each ending in CRLF, Via and
   * HSTS included), then framing and Connection as decided for this client. `framing` is BODY_NONE,
   * BODY_LENGTH or BODY_UNTIL_END (no length: re-chunked for HTTP/1.1 clients). False when the socket
   * buffer is full.
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

export class Http2UpstreamBridge implements UpstreamHandler, ChunkSink, Timed {
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
  private attempt: Http2UpstreamStream | null = null;
  private waiting = false;
  private responded = false;
  /** The response has no body (HEAD, 204, 304): DATA is not forwarded. */
  private bodyless = false;
  private finished = false;
  /** The last write to the stream returned false (until onUpstreamDrain). */
  blocked = false;
  private requestTrailers: FieldSource | null = null;
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
    return this.attempt !== null && !this.requestDone && !this.finished;
  }

  /** Takes a stream slot (now, or when a session is ready). Call once the host holds this bridge. */
  start(): void {
    watchDeadline(this);
    const attempt = this.pool.acquire(this);
    if (attempt !== null) this.onUpstreamReady(attempt);
    else if (!this.finished) {
      this.waiting = true;
      this.deadline = Date.now() + this.pool.settings.connectTimeoutMs + 1000;
    }
  }

  onUpstreamReady(attempt: UpstreamAttempt): void {
    this.waiting = false;
    const stream = attempt as Http2UpstreamStream;
    if (this.finished) {
      stream.cancel();
      return;
    }
    this.attempt = stream;
    this.deadline = 0;
    stream.sendList(this.headers, this.requestDone, this.headRequest, this.chunkedRequest);
    if (!this.requestDone && !this.finished) this.host.bridgeStreamReady();
  }

  onUpstreamError(error: ZpError): void {
    this.waiting = false;
    this.attempt = null;
    this.fail(error.code, error.message);
  }

  // ---------------------------------------------------------------- request body (called by the host)

  /** Body bytes of a content-length request. */
  write(data: Buffer): void {
    const attempt = this.attempt;
    if (attempt === null || this.finished) return;
    if (!attempt.write(data)) {
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
    this.requestTrailers = parseTrailerSection(fields);
  }

  /** The whole request body was forwarded. */
  requestEnd(): void {
    this.requestDone = true;
    if (this.attempt === null || this.finished) return;
    this.attempt.end(this.requestTrailers);
  }

  onUpstreamDrain(): void {
    this.blocked = false;
    if (!this.finished) this.host.onUpstreamDrain();
  }

  // ---------------------------------------------------------------- response

  onResponseHead(
    _attempt: UpstreamAttempt,
    head: UpstreamResponseHead,
    framing: number,
    _buf: Buffer,
    _start: number,
    _end: number,
  ): void {
    if (this.finished) return;
    this.responded = true;
    const fx = this.filters;
    if (fx !== null) {
      const outcome = fx.runResponse(head.status, new HeadFieldReader(head));
      if (outcome !== undefined) {
        if (isPending(outcome)) {
          this.holdResponse(outcome, new HeldUpstreamResponse(head, framing));
          return;
        }
        this.cancel();
        this.host.bridgeLocal(outcome);
        return;
      }
    }
    this.sendResponseHead(head, framing);
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
    this.sendResponseHead(held.head, held.framing);
    for (const chunk of held.chunks) this.onResponseBody(chunk, 0, chunk.length);
    if (held.ended) this.onResponseEnd(this.attempt!, held.trailers);
    else if (held.aborted !== null) this.onResponseAborted(held.aborted);
    // A client that is not reading what was replayed resumes the stream itself (resume(), on its drain).
    else if (held.paused && !this.finished && !this.clientBlocked) this.attempt?.resume();
  }

  /** Hands the upstream's head (the filters' edits applied) to the host. */
  private sendResponseHead(head: UpstreamResponseHead, framing: number): void {
    const fx = this.filters;
    const edits = fx === null ? null : fx.responseEditsOrNull;
    const status = head.status;
    const fr = new ForwardedResponse();
    this.forwarding.response(fr, status, '2', this.hsts, false);
    let fields = http1Lines(head, fr.dropMask, edits) + http1ResponseAdded(fr, edits);
    let length = false;
    for (let i = 0; i < head.fieldCount; i++) if (head.fieldKind(i) === FIELD_CONTENT_LENGTH) length = true;
    let out: number;
    if (this.headRequest || status === 204 || status === 304 || status < 200) out = BODY_NONE;
    else if (length) out = BODY_LENGTH;
    else if (framing === BODY_NONE) {
      // A response that is its head alone: an empty body with a length, not an empty chunked body.
      fields += 'content-length: 0\r\n';
      out = BODY_LENGTH;
    } else out = BODY_UNTIL_END;
    this.bodyless = out === BODY_NONE;
    if (!this.host.bridgeResponseHead(status, fields, out)) this.attempt?.pause();
  }

  onResponseBody(buf: Buffer, start: number, end: number): boolean {
    const held = this.held;
    if (held !== null) return held.hold(buf, start, end);
    if (this.finished || !this.responded || this.bodyless) return true;
    if (!this.host.onResponseBody(buf, start, end)) {
      this.clientBlocked = true;
      return false;
    }
    return true;
  }

  holdsResponseBytes(): boolean {
    return false;
  }

  /** The client socket drained: read the upstream stream again. */
  resume(): void {
    this.clientBlocked = false;
    this.attempt?.resume();
  }

  onResponseEnd(_attempt: UpstreamAttempt, trailers: FieldSource | null): void {
    const held = this.held;
    if (held !== null) {
      held.ended = true;
      held.trailers = trailers;
      return;
    }
    if (this.finished || !this.responded) return;
    const trailerLines = this.teTrailers && trailers !== null ? http1TrailerLines(trailers) : null;
    // The upstream answered before the request body was complete: the rest is not sent.
    if (!this.requestDone) this.attempt?.cancelRequest();
    this.finish();
    this.host.bridgeResponseEnd(trailerLines);
  }

  onResponseAborted(error: ZpError): void {
    const held = this.held;
    if (held !== null) {
      // A response filter is waiting and nothing was sent yet: an error answer.
      this.held = null;
      this.attempt = null;
      this.fail(error.code, error.message);
      return;
    }
    if (this.finished) return;
    // The response started and did not end cleanly: the client must not take it as complete.
    this.finish();
    this.host.bridgeAbort(error.code);
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
    }
  }

  /**
   * The exchange ended on the client side (client gone, request body invalid or too slow): the upstream
   * stream is cancelled at once. Called by the host; the host answers or aborts by itself.
   */
  cancel(): void {
    if (this.finished) return;
    this.finish();
    const attempt = this.attempt;
    this.attempt = null;
    attempt?.cancel();
  }

  /** Answers with zproxy's error before the response head; the upstream stream is cancelled. */
  private fail(code: ErrorCode, message?: string): void {
    if (this.finished) return;
    this.cancel();
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
