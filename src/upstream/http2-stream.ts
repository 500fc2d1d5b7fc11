/**
 * One request on a stream of a pooled HTTP/2 upstream session (http2-pool.ts): the upstream client
 * contract (contract.ts) over a node:http2 client stream. The pool creates it when it grants a stream slot
 * and hands it to the handler (onUpstreamReady); the handler sends the head (send), the body (write, end,
 * with trailers), and hears of the response through its callbacks: the head (framing from END_STREAM and
 * content-length), DATA as it arrives (a false return pauses the stream, so flow control stops the
 * upstream), the trailers with the end, and failures. A stream refused by the upstream (REFUSED_STREAM)
 * or above a GOAWAY's last stream id was certainly not processed: its error is retryable.
 *
 * `response_header_timeout_ms` runs from the end of the request to the response head; once the response
 * has started there is no idle timeout (long-lived gRPC streams may stay quiet).
 */
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { addAbortSignal, PassThrough } from 'node:stream';
import { ZpError } from '../errors.ts';
import { FieldList, type FieldSource, fieldObject } from '../http/fields.ts';
import { http2RequestList, http2TrailerList } from '../http/forwarding.ts';
// RFC 9113's codes from the frame layer's one list (frames.ts imports nothing): no node:http2 constants,
// so loading this module does not load node:http2 (http2-pool.ts does, for its first session).
import { FLAG_END_STREAM, NO_ERROR, REFUSED_STREAM } from '../http2/frames.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import {
  BODY_LENGTH,
  BODY_NONE,
  BODY_UNTIL_END,
  type ProxyRequest,
  REQUEST_BODY_NONE,
  type UpstreamAttempt,
  type UpstreamHandler,
  type UpstreamResponseHead,
} from './contract.ts';
import type { Http2UpstreamSession } from './http2-pool.ts';

const EMPTY = Buffer.alloc(0);

/**
 * Destroying a stream with node's own AbortError resets it with CANCEL at once. (close(CANCEL) first ends
 * the request body with END_STREAM, which an upstream that was promised a Content-Length takes as a
 * malformed request and resets with PROTOCOL_ERROR: it would not see a cancel.) A stream aborted by an
 * already-aborted signal carries that error, made here without waiting.
 */
const CANCELLED: Error = (() => {
  const probe = new PassThrough();
  probe.on('error', ignore);
  addAbortSignal(AbortSignal.abort(), probe);
  return probe.errored!;
})();

/** A response head from an HTTP/2 upstream: its status and fields (pseudo-header fields left out). */
export class Http2ResponseHead extends FieldList implements UpstreamResponseHead {
  readonly status: number;
  readonly httpVersion = '2';

  constructor(status: number, list: readonly string[]) {
    super(list);
    this.status = status;
  }
}

/** The adapter of a stream, for the stream's event handlers (module functions: no closures per request). */
const kAttempt = Symbol('zproxy.upstream.attempt');
type AttemptStream = ClientHttp2Stream & { [kAttempt]: Http2UpstreamStream };

export class Http2UpstreamStream implements UpstreamAttempt, Timed {
  readonly http1 = false;
  readonly session: Http2UpstreamSession;
  handler: UpstreamHandler | null;
  private stream: ClientHttp2Stream | null = null;
  /** The request is a HEAD: the response has no body. */
  private headRequest = false;
  /** The request body still goes on (the stream waits for trailers or an end). */
  private requestOpen = false;
  private requestTrailers: readonly string[] | null = null;
  private responded = false;
  private responseTrailers: IncomingHttpHeaders | null = null;
  /** A 'drain' listener is on the stream (added when a write first returns false). */
  private drainWatched = false;
  private done = false;
  deadline = 0;
  /** The RST_STREAM code of the upstream's reset (0 when it did not reset the stream). */
  resetCode = 0;

  constructor(session: Http2UpstreamSession, handler: UpstreamHandler) {
    this.session = session;
    this.handler = handler;
  }

  get authority(): string {
    return this.session.pool.authority;
  }

