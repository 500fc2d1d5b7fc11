/**
 * CORS with a real browser: headless Chromium (Debian's `chromium`, driven by playwright-core) loads a
 * page from one origin and calls an API on zproxy, another origin, with `fetch`. A PUT with an API key
 * header and credentials makes Chromium send a preflight, which zproxy's cors filter answers without the
 * upstream; the PUT itself then reaches the upstream with the key checked by auth, and the page can read
 * the body and the exposed header. auth's 401 carries the CORS fields, so the page can read its status;
 * a route whose policy does not allow the page's origin is blocked by the browser.
 *
 * Chromium is required (CI installs it): a missing browser fails the test, it is never skipped.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { launchChromium, requireChromium } from '../helpers/chromium.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';
import { type HttpUpstream, startHttpUpstream } from '../helpers/upstream.ts';

const KEY = 'browser-key-6f2c1e9a';

describe('a real Chromium calls an API across origins through zproxy (cors, then auth)', () => {
  let pages: http.Server;
  let pageOrigin = '';
  let upstream: HttpUpstream;
  let proxy: StartedProxy;

  before(async () => {
    requireChromium();
    upstream = await startHttpUpstream((req, res) => {
      const body = JSON.stringify({ method: req.method, url: req.url, got: req.body.toString() });
      res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-request-id': 'req-123',
        'x-internal': 'hidden',
      });
      res.end(body);
    });
    pages = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>app</title><p>app');
    });
    await new Promise<void>((resolve) => pages.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://localhost:${(pages.address() as net.AddressInfo).port}`;
    proxy = await startProxy({
      routes: [
        { path: '/api', upstream: upstream.url, methods: ['GET', 'PUT'] },
        {
          path: '/other',
          upstream: upstream.url,
          middlewares: [{ type: 'cors', config: { allowed_origins: ['https://elsewhere.example'] } }],
        },
      ],
      middlewares: [
        {
          type: 'cors',
          config: {
            allowed_origins: [pageOrigin],
            allow_credentials: true,
            allowed_headers: ['x-api-key', 'content-type'],
            exposed_headers: ['x-request-id'],
            max_age_seconds: 5,
          },
        },
        { type: 'auth', config: { api_keys: [KEY] } },
      ],
    });
  });

  after(async () => {
    await proxy?.close();
    await upstream?.close();
    pages?.closeAllConnections();
    await new Promise((resolve) => pages?.close(resolve));
  });

  test('preflight, the call, a readable 401 and a blocked origin', async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${pageOrigin}/`);
      const api = `http://127.0.0.1:${proxy.port}`;
      // Evaluated in the page (the tests are compiled without the DOM library).
      const script = `(async () => {
        const out = {};
        const put = await fetch('${api}/api/items/7', {
          method: 'PUT', credentials: 'include',
          headers: { 'x-api-key': '${KEY}', 'content-type': 'application/json' },
          body: JSON.stringify({ name: 'seven' }),
        });
        out.put = { status: put.status, body: await put.json(), requestId: put.headers.get('x-request-id'),
          internal: put.headers.get('x-internal') };
        const denied = await fetch('${api}/api/items/7', { credentials: 'include' });
        out.denied = { status: denied.status };
        try { await fetch('${api}/other/x'); out.other = 'readable'; } catch (e) { out.other = e.name; }
        return out;
      })()`;
      const out = (await page.evaluate(script)) as {
        put: {
          status: number;
          body: { method: string; url: string; got: string };
          requestId: string;
          internal: string | null;
        };
        denied: { status: number };
        other: string;
      };
      assert.equal(out.put.status, 200);
      assert.deepEqual(out.put.body, { method: 'PUT', url: '/api/items/7', got: '{"name":"seven"}' });
      assert.equal(out.put.requestId, 'req-123', 'an exposed header is readable');
      assert.equal(out.put.internal, null, 'a header that is not exposed is not');
      assert.equal(out.denied.status, 401, "auth's 401 carries CORS fields, so the page reads it");
      assert.equal(out.other, 'TypeError', 'an origin the policy does not allow is blocked');

      const methods = upstream.requests.map((r) => r.method);
      assert.ok(!methods.includes('OPTIONS'), `the preflight never reached the upstream: ${methods}`);
      assert.equal(upstream.requests.find((r) => r.method === 'PUT')?.headers['x-api-key'], undefined);
      const preflight = proxy.accessLogs().find((l) => l.method === 'OPTIONS');
      assert.ok(preflight, 'Chromium sent a preflight');
      assert.equal(preflight.status, 204);
      assert.equal(preflight.upstream, null);
    } finally {
      await browser.close();
    }
  });
});
