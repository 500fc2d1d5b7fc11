/**
 * Differential fuzzing against other proxies: the same generated requests go through zproxy, nginx and
 * HAProxy (real processes, real sockets on 127.0.0.1), each in front of a recording upstream, and what
 * each one forwarded is compared by meaning (docs/differential-fuzzing.md). zproxy may refuse more; it
 * must never forward something the others do not, or read a request differently, unless an accepted
 * difference (compare.ts, ACCEPTED) explains it.
 *
 * nginx and HAProxy are required in CI (CI set): missing, the tests fail. Elsewhere they are skipped
 * with the reason. ZP_DIFF_SEED and ZP_DIFF_INPUTS change the seed and the number of generated inputs;
 * ZP_DIFF_REPORT names a file for the JSON report. Longer runs: `npm run fuzz:diff` (cli.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  ACCEPTED,
  acceptedFor,
  type FindingContext,
  judge,
  meaningKey,
  meaningOf,
  normaliseHost,
  normalisePath,
} from './compare.ts';
import { CONFIRM_TIMING, FAST_TIMING, runInput, runInputs } from './harness.ts';
import { CORPUS, type FuzzInput, SMUGGLED, sampleInputs } from './inputs.ts';
import { startPlantedProxy } from './planted-proxy.ts';
import { type Lane, missingProxies, type ProxyFleet, type ProxyName, startFleet } from './proxies.ts';
import { RecordingUpstream } from './recording-upstream.ts';
import { differentialRun, reportText } from './report.ts';
import { parseForwarded } from './wire.ts';

const SEED = Number(process.env.ZP_DIFF_SEED ?? 20);
const INPUTS = Number(process.env.ZP_DIFF_INPUTS ?? 2000);
const LANES = 4;

const missing = missingProxies();
const inCi = (process.env.CI ?? '') !== '' && process.env.CI !== 'false';
/** Outside CI a missing proxy skips the suite (with the reason); in CI it fails it. */
const skip = missing.length > 0 && !inCi ? `missing ${missing.join(', ')}` : false;

const input = (bytes: string, family = 'test'): FuzzInput => ({ family, bytes });

