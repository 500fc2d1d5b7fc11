/**
 * The downstream side of one exchange, as the request flow (flow.ts) sees it: what the HTTP/1.1
 * connection (src/http1/downstream-connection.ts) and the HTTP/2 stream (src/http2/stream-downstream.ts)
 * each implement. The flow never knows which one it has: it asks for the request body, answers with a
 * forwarded response head and body, a local answer, an abort or a tunnel, and says when the exchange is
 * over; the downstream frames all that for its protocol.
 */
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.ts';
import type { FieldSource, MessageEdits } from '../http/fields.ts';
import type { ForwardedResponse } from '../http/forwarding.ts';
import type { FilterRequest } from '../pipeline/contract.ts';
import type { UpstreamResponseHead } from '../upstream/contract.ts';

/** Fields to add to a local answer about a refused WebSocket handshake, and why it was refused. */
export interface HandshakeRefusal {
  readonly code: ErrorCode;
  readonly message: string;
  /** Fields to add to the answer: names and values alternately. */
  readonly fields: readonly string[];
}

export interface Downstream {
  readonly clientAddress: string;
  /** 'http' or 'https': the scheme the client spoke (X-Forwarded-Proto). */
  readonly scheme: string;
  /** The listener's Strict-Transport-Security value (a TLS connection with `tls.hsts`), else null. */
  readonly hsts: string | null;
  /** The client takes a chunked HTTP/1.1 body with its framing as it came (an HTTP/1.1 client). */
  readonly acceptsChunked: boolean;
  /** A response head (forwarded or local) has been sent: errors now abort instead of answering. */
  readonly responseStarted: boolean;

  /** What filters see of the request (its fields through the client's protocol). */
  filterRequest(websocket: boolean): FilterRequest;
  /**
   * Starts or resumes handing the request body to the flow (onRequestBody, onRequestEnd), what arrived
   * meanwhile first. `decode`: a chunked HTTP/1.1 body is handed over as its data, not as it came.
   */
  resumeRequest(decode: boolean): void;
  pauseRequest(): void;
  /** A WebSocket handshake checked by the rules of the client's protocol; null when it may go on. */
  checkWebSocket(): HandshakeRefusal | null;

  /**
   * Sends a forwarded response head with the fields the forwarding decisions keep and add, and the body
   * bytes that came with it (buf[start, end)). `framing` (BODY_* of src/upstream/contract.ts) is what the
   * body will be: BODY_CHUNKED is raw chunked bytes (only when acceptsChunked), BODY_UNTIL_END data of
   * unknown length. False when the client's buffer is full (wait for the flow's onClientDrain).
   */
  respond(
    head: UpstreamResponseHead,
    framing: number,
    forwarded: ForwardedResponse,
    edits: MessageEdits | null,
    buf: Buffer,
    start: number,
    end: number,
  ): boolean;
  /** Response body bytes; false when the client's buffer is full. */
  write(buf: Buffer, start: number, end: number): boolean;
  /** Bytes handed to write() may still be referenced (queued unsent): the upstream must not reuse them. */
  holdsResponseBytes(): boolean;
  /** The response body is complete, with trailers when the upstream sent some. */
  end(trailers: FieldSource | null): void;
  /**
   * Answers from zproxy itself: `fields` are names and values alternately (an HTTP/2 downstream
   * lowercases the names), Content-Length included when a body may follow; `close` asks an HTTP/1.1 connection not to take another request.
   */
  respondLocal(status: number, fields: readonly string[], body: Buffer | null, close: boolean): void;
  /** The response cannot be completed (it has started): the client must not take it as complete. */
  abort(code: ErrorCode, resetCode: number): void;
  /**
   * The upstream switched to WebSocket: answer the client (101 over HTTP/1.1, 200 over HTTP/2) with the
   * head's kept fields, and join the client and `upstream` in a tunnel; `rest` holds bytes the upstream
   * sent past its head.
   */
  switchToTunnel(
    head: UpstreamResponseHead,
    forwarded: ForwardedResponse,
    upstream: Duplex,
    rest: Buffer | null,
    idleTimeoutMs: number,
  ): void;
  /** The exchange is over (its log line written, or a tunnel took it): the downstream may go on. */
  finished(): void;
}
