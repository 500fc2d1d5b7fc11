/**
 * Schema validation: runs the ajv validator compiled from `ConfigSchema` (ahead of time, into
 * config-validator.generated.js) and turns ajv's errors
 * into one readable issue per location (what was expected, what was found).
 */
import type { ErrorObject, ValidateFunction } from 'ajv';
import validateConfig from './config-validator.generated.js';
import { renderFound } from './errors.ts';
import { EXPECTED_KEYWORD } from './fields.ts';
import type { ConfigInput } from './schema.ts';
import { closestName } from './suggest.ts';

/** An issue before its path is formatted: the location as segments, plus the words. */
export interface LocatedIssue {
  readonly at: readonly (string | number)[];
  readonly expected: string;
  readonly found: string;
  /** Replaces "expected ..., found ..." in the message (used for unknown keys). */
  readonly note?: string;
  /** The valid name closest to a misspelt key or value (suggest.ts), appended to the message as a hint. */
  readonly suggestion?: string;
}

type SchemaNode = Record<string, unknown>;

/** ajv's validator of ConfigSchema, compiled ahead of time (validator-code.ts, `npm run schema`). */
function validator(): ValidateFunction {
  return validateConfig as unknown as ValidateFunction;
}

/** Validates `data` against the schema; returns the issues (empty when valid). */
export function validateSchema(data: unknown): { valid: boolean; issues: LocatedIssue[] } {
  const validate = validator();
  if (validate(data)) return { valid: true, issues: [] };
  return { valid: false, issues: translate(validate.errors ?? [], data) };
}

export function isConfigInput(data: unknown): data is ConfigInput {
  return validator()(data);
}

/** The human words for what a schema node accepts. */
export function describeSchema(node: unknown): string {
  if (node === null || typeof node !== 'object') return 'a valid value';
  const schema = node as SchemaNode;
  const words = schema[EXPECTED_KEYWORD];
  if (typeof words === 'string') return words;
  if (Array.isArray(schema.enum)) return `one of ${schema.enum.join(', ')}`;
  if ('const' in schema) return JSON.stringify(schema.const);
  if (Array.isArray(schema.anyOf)) return schema.anyOf.map(describeSchema).join(' or ');
  switch (schema.type) {
    case 'integer':
    case 'number': {
      const noun = schema.type === 'integer' ? 'an integer' : 'a number';
      const min = schema.minimum;
      const max = schema.maximum;
      if (typeof min === 'number' && typeof max === 'number') return `${noun} from ${min} to ${max}`;
      if (typeof min === 'number') return `${noun} >= ${min}`;
      if (typeof max === 'number') return `${noun} <= ${max}`;
      return noun;
    }
    case 'boolean':
      return 'true or false';
    case 'string':
      return typeof schema.minLength === 'number' && schema.minLength > 0 ? 'a non-empty string' : 'a string';
    case 'null':
      return 'null';
    case 'array':
      return typeof schema.minItems === 'number' && schema.minItems > 0 ? 'a non-empty list' : 'a list';
    case 'object':
      return 'an object';
    default:
      return 'a valid value';
  }
}

/** JSON pointer -> segments, with array indexes as numbers (decided by walking the data). */
function pointerToSegments(pointer: string, root: unknown): (string | number)[] {
  if (pointer === '') return [];
  const segments: (string | number)[] = [];
  let current: unknown = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(current)) {
      const index = Number(key);
      segments.push(index);
      current = current[index];
    } else {
      segments.push(key);
      current = current !== null && typeof current === 'object' ? (current as SchemaNode)[key] : undefined;
    }
  }
  return segments;
}

function matchesType(schema: unknown, value: unknown): boolean {
  if (schema === null || typeof schema !== 'object') return false;
  const node = schema as SchemaNode;
  if ('const' in node) return typeof node.const === typeof value;
  switch (node.type) {
    case 'string':
      return typeof value === 'string';
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number';
    case 'boolean':
      return typeof value === 'boolean';
    case 'null':
      return value === null;
    case 'array':
      return Array.isArray(value);
    case 'object':
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    default:
      return false;
  }
}

/**
 * Collapses each failed anyOf: when exactly one branch has the value's type, that branch's own
 * errors stand (they are the precise ones); otherwise one error for the whole anyOf stands.
 */
function pruneAlternatives(errors: readonly ErrorObject[]): ErrorObject[] {
  const dropped = new Set<ErrorObject>();
  const alternatives = errors
    .filter((error) => error.keyword === 'anyOf' || error.keyword === 'oneOf')
    .sort((a, b) => a.schemaPath.length - b.schemaPath.length);
  for (const alternative of alternatives) {
    if (dropped.has(alternative)) continue;
    const branches = Array.isArray(alternative.schema) ? (alternative.schema as unknown[]) : [];
    const typed = branches.flatMap((branch, index) => (matchesType(branch, alternative.data) ? [index] : []));
    const keep = typed.length === 1 ? `${alternative.schemaPath}/${typed[0]}/` : null;
    const prefix = `${alternative.schemaPath}/`;
    let kept = 0;
    const here = alternative.instancePath;
    for (const error of errors) {
      if (!error.schemaPath.startsWith(prefix)) continue;
      // The same schema is applied at many locations (every route): only this location's errors.
      if (error.instancePath !== here && !error.instancePath.startsWith(`${here}/`)) continue;
      if (keep !== null && error.schemaPath.startsWith(keep)) kept++;
      else dropped.add(error);
    }
    if (kept > 0) dropped.add(alternative);
  }
  return errors.filter((error) => !dropped.has(error));
}

/** `{ suggestion }` when a candidate is close to `typed`, else nothing. */
function suggestion(typed: string, candidates: readonly string[]): { suggestion?: string } {
  const closest = closestName(typed, candidates);
  return closest === null ? {} : { suggestion: closest };
}

function translate(errors: readonly ErrorObject[], root: unknown): LocatedIssue[] {
  const issues: LocatedIssue[] = [];
  for (const error of pruneAlternatives(errors)) {
    const at = pointerToSegments(error.instancePath, root);
    const parent = (error.parentSchema ?? {}) as SchemaNode;
    const properties = (parent.properties ?? {}) as Record<string, unknown>;
    switch (error.keyword) {
      case 'if':
        // "must match then": the clause's own errors are reported instead.
        break;
      case 'additionalProperties': {
        const key = String((error.params as { additionalProperty: string }).additionalProperty);
        const keys = Object.keys(properties);
        const allowed = keys.join(', ');
        issues.push({
          at: [...at, key],
          expected: `one of the keys ${allowed}`,
          found: renderFound((error.data as SchemaNode)[key]),
          note: `unknown key (allowed keys: ${allowed})`,
          ...suggestion(key, keys),
        });
        break;
      }
      case 'enum': {
        const values = Array.isArray(error.schema) ? error.schema.filter((v) => typeof v === 'string') : [];
        const found = error.data;
        issues.push({
          at,
          expected: describeSchema(parent),
          found: renderFound(found),
          ...(typeof found === 'string' ? suggestion(found, values) : {}),
        });
        break;
      }
      case 'required': {
        const key = String((error.params as { missingProperty: string }).missingProperty);
        issues.push({ at: [...at, key], expected: describeSchema(properties[key]), found: 'nothing' });
        break;
      }
      case 'uniqueItems': {
        const words = parent[EXPECTED_KEYWORD];
        issues.push({
          at,
          expected: typeof words === 'string' ? words : 'a list without duplicates',
          found: renderFound(error.data),
        });
        break;
      }
      default:
        issues.push({ at, expected: describeSchema(parent), found: renderFound(error.data) });
    }
  }
  return issues;
}
