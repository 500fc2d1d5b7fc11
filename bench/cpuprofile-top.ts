// `node bench/cpuprofile-top.ts FILE.cpuprofile [N]`: the N (default 15) functions with the most self
// time in a V8 CPU profile (`node --cpu-prof`), as a share of the active (non-idle) samples, plus the
// share of each source file. See docs/performance.md, "Profiling zproxy".
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import type { CallFrame, CpuProfile } from './lib/v8-profile.ts';

/** Where a function lives, short: `src/http2/stream-exchange.ts:120`, `node:internal/…`, or `(native)`. */
function location(frame: CallFrame): string {
  if (frame.url === '') return '(native)';
  let url = frame.url;
  if (url.startsWith('file://')) url = relative(process.cwd(), new URL(url).pathname);
  return `${url}:${frame.lineNumber + 1}`;
}

function fileOf(frame: CallFrame): string {
  if (frame.url === '') return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (frame.url.startsWith('file://')) return relative(process.cwd(), new URL(frame.url).pathname);
  return frame.url;
}

function main(): number {
  const [file, countText] = process.argv.slice(2);
  if (file === undefined) {
    console.error('usage: node bench/cpuprofile-top.ts FILE.cpuprofile [N]');
    return 1;
  }
  const count = countText === undefined ? 15 : Number(countText);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map<number, CallFrame>();
  for (const node of profile.nodes) frames.set(node.id, node.callFrame);
  // A sample's time is the delta to the next sample (V8 records the delta before each sample).
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let active = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const frame = frames.get(id)!;
    if (frame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    active += us;
    const key = `${frame.functionName || '(anonymous)'}  ${location(frame)}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + us);
    const fileKey = fileOf(frame);
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
  }
  const percent = (us: number): string => `${((us / active) * 100).toFixed(1).padStart(5)} %`;
  console.log(
    `${file}: ${(active / 1e6).toFixed(2)} s active, ${(idle / 1e6).toFixed(2)} s idle; shares of active time\n`,
  );
  console.log(`Top ${count} functions by self time:`);
  for (const [key, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    console.log(`${percent(us)}  ${key}`);
  }
  console.log('\nBy file:');
  for (const [key, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    console.log(`${percent(us)}  ${key}`);
  }
  return 0;
}

process.exitCode = main();
