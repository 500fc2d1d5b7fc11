/**
 * The Tunnel on in-memory Duplex pairs instead of sockets: any Duplex can be an end (an HTTP/2 stream will
 * be one), bytes read past the heads go first, bytes flow both ways, a finished end ends the other after
 * its data, the idle timeout closes both, and the log line counts the bytes.
 */
import assert from 'node:assert/strict';
import { type Duplex, duplexPair } from 'node:stream';
import { test } from 'node:test';
import { Exchange } from '../../src/exchange.ts';
import type { AccessLog } from '../../src/observe/access-log.ts';
import { TunnelRegistry } from '../../src/websocket/registry.ts';
import { Tunnel } from '../../src/websocket/tunnel.ts';

function collect(stream: Duplex): { text: () => string; ended: Promise<void> } {
  let text = '';
  stream.on('data', (c: Buffer) => {
    text += c.toString();
  });
  return { text: () => text, ended: new Promise((r) => stream.once('end', r)) };
}

function setup(idleMs: number) {
  const [client, down] = duplexPair();
  const [up, origin] = duplexPair();
  const registry = new TunnelRegistry();
  assert.ok(registry.reserve(1));
  assert.equal(registry.reserve(1), false, 'a handshake in progress holds the only place');
  const exchange = new Exchange(performance.now(), 'GET', '/t', 'a', '1.1', '127.0.0.1');
  const logged: Exchange[] = [];
  const log = { write: (ex: Exchange) => logged.push(ex) } as unknown as AccessLog;
  const tunnel = new Tunnel(registry, exchange, log, down, up, idleMs);
  return { client, origin, registry, tunnel, logged };
}

test('bytes past the heads first, then both ways; an end that finishes ends the other after its data', async () => {
  const { client, origin, registry, tunnel, logged } = setup(60_000);
  const atOrigin = collect(origin);
  const atClient = collect(client);
  tunnel.start(Buffer.from('[early up]'), Buffer.from('[early down]'));
  assert.equal(registry.active, 1);
  assert.equal(registry.pending, 0);
  client.write('hello');
  origin.write('world');
  origin.end('[last words]');
  await atClient.ended;
  assert.equal(atClient.text(), '[early down]world[last words]');
  client.end();
  await atOrigin.ended;
  assert.equal(atOrigin.text(), '[early up]hello');
  await new Promise((r) => setImmediate(r));
  assert.equal(registry.active, 0);
  assert.equal(logged.length, 1);
  assert.equal(logged[0]!.bytesIn, '[early up]hello'.length);
  assert.equal(logged[0]!.bytesOut, '[early down]world[last words]'.length);
  assert.equal(logged[0]!.errorCode, null);
  assert.equal(tunnel.open, false);
});

test('the idle timeout closes both ends and is logged', async () => {
  const { client, origin, registry, logged, tunnel } = setup(150);
  const atOrigin = collect(origin);
  const atClient = collect(client);
  tunnel.start(null, null);
  const t0 = performance.now();
  // Traffic keeps it open.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 80));
    client.write('.');
  }
  assert.equal(tunnel.open, true);
  await Promise.all([atClient.ended, atOrigin.ended]);
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 320 + 150 - 20, `closed after ${elapsed} ms`);
  assert.equal(atOrigin.text(), '....');
  client.end();
  origin.end();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(registry.active, 0);
  assert.equal(logged[0]!.errorCode, 'ZP_ERR_TUNNEL_IDLE_TIMEOUT');
});
