/**
 * Whether an upstream target takes new requests (docs/upstreams.md, "Health"). Two sources decide:
 *
 * - active checks (`health_check`): the instance's checker (health-checker.ts) asks each target for a path
 *   every interval and marks it down after `unhealthy_threshold` failed checks in a row, up again after
 *   `healthy_threshold` good ones (HAProxy's fall and rise);
 * - passive outlier detection (`outlier_detection`, Envoy's manner): `consecutive_failures` failed
 *   exchanges in a row (connect failures, timeouts, resets, the listed statuses) eject a target for
 *   `base_ejection_ms` times the number of its recent ejections (at most `max_ejection_ms`), with at
 *   most `max_ejection_percent` of a route's targets ejected at once (always at least one).
 *
 * The state is a table of records in a SharedArrayBuffer, one record per target URL and health settings
 * (routes with the same targets and settings share it). With worker threads every worker maps the same
 * table (src/util/instance.ts): the checker in the main thread writes the active state, any worker writes
 * an ejection, and every worker sees both at its next pick. A single process has a table of its own.
 * Records are claimed when a runtime is compiled (under one lock) and never freed: a reload that keeps a
 * target keeps its state, and the table holds far more records than a config has targets.
 */
import type { HealthCheckConfig, OutlierDetectionConfig } from '../config/schema.ts';
import { hash32 } from '../util/hash.ts';
import { lockShared, unlockShared } from '../util/shared-lock.ts';

/** Records of a table: targets × health settings of an instance, over all reloads. */
export const HEALTH_RECORDS = 4096;

/** Active state: not checked (or not yet decided): up. */
export const ACTIVE_UNKNOWN = 0;
export const ACTIVE_UP = 1;
export const ACTIVE_DOWN = 2;

// Int32 words per record.
const I_STATE = 0;
const I_FAILURES = 1;
const I_EJECTIONS = 2;
const I_WORDS = 4;
// Float64 words per record.
const F_EJECTED_UNTIL = 0;
const F_UP_SINCE = 1;
const F_WORDS = 2;

/** The word of the table's lock (after the records' words). */
const LOCK = HEALTH_RECORDS * I_WORDS;

/** A new table, to hand to every worker (or to keep, in a single process). */
export function createHealthTable(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEALTH_RECORDS * (F_WORDS * 8 + 2 * 4 + I_WORDS * 4) + 4);
}

/** The identity of a record: the target and the settings that judge it. */
export function healthKey(
  url: string,
  check: HealthCheckConfig | null,
  outlier: OutlierDetectionConfig | null,
): string {
  return `${url} ${check === null ? '-' : JSON.stringify(check)} ${outlier === null ? '-' : JSON.stringify(outlier)}`;
}

export class HealthTable {
  readonly buffer: SharedArrayBuffer;
  private readonly times: Float64Array;
  private readonly keys: Uint32Array;
  private readonly ints: Int32Array;

  constructor(buffer: SharedArrayBuffer = createHealthTable()) {
    this.buffer = buffer;
    this.times = new Float64Array(buffer, 0, HEALTH_RECORDS * F_WORDS);
    this.keys = new Uint32Array(buffer, HEALTH_RECORDS * F_WORDS * 8, HEALTH_RECORDS * 2);
    this.ints = new Int32Array(buffer, HEALTH_RECORDS * (F_WORDS * 8 + 8), HEALTH_RECORDS * I_WORDS + 1);
  }

  /** The record of `key` (claimed when new), or -1 when the table is full. */
  record(key: string): number {
    return this.lookup(key, true);
  }

  /** The record of `key` when one was claimed, else -1. */
  find(key: string): number {
    return this.lookup(key, false);
  }

  private lookup(key: string, claim: boolean): number {
    // Never 0 (an empty place); the second word tells keys whose first words collide apart.
    const a = hash32(key, '', 0x2f6b1d35) | 1;
    const b = hash32(key, '', 0x6c8e9cf5);
    const mask = HEALTH_RECORDS - 1;
    lockShared(this.ints, LOCK);
    try {
      for (let n = 0, i = a & mask; n < HEALTH_RECORDS; n++, i = (i + 1) & mask) {
        const k = this.keys[2 * i]!;
        if (k === 0) {
          if (!claim) return -1;
          this.keys[2 * i] = a >>> 0;
          this.keys[2 * i + 1] = b;
          return i;
        }
        if (k === a >>> 0 && this.keys[2 * i + 1] === b) return i;
      }
      return -1;
    } finally {
      unlockShared(this.ints, LOCK);
    }
  }

