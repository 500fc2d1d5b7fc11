// Two builds of zproxy for the groups that compare them (bench/builds.ts, bench/instance.ts): `before` is
// a commit, checked out with `git archive` into a temporary folder and built there with `npm run build`
// (this checkout's node_modules); `after` is this checkout's dist/ or another commit built the same way.
import { execSync, spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';

export type Variant = 'before' | 'after';

/** The options of a group that compares two builds (parseGroupOptions's `extra`). */
export const TWO_BUILDS_OPTIONS = {
  before: { type: 'string' },
  after: { type: 'string' },
} as const;

export interface TwoBuilds {
  /** Short commit ids; `after` ends with `+` when it is this checkout and src/ has uncommitted changes. */
  readonly beforeCommit: string;
  readonly afterCommit: string;
  /** --after as given, null for this checkout. */
  readonly afterRef: string | null;
}

function git(root: string, args: string): string {
  return execSync(`git ${args}`, { cwd: root }).toString().trim();
}

/** The commits --before REF and --after REF (or this checkout) name. */
export function resolveBuilds(root: string, before: string, after: string | null): TwoBuilds {
  return {
    beforeCommit: git(root, `rev-parse --short ${before}`),
    afterRef: after,
    afterCommit:
      after !== null
        ? git(root, `rev-parse --short ${after}`)
        : `${git(root, 'rev-parse --short HEAD')}${git(root, 'status --porcelain --untracked-files=no src') === '' ? '' : '+'}`,
  };
}

/** `ref` checked out into `dir` and built; its dist/cli/main.js. */
export function buildRef(root: string, ref: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  execSync(`git archive ${ref} | tar -x -C ${JSON.stringify(dir)}`, { cwd: root, stdio: 'inherit' });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  const built = spawnSync('npm', ['run', 'build'], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] });
  if (built.status !== 0) throw new Error(`npm run build failed for ${ref}`);
  return join(dir, 'dist', 'cli', 'main.js');
}

/** Each build's dist/cli/main.js, the commits built in `tmp`/before and `tmp`/after. */
export function buildBoth(root: string, builds: TwoBuilds, tmp: string): Record<Variant, string> {
  return {
    before: buildRef(root, builds.beforeCommit, join(tmp, 'before')),
    after:
      builds.afterRef === null
        ? join(root, 'dist', 'cli', 'main.js')
        : buildRef(root, builds.afterCommit, join(tmp, 'after')),
  };
}
