/**
 * A lock in shared memory for the tables the workers of an instance share (the rate limiter's buckets,
 * the cache's index): one Int32 word, 0 free, 1 held, 2 held with waiters (the futex mutex of Drepper's
 * "Futexes Are Tricky"). Critical sections are short, so a taker spins a little before it sleeps on the
 * word; a holder that leaves with waiters wakes one.
 */

/** Spins on a held lock before sleeping on it. */
const SPINS = 64;

export function lockShared(words: Int32Array, index: number): void {
  let c = Atomics.compareExchange(words, index, 0, 1);
  if (c === 0) return;
  for (let spin = 0; spin < SPINS; spin++) {
    c = Atomics.compareExchange(words, index, 0, 1);
    if (c === 0) return;
  }
  // Held: mark it contended and sleep until the holder wakes a waiter.
  if (c !== 2) c = Atomics.exchange(words, index, 2);
  while (c !== 0) {
    Atomics.wait(words, index, 2, 10);
    c = Atomics.exchange(words, index, 2);
  }
}

export function unlockShared(words: Int32Array, index: number): void {
  if (Atomics.sub(words, index, 1) !== 1) {
    Atomics.store(words, index, 0);
    Atomics.notify(words, index, 1);
  }
}
