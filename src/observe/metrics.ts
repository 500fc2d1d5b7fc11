/**
 * The metrics of one worker (docs/operations.md, "Metrics"): counters and gauges kept as numbers in typed
 * arrays, each series a slot. A runtime binds handles (RouteMetrics, TargetMetrics) when it is compiled, so
 * that counting an exchange is a few index increments: no label string is built, no map is read per
 * request. The registry belongs to the worker (ProxyServer), not to a runtime: a route or a target that a
 * reload keeps finds its slots again by its labels and keeps counting where it was.
 *
 * With worker threads, the slots live in SharedArrayBuffer chunks that the main thread reads at a scrape
 * (each worker writes only its own); the worker tells the main thread what a slot means once, when it is
 * allocated (`publish`), never per request. A worker process sends a snapshot when its supervisor asks.
 * The instance's view (metrics-view.ts) sums the workers and writes the Prometheus text.
 */
import { type ELDHistogram, monitorEventLoopDelay } from 'node:perf_hooks';
import { type ErrorCode, upstreamFailure } from '../errors.ts';

/** How a series adds up over workers and over a worker's end. */
export const COUNTER = 0;
/** A gauge: summed over the live workers; a worker that ends takes its gauges with it. */
export const GAUGE = 1;

/** The metric families, their type and help text (the text exposition's HELP and TYPE lines). */
export const FAMILIES = {
  zproxy_requests_total: {
    type: 'counter',
    help: 'Exchanges answered, by route pattern, method, status class and downstream protocol.',
  },
  zproxy_request_duration_seconds: {
    type: 'histogram',
    help: 'Time from the complete request head to the end of the response, by route.',
  },
  zproxy_retries_total: { type: 'counter', help: 'Exchanges sent again to an upstream (a retry), by route.' },
  zproxy_upstream_requests_total: { type: 'counter', help: 'Attempts sent to an upstream target.' },
  zproxy_upstream_errors_total: {
    type: 'counter',
    help: 'Upstream failures by target and kind (connect, tls, timeout, reset, protocol, bad_response, unavailable).',
  },
  zproxy_upstream_connect_seconds: {
    type: 'histogram',
    help: 'Time to open a connection (TCP, and TLS for https://) to an upstream target.',
  },
  zproxy_upstream_response_seconds: {
    type: 'histogram',
    help: 'Time from sending a request head to an upstream target to its response head.',
  },
  zproxy_upstream_overload_total: {
    type: 'counter',
    help: 'Requests and retries refused by a circuit-breaking limit, by route, target and limit (requests, pending, retries, retry_budget, target_requests, target_pending).',
  },
  zproxy_upstream_route_load: {
    type: 'gauge',
    help: "A route's requests to its upstreams by state (in_flight, pending: queued behind busy connections, retries: in a retry).",
  },
  zproxy_upstream_target_load: {
    type: 'gauge',
    help: "A route's requests to one of its targets by state (in_flight, pending: queued behind busy connections).",
  },
  zproxy_upstream_pool_connections: {
    type: 'gauge',
    help: 'Connections (HTTP/1.1) or sessions (HTTP/2) of each target pool, by state (idle, busy).',
  },
  zproxy_downstream_connections: {
    type: 'gauge',
    help: 'Open downstream connections by protocol (http1, http2, pending: being detected or in a TLS handshake).',
  },
  zproxy_http2_streams: { type: 'gauge', help: 'Open HTTP/2 streams of downstream connections.' },
  zproxy_websocket_tunnels: { type: 'gauge', help: 'Open WebSocket tunnels.' },
  zproxy_connections_refused_total: {
    type: 'counter',
    help: 'Connections refused because max_connections was reached.',
  },
  zproxy_tls_handshakes_total: {
    type: 'counter',
    help: 'Downstream TLS handshakes by result (ok, failed).',
  },
  zproxy_filter_outcomes_total: {
    type: 'counter',
    help: 'What filters decided, by route and outcome (auth_refused, rate_limited, cors_refused, cache_hit, cache_miss, cache_stale).',
  },
  zproxy_reloads_total: { type: 'counter', help: 'Configuration reloads by result (success, failure).' },
  zproxy_reload_last_success_timestamp_seconds: {
    type: 'gauge',
    help: 'When the configuration was last loaded successfully (Unix time).',
  },
  zproxy_process_cpu_seconds_total: { type: 'counter', help: 'CPU time of the instance (user and system).' },
  zproxy_process_resident_memory_bytes: { type: 'gauge', help: 'Resident memory of the instance.' },
  zproxy_process_heap_used_bytes: { type: 'gauge', help: 'V8 heap in use, by worker (0: the main thread).' },
  zproxy_event_loop_delay_seconds: {
    type: 'gauge',
    help: 'Event-loop delay of each worker over the last second beyond the 10 ms sampling timer, by stat (p50, p99, max).',
  },
  zproxy_workers: { type: 'gauge', help: 'Workers serving.' },
  zproxy_uptime_seconds: { type: 'gauge', help: 'Time since the instance started.' },
} as const;