describe('the harness pieces', () => {
  test('the upstream-side parser delimits requests by Content-Length and chunked framing', () => {
    const p = parseForwarded(
      'POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: b\r\n' +
        'Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n0\r\nT: 1\r\n\r\nGET /c HTTP/1.1\r\n',
    );
    assert.deepEqual(
      p.requests.map((r) => [r.method, r.target, r.body, r.complete]),
      [
        ['POST', '/a', 'abc', true],
        ['GET', '/b', 'hi', true],
      ],
    );
    assert.deepEqual(p.requests[1]!.trailers, [['T', '1']]);
    assert.equal(p.stop, 'incomplete');
    const conflict = parseForwarded(
      'POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    assert.equal(conflict.stop, 'ambiguous framing');
    assert.deepEqual(conflict.requests[0]!.problems, ['Content-Length and Transfer-Encoding']);
  });

  test('targets and hosts are compared after normalisation', () => {
    assert.equal(normalisePath('/a/%62/./c/../d//e'), '/a/b/d/e');
    assert.equal(normalisePath('/%2f/%7e/%2E%2E/x'), '/%2F/x');
    assert.equal(normalisePath('/../../x'), '/x');
    assert.equal(normaliseHost('EXAMPLE.test.:8080'), 'example.test');
    assert.equal(normaliseHost('[::1]:80'), '[::1]');
    const key = (raw: string) => meaningKey(meaningOf(parseForwarded(raw).requests[0]!));
    assert.equal(
      key('GET http://A.test:80/x HTTP/1.1\r\n\r\n'),
      key('GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n'),
    );
    assert.equal(
      key('GET http://a.test?q HTTP/1.1\r\n\r\n'),
      key('GET /?q HTTP/1.1\r\nHost: a.test\r\n\r\n'),
    );
    assert.notEqual(
      key('GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n'),
      key('GET /y HTTP/1.1\r\nHost: a.test\r\n\r\n'),
    );
  });

  test('the accepted differences are documented', () => {
    for (const d of ACCEPTED) {
      assert.match(d.id, /^(nginx|haproxy)-[a-z0-9-]+$/);
      assert.ok(d.id.startsWith(d.proxy), d.id);
      assert.ok(d.reason.length > 60 && !d.reason.includes('\n'), d.id);
    }
    assert.equal(new Set(ACCEPTED.map((d) => d.id)).size, ACCEPTED.length);
    // docs/differential-fuzzing.md lists each one with its reason (as Markdown escapes it).
    const doc = readFileSync(new URL('../../docs/differential-fuzzing.md', import.meta.url), 'utf8');
    for (const d of ACCEPTED) {
      assert.ok(doc.includes(`| \`${d.id}\``), `${d.id} is in docs/differential-fuzzing.md`);
      assert.ok(
        doc.includes(d.reason.replace(/_/g, '\\_')),
        `the reason of ${d.id} in the docs is the one here`,
      );
    }
  });
});

describe('differential: zproxy vs nginx vs HAProxy', { skip }, () => {
  let fleet: ProxyFleet;

  before(async () => {
    assert.deepEqual(
      missing,
      [],
      'nginx and HAProxy are required (.ci/run installs nginx-light and haproxy)',
    );
    fleet = await startFleet(LANES);
  });
  after(async () => {
    await fleet?.close();
  });

  test('the harness reports a planted divergence (a proxy that frames CL.TE by Content-Length)', async () => {
    const upstream = new RecordingUpstream();
    await upstream.listen();
    const planted = await startPlantedProxy(upstream.port);
    try {
      const lane: Lane = { ...fleet.lanes[0]!, zproxy: { port: planted.port, upstream } };
      const clte = input(
        `POST /p HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG${SMUGGLED}`,
      );
      const j = judge(await runInput(lane, clte, CONFIRM_TIMING));
      assert.equal(j.verdict, 'zproxy-differs', JSON.stringify(j.summaries, null, 1));
      assert.equal(acceptedFor({ input: clte, judgement: j }), null, 'no accepted difference explains it');
      // The planted proxy forwarded a body HAProxy did not, and the smuggled request.
      assert.deepEqual(
        j.summaries.zproxy.requests.map((r) => [r.method, r.path, r.body]),
        [
          ['POST', '/p', '0\r\n\r\nG'],
          ['GET', '/smuggled', ''],
        ],
      );
      // A valid request through the planted proxy is not a finding: the harness does not cry wolf.
      const plain = judge(
        await runInput(lane, input('GET /ok HTTP/1.1\r\nHost: a.test\r\n\r\n'), FAST_TIMING),
      );
      assert.equal(plain.verdict, 'agree');
    } finally {
      await planted.close();
      await upstream.close();
    }
  });

  test('every accepted difference is real: that proxy departs from zproxy on its example, not on its control', async () => {
    const inputs = ACCEPTED.flatMap((d) => [input(d.example), input(d.control)]);
    const runs = await runInputs(fleet.lanes, inputs, CONFIRM_TIMING);
    ACCEPTED.forEach((d, i) => {
      const j = judge(runs[2 * i]!);
      const ctx: FindingContext = { input: inputs[2 * i]!, judgement: j };
      const example = (p: ProxyName) => j.summaries[p].requests.map(meaningKey);
      assert.equal(example('zproxy').length, 1, `${d.id}: zproxy forwards ${JSON.stringify(d.example)}`);
      assert.notDeepEqual(example(d.proxy), example('zproxy'), `${d.id}: ${d.proxy} departs from zproxy`);
      assert.ok(d.applies(ctx), `${d.id} applies to its example`);
      const c = judge(runs[2 * i + 1]!);
      const keys = (p: ProxyName) => c.summaries[p].requests.map(meaningKey);
      assert.equal(keys('zproxy').length, 1, `${d.id}: zproxy forwards the control`);
      assert.deepEqual(keys(d.proxy), keys('zproxy'), `${d.id}: ${d.proxy} forwards the control like zproxy`);
    });
  });

  test(`generated inputs: ${CORPUS.length} fixed + ${INPUTS} from seed ${SEED}`, async (t) => {
    const inputs = [...CORPUS, ...sampleInputs(SEED, INPUTS)];
    const report = await differentialRun({ fleet, inputs, timing: FAST_TIMING, seed: SEED });
    if (process.env.ZP_DIFF_REPORT)
      writeFileSync(process.env.ZP_DIFF_REPORT, `${JSON.stringify(report, null, 2)}\n`);
    const text = reportText(report);
    t.diagnostic(text);
    assert.equal(report.inputs, inputs.length, 'every input was run');
    assert.equal(report.strays, 0, 'no upstream connection outside an input window');
    const unexplained = report.findings.filter((f) => f.accepted === null);
    assert.deepEqual(
      unexplained.map((f) => `${f.verdict}: ${f.input}`),
      [],
      `findings without an accepted difference (fix zproxy or document the difference):\n${text}`,
    );
    // The run compared something: enough inputs were forwarded by all three, and enough refused by all.
    const v = report.verdicts;
    assert.ok((v.agree ?? 0) > INPUTS / 10, `agree: ${v.agree}`);
    assert.ok((v['all-refuse'] ?? 0) > INPUTS / 10, `all-refuse: ${v['all-refuse']}`);
    assert.ok((v['zproxy-stricter'] ?? 0) > 0, 'zproxy refused some inputs the others forwarded');
  });
});
