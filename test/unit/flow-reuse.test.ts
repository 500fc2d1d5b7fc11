/**
 * An HTTP/1.1 connection reuses its last exchange's ProxyFlow for the next exchange (ProxyFlow.reuse):
 * every per-exchange field must go back to what a new flow starts with, or state would leak from one
 * request to the next. This sets every field of a used flow to a stray value and checks that reuse() puts
 * each one back, so a field added to the class without a line in reuse() fails here.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { Exchange } from '../../src/exchange.ts';
import type { Downstream } from '../../src/proxy/downstream.ts';
import { ProxyFlow } from '../../src/proxy/flow.ts';
import { compileRuntime } from '../../src/runtime/compile.ts';
import { PoolRegistry } from '../../src/runtime/pools.ts';

/** What a flow keeps from one exchange to the next: its downstream's, not an exchange's. */
const PER_DOWNSTREAM = new Set(['ctx', 'runtime', 'downstream', 'request', 'forwardedResponse', 'exchange']);

function state(flow: ProxyFlow): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(flow)) if (!PER_DOWNSTREAM.has(key)) out[key] = value;
  return out;
}

test('reuse() gives every per-exchange field of a flow its initial value back', () => {
  const config = parseConfig({ routes: [{ path: '/', upstream: 'http://127.0.0.1:1' }] });
  const ctx = { runtime: compileRuntime(config, new PoolRegistry(), null), shuttingDown: false };
  // The downstream is never called: only the flow's own fields are looked at.
  const downstream = {} as Downstream;
  const exchange = () => new Exchange(0, 'GET', '/', 'a', '1.1', '127.0.0.1');
  const fresh = state(new ProxyFlow(ctx, downstream, exchange()));
  assert.ok(Object.keys(fresh).length > 20, 'the flow has per-exchange fields');

  const used = new ProxyFlow(ctx, downstream, exchange());
  const stray = Symbol('stray');
  for (const key of Object.keys(fresh)) (used as unknown as Record<string, unknown>)[key] = stray;
  // What reuse() requires of the flow it takes: its exchange ended, nothing can call it any more.
  Object.assign(used, { finished: true, pinned: false });
  assert.equal(used.reuse(exchange()), true);
  assert.deepEqual(state(used), fresh);
});

test('a flow that something may still call is not reused', () => {
  const config = parseConfig({ routes: [{ path: '/', upstream: 'http://127.0.0.1:1' }] });
  const ctx = { runtime: compileRuntime(config, new PoolRegistry(), null), shuttingDown: false };
  const flow = new ProxyFlow(ctx, {} as Downstream, new Exchange(0, 'GET', '/', 'a', '1.1', '127.0.0.1'));
  assert.equal(flow.reuse(new Exchange(0, 'GET', '/', 'a', '1.1', '127.0.0.1')), false, 'not finished');
  Object.assign(flow, { finished: true, pinned: true });
  assert.equal(flow.reuse(new Exchange(0, 'GET', '/', 'a', '1.1', '127.0.0.1')), false, 'pinned');
});
