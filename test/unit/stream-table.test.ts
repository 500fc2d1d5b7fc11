/**
 * installStreamTables replaces node:http2's private per-session collections (src/http2/stream-table.ts).
 * These tests fail if the pinned Node changes that private state, so that an upgrade cannot silently
 * bring back the garbage-collection cost the replacement removes.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { installStreamTables } from '../../src/upstream/session-tables.ts';
import { SlotSet } from '../../src/util/slot-set.ts';
import { StreamIdTable } from '../../src/util/stream-id-table.ts';

function stateOf(session: object): { streams: unknown; pendingStreams: unknown } {
  const symbol = Object.getOwnPropertySymbols(session).find((s) => s.description === 'state');
  assert.ok(symbol, 'node:http2 sessions have a private `state`');
  return (session as Record<symbol, { streams: unknown; pendingStreams: unknown }>)[symbol];
}

test('server and client sessions of the pinned Node get the array-backed tables, and traffic works', async (t) => {
  let installedOnServer = false;
  const server = http2.createServer();
  server.on('session', (session) => {
    installedOnServer = installStreamTables(session);
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const body: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => body.push(chunk));
    stream.on('end', () => {
      const digest = createHash('sha256').update(Buffer.concat(body)).digest('hex');
      // Answer in a later turn so that many streams are open at once.
      setTimeout(() => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200 });
        stream.end(`${headers[':path']} ${digest}`);
      }, 5);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const client = http2.connect(`http://127.0.0.1:${port}`);
  t.after(() => {
    client.destroy();
    server.close();
  });
  assert.equal(installStreamTables(client), true, 'client session');
  assert.ok(stateOf(client).streams instanceof StreamIdTable);
  assert.ok(stateOf(client).pendingStreams instanceof SlotSet);
  // A second call finds the tables already replaced and keeps them.
  const tables = stateOf(client).streams;
  assert.equal(installStreamTables(client), true);
  assert.equal(stateOf(client).streams, tables);

  const requests = Array.from({ length: 60 }, async (_, i) => {
    const payload = Buffer.alloc(1000 + i, i);
    const req = client.request({ ':method': 'POST', ':path': `/r${i}` });
    req.end(payload);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    return [Buffer.concat(chunks).toString(), `/r${i} ${createHash('sha256').update(payload).digest('hex')}`];
  });
  assert.equal((stateOf(client).streams as StreamIdTable<unknown>).size, 0, 'no stream has an id yet');
  for (const [got, want] of await Promise.all(requests)) assert.equal(got, want);
  // A stream leaves the table when it closes, just after its last data.
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(installedOnServer, true, 'server session');
  assert.equal((stateOf(client).streams as StreamIdTable<unknown>).size, 0, 'finished streams are removed');

  // Streams still open when the session is destroyed are destroyed with it (node:http2's forEach).
  const open = client.request({ ':method': 'POST', ':path': '/never-ended' });
  const closed = new Promise<void>((resolve) => open.on('close', resolve));
  open.on('error', () => {});
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal((stateOf(client).streams as StreamIdTable<unknown>).size, 1);
  client.destroy();
  await closed;
});

test('StreamIdTable keeps ids and streams paired through deletes', () => {
  const table = new StreamIdTable<string>();
  for (let id = 1; id <= 9; id += 2) table.set(id, `s${id}`);
  assert.equal(table.delete(3), true);
  assert.equal(table.delete(3), false);
  table.set(11, 's11');
  table.set(1, 's1bis');
  assert.equal(table.size, 5);
  assert.equal(table.get(9), 's9');
  assert.equal(table.get(1), 's1bis');
  assert.equal(table.get(3), undefined);
  const seen: string[] = [];
  table.forEach((stream, id, self) => {
    seen.push(`${id}=${stream}`);
    self.delete(id);
  });
  assert.deepEqual(seen.sort(), ['1=s1bis', '11=s11', '5=s5', '7=s7', '9=s9'].sort());
  assert.equal(table.size, 0);
});

test('StreamIdTable behaves as a Map under any sequence of sets and deletes', () => {
  // Ids from a small pool (collisions, runs of probes wrapping around the table) and a wide range.
  const id = fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }));
  const op = fc.record({ set: fc.boolean(), id, value: fc.integer() });
  fc.assert(
    fc.property(fc.array(op, { minLength: 20, maxLength: 400, size: 'max' }), (ops) => {
      const table = new StreamIdTable<number>();
      const reference = new Map<number, number>();
      for (const { set, id, value } of ops) {
        if (set) {
          table.set(id, value);
          reference.set(id, value);
        } else assert.equal(table.delete(id), reference.delete(id));
        assert.equal(table.size, reference.size);
      }
      for (const [k, v] of reference) assert.equal(table.get(k), v);
      for (const { id } of ops) assert.equal(table.get(id), reference.get(id));
      assert.deepEqual(new Map(table), reference);
    }),
    { numRuns: 300 },
  );
});
