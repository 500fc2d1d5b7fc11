/**
 * The active health checks of an instance (`health_check`, docs/upstreams.md "Health"). One checker per
 * instance: in the main thread when the workers are threads (it writes the table they all read), in the
 * supervisor when they are processes (it tells each worker of a change), in the process itself when there
 * are no workers. Every target of a route with `health_check` is asked for the check's path each interval
 * (plus jitter), over its own protocol (http, https, h2c or h2, with the route's upstream TLS settings),
 * on a connection of its own; an answer with an expected status within `timeout_ms` is a good check,
 * anything else a failed one. `unhealthy_threshold` failed checks in a row mark the target down,
 * `healthy_threshold` good ones up again (the first good check decides for a target not yet judged).
 *
 * A reload calls `update`: targets whose check did not change keep their probe and state, new ones are
 * checked at once, removed ones are forgotten.
 */
import type { RequestOptions } from 'node:https';
import type { Config, HealthCheckConfig, RouteConfig } from '../config/schema.ts';
import { parseUpstreamUrl } from '../config/upstream-schemes.ts';
import type { Logger } from '../observe/logger.ts';
import { ACTIVE_DOWN, ACTIVE_UNKNOWN, ACTIVE_UP, type HealthTable, healthKey } from './health.ts';
import { compileUpstreamTls } from './tls-options.ts';

/** Told when a target's active state changes (the supervisor of worker processes passes it on). */
export type HealthChange = (key: string, state: number) => void;

/** A change of a target's active state, from the supervisor to a worker process (its table's record). */
export interface HealthStateMessage {
  readonly type: 'health-state';
  readonly key: string;
  readonly state: number;
}

export function isHealthStateMessage(message: unknown): message is HealthStateMessage {
  return (message as { type?: unknown } | null)?.type === 'health-state';
}

/** A target's health as /status shows it. */
export interface TargetStatus {
  readonly state: 'up' | 'down' | 'ejected' | 'unknown';
  /** Active checks run for it. */
  readonly checked: boolean;
  readonly last_check_error: string | null;
  /** Its ejections in a row so far (the next one lasts longer). */
  readonly ejections: number;
  readonly ejected_until: string | null;
}

/** Expected statuses: a flag per status 100-599. */
function expectedStatuses(list: readonly (number | string)[]): Uint8Array {
  const ok = new Uint8Array(600);
  for (const s of list) {
    if (typeof s === 'number') ok[s] = 1;
    else {
      const base = Number(s[0]) * 100;
      ok.fill(1, base, base + 100);
    }
  }
  return ok;
}

class Probe {
  readonly key: string;
  readonly url: string;
  readonly check: HealthCheckConfig;
  readonly record: number;
  private readonly scheme: string;
  private readonly host: string;
  private readonly port: number;
  private readonly hostHeader: string;
  private readonly tls: import('node:tls').ConnectionOptions | null;
  private readonly expected: Uint8Array;
  private readonly checker: HealthChecker;
  private timer: NodeJS.Timeout | null = null;
  private goodInRow = 0;
  private badInRow = 0;
  stopped = false;
  lastError: string | null = null;

  constructor(
    checker: HealthChecker,
    key: string,
    url: string,
    check: HealthCheckConfig,
    tls: Probe['tls'],
    record: number,
  ) {
    this.checker = checker;
    this.key = key;
    this.url = url;
    this.check = check;
    this.record = record;
    const u = parseUpstreamUrl(url);
    this.scheme = u.scheme;
    this.host = u.host;
    this.port = u.port;
    this.hostHeader = check.host ?? u.hostHeader;
    this.tls = tls;
    this.expected = expectedStatuses(check.expected_statuses);
  }

  start(): void {
    this.run();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    const { interval_ms, jitter_ms } = this.check;
    this.timer = setTimeout(() => this.run(), interval_ms + (jitter_ms > 0 ? Math.random() * jitter_ms : 0));
    this.timer.unref();
  }

