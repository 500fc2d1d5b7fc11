/**
 * The tunnels of one process: how many are open, the cap on them (`websocket.max_tunnels`), and the
 * graceful-shutdown drain. A handshake in progress holds a reserved place, so that a burst of upgrades
 * cannot open more tunnels than the cap once their 101s arrive. Shared by every engine that opens
 * tunnels (HTTP/1.1 Upgrade today, RFC 8441 over HTTP/2 later); it outlives runtimes (reloads).
 */
import type { ErrorCode } from '../errors.ts';
import { SlotSet } from '../util/slot-set.ts';
import type { Tunnel } from './tunnel.ts';

export class TunnelRegistry {
  private readonly tunnels = new SlotSet<Tunnel>();
  /** Places held by handshakes in progress. */
  private reserved = 0;
  /** Epoch ms at which open tunnels are closed by a graceful shutdown; 0 when not shutting down. */
  private drainAt = 0;

  /** Open tunnels (the active tunnel count). */
  get active(): number {
    return this.tunnels.size;
  }

  /** Handshakes in progress holding a place. */
  get pending(): number {
    return this.reserved;
  }

  /** Reserves a place for a tunnel about to be opened; false when `max` places are taken. */
  reserve(max: number): boolean {
    if (this.tunnels.size + this.reserved >= max) return false;
    this.reserved++;
    return true;
  }

  /** Gives back a reserved place that did not become a tunnel (refused, failed, non-101 answer). */
  release(): void {
    this.reserved--;
  }

  /** A reserved place becomes an open tunnel (Tunnel.start). */
  add(tunnel: Tunnel): void {
    this.reserved--;
    this.tunnels.add(tunnel);
    if (this.drainAt !== 0) tunnel.drain(this.drainAt);
  }

  remove(tunnel: Tunnel): void {
    this.tunnels.delete(tunnel);
  }

  /**
   * Graceful shutdown: open tunnels (and any opened from now on) keep running for `ms`, then are closed:
   * both ends get a FIN after what was written to them, and the access log records ZP_ERR_SHUTTING_DOWN.
   */
  drain(ms: number): void {
    this.drainAt = Date.now() + ms;
    for (const tunnel of this.tunnels) tunnel.drain(this.drainAt);
  }

  /** Destroys every open tunnel (the end of a graceful shutdown's grace period). */
  destroyAll(reason: ErrorCode = 'ZP_ERR_SHUTTING_DOWN'): void {
    for (const tunnel of this.tunnels) tunnel.destroy(reason);
  }
}
