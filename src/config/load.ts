/**
 * File -> validated, normalised, frozen `Config`. Every problem is reported at once, in document
 * order, one issue per location.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, type ConfigIssue, formatPath, issue, withSuggestion } from './errors.ts';
import { parseJsonText } from './json-text.ts';
import { normaliseConfig } from './normalise.ts';
import type { Config, ConfigInput } from './schema.ts';
import { checkSemantics } from './semantic.ts';
import { type LocatedIssue, validateSchema } from './validate.ts';

export { ConfigError, type ConfigIssue } from './errors.ts';

/** Validates and normalises a parsed JSON document; throws `ConfigError` listing every issue. */
export function parseConfig(json: unknown, source?: string): Config {
  const issues = collectIssues(json);
  if (issues.length > 0) throw new ConfigError(issues, source ?? null);
  return normaliseConfig(json as ConfigInput);
}

/** Reads, parses, validates and normalises a config file; throws `ConfigError` on any problem. */
export function loadConfigFile(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    const words = reason === 'ENOENT' ? 'no such file' : reason === 'EISDIR' ? 'a directory' : reason;
    throw new ConfigError([issue('(root)', 'a readable JSON file', words)], path);
  }
  const parsed = parseJsonText(text);
  if (!parsed.ok) {
    const found = `a syntax error at line ${parsed.line}, column ${parsed.column} (${parsed.problem})`;
    throw new ConfigError([issue('(root)', 'valid JSON', found)], path);
  }
  return parseConfig(parsed.value, path);
}

/** For `zproxy check`: the config when valid, otherwise every issue (never throws a ConfigError). */
export function checkConfigFile(path: string): { config: Config | null; issues: ConfigIssue[] } {
  try {
    return { config: loadConfigFile(path), issues: [] };
  } catch (error) {
    if (error instanceof ConfigError) return { config: null, issues: [...error.issues] };
    throw error;
  }
}

/** Schema issues, then semantic ones at locations the schema left alone; sorted in document order. */
function collectIssues(json: unknown): ConfigIssue[] {
  const schema = validateSchema(json);
  const located: LocatedIssue[] = [...schema.issues, ...checkSemantics(json)];
  const seen = new Set<string>();
  const unique: { order: number[]; index: number; issue: ConfigIssue }[] = [];
  located.forEach((found, index) => {
    const path = formatPath(found.at);
    if (seen.has(path)) return;
    seen.add(path);
    const base = issue(path, found.expected, found.found);
    const withNote = found.note === undefined ? base : { ...base, message: `${path}: ${found.note}` };
    const withHint = found.suggestion === undefined ? withNote : withSuggestion(withNote, found.suggestion);
    unique.push({ order: documentOrder(json, found.at), index, issue: withHint });
  });
  unique.sort((a, b) => compareOrder(a.order, b.order) || a.index - b.index);
  return unique.map((entry) => entry.issue);
}

/** The position of a location in the document: the index of each key or item along its path. */
function documentOrder(root: unknown, at: readonly (string | number)[]): number[] {
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

function compareOrder(a: readonly number[], b: readonly number[]): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}
