/**
 * File -> validated, normalised, frozen `Config`. Every problem is reported at once, in document
 * order, one issue per location.
 */
import { readFileSync } from 'node:fs';
import {
  ConfigError,
  type ConfigIssue,
  compareOrder,
  documentOrder,
  formatPath,
  issue,
  withSuggestion,
} from './errors.ts';
import { parseJsonText } from './json-text.ts';
import { normaliseConfig } from './normalise.ts';
import type { Config, ConfigInput } from './schema.ts';
import { checkSemantics } from './semantic.ts';
import { type LocatedIssue, validateSchema } from './validate.ts';
import { type ConfigWarning, configWarnings } from './warnings.ts';

export { ConfigError, type ConfigIssue } from './errors.ts';
export type { ConfigWarning } from './warnings.ts';

/** A valid configuration and the warnings about it (risky settings not listed in `accept_risks`). */
export interface LoadedConfig {
  readonly config: Config;
  readonly warnings: readonly ConfigWarning[];
}

/** Validates and normalises a parsed JSON document; throws `ConfigError` listing every issue. */
export function parseConfig(json: unknown, source?: string): Config {
  return parseConfigWithWarnings(json, source).config;
}

/** `parseConfig`, plus the warnings about the configuration (warnings.ts). */
export function parseConfigWithWarnings(json: unknown, source?: string): LoadedConfig {
  const issues = collectIssues(json);
  if (issues.length > 0) throw new ConfigError(issues, source ?? null);
  const input = json as ConfigInput;
  const warnings = configWarnings(input).map((warning) => Object.freeze(warning));
  return { config: normaliseConfig(input), warnings: Object.freeze(warnings) };
}

/** Reads, parses, validates and normalises a config file; throws `ConfigError` on any problem. */
export function loadConfigFile(path: string): Config {
  return loadConfigFileWithWarnings(path).config;
}

/** `loadConfigFile`, plus the warnings about the configuration (warnings.ts). */
export function loadConfigFileWithWarnings(path: string): LoadedConfig {
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
  return parseConfigWithWarnings(parsed.value, path);
}

/**
 * For `zproxy check`: the config and its warnings when valid, otherwise every issue (never throws a
 * ConfigError). Warnings are only given for a valid config.
 */
export function checkConfigFile(path: string): {
  config: Config | null;
  issues: ConfigIssue[];
  warnings: ConfigWarning[];
} {
  try {
    const loaded = loadConfigFileWithWarnings(path);
    return { config: loaded.config, issues: [], warnings: [...loaded.warnings] };
  } catch (error) {
    if (error instanceof ConfigError) return { config: null, issues: [...error.issues], warnings: [] };
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
