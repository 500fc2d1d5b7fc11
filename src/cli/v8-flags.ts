/**
 * The V8 flags the `zproxy` command runs with, and how it gets them without `env -S` in its shebang.
 *
 * They bound peak memory: a small young generation (2 MiB semi-spaces) and a slower growing old
 * generation (20 % steps instead of V8's default factor). Under connection churn Node's socket wrappers
 * survive scavenges and are promoted, and with V8's defaults the heap then grows to over 200 MiB around
 * 13 MiB of live objects; with these flags peak RSS stays near 90 MiB at no measured cost in req/s
 * (docs/performance.md). `--no-maglev` leaves out V8's middle compiler tier (hot code goes from the
 * baseline tiers to TurboFan): a worker neither runs Maglev's compiler code nor keeps Maglev's code,
 * about 4 MiB less peak RSS under the HTTP/1.1 bench, at the same req/s per core (docs/architecture.md,
 * "Workers"). V8 takes them only when the process starts (`v8.setFlagsFromString` is too late
 * for the semi-spaces, and NODE_OPTIONS refuses `--heap-growing-percent`), and `#!/usr/bin/env -S node
 * …` needs an `env` with `-S` (BusyBox's, on Alpine, has none). So the bin's shebang is a plain
 * `#!/usr/bin/env node`, and when the flags are missing the process replaces itself (execve: the same
 * PID, so service managers and signals see no difference) with `node <flags> <same arguments>`.
 */

export const V8_FLAGS: readonly string[] = [
  '--max-semi-space-size=2',
  '--heap-growing-percent=20',
  '--no-maglev',
];

/** What a flag sets: `--max-semi-space-size` for `--max_semi_space_size=16`, `--maglev` for `--no-maglev`. */
function flagName(flag: string): string {
  const equals = flag.indexOf('=');
  return (equals === -1 ? flag : flag.slice(0, equals)).replaceAll('_', '-').replace(/^--no-/, '--');
}

/** The flags of V8_FLAGS that `execArgv` does not set already (a flag given by hand wins). */
export function missingV8Flags(execArgv: readonly string[]): string[] {
  return V8_FLAGS.filter((flag) => {
    const name = flagName(flag);
    return !execArgv.some((arg) => arg.startsWith('--') && flagName(arg) === name);
  });
}

/**
 * Runs this process again with the missing flags, in place (`process.execve`, Node 22.15 and later,
 * not on Windows). Where that is not possible, or ZPROXY_V8_FLAGS=off, it goes on without them.
 */
export function ensureV8Flags(): void {
  const missing = missingV8Flags(process.execArgv);
  if (missing.length === 0 || process.env.ZPROXY_V8_FLAGS === 'off') return;
  if (typeof process.execve !== 'function' || process.platform === 'win32') return;
  const script = process.argv[1];
  if (script === undefined) return;
  process.execve(
    process.execPath,
    [process.execPath, ...missing, ...process.execArgv, script, ...process.argv.slice(2)],
    process.env,
  );
}
