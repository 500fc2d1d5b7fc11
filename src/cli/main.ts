#!/usr/bin/env -S node --max-semi-space-size=2 --heap-growing-percent=20
/**
 * The `zproxy` command (package bin).
 *
 * The shebang's V8 flags bound peak memory: a small young generation (2 MiB semi-spaces) and a slower
 * growing old generation (20 % steps instead of V8's default factor). Under connection churn Node's
 * socket wrappers survive scavenges and are promoted, and with V8's defaults the heap then grows to over
 * 200 MiB around 13 MiB of live objects; with these flags peak RSS stays near 90 MiB at no measured cost
 * in req/s (docs/performance.md). `npm start` and the benchmark read the same flags from this line.
 */
import { parseCommandLine } from './args.ts';
import {
  benchCommand,
  checkCommand,
  explainCommand,
  type Output,
  reloadCommand,
  runCommand,
} from './commands.ts';
import { packageVersion } from './package-files.ts';
import { USAGE } from './usage.ts';

const output: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

async function main(argv: readonly string[]): Promise<number> {
  const command = parseCommandLine(argv);
  switch (command.kind) {
    case 'help':
      output.out(USAGE);
      return 0;
    case 'version':
      output.out(`${packageVersion()}\n`);
      return 0;
    case 'usage-error':
      output.err(`zproxy: ${command.message}\n\n${USAGE}`);
      return 2;
    case 'check':
      return checkCommand(command.config, command.json, output);
    case 'run':
      return runCommand(command.config, command.logLevel, output);
    case 'reload':
      return reloadCommand(command.config, command.json, output);
    case 'bench':
      return benchCommand(command.options, output);
    case 'explain':
      return explainCommand(command.config, command.request, command.json, output);
  }
}

process.exitCode = await main(process.argv.slice(2));
