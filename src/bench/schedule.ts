/**
 * The constant-rate schedule of one connection, as wrk2 keeps it: request n of the connection is meant to
 * go at `start + (phase + n) × interval`, whatever happened to the requests before it. A request that goes
 * late (because the connection was still waiting for an answer) keeps its intended time, and its latency
 * is counted from then: the coordinated-omission correction.
 */
export class Schedule {
  /** When the next request is meant to go (ms, performance.now() clock). */
  next: number;
  /** Milliseconds between two requests of this connection. */
  readonly interval: number;

  /**
   * @param start when the run started (ms)
   * @param rate requests per second for this connection
   * @param phase 0..1: where in the first interval this connection starts (spreads connections evenly)
   */
  constructor(start: number, rate: number, phase: number) {
    this.interval = 1000 / rate;
    this.next = start + phase * this.interval;
  }

  /** The intended time of the next request, which is then taken. */
  take(): number {
    const at = this.next;
    this.next += this.interval;
    return at;
  }
}

/** What a connection's schedule depends on (a thread's plan). */
export interface RatePlan {
  /** The thread's share of the rate (requests per second), or null for closed-loop. */
  readonly rate: number | null;
  readonly connections: number;
  readonly firstConnection: number;
  readonly totalConnections: number;
}

/**
 * The schedule of connection `index` of a thread (its share of the thread's rate, its phase among all
 * connections of the run), or null in closed-loop mode.
 */
export function connectionSchedule(plan: RatePlan, start: number, index: number): Schedule | null {
  if (plan.rate === null) return null;
  return new Schedule(
    start,
    plan.rate / plan.connections,
    phaseOf(plan.firstConnection + index, plan.totalConnections),
  );
}

/** The phase of connection `index` of `total`: connections spread evenly over one interval. */
export function phaseOf(index: number, total: number): number {
  return total <= 1 ? 0 : index / total;
}

/**
 * A request due within this many milliseconds goes now rather than after a timer: Node's timers have a
 * resolution of one millisecond, so a timer for less would fire late anyway. It then counts as sent on
 * time (its intended time is the actual one). The requests that do wait for a timer may go up to about
 * 1 ms late, and that lateness is part of their corrected latency.
 */
export const EARLY_MS = 0.5;

/**
 * When a connection sends its next request: at once in closed-loop mode, else when its schedule says;
 * requests that must go again (their connection closed before the answer) go first, at their intended
 * times. One per connection; its timer calls `wake` when a scheduled request is due or a reconnect delay
 * is over.
 */
export class Pacer {
  private readonly schedule: Schedule | null;
  private readonly backlog: number[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly onTimer: () => void;

  constructor(schedule: Schedule | null, wake: () => void) {
    this.schedule = schedule;
    this.onTimer = () => {
      this.timer = null;
      wake();
    };
  }

  /**
   * The intended send time of a request that may go at `now`, or -1 when none is due yet (the timer then
   * wakes the connection when one is).
   */
  next(now: number): number {
    if (this.backlog.length > 0) return this.backlog.shift()!;
    const schedule = this.schedule;
    if (schedule === null) return now;
    if (schedule.next > now + EARLY_MS) {
      this.wakeIn(schedule.next - now);
      return -1;
    }
    return Math.min(schedule.take(), now);
  }

  /** A request sent at its `intended` time got no answer and goes again (at a constant rate only). */
  again(intended: number): void {
    if (this.schedule !== null) this.backlog.push(intended);
  }

  /** Wakes the connection in `delayMs`, unless a wake is already set. */
  wakeIn(delayMs: number): void {
    if (this.timer === null) this.timer = setTimeout(this.onTimer, Math.max(0, Math.floor(delayMs)));
  }

  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
