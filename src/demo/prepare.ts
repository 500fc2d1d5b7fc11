/**
 * What `zproxy run` without a configuration does before it starts (`npm start`): writes the demo's
 * throw-away certificate and a copy of `examples/demo.json` whose TLS listeners point at it into a new
 * temporary folder, removed when the process exits. The copy is the configuration zproxy then runs (its
 * path is in the `demo` log line, so `zproxy explain` and `zproxy check` can be tried on it).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeDemoCertificate } from './certificate.ts';

export const DEMO_CERT_FILE = 'demo-localhost.crt';
export const DEMO_KEY_FILE = 'demo-localhost.key';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Points every enabled TLS block of the config (top level and listeners) at the generated files. */
export function withDemoCertificate(config: Json, dir: string): Json {
  const point = (tls: unknown): unknown =>
    isObject(tls) && tls.enabled === true
      ? { ...tls, cert_file: join(dir, DEMO_CERT_FILE), key_file: join(dir, DEMO_KEY_FILE) }
      : tls;
  const { $schema: _schema, ...rest } = config;
  const out: Json = { ...rest };
  if (out.tls !== undefined) out.tls = point(out.tls);
  if (Array.isArray(out.listeners))
    out.listeners = out.listeners.map((l: unknown) =>
      isObject(l) && l.tls !== undefined ? { ...l, tls: point(l.tls) } : l,
    );
  return out;
}

/** Writes the certificate, its key and the configuration; returns the configuration's path. */
export function prepareDemo(templatePath: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'zproxy-demo-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeDemoCertificate();
  writeFileSync(join(dir, DEMO_CERT_FILE), cert);
  writeFileSync(join(dir, DEMO_KEY_FILE), key, { mode: 0o600 });
  const config = withDemoCertificate(JSON.parse(readFileSync(templatePath, 'utf8')) as Json, dir);
  const path = join(dir, 'zproxy.json');
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`);
  return path;
}
