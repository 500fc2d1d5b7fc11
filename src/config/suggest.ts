/**
 * "Did you mean ...?" for config errors: the valid name (key, enum value, middleware type) closest to a
 * misspelt one. Names are compared without regard to case, by Damerau–Levenshtein distance (the optimal
 * string alignment form: insertions, deletions, substitutions and swaps of two adjacent characters each
 * count as one edit).
 */

/** Edits between `a` and `b`; adjacent transpositions count as one. */
export function editDistance(a: string, b: string): number {
  // Three rows of the dynamic-programming table: two back (for transpositions), one back, current.
  let twoBack: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, twoBack[j - 2]! + 1);
      }
      current.push(best);
    }
    twoBack = previous;
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The most edits a hint may be away from what was written: 2, or a third of its length when that is more,
 * and always fewer than its length (a hint never replaces every character).
 */
export function maxHintDistance(typed: string): number {
  return Math.min(Math.max(2, Math.floor(typed.length / 3)), typed.length - 1);
}

/**
 * The one candidate closest to `typed` when it is close enough (see `maxHintDistance`); null when none is
 * close, or when two or more are equally close (a guess between them would mislead).
 */
export function closestName(typed: string, candidates: readonly string[]): string | null {
  const lower = typed.toLowerCase();
  let best: string | null = null;
  let bestDistance = Number.POSITIVE_INFINITY;
  let tied = false;
  for (const candidate of new Set(candidates)) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
      tied = false;
    } else if (distance === bestDistance) {
      tied = true;
    }
  }
  if (best === null || tied || bestDistance > maxHintDistance(typed)) return null;
  return best;
}