export type Family = keyof typeof FAMILIES;

/** Upper bounds of the latency histograms, in seconds (the last bucket, +Inf, is implied). */
export const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;
/** The part of a histogram series that holds the sum of the observations. */
export const HISTOGRAM_SUM = -1;
/** The part of a plain counter or gauge series. */
export const VALUE = -2;
/** Slots of one histogram: a count per bucket (not cumulative; +Inf last), then the sum. */
const HISTOGRAM_SLOTS = LATENCY_BUCKETS.length + 2;

/**
 * What a slot holds: a family, its labels rendered once (`route="/api",method="GET"`), and the part
 * (VALUE, HISTOGRAM_SUM, or a bucket index) — as sent to the main thread: [family, labels, part, kind,
 * chunk, slot].
 */
export type SeriesEntry = [
  family: Family,
  labels: string,
  part: number,
  kind: number,
  chunk: number,
  slot: number,
];

/** A label value as the exposition format writes it (backslash, double quote and newline escaped). */
export function labelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** Labels rendered as the text format writes them: `a="x",b="y"`. */
export function labels(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([k, v]) => `${k}="${labelValue(v)}"`).join(',');
}

/** The `route` label of a route: its pattern, after its host when it has one (`api.example.com/api`). */
export function routeLabel(route: { readonly host: string | null; readonly path: string }): string {
  return route.host === null ? route.path : `${route.host}${route.path}`;
}

/** The methods counted by name; any other is OTHER (bounded labels). */
export const METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
  'OPTIONS',
  'CONNECT',
  'TRACE',
  'OTHER',
] as const;
const METHOD_OTHER = METHODS.length - 1;
/** Status classes: 1xx to 5xx, and `other` for an exchange that ended with no status. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'other'] as const;
/** Downstream protocols of an exchange. */
export const PROTOCOLS = ['http1', 'http2'] as const;
const REQUEST_SLOTS = METHODS.length * STATUS_CLASSES.length * PROTOCOLS.length;

function methodIndex(method: string): number {
  switch (method) {
    case 'GET':
      return 0;
    case 'HEAD':
      return 1;
    case 'POST':
      return 2;
    case 'PUT':
      return 3;
    case 'DELETE':
      return 4;
    case 'PATCH':
      return 5;
    case 'OPTIONS':
      return 6;
    case 'CONNECT':
      return 7;
    case 'TRACE':
      return 8;
    default:
      return METHOD_OTHER;
  }
}

/** Adds one observation (seconds) to the histogram at `base`. */
function observe(values: Float64Array, base: number, seconds: number): void {
  let i = 0;
  const n = LATENCY_BUCKETS.length;
  while (i < n && seconds > LATENCY_BUCKETS[i]!) i++;
  values[base + i]!++;
  values[base + HISTOGRAM_SLOTS - 1]! += seconds;
}

/** The event-loop delay monitor's timer. */
const LOOP_RESOLUTION_MS = 10;

/** Slots per chunk (a chunk is 64 KiB). */
const CHUNK_SLOTS = 8192;

/** One series to allocate: family, labels, part, kind. */
type SeriesSpec = readonly [Family, string, number, number];

function histogramSpecs(family: Family, base: string): SeriesSpec[] {
  const out: SeriesSpec[] = [];
  for (let i = 0; i <= LATENCY_BUCKETS.length; i++) out.push([family, base, i, COUNTER]);
  out.push([family, base, HISTOGRAM_SUM, COUNTER]);
  return out;
}

