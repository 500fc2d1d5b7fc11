/**
 * The layers and their one direction (docs/architecture.md, "Layers and their one direction"): every
 * import of every file under src/ (static, type-only and dynamic import() of a literal path) is checked
 * against the rules below, and a break fails the build. Type-only imports count too, except where the
 * rules say (the flow and the engines read the runtime's type: the runtime is built above them).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

interface Import {
  /** The importing file, relative to src/ (`http1/parse-head.ts`). */
  readonly from: string;
  /** The imported file, relative to src/. */
  readonly to: string;
  readonly typeOnly: boolean;
  readonly line: number;
}

/** The layer of a file: its top folder under src/, or its name for a file at the top (`errors.ts`). */
function layerOf(file: string): string {
  const slash = file.indexOf('/');
  return slash === -1 ? file.replace(/\.ts$/, '') : file.slice(0, slash);
}

const IMPORT = /^\s*(import|export)\s+(type\s+)?[^'"]*?\sfrom\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/gm;

function importsOf(file: string): Import[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[3] ?? m[4]!;
    if (!spec.startsWith('.')) continue;
    const to = relative(SRC, resolve(dirname(join(SRC, file)), spec));
    const line = text.slice(0, m.index).split('\n').length;
    out.push({ from: file, to, typeOnly: m[2] !== undefined, line });
  }
  return out;
}

function allFiles(): string[] {
  return readdirSync(SRC, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(SRC, join(e.parentPath, e.name)));
}

const ENGINES = ['http1', 'http2', 'websocket'];

/**
 * What each layer may not import (the layers of the files it names). Those not listed import freely
 * downwards; `cli`, `server` and `runtime` sit at the top.
 */
const FORBIDDEN: Readonly<Record<string, readonly string[]>> = {
  http1: ['http2', 'server', 'runtime', 'cli'],
  http2: ['http1', 'server', 'runtime', 'cli'],
  websocket: ['server', 'runtime', 'cli', 'proxy', 'filters', 'pipeline'],
  filters: [...ENGINES, 'server', 'proxy', 'runtime', 'cli'],
  pipeline: [...ENGINES, 'filters', 'server', 'proxy', 'runtime', 'cli'],
  proxy: [...ENGINES, 'server', 'runtime', 'cli', 'filters'],
  upstream: [...ENGINES, 'proxy', 'server', 'runtime', 'cli', 'filters', 'pipeline'],
  router: [...ENGINES, 'proxy', 'server', 'runtime', 'cli', 'filters', 'pipeline', 'upstream', 'config'],
  http: [
    ...ENGINES,
    'proxy',
    'server',
    'runtime',
    'cli',
    'filters',
    'pipeline',
    'upstream',
    'router',
    'config',
  ],
  util: [
    ...ENGINES,
    'proxy',
    'server',
    'runtime',
    'cli',
    'filters',
    'pipeline',
    'upstream',
    'router',
    'config',
    'http',
  ],
  errors: [
    ...ENGINES,
    'proxy',
    'server',
    'runtime',
    'cli',
    'filters',
    'pipeline',
    'upstream',
    'router',
    'config',
    'http',
    'util',
  ],
  observe: [...ENGINES, 'proxy', 'server', 'runtime', 'cli', 'filters', 'pipeline', 'upstream'],
  // The load generator is a client: besides node and npm modules it may use util/ only.
  bench: [
    ...ENGINES,
    'proxy',
    'server',
    'runtime',
    'cli',
    'filters',
    'pipeline',
    'upstream',
    'router',
    'config',
    'http',
    'observe',
    'errors',
    'exchange',
    'index',
    'demo',
  ],
};

/** config/ is a leaf: it loads, validates and normalises, and imports nothing but errors.ts and itself. */
const CONFIG_MAY_IMPORT = new Set(['config', 'errors']);

/** Type-only imports a rule lets through, as `from-layer -> to-layer`. */
const TYPE_ONLY_ALLOWED = new Set(['proxy -> runtime', 'http1 -> runtime', 'http2 -> runtime']);

