import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.ts';
import { clientAddress } from '../../src/filters/rate-limit/filter.ts';
import { gcra, newDecision, ratePolicy } from '../../src/filters/rate-limit/gcra.ts';
import { MemoryRateLimitStore } from '../../src/filters/rate-limit/store-memory.ts';

describe('GCRA', () => {
  test('burst + 1 back to back, then one per interval', () => {
    const policy = ratePolicy(60, 4); // one a second, 5 at once
    const out = newDecision();
    let tat = 0;
    const now = 1_000_000;
    const remaining: number[] = [];
    for (let i = 0; i < 5; i++) {
      tat = gcra(policy, tat, now, out);
      assert.equal(out.allowed, true, `request ${i + 1}`);
      remaining.push(out.remaining);
    }
    assert.deepEqual(remaining, [4, 3, 2, 1, 0]);
    assert.equal(out.resetMs, 5000);
    const before = tat;
    tat = gcra(policy, tat, now, out);
    assert.equal(out.allowed, false);
    assert.equal(out.retryAfterMs, 1000);
    assert.equal(tat, before, 'a refused request does not move the TAT');
    tat = gcra(policy, tat, now + 999, out);
    assert.equal(out.allowed, false);
    assert.equal(Math.round(out.retryAfterMs), 1);
    tat = gcra(policy, tat, now + 1000, out);
    assert.equal(out.allowed, true);
    assert.equal(out.remaining, 0);
    // Idle for the whole window: full again.
    tat = gcra(policy, tat, now + 100_000, out);
    assert.equal(out.allowed, true);
    assert.equal(out.remaining, 4);
  });

  test('default burst is a minute of requests', () => {
    const policy = ratePolicy(100, undefined);
    assert.equal(policy.capacity, 100);
    assert.equal(policy.intervalMs, 600);
    const strict = ratePolicy(100, 0);
    assert.equal(strict.capacity, 1);
  });

  test('exact over a simulated minute: capacity + elapsed / interval', () => {
    const policy = ratePolicy(600, 9); // 10 a second sustained, 10 at once
    const out = newDecision();
    let tat = 0;
    let allowed = 0;
    // 10 000 attempts spread evenly over 60 s.
    for (let i = 0; i < 10_000; i++) {
      tat = gcra(policy, tat, i * 6, out);
      if (out.allowed) allowed++;
    }
    // 10 at once, then one per 100 ms over 59.994 s.
    assert.equal(allowed, 10 + 599);
  });
});

describe('memory store', () => {
  test('exact counts per key and limit, refill over time (fake clock)', () => {
    let now = 0;
    const store = new MemoryRateLimitStore(() => now);
    const policy = ratePolicy(1200, 2); // one per 50 ms, 3 at once
    const results = (key: string, n: number) =>
      Array.from({ length: n }, () => store.take(policy, key).allowed);
    assert.deepEqual(results('a', 5), [true, true, true, false, false]);
    assert.deepEqual(results('b', 4), [true, true, true, false], 'keys are independent');
    const other = ratePolicy(1200, 0);
    assert.deepEqual(
      Array.from({ length: 2 }, () => store.take(other, 'a').allowed),
      [true, false],
      'limits are independent',
    );
    now = 50;
    assert.deepEqual(results('a', 2), [true, false]);
    now = 1000;
    store.sweep();
    assert.equal(store.limits.size, 0, 'full buckets are swept');
    assert.deepEqual(results('a', 4), [true, true, true, false]);
    store.close();
  });

  test('refill with the real clock (small window)', async () => {
    const store = new MemoryRateLimitStore();
    const policy = ratePolicy(600, 1); // one per 100 ms, 2 at once
    assert.equal(store.take(policy, 'k').allowed, true);
    assert.equal(store.take(policy, 'k').allowed, true);
    const refused = store.take(policy, 'k');
    assert.equal(refused.allowed, false);
    assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 100);
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.equal(store.take(policy, 'k').allowed, true);
    assert.equal(store.take(policy, 'k').allowed, false);
    store.close();
  });
});

describe('client_ip key', () => {
  const trusted = new BlockList();
  trusted.addSubnet('10.0.0.0', 8, 'ipv4');
  test('X-Forwarded-For only from a trusted peer', () => {
    assert.equal(clientAddress('192.0.2.1', ['198.51.100.7'], trusted), '192.0.2.1');
    assert.equal(clientAddress('10.0.0.1', ['198.51.100.7'], trusted), '198.51.100.7');
    assert.equal(clientAddress('10.0.0.1', ['203.0.113.9, 198.51.100.7, 10.0.0.2'], trusted), '198.51.100.7');
    assert.equal(clientAddress('10.0.0.1', ['10.0.0.3', '10.0.0.2'], trusted), '10.0.0.3');
    assert.equal(clientAddress('10.0.0.1', [], trusted), '10.0.0.1');
    assert.equal(clientAddress('10.0.0.1', ['198.51.100.7'], null), '10.0.0.1');
  });
});

describe('rate_limit config', () => {
  const ROUTE = { path: '/', upstream: 'http://localhost:8080' };
  function issuesOf(config: Record<string, unknown>): string[] {
    try {
      parseConfig({ routes: [ROUTE], middlewares: [{ type: 'rate_limit', config }] });
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return error.issues.map((issue) => issue.message);
    }
    return [];
  }
  test('valid settings', () => {
    assert.deepEqual(issuesOf({ requests_per_minute: 100 }), []);
    assert.deepEqual(
      issuesOf({
        requests_per_minute: 100,
        burst: 0,
        key: 'header:x-api-key',
        store: 'redis',
        redis_url: 'redis://127.0.0.1:6379',
        on_store_error: 'deny',
        timeout_ms: 20,
      }),
      [],
    );
    for (const key of ['client_ip', 'route', 'jwt_claim:sub']) {
      assert.deepEqual(issuesOf({ requests_per_minute: 1, key }), [], key);
    }
  });
  test('errors name the JSON path', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ requests_per_minute: 10, key: 'cookie:x' }, 'middlewares[0].config.key'],
      [{ requests_per_minute: 10, store: 'redis' }, 'middlewares[0].config.redis_url'],
      [{ requests_per_minute: 10, store: 'disk' }, 'middlewares[0].config.store'],
      [{ requests_per_minute: 10, on_store_error: 'maybe' }, 'middlewares[0].config.on_store_error'],
      [{ requests_per_minute: 10, timeout_ms: 0 }, 'middlewares[0].config.timeout_ms'],
      [{ requests_per_minute: 0 }, 'middlewares[0].config.requests_per_minute'],
      [{ requests_per_minute: 10, redis_url: 'http://x' }, 'middlewares[0].config.redis_url'],
    ];
    for (const [config, path] of cases) {
      const issues = issuesOf(config);
      assert.ok(
        issues.some((message) => message.includes(path)),
        `${JSON.stringify(config)}: ${issues.join(' | ')}`,
      );
    }
  });
});
