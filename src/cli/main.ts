#!/usr/bin/env node
/**
 * The `zproxy` command (package bin). It first makes sure that it runs with its V8 flags (see
 * v8-flags.ts: a process started without them replaces itself with one that has them), then runs the
 * command. `npm start` and the benchmark pass the same flags on the command line.
 */
import { ensureV8Flags } from './v8-flags.ts';

ensureV8Flags();

const { main } = await import('./cli.ts');
process.exitCode = await main(process.argv.slice(2));
