/**
 * The instance's one view of its metrics: every worker's series summed (a counter of a worker that ended
 * is kept: its last values stay in the sum, so counters never go back; its gauges go with it), the
 * instance's own series (reloads, process CPU and memory, uptime) added, written as the Prometheus text
 * exposition (version 0.0.4). It runs in the per-instance place: the single process, the main thread of
 * worker threads, or the process supervisor.
 *
 * Where the workers' numbers come from:
 * - a single process: its own registry (LocalMetrics);
 * - worker threads: each worker's SharedArrayBuffer chunks, read at the scrape, and the meaning of each
 *   slot, sent once when the worker allocated it (ThreadMetrics); no message per request or per scrape
 *   (a scrape waits only for announcements still on their way, counted in shared memory);
 * - worker processes: a snapshot each worker sends when the supervisor asks at a scrape (ProcessMetrics).
 */
import {
  COUNTER,
  FAMILIES,
  type Family,
  HISTOGRAM_SUM,
  LATENCY_BUCKETS,
  type MetricRegistry,
  type MetricSnapshot,
  type SeriesEntry,
  VALUE,
} from './metrics.ts';

/** Sums series by family, labels and part. */
export class MetricSum {
  /** family -> labels -> part -> value */
  readonly families = new Map<Family, Map<string, Map<number, number>>>();

  add(family: Family, labels: string, part: number, value: number): void {
    let byLabels = this.families.get(family);
    if (byLabels === undefined) {
      byLabels = new Map();
      this.families.set(family, byLabels);
    }
    let parts = byLabels.get(labels);
    if (parts === undefined) {
      parts = new Map();
      byLabels.set(labels, parts);
    }
    parts.set(part, (parts.get(part) ?? 0) + value);
  }

  /** The summed value of a plain series (0 when absent). */
  value(family: Family, labels: string): number {
    return this.families.get(family)?.get(labels)?.get(VALUE) ?? 0;
  }