/** A block of consecutive slots in one chunk. */
interface Block {
  readonly values: Float64Array;
  readonly base: number;
}

/** The counters of one route: requests, their duration, retries; its load gauges (circuit breaking). */
export class RouteMetrics {
  readonly values: Float64Array;
  private readonly requests: number;
  private readonly duration: number;
  private readonly retries: number;
  private readonly outcomes: number;
  private readonly loadBase: number;

  constructor(block: Block) {
    this.values = block.values;
    this.requests = block.base;
    this.duration = block.base + REQUEST_SLOTS;
    this.retries = this.duration + HISTOGRAM_SLOTS;
    this.outcomes = this.retries + 1;
    this.loadBase = this.outcomes + FILTER_OUTCOMES.length;
  }

  static specs(route: string): SeriesSpec[] {
    const out: SeriesSpec[] = [];
    for (const method of METHODS) {
      for (const status of STATUS_CLASSES) {
        for (const protocol of PROTOCOLS) {
          const l = labels([
            ['route', route],
            ['method', method],
            ['status', status],
            ['protocol', protocol],
          ]);
          out.push(['zproxy_requests_total', l, VALUE, COUNTER]);
        }
      }
    }
    const l = labels([['route', route]]);
    out.push(...histogramSpecs('zproxy_request_duration_seconds', l));
    out.push(['zproxy_retries_total', l, VALUE, COUNTER]);
    for (const outcome of FILTER_OUTCOMES) {
      out.push([
        'zproxy_filter_outcomes_total',
        labels([
          ['route', route],
          ['outcome', outcome],
        ]),
        VALUE,
        COUNTER,
      ]);
    }
    for (const state of ROUTE_LOAD_STATES) {
      out.push([
        'zproxy_upstream_route_load',
        labels([
          ['route', route],
          ['state', state],
        ]),
        VALUE,
        GAUGE,
      ]);
    }
    return out;
  }

  /** The load gauges (the sampler, once a second): requests in flight, queued, in a retry. */
  load(inFlight: number, pending: number, retries: number): void {
    const v = this.values;
    const b = this.loadBase;
    v[b] = inFlight;
    v[b + 1] = pending;
    v[b + 2] = retries;
  }

  /** One exchange ended: `status` 0 when none was sent, `httpVersion` '2' for HTTP/2, `ms` its duration. */
  record(method: string, status: number, httpVersion: string, ms: number): void {
    const cls = status >= 100 && status < 600 ? ((status / 100) | 0) - 1 : 5;
    const protocol = httpVersion === '2' ? 1 : 0;
    this.values[
      this.requests + (methodIndex(method) * STATUS_CLASSES.length + cls) * PROTOCOLS.length + protocol
    ]!++;
    observe(this.values, this.duration, ms / 1000);
  }

  retried(): void {
    this.values[this.retries]!++;
  }

  /** A filter outcome (AUTH_REFUSED ... CACHE_STALE). */
  filterOutcome(outcome: number): void {
    this.values[this.outcomes + outcome]!++;
  }
}

/** Outcomes of filters counted by zproxy_filter_outcomes_total, in slot order. */
export const FILTER_OUTCOMES = [
  'auth_refused',
  'rate_limited',
  'cors_refused',
  'cache_hit',
  'cache_miss',
  'cache_stale',
] as const;
export const AUTH_REFUSED = 0;
export const RATE_LIMITED = 1;
export const CORS_REFUSED = 2;
export const CACHE_HIT = 3;
export const CACHE_MISS = 4;
export const CACHE_STALE = 5;

/** The states of zproxy_upstream_route_load, in slot order. */
export const ROUTE_LOAD_STATES = ['in_flight', 'pending', 'retries'] as const;
/** The states of zproxy_upstream_target_load, in slot order. */
export const TARGET_LOAD_STATES = ['in_flight', 'pending'] as const;
/**
 * The `limit` label of zproxy_upstream_overload_total, in slot order (LIMIT_* of
 * src/upstream/circuit-breaker.ts: the same order).
 */
export const OVERLOAD_LIMITS = [
  'requests',
  'pending',
  'retries',
  'retry_budget',
  'target_requests',
  'target_pending',
] as const;

