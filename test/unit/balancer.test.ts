/**
 * The balancers of `load_balancing` (src/upstream/balancer.ts) and the group's retry choice, on real
 * pools (no connection is opened: only their authority is read): smooth weighted round robin, weighted
 * random and least_request shares, consistent hashing (stable keys; a target that leaves moves only its
 * own keys), and backups taken only by a retry once every primary was tried. With health records
 * (src/upstream/health.ts): targets down or ejected are skipped by every policy, hash moves only their
 * keys, the panic threshold, backups while no primary is up, slow start, and outlier ejection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LoadBalancingConfig } from '../../src/config/schema.ts';
import { Exchange } from '../../src/exchange.ts';
import { FieldList } from '../../src/http/fields.ts';
import { Pool } from '../../src/http1/upstream-pool.ts';
import { UpstreamGroup, UpstreamTarget } from '../../src/upstream/group.ts';
import {
  ACTIVE_DOWN,
  ACTIVE_UP,
  HealthTable,
  OutlierPolicy,
  TargetHealth,
} from '../../src/upstream/health.ts';

const SETTINGS = {
  connectTimeoutMs: 1000,
  responseHeaderTimeoutMs: 1000,
  idleTimeoutMs: 1000,
  maxConnections: 1,
  maxIdle: 1,
};

function target(port: number, weight = 1, backup = false): UpstreamTarget {
  return new UpstreamTarget(new Pool('10.0.0.1', port, SETTINGS), `10.0.0.1:${port}`, weight, backup);
}

function group(targets: UpstreamTarget[], policy: LoadBalancingConfig['policy'], hashKey = 'client_ip') {
  return new UpstreamGroup(targets, { policy, hash_key: hashKey, panic_threshold_percent: 50 });
}

function exchange(path = '/', client = '192.0.2.1'): Exchange {
  const ex = new Exchange(0, 'GET', path, 'example.test', '1.1', client);
  ex.path = path;
  return ex;
}

/** How many of `n` picks went to each target, in the targets' order. */
function shares(g: UpstreamGroup, targets: UpstreamTarget[], n: number, ex = () => exchange()): number[] {
  const counts = new Map(targets.map((t) => [t, 0]));
  for (let i = 0; i < n; i++) {
    const t = g.pick(ex(), null);
    counts.set(t, counts.get(t)! + 1);
  }
  return targets.map((t) => counts.get(t)!);
}

describe('round_robin', () => {
  test('equal weights take turns', () => {
    const targets = [target(1), target(2), target(3)];
    const g = group(targets, 'round_robin');
    const order = Array.from({ length: 6 }, () => g.pick(exchange(), null));
    assert.deepEqual(order, [...targets, ...targets]);
  });

  test('weights 5, 1, 1: exact shares in every cycle, never a burst of the heavy target (nginx order)', () => {
    const targets = [target(1, 5), target(2), target(3)];
    const g = group(targets, 'round_robin');
    const order = Array.from({ length: 7 }, () => targets.indexOf(g.pick(exchange(), null)));
    // nginx's smooth weighted round robin for 5, 1, 1 gives a a b a c a a.
    assert.deepEqual(order, [0, 0, 1, 0, 2, 0, 0]);
    assert.deepEqual(shares(g, targets, 7000), [5000, 1000, 1000]);
  });

  test('weights 3, 1, 1: the heavy target is never picked three times in a row', () => {
    const targets = [target(1, 3), target(2), target(3)];
    const g = group(targets, 'round_robin');
    const order = Array.from({ length: 50 }, () => targets.indexOf(g.pick(exchange(), null)));
    for (let i = 1; i < order.length; i++) {
      const run = order[i] === 0 && order[i - 1] === 0 && order[i + 1] === 0;
      assert.equal(run, false, `three in a row at ${i}: ${order.join('')}`);
    }
    assert.deepEqual(shares(g, targets, 5000), [3000, 1000, 1000]);
  });
});

test('random: shares follow the weights within 3 %', () => {
  const targets = [target(1, 1), target(2, 2), target(3, 3)];
  const n = 60_000;
  const counts = shares(group(targets, 'random'), targets, n);
  [1, 2, 3].forEach((weight, i) => {
    const expected = (n * weight) / 6;
    assert.ok(Math.abs(counts[i]! - expected) < expected * 0.03, `${counts} against weight ${weight}`);
  });
});

