/**
 * Coarse shared timers. Instead of a timer per request, each long-lived object (a connection) registers
 * once and sets its `deadline` field (ms since epoch, 0 = none) as its state changes; one interval per
 * process sweeps the registered objects and calls `onDeadline` on those past due. Setting a deadline on
 * the hot path is one field write. Precision is the sweep interval.
 */

import { SlotSet } from './slot-set.ts';

export interface Timed {
  /** Epoch milliseconds at which `onDeadline` runs; 0 disables. */
  deadline: number;
  onDeadline(now: number): void;
}

export const SWEEP_INTERVAL_MS = 100;

const registered = new SlotSet<Timed>();
let timer: NodeJS.Timeout | null = null;

function sweep(): void {
  if (registered.size === 0) {
    // Nothing to watch for a whole interval: the timer stops until something registers again.
    clearInterval(timer!);
    timer = null;
    return;
  }
  const now = Date.now();
  registered.forEachMember((t) => {
    if (t.deadline !== 0 && t.deadline <= now) {
      t.deadline = 0;
      t.onDeadline(now);
    }
  });
}

export function watchDeadline(t: Timed): void {
  registered.add(t);
  if (timer === null) {
    timer = setInterval(sweep, SWEEP_INTERVAL_MS);
    timer.unref();
  }
}

/**
 * Leaves the timer running when the last object goes: the sweep stops it once it finds nothing to watch,
 * so a process serving one connection at a time does not start and stop a timer per connection.
 */
export function unwatchDeadline(t: Timed): void {
  registered.delete(t);
}