/**
 * Files a rule lets through, as `from-layer -> file`: the load generator's HTTP/2 client encodes and
 * decodes with HTTP/2's wire codecs (HPACK, the frame constants), which import nothing and know nothing
 * of serving; the upstream's HTTP/2 stream (on node:http2) reads RFC 9113's error codes and flags from the
 * frame constants too. The rest of http2/ stays out of their reach.
 */
const FILES_ALLOWED = new Set([
  'bench -> http2/hpack.ts',
  'bench -> http2/frames.ts',
  'upstream -> http2/frames.ts',
]);

function breaches(imports: readonly Import[]): string[] {
  const out: string[] = [];
  for (const imp of imports) {
    const from = layerOf(imp.from);
    const to = layerOf(imp.to);
    if (from === to) continue;
    const where = `src/${imp.from}:${imp.line} imports src/${imp.to}`;
    if (from === 'config') {
      if (!CONFIG_MAY_IMPORT.has(to)) out.push(`${where}: config/ imports only errors.ts`);
      continue;
    }
    if (FORBIDDEN[from]?.includes(to) !== true) continue;
    if (imp.typeOnly && TYPE_ONLY_ALLOWED.has(`${from} -> ${to}`)) continue;
    if (FILES_ALLOWED.has(`${from} -> ${imp.to}`)) continue;
    out.push(`${where}: ${from}/ may not import ${to}/`);
  }
  return out;
}

test('every import under src/ points the way the layers allow', () => {
  const files = allFiles();
  assert.ok(files.length > 80, 'src/ read');
  const imports = files.flatMap(importsOf);
  assert.ok(imports.length > 300, 'imports found');
  assert.deepEqual(breaches(imports), []);
});

test("the wire codecs the load generator may use import nothing of zproxy's", () => {
  for (const allowed of FILES_ALLOWED) {
    const file = allowed.slice(allowed.indexOf('-> ') + 3);
    assert.deepEqual(importsOf(file), [], `${file} imports nothing`);
  }
});

test('the rules catch what they must: an engine importing the other, a filter importing an engine, config importing above it, the load generator importing the server', () => {
  const planted: Import[] = [
    { from: 'http1/x.ts', to: 'http2/frames.ts', typeOnly: true, line: 1 },
    { from: 'http2/x.ts', to: 'http1/parse-head.ts', typeOnly: false, line: 1 },
    { from: 'filters/cors.ts', to: 'http1/parse-head.ts', typeOnly: false, line: 1 },
    { from: 'filters/cors.ts', to: 'server/run.ts', typeOnly: true, line: 1 },
    { from: 'config/schema.ts', to: 'router/router.ts', typeOnly: true, line: 1 },
    { from: 'config/schema.ts', to: 'pipeline/chain.ts', typeOnly: false, line: 1 },
    { from: 'pipeline/registry.ts', to: 'filters/cors.ts', typeOnly: false, line: 1 },
    { from: 'proxy/flow.ts', to: 'runtime/compile.ts', typeOnly: false, line: 1 },
    { from: 'bench/http1-client.ts', to: 'http1/parse-head.ts', typeOnly: true, line: 1 },
    { from: 'bench/runner.ts', to: 'server/run.ts', typeOnly: false, line: 1 },
    { from: 'bench/http2-client.ts', to: 'http2/server-connection.ts', typeOnly: false, line: 1 },
    { from: 'http1/x.ts', to: 'http2/hpack.ts', typeOnly: false, line: 1 },
  ];
  assert.equal(breaches(planted).length, planted.length, breaches(planted).join('\n'));
  assert.deepEqual(
    breaches([{ from: 'proxy/flow.ts', to: 'runtime/compile.ts', typeOnly: true, line: 1 }]),
    [],
    'the flow may read the runtime type',
  );
  assert.deepEqual(
    breaches([{ from: 'bench/runner.ts', to: 'util/deadlines.ts', typeOnly: false, line: 1 }]),
    [],
    'the load generator may use util/',
  );
  assert.deepEqual(
    breaches([
      { from: 'bench/http2-client.ts', to: 'http2/hpack.ts', typeOnly: false, line: 1 },
      { from: 'bench/http2-client.ts', to: 'http2/frames.ts', typeOnly: false, line: 1 },
    ]),
    [],
    "the load generator may use HTTP/2's wire codecs",
  );
});
