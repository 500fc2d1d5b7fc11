/**
 * The balancers of `load_balancing` (src/upstream/balancer.ts) and the group's retry choice, on real
 * pools (no connection is opened: only their authority is read): smooth weighted round robin, weighted
 * random and least_request shares, consistent hashing (stable keys; a target that leaves moves only its
 * own keys), and backups taken only by a retry once every primary was tried.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { LoadBalancingConfig } from '../../src/config/schema.ts';
import { Exchange } from '../../src/exchange.ts';
import { FieldList } from '../../src/http/fields.ts';
import { Pool } from '../../src/http1/upstream-pool.ts';
import { UpstreamGroup, UpstreamTarget } from '../../src/upstream/group.ts';

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
  return new UpstreamGroup(targets, { policy, hash_key: hashKey });
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
