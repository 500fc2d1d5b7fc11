import { ZpError } from '../errors.ts';

/** One problem found in a configuration: where it is, what was expected there and what was found. */
export interface ConfigIssue {
  /** Location in the document, e.g. `routes[0].upstream`; `(root)` for the document itself. */
  readonly path: string;
  /** What the location must hold, in words: "an integer >= 1". */
  readonly expected: string;
  /** A short rendering of the value that is there (JSON, truncated), or "nothing" when it is missing. */
  readonly found: string;
  /** The whole sentence: `${path}: expected ${expected}, found ${found}` (or the unknown-key form), then
   * `; did you mean "X"?` when there is a suggestion. */
  readonly message: string;
  /** The valid key or value closest to the one found (a misspelling), when one is close: see suggest.ts. */
  readonly suggestion?: string;
}

/** Thrown by the config loader; carries every issue found, in document order. */
export class ConfigError extends ZpError {
  readonly issues: readonly ConfigIssue[];
  /** Where the configuration came from (a file path), or null when it was given as a value. */
  readonly source: string | null;

  constructor(issues: readonly ConfigIssue[], source: string | null = null) {
    const count = issues.length === 1 ? '1 issue' : `${issues.length} issues`;
    const head = `invalid configuration${source === null ? '' : ` in ${source}`} (${count})`;
    super('ZP_ERR_CONFIG', [head, ...issues.map((issue) => `  ${issue.message}`)].join('\n'));
    this.name = 'ConfigError';
    this.issues = Object.freeze(issues.map((issue) => Object.freeze({ ...issue })));
    this.source = source;
  }
}

/** Builds an issue with the standard message. */
export function issue(path: string, expected: string, found: string): ConfigIssue {
  return { path, expected, found, message: `${path}: expected ${expected}, found ${found}` };
}

/** The issue with a "did you mean" hint appended to its message. */
export function withSuggestion(base: ConfigIssue, suggestion: string): ConfigIssue {
  return { ...base, message: `${base.message}; did you mean ${JSON.stringify(suggestion)}?`, suggestion };
}

const MAX_FOUND_LENGTH = 60;

/** A short JSON rendering of a value for the `found` part of an issue. */
export function renderFound(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  if (text === undefined) text = String(value);
  return text.length > MAX_FOUND_LENGTH ? `${text.slice(0, MAX_FOUND_LENGTH - 3)}...` : text;
}

/** A location in a JSON document, as a list of object keys and array indexes. */
export type ConfigPath = readonly (string | number)[];

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `['routes', 0, 'upstream']` -> `routes[0].upstream`; `[]` -> `(root)`. */
export function formatPath(path: ConfigPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (IDENTIFIER.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out === '' ? '(root)' : out;
}

/** The position of a location in the document: the index of each key or item along its path. */
export function documentOrder(root: unknown, at: ConfigPath): number[] {
  const order: number[] = [];
  let current: unknown = root;
  for (const segment of at) {
    if (Array.isArray(current) && typeof segment === 'number') {
      order.push(segment);
      current = current[segment];
    } else if (current !== null && typeof current === 'object' && typeof segment === 'string') {
      const keys = Object.keys(current);
      const position = keys.indexOf(segment);
      // A missing key sorts after the keys that are there.
      order.push(position === -1 ? keys.length : position);
      current = (current as Record<string, unknown>)[segment];
    } else {
      order.push(0);
      current = undefined;
    }
  }
  return order;
}

export function compareOrder(a: readonly number[], b: readonly number[]): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}