  active(record: number): number {
    return Atomics.load(this.ints, record * I_WORDS + I_STATE);
  }

  /** Sets the active state; a target that comes up is up since `now` (slow start counts from then). */
  setActive(record: number, state: number, now: number): void {
    const before = Atomics.exchange(this.ints, record * I_WORDS + I_STATE, state);
    if (state === ACTIVE_UP && before === ACTIVE_DOWN) this.times[record * F_WORDS + F_UP_SINCE] = now;
  }

  upSince(record: number): number {
    return this.times[record * F_WORDS + F_UP_SINCE]!;
  }

  ejectedUntil(record: number): number {
    return this.times[record * F_WORDS + F_EJECTED_UNTIL]!;
  }

  ejections(record: number): number {
    return Atomics.load(this.ints, record * I_WORDS + I_EJECTIONS);
  }

  /** A good exchange: the run of failures ends (written only when there was one). */
  succeeded(record: number): void {
    const i = record * I_WORDS + I_FAILURES;
    if (this.ints[i] !== 0) Atomics.store(this.ints, i, 0);
  }

  /** A failed exchange: the failures in a row so far, this one included. */
  failed(record: number): number {
    return Atomics.add(this.ints, record * I_WORDS + I_FAILURES, 1) + 1;
  }

  /**
   * Ejects the target until `now` + its ejection time: `base` times its recent ejections (the count
   * starts again when the last ejection ended more than `max` ago), at most `max`. Returns the time.
   */
  eject(record: number, now: number, base: number, max: number): number {
    const t = record * F_WORDS;
    const ints = this.ints;
    const e = record * I_WORDS;
    lockShared(ints, LOCK);
    try {
      if (this.times[t + F_EJECTED_UNTIL]! > now) return 0;
      const recent = now - this.times[t + F_EJECTED_UNTIL]! <= max;
      const count = recent ? ints[e + I_EJECTIONS]! + 1 : 1;
      ints[e + I_EJECTIONS] = count;
      ints[e + I_FAILURES] = 0;
      const ms = Math.min(base * count, max);
      this.times[t + F_EJECTED_UNTIL] = now + ms;
      return ms;
    } finally {
      unlockShared(ints, LOCK);
    }
  }
}

/** The compiled `outlier_detection` of a route. */
export class OutlierPolicy {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
  /** Statuses (500-599) that count as failures, by status - 500. */
  private readonly statuses: Uint8Array;

  constructor(config: OutlierDetectionConfig) {
    this.consecutiveFailures = config.consecutive_failures;
    this.baseEjectionMs = config.base_ejection_ms;
    this.maxEjectionMs = config.max_ejection_ms;
    this.maxEjectionPercent = config.max_ejection_percent;
    this.statuses = new Uint8Array(100);
    for (const s of config.statuses) this.statuses[s - 500] = 1;
  }

  /** True when an upstream answer with this status counts as a failure. */
  failsOn(status: number): boolean {
    return status >= 500 && status < 600 && this.statuses[status - 500] === 1;
  }
}

/** What a balancer reads of one target's health: its record in the instance's table. */
export class TargetHealth {
  readonly table: HealthTable;
  readonly record: number;
  /** The route's passive detection, or null. */
  readonly outlier: OutlierPolicy | null;
  /** Slow start after an active check brought the target back (0: none). */
  readonly slowStartMs: number;

  constructor(table: HealthTable, record: number, outlier: OutlierPolicy | null, slowStartMs: number) {
    this.table = table;
    this.record = record;
    this.outlier = outlier;
    this.slowStartMs = slowStartMs;
  }

  /** True while the target takes new requests: not down by its checks, not ejected. */
  up(now: number): boolean {
    return this.table.active(this.record) !== ACTIVE_DOWN && this.table.ejectedUntil(this.record) <= now;
  }

  /**
   * The share of its weight the target gets: 1, or less while it warms up after coming back (from 10 %
   * to all of it over slow_start_ms).
   */
  share(now: number): number {
    if (this.slowStartMs === 0) return 1;
    const since = now - this.table.upSince(this.record);
    return since >= this.slowStartMs ? 1 : 0.1 + (0.9 * since) / this.slowStartMs;
  }

  /** Why the target is out, for /status: 'down' (checks), 'ejected', or null while it is up. */
  state(now: number): 'down' | 'ejected' | null {
    if (this.table.active(this.record) === ACTIVE_DOWN) return 'down';
    if (this.table.ejectedUntil(this.record) > now) return 'ejected';
    return null;
  }
}
