// `node bench/profile.ts [--main dist/cli/main.js] [--scenario small|close|h2c] [--path /small|/64k] [--kind heap|cpu]
// [--seconds 8] [--top 25]`: where one build of zproxy allocates (heap) or spends its CPU (cpu), per request.
// zproxy runs with the inspector on, in front of the bench's nginx origin (one worker, no access log,
// pinned as the bench pins it); after a warm-up, a profiler runs while wrk or h2load sends the load: the
// sampling heap profiler with collected objects included (young and old generation), or the CPU profiler.
// The samples are summed by function and divided by the requests served (bytes or µs per request), so two
// builds (`--main` of another checkout's build) can be set side by side. A profiled run is slower than a
// plain one: its figures are for comparing where, never for a report's req/s.
// See docs/performance.md, "Two builds side by side". Load goes to 127.0.0.1 only, bounded in time.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { startOrigin } from '../src/bench/compare/nginx.ts';
import { freePort, PinnedProcess } from '../src/bench/compare/proc.ts';
import { shebangNodeFlags } from '../src/bench/compare/zproxy.ts';
import { type LoadSpec, runLoad } from './lib/load.ts';
import type {
  CallFrame,
  CpuProfile,
  CpuProfileNode,
  SamplingHeapNode,
  SamplingHeapSample,
} from './lib/v8-profile.ts';
import { ensureBuilt, nodeBinary } from './lib/zproxy.ts';

const ROOT = resolve(import.meta.dirname, '..');

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
class Inspector {
  private next = 1;
  private readonly waiting = new Map<number, (result: unknown) => void>();
  private readonly ws: WebSocket;
  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data) => {
      const message = JSON.parse(String(data)) as { id?: number; result?: unknown; error?: unknown };
      if (message.id === undefined) return;
      const done = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      done?.(
        message.error === undefined
          ? message.result
          : Promise.reject(new Error(JSON.stringify(message.error))),
      );
    });
  }

  static async open(port: number): Promise<Inspector> {
    const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as {
      webSocketDebuggerUrl: string;
    }[];
    const ws = new WebSocket(list[0]!.webSocketDebuggerUrl, { maxPayload: 1 << 30 });
    await new Promise((ok, fail) => ws.once('open', ok).once('error', fail));
    return new Inspector(ws);
  }

  call(method: string, params: object = {}): Promise<unknown> {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((ok) => this.waiting.set(id, ok));
  }

  close(): void {
    this.ws.close();
  }
}

