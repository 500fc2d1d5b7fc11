/**
 * Wire-level HTTP/1.x helpers for tests that must see exact bytes:
 * - parseResponses(): splits raw bytes received by a client into responses (Content-Length, chunked,
 *   close-delimited, body-less), keeping the chunk sizes as they were on the wire;
 * - WireClient: one raw TCP connection to the proxy on which requests are written step by step and
 *   responses read one at a time (keep-alive, pipelining, Expect: 100-continue);
 * - startScriptedUpstream(): a raw TCP upstream that splits what it receives into requests and answers
 *   each with exact bytes chosen by the test (malformed, close-delimited or hand-chunked responses).
 * Everything listens on or connects to 127.0.0.1 only, and every helper closes what it opened.
 */
import net from 'node:net';
import { type RawUpstream, startRawUpstream } from './upstream.ts';

export type Framing = 'none' | 'length' | 'chunked' | 'close';

export interface WireMessage {
  /** The start line, without CRLF. */
  readonly startLine: string;
  /** Field lines as [name, value], names as sent, values trimmed. */
  readonly headers: [string, string][];
  /** The head bytes as text (start line to blank line inclusive). */
  readonly head: string;
  readonly framing: Framing;
  /** The payload, de-chunked. */
  readonly body: Buffer;
  /** The data size of each chunk, in order (chunked framing only; the last 0 is not listed). */
  readonly chunkSizes: number[];
  /** The trailer section as text (chunked framing only), '' when empty. */
  readonly trailers: string;
  /** Every byte of the message as received. */
  readonly raw: Buffer;
  /** The first value of a field (name compared case-insensitively), or undefined. */
  header(name: string): string | undefined;
  /** Every value of a field, in order. */
  headerAll(name: string): string[];
  /** True when a field with this name is present. */
  has(name: string): boolean;
}

export interface WireResponse extends WireMessage {
  readonly status: number;
  /** '1.0' or '1.1'. */
  readonly version: string;
}

export interface WireRequest extends WireMessage {
  readonly method: string;
  readonly target: string;
}

function makeMessage(
  headText: string,
  framing: Framing,
  body: Buffer,
  chunkSizes: number[],
  trailers: string,
  raw: Buffer,
): WireMessage {
  const lines = headText.slice(0, -4).split('\r\n');
  const startLine = lines[0]!;
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error(`malformed field line ${JSON.stringify(line)}`);
    headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  const headerAll = (name: string) =>
    headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  return {
    startLine,
    headers,
    head: headText,
    framing,
    body,
    chunkSizes,
    trailers,
    raw,
    header: (name) => headerAll(name)[0],
    headerAll,
    has: (name) => headerAll(name).length > 0,
  };
}

/**
 * Decodes a chunked body starting at `offset`. Returns null when incomplete; throws when malformed.
 * `end` is the offset just past the last CRLF.
 */