/**
 * The circuit-breaking series of one target of one route: refusals by limit (a route-wide limit is
 * counted under the target the request was headed for) and the target's load gauges.
 */
export class BreakerMetrics {
  readonly values: Float64Array;
  private readonly base: number;

  constructor(block: Block) {
    this.values = block.values;
    this.base = block.base;
  }

  static specs(route: string, target: string): SeriesSpec[] {
    const out: SeriesSpec[] = [];
    for (const limit of OVERLOAD_LIMITS) {
      out.push([
        'zproxy_upstream_overload_total',
        labels([
          ['route', route],
          ['target', target],
          ['limit', limit],
        ]),
        VALUE,
        COUNTER,
      ]);
    }
    for (const state of TARGET_LOAD_STATES) {
      out.push([
        'zproxy_upstream_target_load',
        labels([
          ['route', route],
          ['target', target],
          ['state', state],
        ]),
        VALUE,
        GAUGE,
      ]);
    }
    return out;
  }

  /** A limit (LIMIT_*) refused a request or a retry. */
  overloaded(limit: number): void {
    this.values[this.base + limit]!++;
  }

  /** The load gauges (the sampler, once a second). */
  load(inFlight: number, pending: number): void {
    const v = this.values;
    const b = this.base + OVERLOAD_LIMITS.length;
    v[b] = inFlight;
    v[b + 1] = pending;
  }
}

/** Kinds of upstream failure (the error codes grouped). */
export const UPSTREAM_ERROR_KINDS = [
  'connect',
  'tls',
  'timeout',
  'reset',
  'protocol',
  'bad_response',
  'unavailable',
] as const;

/** The kind slot of an error: upstreamFailure's order, then `unavailable` for any other code. */
function errorKind(code: ErrorCode): number {
  const kind = upstreamFailure(code);
  return kind === -1 ? UPSTREAM_ERROR_KINDS.length - 1 : kind;
}

/** What the sampler reads of a target's pool (HTTP/1.1 Pool, Http2Pool). */
export interface PoolGauges {
  /** Live connections or sessions. */
  readonly size: number;
  /** Idle connections (HTTP/1.1); undefined for HTTP/2 pools (a session with no stream). */
  readonly idleCount?: number;
}

/** The counters of one upstream target (by its URL: scheme, host, port). */
export class TargetMetrics {
  readonly values: Float64Array;
  private readonly requests: number;
  private readonly errors: number;
  private readonly response: number;
  /** Where `connect` observations go (the pool's connections report them). */
  readonly connect: number;
  private readonly idle: number;
  /** The pools that reach this target (set when a runtime is compiled; sampled once a second). */
  readonly pools: PoolGauges[] = [];

  constructor(block: Block) {
    this.values = block.values;
    this.requests = block.base;
    this.errors = block.base + 1;
    this.response = this.errors + UPSTREAM_ERROR_KINDS.length;
    this.connect = this.response + HISTOGRAM_SLOTS;
    this.idle = this.connect + HISTOGRAM_SLOTS;
  }

  static specs(target: string): SeriesSpec[] {
    const l = labels([['target', target]]);
    const out: SeriesSpec[] = [['zproxy_upstream_requests_total', l, VALUE, COUNTER]];
    for (const kind of UPSTREAM_ERROR_KINDS) {
      out.push([
        'zproxy_upstream_errors_total',
        labels([
          ['target', target],
          ['kind', kind],
        ]),
        VALUE,
        COUNTER,
      ]);
    }
    out.push(...histogramSpecs('zproxy_upstream_response_seconds', l));
    out.push(...histogramSpecs('zproxy_upstream_connect_seconds', l));
    out.push([
      'zproxy_upstream_pool_connections',
      labels([
        ['target', target],
        ['state', 'idle'],
      ]),
      VALUE,
      GAUGE,
    ]);
    out.push([
      'zproxy_upstream_pool_connections',
      labels([
        ['target', target],
        ['state', 'busy'],
      ]),
      VALUE,
      GAUGE,
    ]);
    return out;
  }

  attempt(): void {
    this.values[this.requests]!++;
  }

  error(code: ErrorCode): void {
    this.values[this.errors + errorKind(code)]!++;
  }

  responded(ms: number): void {
    observe(this.values, this.response, ms / 1000);
  }