  /**
   * Opens the stream with the request head (node:http2's raw header list, pseudo-header fields first).
   * With `endStream` the request has no body; else the body follows (write) and ends (end), with trailers
   * only when `trailers` says some may come (otherwise the last DATA frame ends the stream).
   */
  sendList(headers: string[], endStream: boolean, headRequest: boolean, trailers = true): void {
    if (this.done) return;
    this.headRequest = headRequest;
    let stream: ClientHttp2Stream;
    try {
      stream = this.session.session!.request(headers, { endStream, waitForTrailers: !endStream && trailers });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      // A field HTTP/2 cannot carry (node:http2 validates names and values) is the request's fault.
      const invalid = code === 'ERR_INVALID_CHAR' || code.startsWith('ERR_HTTP2_INVALID');
      this.fail(
        new ZpError(
          invalid ? 'ZP_ERR_BAD_REQUEST' : 'ZP_ERR_UPSTREAM_RESET',
          `Could not open a stream to the upstream: ${(err as Error).message}`,
          { retryable: !invalid },
        ),
      );
      return;
    }
    this.stream = stream;
    (stream as AttemptStream)[kAttempt] = this;
    stream.on('error', ignore);
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('trailers', onTrailers);
    stream.on('end', onEnd);
    stream.on('close', onClose);
    this.requestOpen = !endStream;
    if (endStream) this.startHeaderTimer();
    else if (trailers) stream.on('wantTrailers', onWantTrailers);
  }

  /** Sends a request head rendered from the forwarding decisions (http2RequestList). */
  send(req: ProxyRequest): void {
    const pool = this.session.pool;
    const list = http2RequestList(req.forwarded, req.fields!, req.method, pool.scheme, req.path, req.edits);
    this.sendList(list, req.body === REQUEST_BODY_NONE, req.headRequest, req.trailers);
  }

  /** HTTP/2 frames go out as they are written. */
  flush(): void {}

  /** node:http2 hands over objects of its own: nothing to copy. */
  keepHead(): void {}

  /** The response is complete: a request body still being sent is not sent further. */
  release(): void {
    this.cancelRequest();
  }

  write(buf: Buffer): boolean {
    const stream = this.stream;
    if (stream === null || this.done || stream.destroyed) return true;
    if (stream.write(buf)) return true;
    if (!this.drainWatched) {
      this.drainWatched = true;
      stream.on('drain', onDrain);
    }
    return false;
  }

  /** Ends the request body, with trailer fields when given. */
  end(trailers: FieldSource | null): void {
    const stream = this.stream;
    if (stream === null || this.done || !this.requestOpen || stream.destroyed) return;
    this.requestTrailers = trailers === null ? null : http2TrailerList(trailers);
    // 'wantTrailers' follows: the trailers (or none) close the request.
    stream.end();
    this.requestOpen = false;
    if (!this.responded) this.startHeaderTimer();
  }

  pause(): void {
    this.stream?.pause();
  }

  resume(): void {
    this.stream?.resume();
  }

  /** The stream is still open: an upload goes on after the response (the client ends it or resets it). */
  get requestInProgress(): boolean {
    return this.requestOpen && !this.done;
  }

  cancel(): void {
    this.handler = null;
    const stream = this.stream;
    if (stream === null) {
      // Never opened: the slot the pool granted goes back.
      if (!this.done) {
        this.done = true;
        this.session.release();
      }
      return;
    }
    this.stopTimer();
    if (!stream.destroyed) stream.destroy(CANCELLED);
  }

  /** Stops sending the rest of the request body (the response is complete). */
  cancelRequest(): void {
    const stream = this.stream;
    if (stream !== null && this.requestOpen && !stream.destroyed) stream.destroy(CANCELLED);
  }

  private startHeaderTimer(): void {
    if (this.deadline === 0) watchDeadline(this);
    this.deadline = Date.now() + this.session.pool.settings.responseHeaderTimeoutMs;
  }

  private stopTimer(): void {
    if (this.deadline !== 0) {
      this.deadline = 0;
      unwatchDeadline(this);
    }
  }

  onDeadline(): void {
    this.deadline = 0;
    unwatchDeadline(this);
    if (this.done || this.responded) return;
    const handler = this.handler;
    this.cancel();
    this.done = true;
    handler?.onUpstreamError(
      new ZpError('ZP_ERR_UPSTREAM_TIMEOUT', 'The upstream did not send a response in time'),
      this,
    );
  }

