/**
 * A tunnel joins two byte streams after a protocol switch (a WebSocket 101 today; an RFC 8441 extended
 * CONNECT stream later) and copies bytes both ways, as they arrive, without parsing them.
 *
 * The two ends are Duplexes: `net.Socket` and `tls.TLSSocket` on both sides for HTTP/1.1, and an
 * `http2` stream can be the downstream end as it is (write/end/destroy/pause/resume, 'data'/'end'/
 * 'drain'/'error'/'close'). The tunnel owns both ends from `start()` on.
 *
 * - **Backpressure**, pipe-like: when a write returns false, the end that produced the bytes is paused
 *   until the other end drains.
 * - **Bytes already read** past the handshake heads are written first (`start`), on both sides.
 * - **Half-close**: an end that finishes (FIN / END_STREAM) makes the tunnel end the other one after
 *   what was written to it is flushed, so a close frame the upstream sent before its FIN reaches the
 *   client before the client's connection ends. An end that closes cleanly ends the other the same way;
 *   an end that fails (reset, error) destroys the other at once.
 * - **Timers** (one deadline in the shared sweep, util/deadlines.ts): the idle timeout (no byte either
 *   way), the drain deadline of a graceful shutdown, and a short linger after which a tunnel whose ends
 *   did not both close is destroyed.
 * - **Log**: when both ends have closed, the exchange that opened the tunnel is written to the access
 *   log once, with the bytes each way added to its head bytes and the tunnel's whole duration.
 *
 * Listeners are module functions that find their side through a symbol on the stream: no closure per
 * tunnel, which matters when thousands of idle tunnels are held.
 */
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.ts';
import type { Exchange } from '../exchange.ts';
import type { AccessLog } from '../observe/access-log.ts';
import { type Timed, unwatchDeadline, watchDeadline } from '../util/deadlines.ts';
import type { TunnelRegistry } from './registry.ts';

/** One end of a tunnel. */
export type TunnelEnd = Duplex;

/** After the tunnel started closing, how long its ends get to close before they are destroyed. */
export const TUNNEL_LINGER_MS = 2000;

const ST_OPEN = 0;
const ST_CLOSING = 1;
const ST_DONE = 2;

const SIDE = Symbol('zproxy.tunnelSide');

type Tagged = Duplex & { [SIDE]?: TunnelSide };

/** One end of the tunnel and what happened to it. */
class TunnelSide {
  readonly tunnel: Tunnel;
  readonly stream: Duplex;
  /** Set right after both sides exist. */
  peer: TunnelSide = this;
  /** Bytes read from this end (written to the peer). */
  bytes = 0;
  /** This end finished sending (FIN, END_STREAM). */
  ended = false;
  closed = false;
  failed = false;
  /** What this end's failure is logged as. */
  readonly failure: ErrorCode;

  constructor(tunnel: Tunnel, stream: Duplex, failure: ErrorCode) {
    this.tunnel = tunnel;
    this.stream = stream;
    this.failure = failure;
  }
}

function sideOf(stream: Duplex): TunnelSide {
  return (stream as Tagged)[SIDE]!;
}

function onData(this: Duplex, chunk: Buffer): void {
  const side = sideOf(this);
  side.bytes += chunk.length;
  side.tunnel.touch();
  const out = side.peer.stream;
  // The other end can no longer take bytes (it finished or failed): what is left has nowhere to go.
  if (!out.writable) return;
  if (!out.write(chunk)) this.pause();
}

function onDrain(this: Duplex): void {
  sideOf(this).peer.stream.resume();
}

function onEnd(this: Duplex): void {
  const side = sideOf(this);
  side.ended = true;
  side.tunnel.sideEnded(side);
}

function onError(this: Duplex): void {
  sideOf(this).failed = true;
}

/** An HTTP/2 stream reset by the peer (RST_STREAM, also CANCEL, which is no 'error'): a failure too. */
function onAborted(this: Duplex): void {
  sideOf(this).failed = true;
}

function onClose(this: Duplex): void {
  const side = sideOf(this);
  side.closed = true;
  side.tunnel.sideClosed(side);
}

function attach(side: TunnelSide): void {
  const stream = side.stream as Tagged;
  stream[SIDE] = side;
  stream.on('data', onData);
  stream.on('drain', onDrain);
  stream.on('end', onEnd);
  stream.on('error', onError);
  stream.on('aborted', onAborted);
  stream.on('close', onClose);
}

export class Tunnel implements Timed {
  deadline = 0;
  /** The exchange whose 101 opened the tunnel; logged when the tunnel ends. */
  readonly exchange: Exchange;
  private readonly registry: TunnelRegistry;
  private readonly accessLog: AccessLog | null;
  private readonly idleTimeoutMs: number;
  private readonly down: TunnelSide;
  private readonly up: TunnelSide;
  private state = ST_OPEN;
  /** Epoch ms at which a graceful shutdown closes the tunnel; 0 when not shutting down. */
  private drainAt = 0;
  /** Why the tunnel ended, for the access log; null for a clean close. */
  private reason: ErrorCode | null = null;
  /** performance.now() when the tunnel started. */
  private startedAt = 0;
  /** Bytes still queued on both ends when the linger last ran out (to tell progress from a stall). */
  private pendingAtLinger = 0;

  /**
   * Takes a place reserved in `registry` (TunnelRegistry.reserve). `downstream` is the client's end,
   * `upstream` the origin's; nothing happens until `start`.
   */
  constructor(
    registry: TunnelRegistry,
    exchange: Exchange,
    accessLog: AccessLog | null,
    downstream: TunnelEnd,
    upstream: TunnelEnd,
    idleTimeoutMs: number,
  ) {
    this.registry = registry;
    this.exchange = exchange;
    this.accessLog = accessLog;
    this.idleTimeoutMs = idleTimeoutMs;
    this.down = new TunnelSide(this, downstream, 'ZP_ERR_CLIENT_ABORTED');
    this.up = new TunnelSide(this, upstream, 'ZP_ERR_UPSTREAM_RESET');
    this.down.peer = this.up;
    this.up.peer = this.down;
  }

