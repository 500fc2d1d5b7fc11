/**
 * An HTTP/2 stream of zproxy's frame layer as a node:stream Duplex, for the one place that needs the
 * stream API: a WebSocket over HTTP/2 (RFC 8441) joined to its upstream socket by a Tunnel
 * (src/websocket/tunnel.ts). Reads are the client's DATA, writes become DATA to the client; the client's
 * END_STREAM is the readable end, end() sends END_STREAM, destroy() resets the stream with CANCEL. A
 * reset by the client emits 'aborted' (the tunnel counts it as a failure) before 'close'.
 */
import { Duplex } from 'node:stream';
import { CANCEL, NO_ERROR } from './frames.ts';
import type { H2ServerStream, StreamOwner } from './server-connection.ts';

export class H2StreamDuplex extends Duplex implements StreamOwner {
  private readonly stream: H2ServerStream;
  /** The callback of a write that returned false, called when the stream drains. */
  private pendingWrite: ((error?: Error | null) => void) | null = null;

  constructor(stream: H2ServerStream) {
    super({ allowHalfOpen: true });
    this.stream = stream;
    stream.owner = this;
    stream.resetWhenDone = false;
  }

  onRequestData(chunk: Buffer): void {
    if (!this.push(chunk)) this.stream.pause();
  }

  onRequestTrailers(): void {}

  onRequestEnd(): void {
    this.push(null);
  }

  onStreamDrain(): void {
    const callback = this.pendingWrite;
    this.pendingWrite = null;
    callback?.();
  }

  onStreamClose(code: number): void {
    if (code !== NO_ERROR) this.emit('aborted');
    const callback = this.pendingWrite;
    this.pendingWrite = null;
    callback?.();
    this.destroy();
  }

  override _read(): void {
    this.stream.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.stream.closed) {
      callback();
      return;
    }
    if (this.stream.write(chunk)) callback();
    else this.pendingWrite = callback;
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.stream.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.stream.closed) this.stream.reset(CANCEL);
    callback(error);
  }
}