describe('least_request', () => {
  test('a target with many requests in flight gets few new ones', () => {
    const targets = [target(1), target(2), target(3)];
    targets[0]!.active = 50;
    const counts = shares(group(targets, 'least_request'), targets, 3000);
    // It wins only when both draws are itself, which cannot happen: two distinct targets are drawn.
    assert.equal(counts[0], 0);
    assert.ok(Math.abs(counts[1]! - counts[2]!) < 300, `${counts}`);
  });

  test('equal loads: each target about a third', () => {
    const targets = [target(1), target(2), target(3)];
    const counts = shares(group(targets, 'least_request'), targets, 30_000);
    for (const c of counts) assert.ok(Math.abs(c - 10_000) < 600, `${counts}`);
  });

  test('weights count: one request in flight on weight 3 still beats none on weight 1', () => {
    const heavy = target(1, 3);
    const light = target(2, 1);
    const g = group([heavy, light], 'least_request');
    heavy.active = 1; // (1 + 1) / 3 against (0 + 1) / 1: heavy wins every draw
    assert.deepEqual(shares(g, [heavy, light], 100), [100, 0]);
  });
});

describe('hash', () => {
  const keys = Array.from({ length: 4000 }, (_, i) => `198.51.100.${i % 250}-${i}`);

  test('the same key goes to the same target; keys spread within 15 % of an equal share', () => {
    const targets = [target(1), target(2), target(3), target(4)];
    const g = group(targets, 'hash');
    const where = new Map(keys.map((k) => [k, g.pick(exchange('/', k), null)]));
    for (const k of keys.slice(0, 200)) assert.equal(g.pick(exchange('/', k), null), where.get(k));
    const counts = targets.map((t) => [...where.values()].filter((w) => w === t).length);
    for (const c of counts) assert.ok(Math.abs(c - 1000) < 150, `${counts}`);
  });

  test('a target that leaves moves only its own keys (about 1/4 of them with 4 targets)', () => {
    const targets = [target(1), target(2), target(3), target(4)];
    const before = group(targets, 'hash');
    // The same targets (same authorities) without the third: new pools, as a reload makes them.
    const after = group([target(1), target(2), target(4)], 'hash');
    let moved = 0;
    for (const k of keys) {
      const a = before.pick(exchange('/', k), null).authority;
      const b = after.pick(exchange('/', k), null).authority;
      if (a === targets[2]!.authority) moved++;
      else assert.equal(b, a, `key ${k} stayed on its target`);
    }
    assert.ok(Math.abs(moved / keys.length - 0.25) < 0.05, `${moved} of ${keys.length} moved`);
  });

  test('on a header, a cookie or the path; a request without the key is balanced in turn', () => {
    const targets = [target(1), target(2), target(3)];
    const byHeader = group(targets, 'hash', 'header:X-Tenant');
    const fields = (list: string[]) => new FieldList(list);
    const t1 = byHeader.pick(exchange(), fields(['x-tenant', 'acme']));
    for (let i = 0; i < 20; i++) assert.equal(byHeader.pick(exchange(), fields(['x-tenant', 'acme'])), t1);
    const without = new Set(Array.from({ length: 3 }, () => byHeader.pick(exchange(), fields([]))));
    assert.equal(without.size, 3, 'no key: in turn');

    const byCookie = group(targets, 'hash', 'cookie:session');
    const c1 = byCookie.pick(exchange(), fields(['cookie', 'a=1; session=s-42; b=2']));
    assert.equal(byCookie.pick(exchange(), fields(['cookie', 'theme=dark', 'cookie', 'session=s-42'])), c1);

    const byPath = group(targets, 'hash', 'path');
    const p1 = byPath.pick(exchange('/files/a'), null);
    assert.equal(byPath.pick(exchange('/files/a', '203.0.113.9'), null), p1);
  });
});

