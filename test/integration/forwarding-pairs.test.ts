/**
 * One forwarding policy for every protocol pair: each case of test/fixtures/forwarding-cases.ts runs from
 * an HTTP/1.1 client (raw socket) and an HTTP/2 client (node:http2, h2c) to an HTTP/1.1 upstream (raw,
 * sees the exact bytes) and an HTTP/2 upstream (node:http2). For every case the upstream-visible request
 * and the client-visible response must be the same in each pair (once the parts that name a hop's
 * protocol version are normalised), and must match the case's expectations.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  FORWARDING_CASES,
  type ForwardingCase,
  type ProxyKind,
  type Side,
} from '../fixtures/forwarding-cases.ts';
import { type ScriptedUpstream, startScriptedUpstream, WireClient } from '../helpers/http1-wire.ts';
import { type StartedProxy, startProxy } from '../helpers/proxy.ts';

/** What one side saw, in a protocol-neutral form. */
interface View {
  readonly status?: number;
  readonly path?: string;
  /** Lowercase name -> values joined with ', ' (cookie with '; '), sorted by name. */
  readonly fields: Record<string, string>;
  readonly body: string;
}

/** Fields left out of the comparison: framing (each hop decides its own) and the date. */
const FRAMING = new Set(['content-length', 'transfer-encoding', 'date', 'te']);

function normalise(
  pairs: readonly (readonly [string, string])[],
  keepFraming: boolean,
): Record<string, string> {
  const lists = new Map<string, string[]>();
  for (const [rawName, value] of pairs) {
    const name = rawName.toLowerCase();
    if (name.startsWith(':')) continue;
    if (!keepFraming && FRAMING.has(name)) continue;
    const list = lists.get(name);
    if (list === undefined) lists.set(name, [value]);
    else list.push(value);
  }
  const out: Record<string, string> = {};
  for (const name of [...lists.keys()].sort()) {
    out[name] = lists.get(name)!.join(name === 'cookie' ? '; ' : ', ');
  }
  return out;
}

/** A header object (node:http2) as ordered pairs; lists expanded. */
function objectPairs(headers: http2.IncomingHttpHeaders): [string, string][] {
  const out: [string, string][] = [];
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else out.push([name, String(value)]);
  }
  return out;
}

/** The version token a hop puts in Via: '1.1' or '2'. */
const version = (side: Side) => (side === 'h1' ? '1.1' : '2');

interface Upstreams {
  h1: ScriptedUpstream;
  h2: http2.Http2Server;
  h2port: number;
  /** The last request each upstream saw for a case (keyed by `${side}:${case index}`). */
  seen: Map<string, View & { raw: [string, string][] }>;
}

function caseOf(index: string | undefined): ForwardingCase {
  return FORWARDING_CASES[Number(index)]!;
}

async function startUpstreams(): Promise<Upstreams> {
  const seen = new Map<string, View & { raw: [string, string][] }>();
  const h1 = await startScriptedUpstream((req) => {
    const index = req.header('x-case');
    const c = caseOf(index);
    seen.set(`h1:${index}`, {
      path: req.target,
      fields: normalise(req.headers, true),
      body: req.body.toString('latin1'),
      raw: req.headers,
    });
    const status = c.response?.status ?? 200;
    let head = `HTTP/1.1 ${status} X\r\n`;
    let hasLength = false;
    for (const [name, value] of c.response?.fields ?? []) {
      head += `${name}: ${value}\r\n`;
      if (name.toLowerCase() === 'content-length') hasLength = true;
    }
    const body = c.response?.body ?? (status === 204 || status === 304 ? '' : 'ok');
    if (!hasLength && status !== 204 && status !== 304)
      head += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
    return `${c.response?.interim ?? ''}${head}\r\n${req.method === 'HEAD' ? '' : body}`;
  });
  const h2 = http2.createServer();
  h2.on('session', (s) => s.on('error', () => {}));
  h2.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const index = String(headers['x-case']);
    const c = caseOf(index);
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      const raw = objectPairs(headers);
      seen.set(`h2:${index}`, {
        path: String(headers[':path']),
        fields: normalise([['host', String(headers[':authority'])], ...raw], true),
        body: Buffer.concat(chunks).toString('latin1'),
        raw,
      });
      const status = c.response?.status ?? 200;
      const out: http2.OutgoingHttpHeaders = { ':status': status };
      for (const [name, value] of c.response?.fields ?? []) {
        const prior = out[name];
        if (prior === undefined) out[name] = value;
        else out[name] = Array.isArray(prior) ? [...prior, value] : [String(prior), value];
      }
      const body = c.response?.body ?? (status === 204 || status === 304 ? '' : 'ok');
      const bodyless = headers[':method'] === 'HEAD' || body === '';
      stream.respond(out, { endStream: bodyless, sendDate: false } as http2.ServerStreamResponseOptions);
      if (!bodyless) stream.end(body);
    });
  });
  await new Promise<void>((resolve) => h2.listen(0, '127.0.0.1', resolve));
  return { h1, h2, h2port: (h2.address() as AddressInfo).port, seen };
}

