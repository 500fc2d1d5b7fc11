/** The loader process of `loadConfigIsolated`: loads the config file named by its argument, prints the result as JSON. */
import { ConfigError } from './errors.ts';
import { loadConfigFileWithWarnings } from './load.ts';
import type { LoadReply } from './load-isolated.ts';

let reply: LoadReply;
try {
  const loaded = loadConfigFileWithWarnings(process.argv[2]!);
  reply = { ok: true, config: loaded.config, warnings: loaded.warnings };
} catch (error) {
  reply =
    error instanceof ConfigError
      ? { ok: false, issues: [...error.issues], source: error.source }
      : { ok: false, failure: error instanceof Error ? error.message : String(error) };
}
process.stdout.write(JSON.stringify(reply));
