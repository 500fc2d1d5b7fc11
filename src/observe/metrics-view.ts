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
 *   slot, sent once when the worker allocated it (ThreadMetrics); no message per request or per scrape;
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

/** Worker threads: each worker's shared chunks, read at the scrape. */
export class ThreadMetrics implements WorkerMetrics {
  private readonly workers = new Map<number, { series: SeriesEntry[]; chunks: Float64Array[] }>();
  private readonly retired = new Retired();

  /** A worker allocated series (its MetricRegistry's publish). */
  onSeries(worker: number, message: MetricSeriesMessage): void {
    let w = this.workers.get(worker);
    if (w === undefined) {
      w = { series: [], chunks: [] };
      this.workers.set(worker, w);
    }
    if (message.chunk !== null) w.chunks.push(new Float64Array(message.chunk));
    for (const s of message.series) w.series.push(s);
  }

  /** A worker ended: its counters stay in the sum, its gauges go. */
  onExit(worker: number): void {
    const w = this.workers.get(worker);
    if (w === undefined) return;
    this.workers.delete(worker);
    for (const [family, labels, part, kind, chunk, slot] of w.series) {
      if (kind === COUNTER) this.retired.keep(family, labels, part, w.chunks[chunk]![slot]!);
    }
  }

  collect(sum: MetricSum): void {
    this.retired.collect(sum);
    for (const w of this.workers.values()) addSlots(sum, w.series, w.chunks);
  }
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

/** How long a scrape waits for a worker process's snapshot before using its previous one. */
const SNAPSHOT_TIMEOUT_MS = 1000;

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
            const timer = setTimeout(done, SNAPSHOT_TIMEOUT_MS);
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