describe('backup targets and retries', () => {
  test('a backup is never picked first, and is taken by a retry only after every primary', () => {
    const a = target(1);
    const b = target(2);
    const spare = target(3, 1, true);
    const g = group([a, spare, b], 'round_robin');
    assert.deepEqual(shares(g, [a, b, spare], 100), [50, 50, 0]);
    assert.notEqual(g.pickOther([a]), spare);
    assert.equal(g.pickOther([a, b]), spare);
  });

  test('a route of only backups is refused', () => {
    assert.throws(() => group([target(1, 1, true)], 'round_robin'), /not a backup/);
  });
});

/** Targets with health records in a table of their own, as compile.ts binds them. */
function healthy(targets: UpstreamTarget[], slowStartMs = 0, outlier: OutlierPolicy | null = null) {
  const table = new HealthTable();
  targets.forEach((t, i) => {
    t.health = new TargetHealth(table, table.record(`t${i}`), outlier, slowStartMs);
  });
  return table;
}

function groupWith(targets: UpstreamTarget[], policy: LoadBalancingConfig['policy'], panic = 50) {
  return new UpstreamGroup(targets, { policy, hash_key: 'path', panic_threshold_percent: panic });
}

describe('health: targets that are out get no new requests', () => {
  for (const policy of ['round_robin', 'least_request', 'random', 'hash'] as const) {
    test(`${policy}: a target down by its checks or ejected is skipped; the others share its requests`, () => {
      const targets = [target(1), target(2), target(3), target(4)];
      const table = healthy(targets);
      const g = groupWith(targets, policy);
      const ex = (() => {
        let i = 0;
        return () => exchange(`/k${i++}`);
      })();
      table.setActive(targets[1]!.health!.record, ACTIVE_DOWN, Date.now());
      let counts = shares(g, targets, 4000, ex);
      assert.equal(counts[1], 0, `down target picked: ${counts}`);
      for (const i of [0, 2, 3]) assert.ok(counts[i]! > 4000 / 3 - 250, `share of ${i}: ${counts}`);
      // Ejected (outlier detection) works the same; back up, it is picked again.
      table.setActive(targets[1]!.health!.record, ACTIVE_UP, Date.now());
      table.eject(targets[2]!.health!.record, Date.now(), 60_000, 300_000);
      counts = shares(g, targets, 4000, ex);
      assert.equal(counts[2], 0, `ejected target picked: ${counts}`);
      assert.ok(counts[1]! > 1000, `target back up gets its share: ${counts}`);
    });
  }

  test('hash: only the keys of the target that is out move, and they come back to it', () => {
    const targets = [target(1), target(2), target(3), target(4)];
    const table = healthy(targets);
    const g = groupWith(targets, 'hash');
    const keys = Array.from({ length: 2000 }, (_, i) => `/user/${i}`);
    const before = keys.map((k) => g.pick(exchange(k), null));
    table.setActive(targets[0]!.health!.record, ACTIVE_DOWN, Date.now());
    const during = keys.map((k) => g.pick(exchange(k), null));
    let moved = 0;
    keys.forEach((_, i) => {
      if (before[i] !== targets[0]) assert.equal(during[i], before[i], 'a key of a healthy target moved');
      else {
        assert.notEqual(during[i], targets[0]);
        moved++;
      }
    });
    assert.ok(moved > 2000 / 4 - 150 && moved < 2000 / 4 + 150, `moved ${moved}`);
    table.setActive(targets[0]!.health!.record, ACTIVE_UP, Date.now());
    assert.deepEqual(
      keys.map((k) => g.pick(exchange(k), null)),
      before,
    );
  });

  test('panic threshold: below it, requests spread over every primary again', () => {
    const targets = [target(1), target(2), target(3), target(4)];
    const table = healthy(targets);
    const g = groupWith(targets, 'round_robin', 50);
    const down = (i: number) => table.setActive(targets[i]!.health!.record, ACTIVE_DOWN, Date.now());
    down(0);
    down(1);
    // 2 of 4 up: 50 % is not below 50 %: the two that are up take everything.
    assert.deepEqual(shares(g, targets, 400), [0, 0, 200, 200]);
    down(2);
    // 1 of 4 up (25 %): panic, every primary gets its turn.
    assert.deepEqual(shares(g, targets, 400), [100, 100, 100, 100]);
    // panic_threshold_percent 0: never; the one that is up takes all.
    const g0 = groupWith(targets, 'round_robin', 0);
    assert.deepEqual(shares(g0, targets, 400), [0, 0, 0, 400]);
  });

  test('backups take the requests while no primary is up, and only then', () => {
    const targets = [target(1), target(2), target(3, 1, true), target(4, 1, true)];
    const table = healthy(targets);
    const g = groupWith(targets, 'round_robin');
    assert.deepEqual(shares(g, targets, 400), [200, 200, 0, 0]);
    table.setActive(targets[0]!.health!.record, ACTIVE_DOWN, Date.now());
    assert.deepEqual(shares(g, targets, 400), [0, 400, 0, 0]);
    table.setActive(targets[1]!.health!.record, ACTIVE_DOWN, Date.now());
    assert.deepEqual(shares(g, targets, 400), [0, 0, 200, 200]);
    // A backup that is down too is skipped; with none up at all, the primaries (panic).
    table.setActive(targets[2]!.health!.record, ACTIVE_DOWN, Date.now());
    assert.deepEqual(shares(g, targets, 400), [0, 0, 0, 400]);
    table.setActive(targets[3]!.health!.record, ACTIVE_DOWN, Date.now());
    assert.deepEqual(shares(g, targets, 400), [200, 200, 0, 0]);
    // A retry prefers an untried target that is up: a primary comes back.
    table.setActive(targets[1]!.health!.record, ACTIVE_UP, Date.now());
    assert.equal(g.pickOther([targets[0]!]), targets[1]);
  });

  test('slow start: a target back up gets a growing share', () => {
    const targets = [target(1), target(2)];
    const table = healthy(targets, 10_000);
    const g = groupWith(targets, 'round_robin');
    const t0 = Date.now();
    table.setActive(targets[0]!.health!.record, ACTIVE_DOWN, t0);
    table.setActive(targets[0]!.health!.record, ACTIVE_UP, t0);
    // Just back: about a tenth of its share (it would get half).
    const early = shares(g, targets, 10_000)[0]!;
    assert.ok(early < 1500 && early > 200, `just back: ${early} of 10000`);
    assert.ok(targets[0]!.health!.share(t0 + 5000) > 0.5 && targets[0]!.health!.share(t0 + 5000) < 0.6);
    assert.equal(targets[0]!.health!.share(t0 + 10_000), 1);
  });

  test('outlier detection: failures in a row eject, a success in between does not; ejections grow and are capped', () => {
    const targets = [target(1), target(2), target(3), target(4)];
    const policy = new OutlierPolicy({
      consecutive_failures: 3,
      statuses: [502, 503],
      base_ejection_ms: 1000,
      max_ejection_ms: 2500,
      max_ejection_percent: 50,
    });
    const table = healthy(targets, 0, policy);
    const g = groupWith(targets, 'round_robin');
    const [a, b, c] = targets as [UpstreamTarget, UpstreamTarget, UpstreamTarget];
    g.failed(a);
    g.responded(a, 502);
    g.responded(a, 200);
    g.failed(a);
    g.responded(a, 500); // not a listed status: a success for the detection
    g.failed(a);
    assert.equal(a.health!.up(Date.now()), true);
    g.failed(a);
    g.responded(a, 503);
    const until = table.ejectedUntil(a.health!.record);
    assert.ok(until > Date.now() + 900 && until <= Date.now() + 1000, 'first ejection: base time');
    assert.equal(a.health!.state(Date.now()), 'ejected');
    // A second ejection soon after the first lasts twice as long, a third is capped.
    const now = until + 10;
    assert.equal(table.eject(a.health!.record, now, 1000, 2500), 2000);
    assert.equal(table.eject(a.health!.record, now + 2100, 1000, 2500), 2500);
    // At most 50 % of 4 targets ejected at once: b is, c is not.
    for (let i = 0; i < 3; i++) g.failed(b);
    for (let i = 0; i < 3; i++) g.failed(c);
    assert.equal(b.health!.state(Date.now()), 'ejected');
    assert.equal(c.health!.state(Date.now()), null);
  });
});
