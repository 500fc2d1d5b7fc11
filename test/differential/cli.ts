/**
 * Long differential runs on demand:
 *
 *   npm run fuzz:diff -- --seed 7 --seconds 600            # generated inputs until the time is up
 *   npm run fuzz:diff -- --seed 7 --count 20000 --lanes 6  # a fixed number of inputs
 *   npm run fuzz:diff -- --input '"GET / HTTP/1.1\r\nHost: a\r\n\r\n"'   # one input (a JSON string)
 *
 * Inputs come in batches of --batch (default 1000) generated from seeds seed, seed + 1, ...; the fixed
 * corpus goes first. Prints a line per batch and the text summary of the whole run; --out FILE writes
 * the JSON report. Exits 1 when a finding is not explained by an accepted difference. The seed of a
 * batch and its index reproduce an input; so does its escaped bytes, given to --input.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { acceptedFor, FINDING_VERDICTS, judge } from './compare.ts';
import { CONFIRM_TIMING, FAST_TIMING, runInput } from './harness.ts';
import { CORPUS, type FuzzInput, sampleInputs } from './inputs.ts';
import { missingProxies, PROXIES, startFleet } from './proxies.ts';
import { type DifferentialReport, differentialRun, mergeReports, reportText } from './report.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    seconds: { type: 'string' },
    count: { type: 'string' },
    batch: { type: 'string', default: '1000' },
    lanes: { type: 'string', default: '4' },
    input: { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  console.log(
    'usage: npm run fuzz:diff -- [--seed N] [--seconds S | --count N] [--batch N] [--lanes N] [--out FILE]\n' +
      '       npm run fuzz:diff -- --input JSON_STRING',
  );
  process.exit(0);
}

const missing = missingProxies();
if (missing.length > 0) {
  console.error(`fuzz:diff: missing ${missing.join(', ')} (apt-get install nginx-light haproxy)`);
  process.exit(2);
}

const lanes = Number(values.lanes);
const fleet = await startFleet(values.input === undefined ? lanes : 1);
let exitCode = 0;
try {
  if (values.input !== undefined) {
    const input: FuzzInput = { family: 'cli', bytes: JSON.parse(values.input) as string };
    const j = judge(await runInput(fleet.lanes[0]!, input, CONFIRM_TIMING));
    console.log(`verdict: ${j.verdict}${j.othersDisagree ? ' (nginx and HAProxy disagree)' : ''}`);
    if (FINDING_VERDICTS.includes(j.verdict)) {
      const ids = acceptedFor({ input, judgement: j });
      console.log(ids === null ? 'finding: unexplained' : `finding: accepted (${ids.join(', ')})`);
    }
    for (const p of PROXIES) {
      const s = j.summaries[p];
      console.log(
        `${p}: client ${s.client.statuses.join(',') || 'none'} (${s.client.end}, ${s.client.elapsedMs} ms)`,
      );
      for (const line of s.forwardedLines) console.log(`  forwarded ${line}`);
      for (const m of s.requests) console.log(`  meaning ${JSON.stringify(m)}`);
      for (const u of s.undelimited) console.log(`  undelimited ${u}`);
    }
  } else {
    const seed = Number(values.seed);
    const batch = Number(values.batch);
    const stopAt =
      values.seconds === undefined ? Number.POSITIVE_INFINITY : Date.now() + Number(values.seconds) * 1000;
    const limit = values.count === undefined ? Number.POSITIVE_INFINITY : Number(values.count);
    if (!Number.isFinite(stopAt) && !Number.isFinite(limit)) {
      console.error('fuzz:diff: give --seconds or --count (or --input)');
      process.exit(2);
    }
    const reports: DifferentialReport[] = [];
    let sent = 0;
    for (let k = 0; sent < limit && Date.now() < stopAt; k++) {
      const n = Math.min(batch, limit - sent);
      const inputs = [...(k === 0 ? CORPUS : []), ...sampleInputs(seed + k, n)];
      const report = await differentialRun({ fleet, inputs, timing: FAST_TIMING, seed: seed + k, stopAt });
      reports.push(report);
      sent += report.inputs;
      const unexplained = report.findings.filter((f) => f.accepted === null).length;
      console.log(
        `batch seed ${seed + k}: ${report.inputs} inputs, ${report.inputsPerSecond}/s, ` +
          `${report.findings.length} findings (${unexplained} unexplained)`,
      );
    }
    const total = mergeReports(reports);
    console.log(reportText(total));
    if (values.out !== undefined) writeFileSync(values.out, `${JSON.stringify(total, null, 2)}\n`);
    if (total.findings.some((f) => f.accepted === null)) exitCode = 1;
  }
} finally {
  await fleet.close();
}
process.exit(exitCode);
