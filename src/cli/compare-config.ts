/**
 * What `zproxy compare` takes from the cli: the user's --config read, validated and normalised (the
 * comparison runner in src/bench/compare does not load configs itself), and the demo's certificate maker.
 */
import { readFileSync } from 'node:fs';
import type { UserConfig } from '../bench/compare/plan.ts';
import { checkConfigFile } from '../config/load.ts';

/** The file as written and its routes as compare needs them; throws with every problem of an invalid file. */
export function loadCompareConfig(file: string): UserConfig {
  const checked = checkConfigFile(file);
  if (checked.config === null) throw new Error(`${file}: ${checked.issues.map((i) => i.message).join('; ')}`);
  const config = checked.config;
  return {
    file,
    raw: JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>,
    protocols: config.protocols,
    routes: config.routes.map((route) => ({
      path: route.path,
      host: route.host,
      methods: route.methods,
      targets: route.upstream.length,
      filters: route.middlewares.length + (route.inherit_middlewares ? config.middlewares.length : 0),
    })),
  };
}

export { makeDemoCertificate } from '../demo/certificate.ts';