async function sendH1(port: number, path: string, c: ForwardingCase): Promise<View> {
  const r = c.request;
  const method = r.method ?? 'GET';
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${r.host ?? 'pairs.test'}\r\n`;
  for (const [name, value] of r.fields ?? []) {
    // One Cookie line over HTTP/1.1 (RFC 6265 §5.4): the client joins them itself.
    if (name === 'cookie') continue;
    head += `${name}: ${value}\r\n`;
  }
  const cookies = (r.fields ?? []).filter(([n]) => n === 'cookie').map(([, v]) => v);
  if (cookies.length > 0) head += `cookie: ${cookies.join('; ')}\r\n`;
  let body = '';
  if (r.body !== undefined) {
    if (r.unknownLength) {
      head += 'Transfer-Encoding: chunked\r\n';
      body = `${Buffer.byteLength(r.body).toString(16)}\r\n${r.body}\r\n0\r\n\r\n`;
    } else {
      head += `Content-Length: ${Buffer.byteLength(r.body)}\r\n`;
      body = r.body;
    }
  }
  const client = await WireClient.connect(port);
  try {
    client.write(`${head}\r\n${body}`);
    const res = await client.next({ noBody: method === 'HEAD' });
    return {
      status: res.status,
      fields: normalise(res.headers, true),
      body: res.body.toString('latin1'),
    };
  } finally {
    client.close();
  }
}

async function sendH2(session: http2.ClientHttp2Session, path: string, c: ForwardingCase): Promise<View> {
  const r = c.request;
  const headers: http2.OutgoingHttpHeaders = {
    ':method': r.method ?? 'GET',
    ':path': path,
    ':authority': r.host ?? 'pairs.test',
  };
  // node:http2 sends a field given as a list as repeated fields (split cookies included).
  for (const [name, value] of r.fields ?? []) {
    const prior = headers[name];
    if (prior === undefined) headers[name] = value;
    else headers[name] = Array.isArray(prior) ? [...prior, value] : [String(prior), value];
  }
  if (r.body !== undefined && !r.unknownLength) headers['content-length'] = String(Buffer.byteLength(r.body));
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: r.body === undefined });
    const chunks: Buffer[] = [];
    let status = 0;
    let fields: Record<string, string> = {};
    req.on('response', (h) => {
      status = Number(h[':status']);
      fields = normalise(objectPairs(h), true);
    });
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => resolve({ status, fields, body: Buffer.concat(chunks).toString('latin1') }));
    req.on('error', reject);
    if (r.body !== undefined) req.end(r.body);
  });
}

/**
 * Replaces the Via entry that names the protocol of the hop a message came from (`sender`: the client's
 * for the request the upstream saw, the upstream's for the response), so that views of pairs compare.
 */
function comparable(view: View, sender: Side): View {
  const fields: Record<string, string> = {};
  for (const [name, value] of Object.entries(view.fields)) {
    if (FRAMING.has(name)) continue;
    fields[name] = value.replace(`${version(sender)} zproxy`, '{hop} zproxy');
  }
  return { ...view, fields };
}

function expected(value: string, client: Side, upstream: Side, target: string): string {
  return value
    .replace('{client}', version(client))
    .replace('{upstream}', version(upstream))
    .replace('{target}', target);
}

/** Random ids zproxy draws (`{trace}`, `{span}` in the table) as patterns: lowercase hex, not all zeros. */
const RANDOM_IDS: Record<string, string> = {
  '{trace}': '(?!0{32})[0-9a-f]{32}',
  '{span}': '(?!0{16})[0-9a-f]{16}',
};

/** Checks a field value against the table's expectation (with `{trace}` and `{span}` as patterns). */
function assertField(actual: string | undefined, want: string | undefined, message: string): void {
  if (want === undefined || !/\{(trace|span)\}/.test(want)) {
    assert.equal(actual, want, message);
    return;
  }
  const pattern = want
    .split(/(\{trace\}|\{span\})/)
    .map((part) => RANDOM_IDS[part] ?? part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('');
  assert.match(actual ?? '<absent>', new RegExp(`^${pattern}$`), message);
}

/** A traceparent zproxy wrote, with its random span (and a new trace's id) as placeholders. */
function traceparentShape(value: string, clientFields: readonly (readonly [string, string])[]): string {
  const sent = clientFields.find(([name]) => name === 'traceparent')?.[1] ?? '';
  const traceId = value.slice(3, 35);
  const kept = sent.includes(traceId);
  return `00-${kept ? traceId : '{trace}'}-{span}-${value.slice(53)}`;
}

let upstreams: Upstreams;
const proxies = new Map<ProxyKind, StartedProxy>();
const sessions = new Map<ProxyKind, http2.ClientHttp2Session>();

before(async () => {
  upstreams = await startUpstreams();
  const routes = [
    { path: '/h1/strip', upstream: `http://127.0.0.1:${upstreams.h1.port}`, strip_prefix: true },
    { path: '/h2/strip', upstream: `h2c://127.0.0.1:${upstreams.h2port}`, strip_prefix: true },
    { path: '/h1', upstream: `http://127.0.0.1:${upstreams.h1.port}`, strip_prefix: true },
    { path: '/h2', upstream: `h2c://127.0.0.1:${upstreams.h2port}`, strip_prefix: true },
  ];
  const base = { protocols: ['http1', 'http2'], routes };
  proxies.set('plain', await startProxy(base));
  proxies.set('trusted', await startProxy({ ...base, trusted_proxies: ['127.0.0.1'] }));
  proxies.set('rewrite', await startProxy({ ...base, preserve_host: false }));
  proxies.set('untraced', await startProxy({ ...base, tracing: { traceparent: false } }));
  proxies.set(
    'edits',
    await startProxy({
      ...base,
      middlewares: [
        {
          type: 'headers',
          config: {
            request: { set: { 'x-forwarded-proto': 'https' }, remove: ['x-drop-me'] },
            response: { set: { 'x-edited': 'yes' }, remove: ['x-upstream-drop', 'via'] },
          },
        },
      ],
    }),
  );
  for (const [kind, proxy] of proxies) {
    const session = http2.connect(proxy.url);
    session.on('error', () => {});
    sessions.set(kind, session);
  }
});

