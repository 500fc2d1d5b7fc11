/**
 * The JSON Schema document shipped as `schema/zproxy.schema.json` (for editors and other tools),
 * generated from `ConfigSchema`. `scripts/write-schema.ts` writes it; a unit test keeps it current.
 */
import { EXPECTED_KEYWORD } from './fields.ts';
import { ConfigSchema } from './schema.ts';

export const JSON_SCHEMA_ID = 'urn:zproxy:schema:config';

/** Annotations first, then the type, then everything else in its original order. */
const KEY_ORDER = ['title', 'description', 'default', 'type'];

function rank(key: string): number {
  const index = KEY_ORDER.indexOf(key);
  return index === -1 ? KEY_ORDER.length : index;
}

/** Plain JSON copy of a schema without zproxy's internal annotations (symbols and `x-expected`). */
function strip(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strip);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value).filter(([key]) => key !== EXPECTED_KEYWORD);
  entries.sort(([a], [b]) => rank(a) - rank(b));
  return Object.fromEntries(entries.map(([key, child]) => [key, strip(child)]));
}

export function configJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: JSON_SCHEMA_ID,
    title: 'zproxy configuration',
    ...(strip(ConfigSchema) as Record<string, unknown>),
  };
}

/** The exact text of `schema/zproxy.schema.json`. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
