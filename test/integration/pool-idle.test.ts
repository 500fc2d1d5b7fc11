/**
 * The upstream pool keeps warm what recent concurrency needed: unset, max_idle_per_target is
 * max_connections_per_target, so a second burst of 150 concurrent requests reuses the 150 connections
 * the first one opened (with a fixed 64 idle, 86 of them would be opened and closed again for each
 * burst); an explicit max_idle_per_target still bounds the idle connections.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.ts';
import { startProxy } from '../helpers/proxy.ts';
import { sendRequest } from '../helpers/simple-request.ts';
import { startHttpUpstream } from '../helpers/upstream.ts';

const BURST = 150;

async function twoBursts(upstreamDefaults: Record<string, unknown>): Promise<[number, number]> {
  // The upstream answers a burst only once all its requests have arrived, so that they are all in flight
  // at once however slowly a loaded machine sends them (after 5 s it answers what it has).
  const waiting: import('node:http').ServerResponse[] = [];
  let timer: NodeJS.Timeout | null = null;
  const answerAll = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    for (const res of waiting.splice(0)) {
      res.writeHead(200, { 'content-length': '2' });
      res.end('ok');
    }
  };
  const upstream = await startHttpUpstream((_req, res) => {
    waiting.push(res);
    if (waiting.length === BURST) answerAll();
    else timer ??= setTimeout(answerAll, 5000);
  });
  const proxy = await startProxy({
    protocols: ['http1'],
    upstream_defaults: upstreamDefaults,
    routes: [{ path: '/', upstream: upstream.url }],
  });
  try {
    const burst = async () => {
      const results = await Promise.all(
        Array.from({ length: BURST }, (_, i) => sendRequest(proxy.port, `/b/${i}`)),
      );
      assert.ok(results.every((r) => r.status === 200));
    };
    await burst();
    const first = upstream.connections;
    await burst();
    return [first, upstream.connections - first];
  } finally {
    await proxy.close();
    await upstream.close();
  }
}

test('unset, max_idle_per_target follows max_connections_per_target', () => {
  const routes = [{ path: '/', upstream: 'http://127.0.0.1:1' }];
  assert.equal(parseConfig({ routes }).upstream_defaults.max_idle_per_target, 1024);
  assert.equal(
    parseConfig({ routes, upstream_defaults: { max_connections_per_target: 100 } }).upstream_defaults
      .max_idle_per_target,
    100,
  );
  assert.equal(
    parseConfig({ routes, upstream_defaults: { max_idle_per_target: 8 } }).upstream_defaults
      .max_idle_per_target,
    8,
  );
});

test(`by default a second burst of ${BURST} reuses the connections of the first`, async () => {
  const [first, second] = await twoBursts({});
  assert.equal(first, BURST, 'the first burst opens one connection per request in flight');
  assert.equal(second, 0, 'the second burst opens none');
});

test('an explicit max_idle_per_target still bounds what is kept', async () => {
  const [first, second] = await twoBursts({ max_idle_per_target: 64 });
  assert.equal(first, BURST);
  assert.equal(second, BURST - 64, 'only 64 were kept idle');
});
