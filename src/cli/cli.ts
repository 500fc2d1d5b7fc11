/**
 * The `zproxy` commands: parses the command line and runs one (src/cli/main.ts is the bin).
 */
import { parseCommandLine } from './args.ts';
import {
  benchCommand,
  checkCommand,
  compareCommand,
  explainCommand,
  healthCommand,
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

export async function main(argv: readonly string[]): Promise<number> {
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
      return runCommand(command.config, command.logLevel, output, command.watch);
    case 'reload':
      return reloadCommand(command.config, command.json, output);
    case 'health':
      return healthCommand(command.config, output);
    case 'bench':
      return benchCommand(command.options, output);
    case 'compare':
      return compareCommand(command.options, argv, output);
    case 'compare-help': {
      const { COMPARE_USAGE } = await import('../bench/compare/options.ts');
      output.out(COMPARE_USAGE);
      return 0;
    }
    case 'explain':
      return explainCommand(command.config, command.request, command.json, output);
  }
}