after(async () => {
  for (const session of sessions.values()) session.close();
  for (const proxy of proxies.values()) await proxy.close();
  await upstreams.h1.close();
  await new Promise<void>((resolve) => upstreams.h2.close(() => resolve()));
});

describe('one forwarding policy for the four protocol pairs', () => {
  FORWARDING_CASES.forEach((c, index) => {
    test(c.name, async () => {
      const kind = c.proxy ?? 'plain';
      const proxy = proxies.get(kind)!;
      const session = sessions.get(kind)!;
      const views: { pair: string; upstream: View; client: View; clientSide: Side; upstreamSide: Side }[] =
        [];
      for (const clientSide of c.clients ?? (['h1', 'h2'] as const)) {
        for (const upstreamSide of c.upstreams ?? (['h1', 'h2'] as const)) {
          const withCase: ForwardingCase = {
            ...c,
            request: { ...c.request, fields: [['x-case', String(index)], ...(c.request.fields ?? [])] },
          };
          const path = `/${upstreamSide}${c.route ?? ''}${c.request.path}`;
          upstreams.seen.delete(`${upstreamSide}:${index}`);
          const client =
            clientSide === 'h1'
              ? await sendH1(proxy.port, path, withCase)
              : await sendH2(session, path, withCase);
          const seen = upstreams.seen.get(`${upstreamSide}:${index}`);
          const pair = `${clientSide} client -> ${upstreamSide} upstream`;
          assert.ok(
            seen !== undefined,
            `${pair}: the upstream saw the request (client got ${client.status})`,
          );
          const target =
            upstreamSide === 'h1' ? `127.0.0.1:${upstreams.h1.port}` : `127.0.0.1:${upstreams.h2port}`;
          for (const [name, value] of Object.entries(c.upstreamSees ?? {})) {
            const want = value === null ? undefined : expected(value, clientSide, upstreamSide, target);
            assertField(seen.fields[name], want, `${pair}: the upstream's ${name}`);
          }
          assert.equal(seen.path, c.upstreamPath ?? c.request.path, `${pair}: the upstream's path`);
          assert.equal(seen.body, c.upstreamBody ?? '', `${pair}: the upstream's body`);
          assert.equal(client.status, c.clientStatus ?? 200, `${pair}: the client's status`);
          for (const [name, value] of Object.entries(c.clientGets ?? {})) {
            const want = value === null ? undefined : expected(value, clientSide, upstreamSide, target);
            assert.equal(client.fields[name], want, `${pair}: the client's ${name}`);
          }
          if (c.clientBody !== undefined)
            assert.equal(client.body, c.clientBody, `${pair}: the client's body`);
          const upstreamView = comparable(seen, clientSide);
          // zproxy's span id is new for each request, and so is the trace id of a trace it starts.
          const traceparent = upstreamView.fields.traceparent;
          if (traceparent !== undefined && kind !== 'untraced')
            (upstreamView.fields as Record<string, string>).traceparent = traceparentShape(
              traceparent,
              c.request.fields ?? [],
            );
          // The host an upstream sees names its own port when it is rewritten.
          if (kind === 'rewrite') delete (upstreamView.fields as Record<string, string>).host;
          views.push({
            pair,
            upstream: { path: upstreamView.path, fields: upstreamView.fields, body: upstreamView.body },
            client: comparable(client, upstreamSide),
            clientSide,
            upstreamSide,
          });
        }
      }
      const first = views[0]!;
      for (const v of views.slice(1)) {
        assert.deepEqual(
          v.upstream,
          first.upstream,
          `the upstream sees the same from ${v.pair} as from ${first.pair}`,
        );
        assert.deepEqual(
          v.client,
          first.client,
          `the client gets the same from ${v.pair} as from ${first.pair}`,
        );
      }
    });
  });
});