  /** The Prometheus text exposition of every family, in FAMILIES order. */
  render(): string {
    const out: string[] = [];
    for (const family of Object.keys(FAMILIES) as Family[]) {
      const byLabels = this.families.get(family);
      if (byLabels === undefined) continue;
      const { type, help } = FAMILIES[family];
      out.push(`# HELP ${family} ${help}`, `# TYPE ${family} ${type}`);
      for (const [labels, parts] of byLabels) {
        if (type !== 'histogram') {
          const v = parts.get(VALUE) ?? 0;
          // The requests' combinations (route x method x status x protocol) are written once they occur.
          if (v === 0 && family === 'zproxy_requests_total') continue;
          out.push(`${family}${labels === '' ? '' : `{${labels}}`} ${number(v)}`);
          continue;
        }
        const sep = labels === '' ? '' : ',';
        let cumulative = 0;
        for (let i = 0; i <= LATENCY_BUCKETS.length; i++) {
          cumulative += parts.get(i) ?? 0;
          const le = i < LATENCY_BUCKETS.length ? String(LATENCY_BUCKETS[i]) : '+Inf';
          out.push(`${family}_bucket{${labels}${sep}le="${le}"} ${number(cumulative)}`);
        }
        out.push(
          `${family}_sum${labels === '' ? '' : `{${labels}}`} ${number(parts.get(HISTOGRAM_SUM) ?? 0)}`,
        );
        out.push(`${family}_count${labels === '' ? '' : `{${labels}}`} ${number(cumulative)}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}

function number(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Number.isFinite(v) ? String(v) : v > 0 ? '+Inf' : v < 0 ? '-Inf' : 'NaN';
}

/** Where the workers' series come from. */
export interface WorkerMetrics {
  /** Adds every worker's series (live and ended) to `sum`. */
  collect(sum: MetricSum): Promise<void> | void;
}

/** The series of one worker whose slots are readable here (its registry, or its shared chunks). */
function addSlots(sum: MetricSum, series: readonly SeriesEntry[], chunks: readonly Float64Array[]): void {
  for (const [family, labels, part, , chunk, slot] of series)
    sum.add(family, labels, part, chunks[chunk]![slot]!);
}

/** A single process: its own registry. */
export class LocalMetrics implements WorkerMetrics {
  private readonly registry: MetricRegistry;

  constructor(registry: MetricRegistry) {
    this.registry = registry;
  }

  collect(sum: MetricSum): void {
    addSlots(sum, this.registry.series, this.registry.chunks);
  }
}

/** What an ended worker leaves: its counters' last values. */
class Retired {
  readonly values = new Map<string, [Family, string, number, number]>();

  keep(family: Family, labels: string, part: number, value: number): void {
    const key = `${family}{${labels}}${part}`;
    const known = this.values.get(key);
    if (known === undefined) this.values.set(key, [family, labels, part, value]);
    else known[3] += value;
  }

  collect(sum: MetricSum): void {
    for (const [family, labels, part, value] of this.values.values()) sum.add(family, labels, part, value);
  }
}

/** The message a worker thread sends when it allocates series (never per request). */
export interface MetricSeriesMessage {
  readonly type: 'metric-series';
  readonly series: SeriesEntry[];
  /** A new chunk the series (and the next ones) live in. */
  readonly chunk: SharedArrayBuffer | null;
}

/** How long a scrape waits for a worker's announcements (or a worker process's snapshot) before going on. */
const ANSWER_TIMEOUT_MS = 1000;

/** A worker thread's slots as the main thread knows them. */
class ThreadSlots {
  readonly series: SeriesEntry[] = [];
  readonly chunks: Float64Array[] = [];
  /** Announcements the worker posted (it adds one before posting each); null when not counted. */
  readonly announced: Int32Array | null;
  /** Announcements read here. */
  received = 0;
  /** The scrapes waiting for the announcements not read yet. */
  readonly waiting = new Set<() => void>();

  constructor(announced: Int32Array | null) {
    this.announced = announced;
  }

  /** Whether announcements the worker posted are still on their way. */
  pending(): boolean {
    return this.announced !== null && Atomics.load(this.announced, 0) > this.received;
  }
}

/**
 * Worker threads: each worker's shared chunks, read at the scrape. A worker announces what its slots mean
 * when it allocates them (at its start and at a reload, never per request), by message; it counts each
 * announcement in shared memory before posting it, so a scrape knows when some are still on their way (a
 * worker that has just started and served its first requests) and waits for them: whatever a worker
 * counted before the scrape began is in its sum.
 */
export class ThreadMetrics implements WorkerMetrics {
  private readonly workers = new Map<number, ThreadSlots>();
  private readonly retired = new Retired();

  /** Worker `worker` starts: the shared count of its announcements, for its workerData. */
  add(worker: number): SharedArrayBuffer {
    const announced = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    this.workers.set(worker, new ThreadSlots(new Int32Array(announced)));
    return announced;
  }

  /** A worker allocated series (its MetricRegistry's publish). */
  onSeries(worker: number, message: MetricSeriesMessage): void {
    let w = this.workers.get(worker);
    if (w === undefined) {
      w = new ThreadSlots(null);
      this.workers.set(worker, w);
    }
    if (message.chunk !== null) w.chunks.push(new Float64Array(message.chunk));
    for (const s of message.series) w.series.push(s);
    w.received++;
    if (w.waiting.size > 0 && !w.pending()) for (const done of w.waiting) done();
  }

  /** A worker ended (after its last messages were read): its counters stay in the sum, its gauges go. */
  onExit(worker: number): void {
    const w = this.workers.get(worker);
    if (w === undefined) return;
    this.workers.delete(worker);
    for (const done of w.waiting) done();
    for (const [family, labels, part, kind, chunk, slot] of w.series) {
      if (kind === COUNTER) this.retired.keep(family, labels, part, w.chunks[chunk]![slot]!);
    }
  }

  collect(sum: MetricSum): Promise<void> | void {
    const pending = [...this.workers.values()].filter((w) => w.pending());
    if (pending.length === 0) {
      this.read(sum);
      return;
    }
    return Promise.all(pending.map(announcements)).then(() => this.read(sum));
  }

  private read(sum: MetricSum): void {
    this.retired.collect(sum);
    for (const w of this.workers.values()) addSlots(sum, w.series, w.chunks);
  }
}

/** Resolves once the announcements `w` has on their way are read (or the worker ended, or a second passed). */
function announcements(w: ThreadSlots): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ANSWER_TIMEOUT_MS);
    function done(): void {
      clearTimeout(timer);
      w.waiting.delete(done);
      resolve();
    }
    w.waiting.add(done);
  });
}

/** The supervisor's question to a worker process, and the answer. */
export interface MetricRequestMessage {
  readonly type: 'metric-request';
  readonly seq: number;
}
export interface MetricSnapshotMessage {
  readonly type: 'metric-snapshot';
  readonly seq: number;
  readonly snapshot: MetricSnapshot;
}

/** Worker processes: a snapshot from each at every scrape; the last one is kept for a worker that ends. */
export class ProcessMetrics implements WorkerMetrics {
  private readonly workers = new Map<
    number,
    { send: (m: MetricRequestMessage) => void; last: MetricSnapshot | null; waiting: (() => void) | null }
  >();
  private readonly retired = new Retired();
  private seq = 0;

  /** A worker process started; `send` asks it for a snapshot. */
  add(worker: number, send: (m: MetricRequestMessage) => void): void {
    this.workers.set(worker, { send, last: null, waiting: null });
  }

  /** A worker's message: true when it was a snapshot (handled here). */
  onMessage(worker: number, message: unknown): boolean {
    const m = message as MetricSnapshotMessage | null;
    if (m?.type !== 'metric-snapshot') return false;
    const w = this.workers.get(worker);
    if (w !== undefined) {
      w.last = m.snapshot;
      w.waiting?.();
    }
    return true;
  }

  onExit(worker: number): void {
    const w = this.workers.get(worker);
    if (w === undefined) return;
    this.workers.delete(worker);
    w.waiting?.();
    const last = w.last;
    if (last === null) return;
    last.series.forEach(([family, labels, part, kind], i) => {
      if (kind === COUNTER) this.retired.keep(family, labels, part, last.values[i]!);
    });
  }

  async collect(sum: MetricSum): Promise<void> {
    const seq = ++this.seq;
    const live = [...this.workers.values()];
    await Promise.all(
      live.map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(done, ANSWER_TIMEOUT_MS);
            function done(): void {
              clearTimeout(timer);
              w.waiting = null;
              resolve();
            }
            w.waiting = done;
            try {
              w.send({ type: 'metric-request', seq });
            } catch {
              done();
            }
          }),
      ),
    );
    this.retired.collect(sum);
    for (const w of this.workers.values()) {
      const last = w.last;
      if (last === null) continue;
      last.series.forEach(([family, labels, part], i) => {
        sum.add(family, labels, part, last.values[i]!);
      });
    }
  }
}
