import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { rawRequest } from '../helpers/raw-client.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

let upstream: HttpUpstream;
let proxy: StartedProxy;

before(async () => {
  upstream = await startHttpUpstream();
  proxy = await startProxy({ routes: [{ path: '/', upstream: upstream.url }] });
});
after(async () => {
  await proxy.close();
  await upstream.close();
});

test('a GET is proxied and answered', async () => {
  const res = await fetch(`${proxy.url}/hello?x=1`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { method: 'GET', url: '/hello?x=1', bytes: 0 });
  assert.equal(upstream.requests.at(-1)?.headers['x-forwarded-for'], '127.0.0.1');
});

test('a malformed request gets 400 and never reaches the upstream', async () => {
  const before = upstream.requests.length;
  const r = await rawRequest(
    proxy.port,
    'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  );
  assert.match(r.text, /^HTTP\/1\.1 400 /);
  assert.equal(r.closedByServer, true);
  assert.equal(upstream.requests.length, before);
});
