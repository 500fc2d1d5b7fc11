/**
 * A route's `upstream` as written: one URL, or a list whose entries are URLs or `{url, weight, backup}`
 * objects. The one place that reads that shape (normalise, the semantic checks and the warnings use it).
 */
import type { RouteInput } from './schema.ts';

export interface TargetEntry {
  readonly url: string;
  readonly weight: number | undefined;
  readonly backup: boolean | undefined;
  /** Where the URL is written, below the route: `['upstream']`, `['upstream', 1]` or `['upstream', 1, 'url']`. */
  readonly at: readonly (string | number)[];
}

/** The targets of a route's `upstream` (entries that are neither a string nor an object with a string `url` are left out). */
export function targetEntries(upstream: RouteInput['upstream'] | unknown): TargetEntry[] {
  if (typeof upstream === 'string')
    return [{ url: upstream, weight: undefined, backup: undefined, at: ['upstream'] }];
  if (!Array.isArray(upstream)) return [];
  const entries: TargetEntry[] = [];
  upstream.forEach((entry: unknown, i) => {
    if (typeof entry === 'string')
      entries.push({ url: entry, weight: undefined, backup: undefined, at: ['upstream', i] });
    else if (
      entry !== null &&
      typeof entry === 'object' &&
      typeof (entry as { url?: unknown }).url === 'string'
    ) {
      const e = entry as { url: string; weight?: number; backup?: boolean };
      entries.push({ url: e.url, weight: e.weight, backup: e.backup, at: ['upstream', i, 'url'] });
    }
  });
  return entries;
}