  private run(): void {
    this.timer = null;
    if (this.stopped) return;
    let done = false;
    const finish = (status: number, error: string | null): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      this.result(
        error === null && status > 0 && status < 600 && this.expected[status] === 1,
        error ?? `status ${status}`,
      );
      this.schedule();
    };
    const deadline = setTimeout(() => {
      abort();
      finish(0, `no answer within ${this.check.timeout_ms} ms`);
    }, this.check.timeout_ms);
    deadline.unref();
    let abort: () => void;
    const headers = { 'user-agent': 'zproxy-health-check' };
    if (this.scheme === 'http' || this.scheme === 'https') {
      const options: RequestOptions = {
        ...(this.tls ?? {}),
        host: this.host,
        port: this.port,
        method: this.check.method,
        path: this.check.path,
        headers: { ...headers, host: this.hostHeader, connection: 'close' },
        agent: false,
      };
      // The client modules are loaded by the first check (process.getBuiltinModule reads none of their
      // lazy properties, which an ESM import of node:http does: that would load undici, node:http2 and
      // node:zlib in every worker; docs/architecture.md, "Workers").
      const client = process.getBuiltinModule(this.scheme === 'https' ? 'node:https' : 'node:http');
      const req = client.request(options, (res) => {
        finish(res.statusCode ?? 0, null);
        res.resume();
        req.destroy();
      });
      req.on('error', (err) => finish(0, err.message));
      req.end();
      abort = () => req.destroy();
    } else {
      const authority = `${this.scheme === 'h2' ? 'https' : 'http'}://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
      const session = process.getBuiltinModule('node:http2').connect(authority, this.tls ?? {});
      session.on('error', (err) => finish(0, err.message));
      const req = session.request({
        ':method': this.check.method,
        ':path': this.check.path,
        ':authority': this.hostHeader,
        ...headers,
      });
      req.on('response', (h) => {
        finish(Number(h[':status']), null);
        session.destroy();
      });
      req.on('error', (err) => finish(0, err.message));
      req.end();
      abort = () => session.destroy();
    }
  }

  private result(good: boolean, error: string): void {
    if (this.stopped) return;
    const table = this.checker.table;
    const state = table.active(this.record);
    const now = Date.now();
    if (good) {
      this.lastError = null;
      this.badInRow = 0;
      this.goodInRow++;
      if (
        state === ACTIVE_UNKNOWN ||
        (state === ACTIVE_DOWN && this.goodInRow >= this.check.healthy_threshold)
      ) {
        this.checker.set(this, ACTIVE_UP, now);
        if (state === ACTIVE_DOWN)
          this.checker.logger?.info(
            { target: this.url, path: this.check.path },
            'upstream target healthy again',
          );
      }
    } else {
      this.lastError = error;
      this.goodInRow = 0;
      this.badInRow++;
      if (state !== ACTIVE_DOWN && this.badInRow >= this.check.unhealthy_threshold) {
        this.checker.set(this, ACTIVE_DOWN, now);
        this.checker.logger?.warn(
          { target: this.url, path: this.check.path, error, failed_checks: this.badInRow },
          'upstream target unhealthy (health check)',
        );
      }
    }
  }
}

export class HealthChecker {
  readonly table: HealthTable;
  readonly logger: Logger | null;
  private readonly onChange: HealthChange | null;
  private readonly probes = new Map<string, Probe>();

  constructor(table: HealthTable, logger: Logger | null, onChange: HealthChange | null = null) {
    this.table = table;
    this.logger = logger;
    this.onChange = onChange;
  }

  /** Checks the targets `config` asks to check: keeps the probes that did not change, starts the new. */
  update(config: Config): void {
    const wanted = new Map<string, { url: string; check: HealthCheckConfig; tls: Probe['tls'] }>();
    config.routes.forEach((route, index) => {
      const check = route.health_check;
      if (check === null) return;
      for (const { url } of route.upstream) {
        const key = healthKey(url, check, route.outlier_detection);
        if (wanted.has(key)) continue;
        const { scheme, host } = parseUpstreamUrl(url);
        const tls =
          scheme === 'https' || scheme === 'h2'
            ? compileUpstreamTls(
                route.upstream_tls,
                host,
                scheme === 'h2' ? 'h2' : 'http/1.1',
                `routes[${index}].upstream_tls`,
              ).options
            : null;
        wanted.set(key, { url, check, tls });
      }
    });
    for (const [key, probe] of this.probes) {
      if (wanted.has(key)) continue;
      probe.stop();
      this.probes.delete(key);
      // A target no longer checked is judged by nothing but its exchanges again.
      this.set(probe, ACTIVE_UNKNOWN, Date.now());
    }
    for (const [key, { url, check, tls }] of wanted) {
      if (this.probes.has(key)) continue;
      const record = this.table.record(key);
      if (record === -1) {
        this.logger?.warn({ target: url }, 'health table full: target not checked');
        continue;
      }
      const probe = new Probe(this, key, url, check, tls, record);
      this.probes.set(key, probe);
      probe.start();
    }
  }

  /** Records a target's new active state (and tells the workers that keep tables of their own). */
  set(probe: Probe, state: number, now: number): void {
    this.table.setActive(probe.record, state, now);
    this.onChange?.(probe.key, state);
  }

  /** Tells `change` the state of every checked target that has one (a worker process that just started). */
  replay(change: HealthChange): void {
    for (const probe of this.probes.values()) {
      const state = this.table.active(probe.record);
      if (state !== ACTIVE_UNKNOWN) change(probe.key, state);
    }
  }

  /**
   * A route's target as /status shows it: `up`, `down` (its checks), `ejected` (outlier detection, as
   * this table knows it: with worker processes each worker ejects on its own), or `unknown` (checked, not
   * judged yet); null when the route has neither checks nor outlier detection.
   */
  targetStatus(route: RouteConfig, url: string): TargetStatus | null {
    if (route.health_check === null && route.outlier_detection === null) return null;
    const key = healthKey(url, route.health_check, route.outlier_detection);
    const record = this.table.find(key);
    const probe = this.probes.get(key);
    const now = Date.now();
    const active = record === -1 ? ACTIVE_UNKNOWN : this.table.active(record);
    const ejected = record !== -1 && this.table.ejectedUntil(record) > now;
    return {
      state:
        active === ACTIVE_DOWN
          ? 'down'
          : ejected
            ? 'ejected'
            : active === ACTIVE_UP || probe === undefined
              ? 'up'
              : 'unknown',
      checked: probe !== undefined,
      last_check_error: probe?.lastError ?? null,
      ejections: record === -1 ? 0 : this.table.ejections(record),
      ejected_until: ejected ? new Date(this.table.ejectedUntil(record)).toISOString() : null,
    };
  }

  stop(): void {
    for (const probe of this.probes.values()) probe.stop();
    this.probes.clear();
  }
}