export function decodeChunked(
  data: Buffer,
  offset: number,
): { body: Buffer; sizes: number[]; trailers: string; end: number } | null {
  const parts: Buffer[] = [];
  const sizes: number[] = [];
  let p = offset;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', p, 'latin1');
    if (lineEnd === -1) return null;
    const sizeText = data.latin1Slice(p, lineEnd).split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size line ${JSON.stringify(sizeText)}`);
    const size = Number.parseInt(sizeText, 16);
    p = lineEnd + 2;
    if (size === 0) {
      // Trailer section, up to and including the blank line.
      if (data.length < p + 2) return null;
      if (data[p] === 0x0d && data[p + 1] === 0x0a) {
        return { body: Buffer.concat(parts), sizes, trailers: '', end: p + 2 };
      }
      const blank = data.indexOf('\r\n\r\n', p, 'latin1');
      if (blank === -1) return null;
      return { body: Buffer.concat(parts), sizes, trailers: data.latin1Slice(p, blank + 2), end: blank + 4 };
    }
    if (data.length < p + size + 2) return null;
    if (data[p + size] !== 0x0d || data[p + size + 1] !== 0x0a)
      throw new Error('chunk data not followed by CRLF');
    parts.push(data.subarray(p, p + size));
    sizes.push(size);
    p += size + 2;
  }
}

export interface ParseOptions {
  /** The request was HEAD: no body whatever the fields say. */
  noBody?: boolean;
  /** The connection has ended: a close-delimited body is complete. */
  closed?: boolean;
}

/** Parses one response at data[offset...]; null when it is not complete yet. Throws when malformed. */
export function parseResponseAt(
  data: Buffer,
  offset: number,
  options: ParseOptions = {},
): { response: WireResponse; end: number } | null {
  const blank = data.indexOf('\r\n\r\n', offset, 'latin1');
  if (blank === -1) return null;
  const headEnd = blank + 4;
  const headText = data.latin1Slice(offset, headEnd);
  const m = /^HTTP\/1\.([01]) (\d{3})(?: [^\r\n]*)?\r\n/.exec(headText);
  if (m === null) throw new Error(`not a response head: ${JSON.stringify(headText.slice(0, 80))}`);
  const status = Number(m[2]);
  const probe = makeMessage(headText, 'none', Buffer.alloc(0), [], '', Buffer.alloc(0));
  let framing: Framing;
  let body: Buffer = Buffer.alloc(0);
  let sizes: number[] = [];
  let trailers = '';
  let end: number;
  const te = probe.header('transfer-encoding');
  const cl = probe.header('content-length');
  if (options.noBody || status < 200 || status === 204 || status === 304) {
    framing = 'none';
    end = headEnd;
  } else if (te !== undefined) {
    if (te.toLowerCase() !== 'chunked') throw new Error(`unexpected Transfer-Encoding ${te}`);
    const decoded = decodeChunked(data, headEnd);
    if (decoded === null) return null;
    framing = 'chunked';
    body = decoded.body;
    sizes = decoded.sizes;
    trailers = decoded.trailers;
    end = decoded.end;
  } else if (cl !== undefined) {
    const n = Number(cl);
    if (data.length < headEnd + n) return null;
    framing = 'length';
    body = data.subarray(headEnd, headEnd + n);
    end = headEnd + n;
  } else {
    if (!options.closed) return null;
    framing = 'close';
    body = data.subarray(headEnd);
    end = data.length;
  }
  const msg = makeMessage(headText, framing, body, sizes, trailers, data.subarray(offset, end));
  return { response: { ...msg, status, version: `1.${m[1]}` }, end };
}

/**
 * Every complete response in `data`, in order (interim 1xx responses are entries too). `noBody(i)` tells
 * which final responses answer a HEAD (i counts final responses only).
 */
export function parseResponses(
  data: Buffer,
  options: { noBody?: (index: number) => boolean; closed?: boolean } = {},
): WireResponse[] {
  const out: WireResponse[] = [];
  let offset = 0;
  let finals = 0;
  while (offset < data.length) {
    const r = parseResponseAt(data, offset, {
      noBody: options.noBody?.(finals) ?? false,
      closed: options.closed ?? false,
    });
    if (r === null) break;
    out.push(r.response);
    if (r.response.status >= 200) finals++;
    offset = r.end;
  }
  return out;
}

/** One raw client connection to the proxy, read response by response. */
export class WireClient {
  readonly socket: net.Socket;
  /** Every chunk received, in order. */
  private readonly chunks: Buffer[] = [];
  private receivedCache: Buffer = Buffer.alloc(0);
  private receivedCount = 0;
  /** Received bytes not yet consumed by next() (kept small: consumed bytes are dropped). */
  private pending: Buffer = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.pending = this.pending.length === 0 ? c : Buffer.concat([this.pending, c]);
      this.wake?.();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
  }

  static connect(port: number): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new WireClient(socket));
      });
    });
  }

  /** Writes bytes (a string is sent as latin1). */
  write(bytes: string | Buffer): void {
    this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
  }

  /** Every byte received so far. */
  get received(): Buffer {
    if (this.receivedCount !== this.chunks.length) {
      this.receivedCache = Buffer.concat(this.chunks);
      this.receivedCount = this.chunks.length;
    }
    return this.receivedCache;
  }

  /** Bytes received and not yet consumed by next(). */
  get unread(): Buffer {
    return this.pending;
  }

  /** Resolves with check()'s first non-null value; rejects after timeoutMs. */
  private async until<T>(check: () => T | null, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== null) return v;
      const left = deadline - Date.now();
      if (left <= 0 || (this.closed && check() === null && what !== 'close')) {
        throw new Error(
          `${what}: ${this.closed ? 'connection closed' : 'timed out'}; unread ${JSON.stringify(this.unread.latin1Slice(0, this.unread.length).slice(0, 300))}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = null;
    }
  }

  /** Reads the next response (interim ones included), consuming it. */
  next(options: { noBody?: boolean; timeoutMs?: number } = {}): Promise<WireResponse> {
    return this.until(
      () => {
        const r = parseResponseAt(this.pending, 0, {
          noBody: options.noBody ?? false,
          closed: this.closed,
        });
        if (r === null) return null;
        this.pending = this.pending.subarray(r.end);
        return r.response;
      },
      options.timeoutMs ?? 3000,
      'waiting for a response',
    );
  }

  /** Resolves true when the server closes the connection within timeoutMs, false otherwise. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    try {
      await this.until(() => (this.closed ? true : null), timeoutMs, 'close');
      return true;
    } catch {
      return false;
    }
  }

  /** Waits up to `ms` and tells whether anything unread arrived meanwhile. */
  async quietFor(ms: number): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return this.unread.length === 0;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One request as a scripted upstream received it. */