  /** A failure before the response head: reported once; the stream (if any) is cancelled. */
  private fail(error: ZpError): void {
    if (this.done) return;
    const handler = this.handler;
    this.stopTimer();
    if (this.stream === null) {
      this.done = true;
      this.session.release();
    } else {
      this.cancel();
      this.done = true;
    }
    handler?.onUpstreamError(error, this);
  }

  // ---------------------------------------------------------------- stream events

  sendTrailers(): void {
    const stream = this.stream;
    if (stream === null || stream.destroyed || stream.closed) return;
    const trailers = this.requestTrailers;
    stream.sendTrailers(trailers === null ? {} : fieldObject(trailers));
  }

  drained(): void {
    if (!this.done) this.handler?.onUpstreamDrain();
  }

  response(headers: IncomingHttpHeaders, flags: number): void {
    const handler = this.handler;
    if (this.done || handler === null) return;
    this.responded = true;
    this.stopTimer();
    const status = Number(headers[':status']);
    const head = new Http2ResponseHead(status, FieldList.fromObject(headers).list);
    let framing: number;
    if ((flags & FLAG_END_STREAM) !== 0 || this.headRequest || status === 204 || status === 304)
      framing = BODY_NONE;
    else if (headers['content-length'] !== undefined) framing = BODY_LENGTH;
    else framing = BODY_UNTIL_END;
    handler.onResponseHead(this, head, framing, EMPTY, 0, 0);
  }

  data(chunk: Buffer): void {
    const handler = this.handler;
    if (this.done || handler === null || !this.responded) return;
    if (!handler.onResponseBody(chunk, 0, chunk.length)) this.stream?.pause();
  }

  trailers(trailers: IncomingHttpHeaders): void {
    this.responseTrailers = trailers;
  }

  ended(): void {
    const stream = this.stream!;
    // A reset stream ends too: the close reports it.
    if (this.done || !this.responded || (stream.rstCode ?? NO_ERROR) !== NO_ERROR) return;
    const handler = this.handler;
    const trailers = this.responseTrailers;
    const fields: FieldSource | null = trailers === null ? null : FieldList.fromObject(trailers);
    this.done = true;
    handler?.onResponseEnd(this, fields);
  }

  closed(): void {
    const stream = this.stream!;
    this.stopTimer();
    this.session.release();
    if (this.done) return;
    this.done = true;
    const handler = this.handler;
    this.handler = null;
    if (handler === null) return;
    const code = stream.rstCode ?? NO_ERROR;
    if (!this.responded) {
      // REFUSED_STREAM: the upstream did not process it (RFC 9113 §8.7); safe to send again.
      handler.onUpstreamError(
        new ZpError(
          'ZP_ERR_UPSTREAM_RESET',
          `The upstream reset the stream before answering (HTTP/2 error code ${code})`,
          { retryable: code === REFUSED_STREAM },
        ),
        this,
      );
      return;
    }
    this.resetCode = code;
    handler.onResponseAborted(
      new ZpError('ZP_ERR_UPSTREAM_RESET', `The upstream reset the stream (HTTP/2 error code ${code})`),
    );
  }
}

function attemptOf(stream: ClientHttp2Stream): Http2UpstreamStream {
  return (stream as AttemptStream)[kAttempt];
}

// Stream event handlers, shared by every stream (`this` is the stream).
function onResponse(this: ClientHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  attemptOf(this).response(headers, flags);
}
function onData(this: ClientHttp2Stream, chunk: Buffer): void {
  attemptOf(this).data(chunk);
}
function onTrailers(this: ClientHttp2Stream, trailers: IncomingHttpHeaders): void {
  attemptOf(this).trailers(trailers);
}
function onEnd(this: ClientHttp2Stream): void {
  attemptOf(this).ended();
}
function onClose(this: ClientHttp2Stream): void {
  attemptOf(this).closed();
}
function onDrain(this: ClientHttp2Stream): void {
  attemptOf(this).drained();
}
function onWantTrailers(this: ClientHttp2Stream): void {
  attemptOf(this).sendTrailers();
}
function ignore(): void {}
