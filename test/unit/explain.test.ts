/**
 * `zproxy explain`: the command line, the URL as written, and the answers that need no upstream to check
 * (listeners, limits, protocols, HTTP/2 targets, preserve_host, framing, filter-only methods, the text
 * form). test/integration/explain.test.ts checks the predictions against a real zproxy.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCommandLine } from '../../src/cli/args.ts';
import { explainConfig, formatExplanation } from '../../src/cli/explain.ts';
import { splitUrl } from '../../src/cli/explain-request.ts';
import { loadConfigFile, parseConfig } from '../../src/config/load.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('the command line', () => {
  test('explain CONFIG METHOD URL with fields, a client and --json', () => {
    assert.deepEqual(
      parseCommandLine([
        'explain',
        'z.json',
        'POST',
        'http://api.test:8000/x?y=1',
        '-H',
        'Content-Type: text/plain',
        '-H',
        'X-A:b',
        '--client',
        '10.1.2.3',
        '--json',
      ]),
      {
        kind: 'explain',
        config: 'z.json',
        json: true,
        request: {
          method: 'POST',
          url: 'http://api.test:8000/x?y=1',
          fields: [
            ['Content-Type', 'text/plain'],
            ['X-A', 'b'],
          ],
          clientAddress: '10.1.2.3',
        },
      },
    );
    const plain = parseCommandLine(['explain', 'z.json', 'GET', 'https://a.test/']);
    assert.equal(plain.kind === 'explain' && plain.request.clientAddress, '127.0.0.1');
  });

  const wrong: [string[], RegExp][] = [
    [['explain', 'z.json', 'GET'], /explain takes CONFIG METHOD URL, got 2/],
    [['explain', 'z.json', 'G T', 'http://a/'], /METHOD must be a method name/],
    [['explain', 'z.json', 'GET', 'ftp://a/'], /URL must be http/],
    [['explain', 'z.json', 'GET', 'http://user@a/'], /no user info/],
    [['explain', 'z.json', 'GET', 'http://a/', '-H', 'no colon'], /-H must be "name: value"/],
    [['explain', 'z.json', 'GET', 'http://a/', '--client', 'localhost'], /--client must be an IP address/],
    [['explain', 'z.json', 'GET', 'http://a/', '--nope'], /Unknown option '--nope'/],
  ];
  for (const [argv, message] of wrong) {
    test(`usage error: ${argv.slice(2).join(' ')}`, () => {
      const command = parseCommandLine(argv);
      assert.equal(command.kind, 'usage-error');
      assert.match(command.kind === 'usage-error' ? command.message : '', message);
    });
  }
});

test('URLs are split as written: default ports, ws and wss, IPv6, no normalisation', () => {
  assert.deepEqual(splitUrl('http://a.test/x/../y?q#frag'), {
    scheme: 'http',
    authority: 'a.test',
    hostname: 'a.test',
    port: 80,
    target: '/x/../y?q',
  });
  assert.equal(splitUrl('wss://a.test')?.port, 443);
  assert.equal(splitUrl('wss://a.test')?.scheme, 'https');
  assert.equal(splitUrl('ws://a.test:81')?.target, '/');
  assert.equal(splitUrl('http://a.test?q=1')?.target, '/?q=1');
  assert.deepEqual(splitUrl('http://[::1]:8000/a'), {
    scheme: 'http',
    authority: '[::1]:8000',
    hostname: '::1',
    port: 8000,
    target: '/a',
  });
  assert.equal(splitUrl('http://a.test:99999/'), null);
  assert.equal(splitUrl('http:///a'), null);
});

const ORIGIN = 'http://127.0.0.1:9001';

async function explain(
  config: Record<string, unknown>,
  url: string,
  fields: [string, string][] = [],
  method = 'GET',
) {
  const parsed = parseConfig({ host: '127.0.0.1', port: 8000, ...config });
  return explainConfig(parsed, join(ROOT, 'zproxy.json'), {
    method,
    url,
    fields,
    clientAddress: '192.0.2.10',
  });
}

describe('answers explained without an upstream', () => {
  test('no listener on the URL port: explained anyway, with a note', async () => {
    const e = await explain({ routes: [{ path: '/', upstream: ORIGIN }] }, 'http://127.0.0.1:9999/a');
    assert.equal(e.listener, null);
    assert.match(e.notes[0]!, /no listener is configured on port 9999/);
    assert.equal(e.outcome, 'forward');
  });

  test('a Content-Length above limits.max_body_bytes: 413', async () => {
    const e = await explain(
      { limits: { max_body_bytes: 10 }, routes: [{ path: '/', upstream: ORIGIN }] },
      'http://127.0.0.1:8000/upload',
      [['Content-Length', '11']],
      'POST',
    );
    assert.equal(e.status, 413);
    assert.equal(e.code, 'ZP_ERR_BODY_TOO_LARGE');
  });

  test('HTTP/1.x not in protocols: 505', async () => {
    const e = await explain(
      { protocols: ['http2'], routes: [{ path: '/', upstream: ORIGIN }] },
      'http://127.0.0.1:8000/',
    );
    assert.equal(e.status, 505);
  });

  test('a field the parser refuses: 400 with its reason', async () => {
    const e = await explain({ routes: [{ path: '/', upstream: ORIGIN }] }, 'http://127.0.0.1:8000/', [
      ['Content-Length', '1'],
      ['Transfer-Encoding', 'chunked'],
    ]);
    assert.equal(e.status, 400);
    assert.match(e.reason, /the request head is refused/);
  });

  test('an h2c target: the field list node:http2 sends, pseudo-fields first (preserve_host by default)', async () => {
    const e = await explain(
      { routes: [{ path: '/grpc', upstream: 'h2c://127.0.0.1:9002', strip_prefix: true }] },
      'http://127.0.0.1:8000/grpc/svc/Call',
      [['TE', 'trailers']],
    );
    const ur = e.upstream_request!;
    assert.equal(ur.protocol, 'h2');
    assert.equal(ur.head, null);
    assert.deepEqual(ur.fields.slice(0, 4), [
      [':method', 'GET'],
      [':scheme', 'http'],
      [':authority', '127.0.0.1:8000'],
      [':path', '/svc/Call'],
    ]);
    assert.ok(ur.fields.some(([n, v]) => n === 'te' && v === 'trailers'));
    assert.ok(ur.fields.some(([n, v]) => n === 'via' && v === '1.1 zproxy'));
  });

  test('preserve_host keeps the client Host line; Expect and a chunked body are handled as the engine does', async () => {
    const e = await explain(
      { preserve_host: true, routes: [{ path: '/', upstream: ORIGIN }] },
      'http://www.example.test:8000/a',
      [
        ['Expect', '100-continue'],
        ['Transfer-Encoding', 'chunked'],
      ],
      'POST',
    );
    const ur = e.upstream_request!;
    assert.equal(
      ur.head,
      'POST /a HTTP/1.1\r\nHost: www.example.test:8000\r\nX-Forwarded-For: 192.0.2.10\r\n' +
        'X-Forwarded-Proto: http\r\nX-Forwarded-Host: www.example.test:8000\r\nVia: 1.1 zproxy\r\n' +
        'traceparent: 00-{new trace id}-{new span id}-01\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n',
    );
    assert.deepEqual(
      ur.dropped.map((d) => d.name),
      ['Expect', 'Transfer-Encoding'],
    );
  });

  test("the trace context: a client's valid traceparent continued, an invalid one replaced with its tracestate", async () => {
    const config = { routes: [{ path: '/', upstream: ORIGIN }] };
    const continued = await explain(config, 'http://www.example.test:8000/a', [
      ['traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00'],
      ['tracestate', 'congo=t61rcWkgMzE'],
    ]);
    const fields = continued.upstream_request!.fields;
    assert.deepEqual(
      fields.filter(([n]) => n.toLowerCase().startsWith('trace')),
      [
        ['tracestate', 'congo=t61rcWkgMzE'],
        ['traceparent', '00-0af7651916cd43dd8448eb211c80319c-{new span id}-00'],
      ],
    );
    const replaced = await explain(config, 'http://www.example.test:8000/a', [
      ['traceparent', '00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01'],
      ['tracestate', 'congo=t61rcWkgMzE'],
    ]);
    assert.deepEqual(
      replaced.upstream_request!.fields.filter(([n]) => n.toLowerCase().startsWith('trace')),
      [['traceparent', '00-{new trace id}-{new span id}-01']],
    );
    assert.deepEqual(
      replaced.upstream_request!.dropped.map((d) => d.name),
      ['traceparent', 'tracestate'],
    );
  });

  test('OPTIONS on a route with cors: accepted only for the filter, else 405 with the route Allow', async () => {
    const e = await explain(
      {
        routes: [
          {
            path: '/api',
            upstream: ORIGIN,
            methods: ['GET'],
            middlewares: [{ type: 'cors', config: { allowed_origins: ['https://app.test'] } }],
          },
        ],
      },
      'http://127.0.0.1:8000/api',
      [],
      'OPTIONS',
    );
    assert.deepEqual(e.route?.filter_only_methods, ['OPTIONS']);
    assert.equal(e.allow, 'GET, HEAD');
    assert.match(e.reason, /only for its filters \(cors\)/);
    assert.deepEqual(e.filters[0]?.phases.includes('onRequest'), true);
  });

  test('a 404 names the routes that match the path but not the host', async () => {
    const e = await explain(
      {
        routes: [
          { path: '/', host: '*.example.test', upstream: ORIGIN },
          { path: '/other', upstream: ORIGIN },
        ],
      },
      'http://example.test:8000/a',
    );
    assert.equal(e.status, 404);
    assert.match(e.reason, /routes \[0\] match the path but not the host/);
    assert.deepEqual(
      e.candidates.map((c) => [c.index, c.path_matches, c.host_matches]),
      [[0, true, false]],
    );
    const text = formatExplanation(e);
    assert.match(text, /^answer {4}404 ZP_ERR_NOT_FOUND: no route matches host "example\.test:8000"/m);
    assert.match(
      text,
      /routes\[0\] \/ \(host \*\.example\.test, any method\): path matches, host does not match/,
    );
  });

  test('the text form of a forwarded request', async () => {
    const e = await explain(
      {
        preserve_host: false,
        middlewares: [{ type: 'cors', config: { allowed_origins: ['https://app.test'] } }],
        routes: [{ path: '/static', upstream: [ORIGIN, 'http://127.0.0.1:9003'], strip_prefix: true }],
      },
      'http://127.0.0.1:8000/static/app.js',
      [['Connection', 'keep-alive']],
    );
    const text = formatExplanation(e);
    for (const line of [
      /^route {5}routes\[0\] \/static \(host any, any method\) strip_prefix$/m,
      /^filters {3}1\. cors \(middlewares\[0\]; onRequest/m,
      /^upstream {2}round_robin over http:\/\/127\.0\.0\.1:9001, http:\/\/127\.0\.0\.1:9003$/m,
      /^ {2}GET \/app\.js HTTP\/1\.1$/m,
      /^ {2}Host: 127\.0\.0\.1:9001$/m,
      /^ {2}Connection: keep-alive {2}\(hop-by-hop/m,
      /^ {2}Host: 127\.0\.0\.1:8000 {2}\(replaced: Host is the target’s \(preserve_host is off\)\)$/m,
    ])
      assert.match(text, line);
  });
});

describe('the command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-explain-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'src/cli/main.ts'), 'explain', ...args], {
      encoding: 'utf8',
      timeout: 30_000,
    });

  test('an invalid config: every problem named by its JSON path, exit 1', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ routes: [{ path: '/', upstream: 'ftp://x' }] }));
    const r = run([file, 'GET', 'http://127.0.0.1:8000/']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^routes\[0\]\.upstream: expected an http:\/\//);
    assert.equal(r.stdout, '');
  });

  test('a 404 is an answer, not a failure: exit 0, the text on stdout', () => {
    const file = join(dir, 'ok.json');
    writeFileSync(file, JSON.stringify({ port: 8000, routes: [{ path: '/api', upstream: ORIGIN }] }));
    const r = run([file, 'GET', 'http://127.0.0.1:8000/nothing']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^answer {4}404 ZP_ERR_NOT_FOUND: no route's path matches \/nothing/m);
  });
});

describe('docs/cli.md shows what explain prints', () => {
  const page = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
  const section = page.slice(page.indexOf('## `zproxy explain'), page.indexOf('## Exit status'));

  /** The words of a shell command line (single quotes, backslash-newline continuations). */
  function words(line: string): string[] {
    return [...line.replace(/\\\n\s*/g, ' ').matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
  }

  async function run(commandLine: string) {
    const command = parseCommandLine(words(commandLine).slice(1));
    assert.equal(command.kind, 'explain');
    if (command.kind !== 'explain') throw new Error('not explain');
    const file = join(ROOT, command.config);
    return { json: command.json, e: await explainConfig(loadConfigFile(file), file, command.request) };
  }

  test('the text examples', async () => {
    const blocks = [...section.matchAll(/```\n\$ (zproxy explain (?:[^\n]*\\\n)*[^\n]*)\n([\s\S]*?)```/g)];
    assert.equal(blocks.length, 2);
    for (const [, commandLine, output] of blocks) {
      const { e } = await run(commandLine!);
      assert.equal(formatExplanation(e), output);
    }
  });

  test('the JSON example', async () => {
    const m = /`(zproxy explain [^`]*--json)`:\n\n```json\n([\s\S]*?)```/.exec(section);
    assert.ok(m, 'the JSON example and its command');
    const { json, e } = await run(m[1]!);
    assert.equal(json, true);
    assert.deepEqual(JSON.parse(JSON.stringify(e)), JSON.parse(m[2]!));
  });
});