  connected(ms: number): void {
    observe(this.values, this.connect, ms / 1000);
  }

  /** Writes the pools' idle and busy counts (the sampler, once a second). */
  sample(): void {
    let idle = 0;
    let busy = 0;
    for (const pool of this.pools) {
      const i = pool.idleCount ?? 0;
      idle += i;
      busy += pool.size - i;
    }
    this.values[this.idle] = idle;
    this.values[this.idle + 1] = busy;
  }
}

/** The counters and gauges of a worker's listeners and connections. */
export class ServerMetrics {
  readonly values: Float64Array;
  private readonly base: number;

  constructor(block: Block) {
    this.values = block.values;
    this.base = block.base;
  }

  static specs(worker: string): SeriesSpec[] {
    const out: SeriesSpec[] = [
      ['zproxy_connections_refused_total', '', VALUE, COUNTER],
      ['zproxy_tls_handshakes_total', labels([['result', 'ok']]), VALUE, COUNTER],
      ['zproxy_tls_handshakes_total', labels([['result', 'failed']]), VALUE, COUNTER],
      ['zproxy_downstream_connections', labels([['protocol', 'http1']]), VALUE, GAUGE],
      ['zproxy_downstream_connections', labels([['protocol', 'http2']]), VALUE, GAUGE],
      ['zproxy_downstream_connections', labels([['protocol', 'pending']]), VALUE, GAUGE],
      ['zproxy_http2_streams', '', VALUE, GAUGE],
      ['zproxy_websocket_tunnels', '', VALUE, GAUGE],
      [
        'zproxy_event_loop_delay_seconds',
        labels([
          ['worker', worker],
          ['stat', 'p50'],
        ]),
        VALUE,
        GAUGE,
      ],
      [
        'zproxy_event_loop_delay_seconds',
        labels([
          ['worker', worker],
          ['stat', 'p99'],
        ]),
        VALUE,
        GAUGE,
      ],
      [
        'zproxy_event_loop_delay_seconds',
        labels([
          ['worker', worker],
          ['stat', 'max'],
        ]),
        VALUE,
        GAUGE,
      ],
      ['zproxy_process_heap_used_bytes', labels([['worker', worker]]), VALUE, GAUGE],
    ];
    return out;
  }

  refused(): void {
    this.values[this.base]!++;
  }

  handshake(ok: boolean): void {
    this.values[this.base + (ok ? 1 : 2)]!++;
  }

  /** The sampler's gauges: open connections, streams, tunnels. */
  connections(http1: number, http2: number, pending: number, streams: number, tunnels: number): void {
    const v = this.values;
    const b = this.base;
    v[b + 3] = http1;
    v[b + 4] = http2;
    v[b + 5] = pending;
    v[b + 6] = streams;
    v[b + 7] = tunnels;
  }

  loop(p50: number, p99: number, max: number, heap: number): void {
    const v = this.values;
    const b = this.base;
    v[b + 8] = p50;
    v[b + 9] = p99;
    v[b + 10] = max;
    v[b + 11] = heap;
  }
}

/**
 * The slots of a worker. `shared`: chunks are SharedArrayBuffers (worker threads) and every allocation
 * is published (the main thread learns what its slots mean); else plain memory read by the same process.
 */
export class MetricRegistry {
  readonly shared: boolean;
  readonly chunks: Float64Array[] = [];
  /** Every series allocated, in order. */
  readonly series: SeriesEntry[] = [];
  private used = CHUNK_SLOTS;
  private readonly blocks = new Map<string, Block>();
  private readonly routes = new Map<string, RouteMetrics>();
  private readonly targets = new Map<string, TargetMetrics>();
  private readonly breakers = new Map<string, BreakerMetrics>();
  /** Told about new series (and the chunk they are in when it is new); set before the first allocation. */
  publish: ((series: SeriesEntry[], chunk: SharedArrayBuffer | null) => void) | null = null;
  /** This worker's own counters and gauges. */
  readonly server: ServerMetrics;
  private loopDelay: ELDHistogram | null = null;

  constructor(shared: boolean, worker: number, publish: MetricRegistry['publish'] = null) {
    this.shared = shared;
    this.publish = publish;
    this.server = new ServerMetrics(this.block(`server`, ServerMetrics.specs(String(worker))));
  }

