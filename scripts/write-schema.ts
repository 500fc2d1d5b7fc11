/**
 * Writes schema/zproxy.schema.json from the TypeBox schema (`npm run schema`).
 * The file is committed; test/unit/config-schema.test.ts fails when it is stale.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText } from '../src/config/json-schema.ts';

const target = fileURLToPath(new URL('../schema/zproxy.schema.json', import.meta.url));
mkdirSync(fileURLToPath(new URL('../schema/', import.meta.url)), { recursive: true });
writeFileSync(target, configJsonSchemaText());
console.log(`wrote ${target}`);
