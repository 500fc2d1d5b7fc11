/**
 * One differential run from inputs to a report: send every input through the lanes, judge each one,
 * re-run every candidate finding with generous timing (a finding must hold when nobody is in a hurry),
 * then count outcomes per class and list the findings, as JSON and as a short text.
 */
import {
  acceptedFor,
  FINDING_VERDICTS,
  type Judgement,
  judge,
  type ProxySummary,
  type Verdict,
} from './compare.ts';
import { CONFIRM_TIMING, type InputRun, runInputs, type Timing } from './harness.ts';
import type { FuzzInput } from './inputs.ts';
import { PROXIES, type ProxyFleet, type ProxyName } from './proxies.ts';

export interface ProxyReport {
  /** Status codes the client received ("none" when nothing), then how the wait ended. */
  client: string;
  forwarded: string[];
  meaning: ProxySummary['requests'];
  undelimited?: string[];
  /** Upstream connections the proxy still held open when the input was over. */
  keptOpen?: number;
}

export interface Finding {
  index: number;
  family: string;
  verdict: Verdict;
  /** The input as a JSON string literal (latin1 bytes as \u00XX escapes). */
  input: string;
  /** The ids of the accepted differences that explain it (one per other proxy that differs), or null. */
  accepted: string[] | null;
  proxies: Record<ProxyName, ProxyReport>;
}

export interface DifferentialReport {
  seed: number | null;
  inputs: number;
  durationMs: number;
  inputsPerSecond: number;
  lanes: number;
  timing: Timing;
  versions: Record<ProxyName, string>;
  /** Inputs per verdict (after confirmation). */
  verdicts: Record<string, number>;
  /** Inputs per family. */
  families: Record<string, number>;
  /** nginx and HAProxy forwarded different things. */
  othersDisagree: number;
  /** Client-visible outcome classes per proxy ("2xx/closed", "4xx/closed", "none/idle", ...). */
  clientOutcomes: Record<ProxyName, Record<string, number>>;
  /** Accepted differences: how many inputs each explained. */
  accepted: Record<string, number>;
  /** Candidate findings that did not hold when re-run with CONFIRM_TIMING (timing artefacts). */
  unconfirmed: number;
  /** Upstream connections a proxy opened outside any input's window (should be 0). */
  strays: number;
  /** The first bytes of each stray connection, by proxy. */
  strayBytes: string[];
  findings: Finding[];
}

function clientClass(s: ProxySummary): string {
  const finals = s.client.statuses.filter((x) => x >= 200).map((x) => `${Math.floor(x / 100)}xx`);
  const what = finals.length === 0 ? 'none' : [...new Set(finals)].join('+');
  return `${what}/${s.client.end}`;
}

function proxyReport(s: ProxySummary): ProxyReport {
  const r: ProxyReport = {
    client: `${s.client.statuses.join(',') || 'none'} (${s.client.end} after ${s.client.elapsedMs} ms)`,
    forwarded: s.forwardedLines,
    meaning: s.requests,
  };
  if (s.undelimited.length > 0) r.undelimited = s.undelimited;
  if (s.keptOpen > 0) r.keptOpen = s.keptOpen;
  return r;
}

export interface RunOptions {
  fleet: ProxyFleet;
  inputs: readonly FuzzInput[];
  timing: Timing;
  seed: number | null;
  /** Date.now() value after which no new input starts (long runs). */
  stopAt?: number;
}