export interface ScriptedRequest extends WireRequest {
  /** Index of the connection it arrived on. */
  readonly connection: number;
}

export interface ScriptedUpstream extends RawUpstream {
  /** Every request parsed from the received bytes, in arrival order. */
  readonly requests: ScriptedRequest[];
  /** Total bytes received on every connection. */
  bytesReceived(): number;
}

/**
 * A raw upstream that parses each request (Content-Length or chunked body) and writes `answer(req)`
 * back: a string (latin1) or Buffer, or a function of the socket that writes (and may end) itself.
 */
export async function startScriptedUpstream(
  answer: (req: ScriptedRequest, socket: net.Socket) => string | Buffer | undefined,
): Promise<ScriptedUpstream> {
  const requests: ScriptedRequest[] = [];
  const raw = await startRawUpstream((socket, index) => {
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (c: Buffer) => {
      pending = Buffer.concat([pending, c]);
      for (;;) {
        const blank = pending.indexOf('\r\n\r\n', 0, 'latin1');
        if (blank === -1) return;
        const headEnd = blank + 4;
        const headText = pending.latin1Slice(0, headEnd);
        const probe = makeMessage(headText, 'none', Buffer.alloc(0), [], '', Buffer.alloc(0));
        let framing: Framing = 'none';
        let body: Buffer = Buffer.alloc(0);
        let sizes: number[] = [];
        let trailers = '';
        let end = headEnd;
        if (probe.header('transfer-encoding') !== undefined) {
          const d = decodeChunked(pending, headEnd);
          if (d === null) return;
          framing = 'chunked';
          body = d.body;
          sizes = d.sizes;
          trailers = d.trailers;
          end = d.end;
        } else if (probe.header('content-length') !== undefined) {
          const n = Number(probe.header('content-length'));
          if (pending.length < headEnd + n) return;
          framing = 'length';
          body = pending.subarray(headEnd, headEnd + n);
          end = headEnd + n;
        }
        const msg = makeMessage(headText, framing, body, sizes, trailers, pending.subarray(0, end));
        const [method = '', target = ''] = msg.startLine.split(' ');
        const req: ScriptedRequest = { ...msg, method, target, connection: index };
        requests.push(req);
        pending = pending.subarray(end);
        const out = answer(req, socket);
        if (out !== undefined) socket.write(typeof out === 'string' ? Buffer.from(out, 'latin1') : out);
      }
    });
  });
  return Object.assign(raw, {
    requests,
    bytesReceived: () => raw.received.reduce((n, conn) => n + conn.reduce((m, b) => m + b.length, 0), 0),
  });
}

/** Polls `check` every 10 ms until it is true or `timeoutMs` passes; returns its last value. */
export async function eventually(check: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
