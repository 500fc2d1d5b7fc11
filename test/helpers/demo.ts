/**
 * The built-in demo (`npm start`, `zproxy run` without a config) for tests: its fixed ports, a lock that
 * keeps two test files from running it at once, and the `curl` lines of docs/getting-started.md with what
 * each must show, run with the real curl against a running demo.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CliProcess, LogLine } from './cli-process.ts';
import { pidAlive } from './cli-process.ts';

export const GETTING_STARTED = fileURLToPath(new URL('../../docs/getting-started.md', import.meta.url));

/** The `curl` lines of the `sh` blocks of a Markdown page, in order. */
export function curlLines(markdown: string): string[] {
  const lines: string[] = [];
  let inSh = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) {
      inSh = !inSh && line.trim() === '```sh';
      continue;
    }
    if (inSh && line.startsWith('curl ')) lines.push(line);
  }
  return lines;
}

const LOCK = join(tmpdir(), 'zproxy-demo-ports.lock');

/**
 * Waits until no other test process runs the demo (it listens on fixed ports), then holds the lock
 * until the returned function is called. A lock whose holder is gone is taken over.
 */
export async function lockDemoPorts(timeoutMs = 300_000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return () => rmSync(LOCK, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder = Number.NaN;
    try {
      holder = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
    } catch {
      // being written or removed
    }
    if (Number.isInteger(holder) && holder > 0 && !pidAlive(holder))
      rmSync(LOCK, { recursive: true, force: true });
    assert.ok(Date.now() < deadline, `the demo ports stayed locked by ${LOCK} for ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits for the demo's three log lines: the origin (with the config's path) and both listeners. */
export async function waitForDemo(demo: CliProcess): Promise<{ configPath: string }> {
  const origin: LogLine = await demo.waitForLog(
    (l) => l.msg === 'demo origin listening',
    20_000,
    'the demo origin',
  );
  await demo.waitForLog((l) => l.msg === 'listening' && l.port === 8000, 20_000, 'the listener on 8000');
  await demo.waitForLog((l) => l.msg === 'listening' && l.port === 8443, 20_000, 'the listener on 8443');
  assert.equal(typeof origin.config, 'string');
  return { configPath: origin.config as string };
}

export interface CurlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one line as the reader would: with bash, in the demo's world (curl's quotes and globs). */
export function runLine(line: string): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile('bash', ['-c', line], { timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON body the demo origin answered with (after the head that `curl -i` prints). */
function originJson(stdout: string): Record<string, unknown> & { headers: Record<string, string> } {
  const start = stdout.indexOf('\r\n\r\n');
  assert.ok(start > 0, `no head/body boundary in ${stdout}`);
  return JSON.parse(stdout.slice(start + 4)) as Record<string, unknown> & { headers: Record<string, string> };
}

/** The head curl -i printed, fields lower-cased. */
function head(stdout: string): { status: string; fields: Map<string, string> } {
  const [statusLine, ...lines] = stdout.slice(0, stdout.indexOf('\r\n\r\n')).split('\r\n');
  const fields = new Map<string, string>();
  for (const l of lines) {
    const colon = l.indexOf(':');
    fields.set(l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim());
  }
  return { status: statusLine!, fields };
}

export interface LineCheck {
  /** What the line shows (for messages). */
  readonly name: string;
  /** Which doc line this check is for. */
  readonly matches: (line: string) => boolean;
  readonly check: (result: CurlResult) => void;
}

/** What each curl line of docs/getting-started.md must show. */
export const GETTING_STARTED_CHECKS: readonly LineCheck[] = [
  {
    name: 'HTTP/1.1 through zproxy, forwarding fields',
    matches: (l) => l === 'curl -i http://127.0.0.1:8000/api/users/42',
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const h = head(stdout);
      assert.equal(h.status, 'HTTP/1.1 200 OK');
      assert.equal(h.fields.get('via'), '1.1 zproxy');
      const rest = stdout.slice(stdout.indexOf('\r\n\r\n') + 4);
      assert.equal(
        Number(h.fields.get('content-length')),
        Buffer.byteLength(rest),
        'the body is framed exactly',
      );
      const body = originJson(stdout);
      assert.equal(body.url, '/api/users/42');
      assert.equal(body.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(body.headers['x-forwarded-proto'], 'http');
      assert.equal(body.headers['x-forwarded-host'], '127.0.0.1:8000');
    },
  },
  {
    name: 'any method on the catch-all route, with a body',
    matches: (l) => l.includes('-d hi') && l.includes('/anything'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      assert.equal(head(stdout).status, 'HTTP/1.1 200 OK');
      const body = originJson(stdout);
      assert.equal(body.method, 'POST');
      assert.equal(body.url, '/anything');
      assert.equal(body.body_bytes, 2);
    },
  },
  {
    name: 'strip_prefix',
    matches: (l) => l.includes('/static/app.js'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      assert.equal(head(stdout).status, 'HTTP/1.1 200 OK');
      assert.equal(originJson(stdout).url, '/app.js');
    },
  },
  {
    name: 'h2c',
    matches: (l) => l.includes('--http2-prior-knowledge'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      assert.equal(head(stdout).status.trim(), 'HTTP/2 200');
      const body = originJson(stdout);
      assert.equal(body.http_version, '1.1');
      assert.equal(body.headers['x-forwarded-proto'], 'http');
    },
  },
  {
    name: 'HTTP/2 over TLS',
    matches: (l) => l.includes('https://127.0.0.1:8443') && l.includes('--http2'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      assert.equal(head(stdout).status.trim(), 'HTTP/2 200');
      assert.equal(originJson(stdout).headers['x-forwarded-proto'], 'https');
    },
  },
  {
    name: 'plain HTTP on the TLS port',
    matches: (l) => l.includes('http://127.0.0.1:8443'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      assert.equal(head(stdout).status, 'HTTP/1.1 400 Bad Request');
      const body = JSON.parse(stdout.slice(stdout.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
      assert.equal(body.error.code, 'ZP_ERR_PLAIN_HTTP_ON_TLS');
    },
  },
  {
    name: 'WebSocket handshake through zproxy',
    matches: (l) => l.includes('Upgrade: websocket'),
    check: ({ code, stdout }) => {
      // curl waits on the open tunnel until --max-time: 28 is "operation timed out".
      assert.equal(code, 28);
      const h = head(stdout);
      assert.equal(h.status, 'HTTP/1.1 101 Switching Protocols');
      assert.equal(h.fields.get('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
      assert.equal(h.fields.get('upgrade')?.toLowerCase(), 'websocket');
    },
  },
  {
    name: 'CORS preflight from an allowed origin',
    matches: (l) => l.includes('-X OPTIONS') && l.includes("'Origin: https://app.example.com'"),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const h = head(stdout);
      assert.equal(h.status, 'HTTP/1.1 204 No Content');
      assert.equal(h.fields.get('access-control-allow-origin'), 'https://app.example.com');
      assert.match(h.fields.get('access-control-allow-methods') ?? '', /\bPUT\b/);
      assert.equal(h.fields.get('access-control-max-age'), '600');
      assert.equal(h.fields.has('via'), false, 'a preflight is answered by zproxy, not forwarded');
    },
  },
  {
    name: 'CORS preflight from another origin',
    matches: (l) => l.includes('-X OPTIONS') && l.includes("'Origin: https://evil.example'"),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const h = head(stdout);
      assert.match(h.status, /^HTTP\/1\.1 403 /);
      assert.equal(h.fields.has('access-control-allow-origin'), false);
    },
  },
  {
    name: 'CORS request',
    matches: (l) => !l.includes('-X OPTIONS') && l.includes('/cors/items'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const h = head(stdout);
      assert.equal(h.status, 'HTTP/1.1 200 OK');
      assert.equal(h.fields.get('access-control-allow-origin'), 'https://app.example.com');
      assert.equal(originJson(stdout).url, '/cors/items');
    },
  },
  {
    name: 'rate limit',
    matches: (l) => l.includes('/limited/'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const lines = stdout.trim().split('\n');
      assert.deepEqual(
        lines.map((l) => l.split(' ')[0]),
        ['200', '200', '200', '429', '429'],
        stdout,
      );
      assert.deepEqual(
        lines.slice(0, 3).map((l) => /r=(\d+)/.exec(l)?.[1]),
        ['2', '1', '0'],
        stdout,
      );
      for (const l of lines.slice(3)) assert.match(l, /retry-after: [1-9]\d*$/);
    },
  },
  {
    name: 'cache',
    matches: (l) => l.includes('/cached/'),
    check: ({ code, stdout }) => {
      assert.equal(code, 0);
      const lines = stdout.trim().split('\n');
      assert.equal(lines.length, 3, stdout);
      assert.equal(lines[0], '200 cache-status: zproxy; fwd=uri-miss; fwd-status=200; stored');
      for (const l of lines.slice(1)) assert.match(l, /^200 cache-status: zproxy; hit; ttl=(29|30)$/);
    },
  },
];

/**
 * Runs every curl line of docs/getting-started.md against the running demo and checks it; every line
 * has exactly one check and every check a line, so the page and the test cannot drift apart.
 */
export async function checkGettingStartedLines(
  markdown = readFileSync(GETTING_STARTED, 'utf8'),
): Promise<number> {
  const lines = curlLines(markdown);
  const used = new Set<LineCheck>();
  for (const line of lines) {
    const checks = GETTING_STARTED_CHECKS.filter((c) => c.matches(line));
    assert.equal(checks.length, 1, `docs/getting-started.md: ${checks.length} checks for: ${line}`);
    const result = await runLine(line);
    try {
      checks[0]!.check(result);
    } catch (error) {
      throw new Error(
        `${checks[0]!.name}: ${line}\n${(error as Error).message}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`,
      );
    }
    used.add(checks[0]!);
  }
  const unused = GETTING_STARTED_CHECKS.filter((c) => !used.has(c)).map((c) => c.name);
  assert.deepEqual(unused, [], 'checks without a curl line in docs/getting-started.md');
  return lines.length;
}