export async function differentialRun(o: RunOptions): Promise<DifferentialReport> {
  const started = Date.now();
  const runs = await runInputs(o.fleet.lanes, o.inputs, o.timing, o.stopAt);
  const done: { index: number; input: FuzzInput; judgement: Judgement }[] = [];
  for (let i = 0; i < runs.length; i++) {
    const run = runs[i];
    if (run !== undefined) done.push({ index: i, input: o.inputs[i]!, judgement: judge(run) });
  }
  // Candidate findings again, slowly: a finding must not be an artefact of the fast timing.
  const candidates = done.filter((d) => FINDING_VERDICTS.includes(d.judgement.verdict));
  let unconfirmed = 0;
  if (candidates.length > 0) {
    const again = await runInputs(
      o.fleet.lanes,
      candidates.map((c) => c.input),
      CONFIRM_TIMING,
    );
    candidates.forEach((c, k) => {
      const j = judge(again[k] as InputRun);
      if (!FINDING_VERDICTS.includes(j.verdict)) unconfirmed++;
      c.judgement = j;
    });
  }
  const durationMs = Date.now() - started;

  const verdicts: Record<string, number> = {};
  const families: Record<string, number> = {};
  const accepted: Record<string, number> = {};
  const clientOutcomes = Object.fromEntries(PROXIES.map((p) => [p, {}])) as Record<
    ProxyName,
    Record<string, number>
  >;
  let othersDisagree = 0;
  const findings: Finding[] = [];
  for (const d of done) {
    const j = d.judgement;
    verdicts[j.verdict] = (verdicts[j.verdict] ?? 0) + 1;
    const family = d.input.family.startsWith('corpus:') ? 'corpus' : d.input.family;
    families[family] = (families[family] ?? 0) + 1;
    if (j.othersDisagree) othersDisagree++;
    for (const p of PROXIES) {
      const k = clientClass(j.summaries[p]);
      clientOutcomes[p][k] = (clientOutcomes[p][k] ?? 0) + 1;
    }
    if (!FINDING_VERDICTS.includes(j.verdict)) continue;
    const rules = acceptedFor({ input: d.input, judgement: j });
    for (const id of rules ?? []) accepted[id] = (accepted[id] ?? 0) + 1;
    findings.push({
      index: d.index,
      family: d.input.family,
      verdict: j.verdict,
      input: JSON.stringify(d.input.bytes),
      accepted: rules,
      proxies: {
        zproxy: proxyReport(j.summaries.zproxy),
        nginx: proxyReport(j.summaries.nginx),
        haproxy: proxyReport(j.summaries.haproxy),
      },
    });
  }
  let strays = 0;
  const strayBytes: string[] = [];
  for (const lane of o.fleet.lanes) {
    for (const p of PROXIES) {
      strays += lane[p].upstream.strays.length;
      for (const c of lane[p].upstream.strays)
        strayBytes.push(`${p}: ${JSON.stringify(c.bytes.slice(0, 200))}`);
    }
  }
  return {
    seed: o.seed,
    inputs: done.length,
    durationMs,
    inputsPerSecond: Math.round((done.length / durationMs) * 10000) / 10,
    lanes: o.fleet.lanes.length,
    timing: o.timing,
    versions: o.fleet.versions,
    verdicts,
    families,
    othersDisagree,
    clientOutcomes,
    accepted,
    unconfirmed,
    strays,
    strayBytes,
    findings,
  };
}

/** The short text summary. */
export function reportText(r: DifferentialReport): string {
  const lines: string[] = [];
  const unexplained = r.findings.filter((f) => f.accepted === null);
  lines.push(
    `differential run: ${r.inputs} inputs (seed ${r.seed ?? '-'}) in ${(r.durationMs / 1000).toFixed(1)} s, ` +
      `${r.inputsPerSecond} inputs/s, ${r.lanes} lanes`,
  );
  lines.push(`  ${r.versions.nginx}; ${r.versions.haproxy.split(' - ')[0]}; ${r.versions.zproxy}`);
  lines.push(
    `  verdicts: ${Object.entries(r.verdicts)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`,
  );
  lines.push(
    `  nginx and HAProxy disagree on ${r.othersDisagree}; unconfirmed candidates ${r.unconfirmed}; strays ${r.strays}`,
  );
  lines.push(
    `  findings: ${r.findings.length} (accepted ${r.findings.length - unexplained.length}: ${
      Object.entries(r.accepted)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ') || 'none'
    }; unexplained ${unexplained.length})`,
  );
  for (const s of r.strayBytes) lines.push(`  stray upstream connection from ${s}`);
  for (const f of unexplained.slice(0, 20)) {
    lines.push(`  - #${f.index} ${f.family} ${f.verdict}: ${f.input.slice(0, 300)}`);
    for (const p of PROXIES) {
      const pr = f.proxies[p];
      lines.push(`      ${p.padEnd(7)} client ${pr.client}; forwarded ${JSON.stringify(pr.forwarded)}`);
    }
  }
  if (unexplained.length > 20) lines.push(`  ... and ${unexplained.length - 20} more (see the JSON report)`);
  return lines.join('\n');
}

function addCounts(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Several runs (the CLI's batches) as one report: counts summed, findings concatenated. */
export function mergeReports(reports: readonly DifferentialReport[]): DifferentialReport {
  const first = reports[0]!;
  const merged: DifferentialReport = {
    ...first,
    inputs: 0,
    durationMs: 0,
    verdicts: {},
    families: {},
    othersDisagree: 0,
    clientOutcomes: Object.fromEntries(PROXIES.map((p) => [p, {}])) as Record<
      ProxyName,
      Record<string, number>
    >,
    accepted: {},
    unconfirmed: 0,
    strays: 0,
    strayBytes: [],
    findings: [],
  };
  for (const r of reports) {
    merged.inputs += r.inputs;
    merged.durationMs += r.durationMs;
    addCounts(merged.verdicts, r.verdicts);
    addCounts(merged.families, r.families);
    for (const p of PROXIES) addCounts(merged.clientOutcomes[p], r.clientOutcomes[p]);
    addCounts(merged.accepted, r.accepted);
    merged.othersDisagree += r.othersDisagree;
    merged.unconfirmed += r.unconfirmed;
    // The fleet counts strays since it started: the last report has them all.
    merged.strays = r.strays;
    merged.strayBytes = r.strayBytes;
    merged.findings.push(...r.findings);
  }
  merged.inputsPerSecond = Math.round((merged.inputs / merged.durationMs) * 10000) / 10;
  return merged;
}