  /** Bytes received from the client and sent to the upstream so far (what was read past the head included). */
  get bytesUp(): number {
    return this.down.bytes;
  }

  /** Bytes received from the upstream and sent to the client so far. */
  get bytesDown(): number {
    return this.up.bytes;
  }

  get open(): boolean {
    return this.state === ST_OPEN;
  }

  /**
   * Starts copying. `toUpstream` holds client bytes read past the request head, `toDownstream` upstream
   * bytes read past the 101 head (null when none); they are written before anything else.
   */
  start(toUpstream: Buffer | null, toDownstream: Buffer | null): void {
    this.startedAt = performance.now();
    this.registry.add(this);
    watchDeadline(this);
    this.deadline = Date.now() + this.idleTimeoutMs;
    const down = this.down;
    const up = this.up;
    attach(down);
    attach(up);
    let upFull = false;
    let downFull = false;
    if (toUpstream !== null && toUpstream.length > 0) {
      down.bytes += toUpstream.length;
      upFull = !up.stream.write(toUpstream);
    }
    if (toDownstream !== null && toDownstream.length > 0) {
      up.bytes += toDownstream.length;
      downFull = !down.stream.write(toDownstream);
    }
    // Either end may have been paused by its previous owner; each reads unless the other is full.
    if (upFull) down.stream.pause();
    else down.stream.resume();
    if (downFull) up.stream.pause();
    else up.stream.resume();
    // An end that finished or closed before the tunnel was attached.
    for (const side of [down, up]) {
      if (side.stream.readableEnded && !side.ended) {
        side.ended = true;
        this.sideEnded(side);
      }
      if (side.stream.closed && !side.closed) {
        side.closed = true;
        this.sideClosed(side);
      }
    }
  }

  /** Bytes went through: the idle timeout starts again. */
  touch(): void {
    if (this.state !== ST_OPEN) return;
    const idleAt = Date.now() + this.idleTimeoutMs;
    this.deadline = this.drainAt !== 0 && this.drainAt < idleAt ? this.drainAt : idleAt;
  }

  /** Graceful shutdown: the tunnel runs until `at` (epoch ms), then is closed. */
  drain(at: number): void {
    this.drainAt = at;
    if (this.state === ST_OPEN && at < this.deadline) this.deadline = at;
  }

  /** Ends both ends after what was written to them (FIN), then destroys what has not closed in time. */
  close(reason: ErrorCode | null): void {
    if (this.state !== ST_OPEN) return;
    if (this.reason === null) this.reason = reason;
    this.closing();
    endWritable(this.down.stream);
    endWritable(this.up.stream);
  }

  /** Destroys both ends at once. */
  destroy(reason: ErrorCode | null): void {
    if (this.state === ST_DONE) return;
    if (this.reason === null) this.reason = reason;
    this.down.stream.destroy();
    this.up.stream.destroy();
  }

  onDeadline(now: number): void {
    if (this.state === ST_OPEN) {
      this.close(
        this.drainAt !== 0 && now >= this.drainAt ? 'ZP_ERR_SHUTTING_DOWN' : 'ZP_ERR_TUNNEL_IDLE_TIMEOUT',
      );
    } else if (this.state === ST_CLOSING) {
      // The ends did not close within the linger. Bytes still being flushed to a slow reader get more
      // time as long as they move; otherwise give up on the ends.
      const pending = this.down.stream.writableLength + this.up.stream.writableLength;
      if (pending > 0 && pending !== this.pendingAtLinger) {
        this.pendingAtLinger = pending;
        this.deadline = now + TUNNEL_LINGER_MS;
        return;
      }
      this.destroy(null);
    }
  }

  /** One end finished sending: the other end is ended after its pending bytes are flushed. */
  sideEnded(side: TunnelSide): void {
    if (this.state === ST_DONE) return;
    endWritable(side.peer.stream);
    this.closing();
  }

  /** One end closed: the other is ended (clean close) or destroyed (failure); the last one ends the tunnel. */
  sideClosed(side: TunnelSide): void {
    if (this.state === ST_DONE) return;
    const peer = side.peer;
    if (peer.closed) {
      this.finish();
      return;
    }
    if (side.failed || side.stream.errored !== null) {
      if (this.reason === null) this.reason = side.failure;
      peer.stream.destroy();
    } else {
      endWritable(peer.stream);
    }
    this.closing();
  }

  private closing(): void {
    if (this.state !== ST_OPEN) return;
    this.state = ST_CLOSING;
    this.deadline = Date.now() + TUNNEL_LINGER_MS;
  }

  private finish(): void {
    this.state = ST_DONE;
    this.deadline = 0;
    unwatchDeadline(this);
    this.registry.remove(this);
    const ex = this.exchange;
    ex.bytesIn += this.down.bytes;
    ex.bytesOut += this.up.bytes;
    if (ex.errorCode === null) ex.errorCode = this.reason;
    ex.endTime = performance.now();
    ex.tunnel = {
      bytes_up: this.down.bytes,
      bytes_down: this.up.bytes,
      duration_ms: Math.round((ex.endTime - this.startedAt) * 1000) / 1000,
      active: this.registry.active,
    };
    if (this.accessLog !== null) this.accessLog.write(ex);
  }
}

function endWritable(stream: Duplex): void {
  if (stream.writable) stream.end();
}