function where(frame: CallFrame): string {
  let url = frame.url;
  if (url === '') return `${frame.functionName || '(anonymous)'} (native)`;
  if (url.startsWith('file://')) url = relative(ROOT, new URL(url).pathname);
  return `${frame.functionName || '(anonymous)'} ${url}:${frame.lineNumber + 1}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      main: { type: 'string', default: join(ROOT, 'dist', 'cli', 'main.js') },
      scenario: { type: 'string', default: 'close' },
      path: { type: 'string', default: '/small' },
      seconds: { type: 'string', default: '8' },
      top: { type: 'string', default: '25' },
      /** For samples (cpu) or allocations (heap) whose function is this one, the callers (3 frames up) instead. */
      callers: { type: 'string', default: '' },
      kind: { type: 'string', default: 'heap' },
      interval: { type: 'string', default: '' },
      'proxy-cpu': { type: 'string', default: '0' },
      'load-cpu': { type: 'string', default: '1' },
    },
  });
  const main = resolve(values.main);
  if (main === join(ROOT, 'dist', 'cli', 'main.js')) ensureBuilt(ROOT);
  const scenario = values.scenario;
  const seconds = Number(values.seconds);
  const proxyCpu = Number(values['proxy-cpu']);
  const loadCpu = Number(values['load-cpu']);
  const tmp = mkdtempSync(join(tmpdir(), 'zproxy-heap-profile-'));
  chmodSync(tmp, 0o755);
  const origin = await startOrigin(tmp, loadCpu);
  const port = await freePort();
  const inspectPort = await freePort();
  const file = join(tmp, 'zproxy.json');
  writeFileSync(
    file,
    JSON.stringify({
      listeners: [{ host: '127.0.0.1', port }],
      protocols: ['http1', 'http2'],
      thread_count: 1,
      access_log: { enabled: false },
      upstream_defaults: { max_idle_per_target: 160 },
      routes: [{ path: '/', upstream: `http://127.0.0.1:${origin.port}` }],
    }),
  );
  const proxy = new PinnedProcess(
    'zproxy',
    proxyCpu,
    nodeBinary(ROOT),
    [
      ...shebangNodeFlags(main),
      values.kind === 'gc' ? '--trace-gc-nvp' : `--inspect=127.0.0.1:${inspectPort}`,
      main,
      'run',
      file,
    ],
    join(tmp, 'zproxy.log'),
  );
  try {
    await proxy.waitForPort(port, 15_000);
    const spec: LoadSpec =
      scenario === 'h2c'
        ? {
            tool: 'h2load',
            url: `http://127.0.0.1:${port}${values.path}`,
            clients: 16,
            streams: 10,
            logFile: null,
          }
        : {
            tool: 'wrk',
            url: `http://127.0.0.1:${port}${values.path}`,
            connections: 64,
            close: scenario === 'close',
          };
    const load = async (s: number): Promise<number> => (await runLoad(spec, s, loadCpu)).requests;
    await load(3); // warm-up: JIT, pools
    if (values.kind === 'gc') {
      // V8's --trace-gc-nvp line of every collection says what was allocated since the one before, what
      // was promoted, and the pause: summed over the collections while the load ran.
      const from = statSync(proxy.logFile).size;
      const requests = await load(seconds);
      const text = readFileSync(proxy.logFile).subarray(from).toString('latin1');
      let allocated = 0;
      let promoted = 0;
      let pauseMs = 0;
      let scavenges = 0;
      let full = 0;
      for (const line of text.split('\n')) {
        const kind = /\bgc=(\w+)/.exec(line)?.[1];
        if (kind === undefined) continue;
        if (kind === 's') scavenges++;
        else if (kind === 'mc' || kind === 'ms') full++;
        allocated += Number(/\ballocated=(\d+)/.exec(line)?.[1] ?? 0);
        promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
        pauseMs += Number(/\bpause=([\d.]+)/.exec(line)?.[1] ?? 0);
      }
      console.log(`${relative(ROOT, main) || main}: ${scenario}, ${requests} requests in ${seconds} s`);
      console.log(
        `per request: allocated ${(allocated / requests).toFixed(0)} B, promoted ${(promoted / requests).toFixed(1)} B, ` +
          `GC pause ${((pauseMs * 1000) / requests).toFixed(2)} µs; ${scavenges} scavenges, ${full} full collections`,
      );
      return;
    }
    if (values.kind === 'syscalls') {
      // strace counts the system calls of every thread of zproxy while the load runs.
      const out = join(tmp, 'strace.txt');
      const strace = spawn('strace', ['-c', '-f', '-o', out, '-p', String(proxy.pid)], { stdio: 'ignore' });
      await new Promise((ok) => setTimeout(ok, 500));
      const requests = await load(seconds);
      strace.kill('SIGINT');
      await new Promise((ok) => strace.once('exit', ok));
      console.log(`${relative(ROOT, main) || main}: ${scenario}, ${requests} requests in ${seconds} s`);
      for (const line of readFileSync(out, 'utf8').split('\n')) {
        const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/.exec(line);
        if (m !== null) console.log(`${(Number(m[1]) / requests).toFixed(3).padStart(9)} calls  ${m[2]}`);
      }
      return;
    }
    const inspector = await Inspector.open(inspectPort);
    const cpu = values.kind === 'cpu';
    const interval = Number(values.interval || (cpu ? 100 : 256));
    const bySite = new Map<string, number>();
    let total = 0;
    let requests: number;
    if (cpu) {
      await inspector.call('Profiler.enable');
      await inspector.call('Profiler.setSamplingInterval', { interval });
      await inspector.call('Profiler.start');
      requests = await load(seconds);
      const { profile } = (await inspector.call('Profiler.stop')) as { profile: CpuProfile };
      const byId = new Map<number, CpuProfileNode>();
      const parentOf = new Map<number, CpuProfileNode>();
      for (const node of profile.nodes) byId.set(node.id, node);
      for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node);
      for (let i = 0; i < profile.samples.length; i++) {
        const node = byId.get(profile.samples[i]!);
        if (node === undefined || node.callFrame.functionName === '(idle)') continue;
        let key = where(node.callFrame);
        if (values.callers !== '') {
          if ((node.callFrame.functionName || '(anonymous)') !== values.callers) continue;
          key = callersOf(node, parentOf);
        }
        const us = profile.timeDeltas[i] ?? 0;
        bySite.set(key, (bySite.get(key) ?? 0) + us);
        total += us;
      }
    } else {
      await inspector.call('HeapProfiler.enable');
      await inspector.call('HeapProfiler.collectGarbage');
      await inspector.call('HeapProfiler.startSampling', {
        samplingInterval: interval,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      requests = await load(seconds);
      const { profile } = (await inspector.call('HeapProfiler.stopSampling')) as {
        profile: { head: SamplingHeapNode; samples: SamplingHeapSample[] };
      };
      const byNode = new Map<number, SamplingHeapNode>();
      const parent = new Map<number, SamplingHeapNode>();
      const walk = (node: SamplingHeapNode): void => {
        byNode.set(node.id, node);
        for (const child of node.children) {
          parent.set(child.id, node);
          walk(child);
        }
      };
      walk(profile.head);
      for (const sample of profile.samples) {
        const node = byNode.get(sample.nodeId);
        if (node === undefined) continue;
        let key = where(node.callFrame);
        if (values.callers !== '') {
          if ((node.callFrame.functionName || '(anonymous)') !== values.callers) continue;
          key = callersOf(node, parent);
        }
        bySite.set(key, (bySite.get(key) ?? 0) + sample.size);
        total += sample.size;
      }
    }
    inspector.close();
    const unit = cpu ? 'µs' : 'B';
    const digits = cpu ? 3 : 1;
    console.log(`${relative(ROOT, main) || main}: ${scenario}, ${requests} requests in ${seconds} s`);
    console.log(
      cpu
        ? `busy CPU per request: ${(total / requests).toFixed(2)} µs (samples every ${interval} µs)`
        : `allocated per request: ${(total / requests).toFixed(0)} B (samples of ${interval} B)`,
    );
    const top = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top));
    for (const [site, amount] of top)
      console.log(`${(amount / requests).toFixed(digits).padStart(9)} ${unit}  ${site}`);
  } finally {
    await proxy.stop();
    await origin.stop();
  }
}

/** The three frames above `node`, nearest first (`parents` maps a node's id to its caller's node). */
function callersOf(node: { id: number }, parents: Map<number, { id: number; callFrame: CallFrame }>): string {
  const chain: string[] = [];
  for (let up = parents.get(node.id); up !== undefined && chain.length < 3; up = parents.get(up.id))
    chain.push(where(up.callFrame));
  return chain.join(' < ');
}

await main();
