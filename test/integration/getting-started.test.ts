/**
 * docs/getting-started.md against the real demo: `zproxy run` without a config (what `npm start` runs) in
 * an empty folder, then every `curl` line of the page with the real curl (HTTP/1.1, h2c, HTTP/2 over TLS
 * with the certificate the demo made, the WebSocket handshake, CORS, the rate limit, the cache), and the
 * WebSocket page in a real Chromium over http:// (HTTP/1.1 Upgrade) and https:// (HTTP/2, RFC 8441).
 * curl and Chromium are required (CI installs them).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchChromium, requireChromium } from '../helpers/chromium.ts';
import { CLI_MAIN, type CliProcess, startCommand } from '../helpers/cli-process.ts';
import { checkGettingStartedLines, curlLines, lockDemoPorts, runLine, waitForDemo } from '../helpers/demo.ts';
import { waitUntil } from '../helpers/simple-request.ts';

test('curlLines takes the curl lines of sh blocks only', () => {
  const page = [
    '```sh',
    'npm start',
    'curl -i http://a/',
    '```',
    '```text',
    'curl -i http://not-a-command/',
    '```',
    '```sh',
    'curl -s http://b/',
    '```',
  ].join('\n');
  assert.deepEqual(curlLines(page), ['curl -i http://a/', 'curl -s http://b/']);
});

describe('the demo does what docs/getting-started.md shows', () => {
  let unlock: () => void;
  let cwd: string;
  let demo: CliProcess;
  let configPath: string;

  before(async () => {
    const curl = await runLine('curl --version');
    assert.equal(curl.code, 0, "curl is missing: install Debian's curl (.ci/run does)");
    requireChromium();
    unlock = await lockDemoPorts();
    cwd = mkdtempSync(join(tmpdir(), 'zproxy-empty-'));
    // No zproxy.json in the working directory: `run` starts the demo.
    demo = startCommand(process.execPath, [CLI_MAIN, 'run'], cwd);
    ({ configPath } = await waitForDemo(demo));
  });

  after(async () => {
    await demo?.cleanup();
    unlock?.();
    if (cwd !== undefined) rmSync(cwd, { recursive: true, force: true });
  });

  test('the demo runs a copy of examples/demo.json with a fresh self-signed certificate', () => {
    const config = JSON.parse(readFileSync(configPath, 'utf8')) as {
      listeners: { port: number; tls?: { cert_file: string } }[];
    };
    assert.deepEqual(
      config.listeners.map((l) => l.port),
      [8000, 8443],
    );
    const certFile = config.listeners[1]!.tls!.cert_file;
    assert.equal(dirname(certFile), dirname(configPath));
    const cert = new X509Certificate(readFileSync(certFile));
    assert.equal(cert.subject.split('\n')[0], 'CN=localhost');
    assert.equal(cert.issuer, cert.subject, 'self-signed');
    assert.equal(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.ok(cert.checkHost('localhost'));
    assert.ok(Date.parse(cert.validTo) - Date.now() > 6 * 24 * 3600_000);
  });

  test('every curl line of the page, with the real curl', async () => {
    const count = await checkGettingStartedLines();
    assert.ok(count >= 11, `only ${count} curl lines`);
  });

  test('the WebSocket page echoes in a real Chromium, over http:// and over https:// (HTTP/2)', async () => {
    const browser = await launchChromium(join(dirname(configPath), 'demo-localhost.crt'));
    try {
      for (const url of ['http://127.0.0.1:8000/ws/', 'https://localhost:8443/ws/']) {
        const page = await browser.newPage();
        const response = await page.goto(url);
        assert.equal(response?.status(), 200, url);
        await page.waitForFunction("document.querySelectorAll('#log li').length > 0", undefined, {
          timeout: 10_000,
        });
        const echoed = await page.locator('#log li').first().textContent();
        assert.equal(echoed, `echo: hello from ${new URL(url).protocol}`);
        await page.fill('#text', 'second message');
        await page.click('button');
        await page.waitForFunction("document.querySelectorAll('#log li').length === 2", undefined, {
          timeout: 10_000,
        });
        assert.equal(await page.locator('#log li').nth(1).textContent(), 'echo: second message');
        await page.close();
      }
    } finally {
      await browser.close();
    }
    // A tunnel's access log line is written when it closes: the curl line's, the http:// page's (an
    // HTTP/1.1 Upgrade) and the https:// page's (an extended CONNECT over HTTP/2).
    const tunnels = () => demo.logs.filter((l) => l.kind === 'access' && l.target === '/ws/echo');
    await waitUntil(() => tunnels().length >= 3, 10_000);
    assert.deepEqual(
      tunnels().map((l) => [l.method, l.version, l.status]),
      [
        ['GET', '1.1', 101],
        ['GET', '1.1', 101],
        ['CONNECT', '2', 200],
      ],
    );
  });

  test('SIGTERM stops the demo and removes its temporary folder', async () => {
    demo.child.kill('SIGTERM');
    const { code } = await demo.exited;
    assert.equal(code, 0);
    assert.equal(existsSync(dirname(configPath)), false);
  });
});