  /** The slots of a route (its pattern, with its host when it has one), the same across reloads. */
  route(name: string): RouteMetrics {
    let m = this.routes.get(name);
    if (m === undefined) {
      m = new RouteMetrics(this.block(`route ${name}`, RouteMetrics.specs(name)));
      this.routes.set(name, m);
    }
    return m;
  }

  /** The slots of an upstream target (its URL), the same across reloads. */
  target(url: string): TargetMetrics {
    let m = this.targets.get(url);
    if (m === undefined) {
      m = new TargetMetrics(this.block(`target ${url}`, TargetMetrics.specs(url)));
      this.targets.set(url, m);
    }
    return m;
  }

  /** The circuit-breaking series of a route's target (route name, target URL), the same across reloads. */
  breaker(route: string, target: string): BreakerMetrics {
    const key = `${route} ${target}`;
    let m = this.breakers.get(key);
    if (m === undefined) {
      m = new BreakerMetrics(this.block(`breaker ${key}`, BreakerMetrics.specs(route, target)));
      this.breakers.set(key, m);
    }
    return m;
  }

  /**
   * Zeroes every load gauge (routes' and targets'): the sampler then writes those of the routes serving,
   * so a route or target a reload removed shows no load.
   */
  clearLoad(): void {
    for (const m of this.routes.values()) m.load(0, 0, 0);
    for (const m of this.breakers.values()) m.load(0, 0);
  }

  /** The routes' and targets' handles known so far. */
  allTargets(): IterableIterator<TargetMetrics> {
    return this.targets.values();
  }

  private block(key: string, specs: SeriesSpec[]): Block {
    const known = this.blocks.get(key);
    if (known !== undefined) return known;
    let fresh: SharedArrayBuffer | null = null;
    if (this.used + specs.length > CHUNK_SLOTS) {
      const size = Math.max(CHUNK_SLOTS, specs.length);
      const buffer = this.shared ? new SharedArrayBuffer(size * 8) : new ArrayBuffer(size * 8);
      this.chunks.push(new Float64Array(buffer));
      if (this.shared) fresh = buffer as SharedArrayBuffer;
      this.used = 0;
    }
    const chunk = this.chunks.length - 1;
    const base = this.used;
    this.used += specs.length;
    const added: SeriesEntry[] = specs.map(([family, l, part, kind], i) => [
      family,
      l,
      part,
      kind,
      chunk,
      base + i,
    ]);
    for (const s of added) this.series.push(s);
    const block = { values: this.chunks[chunk]!, base };
    this.blocks.set(key, block);
    this.publish?.(added, fresh);
    return block;
  }

  /** Samples the event-loop delay and heap (call once a second). */
  sampleLoop(): void {
    if (this.loopDelay === null) {
      this.loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
      this.loopDelay.enable();
      return;
    }
    const h = this.loopDelay;
    // The monitor's samples include its own 10 ms timer: the delay is what exceeds it.
    const s = (ns: number) => (Number.isFinite(ns) ? Math.max(0, ns / 1e9 - LOOP_RESOLUTION_MS / 1000) : 0);
    this.server.loop(s(h.percentile(50)), s(h.percentile(99)), s(h.max), process.memoryUsage().heapUsed);
    h.reset();
  }

  stop(): void {
    this.loopDelay?.disable();
    this.loopDelay = null;
  }

  /**
   * Every series with its current value, and this process's CPU time and resident memory (a worker
   * process's answer to its supervisor, which sums them with its own).
   */
  snapshot(): MetricSnapshot {
    const series: [Family, string, number, number][] = this.series.map((s) => [s[0], s[1], s[2], s[3]]);
    const values = this.series.map((s) => this.chunks[s[4]]![s[5]]!);
    const cpu = process.cpuUsage();
    series.push(['zproxy_process_cpu_seconds_total', '', VALUE, COUNTER]);
    values.push((cpu.user + cpu.system) / 1e6);
    series.push(['zproxy_process_resident_memory_bytes', '', VALUE, GAUGE]);
    values.push(process.memoryUsage.rss());
    return { series, values };
  }
}

/** A worker's series and their values at one moment. */
export interface MetricSnapshot {
  readonly series: readonly (readonly [Family, string, number, number])[];
  readonly values: readonly number[];
}
