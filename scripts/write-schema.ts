/**
 * Writes schema/zproxy.schema.json and the precompiled validator src/config/config-validator.generated.js
 * from the TypeBox schema (`npm run schema`). Both are committed; test/unit/config-schema.test.ts fails
 * when either is stale.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText } from '../src/config/json-schema.ts';
import { configValidatorCode } from '../src/config/validator-code.ts';

const target = fileURLToPath(new URL('../schema/zproxy.schema.json', import.meta.url));
mkdirSync(fileURLToPath(new URL('../schema/', import.meta.url)), { recursive: true });
writeFileSync(target, configJsonSchemaText());
console.log(`wrote ${target}`);

const validator = fileURLToPath(new URL('../src/config/config-validator.generated.js', import.meta.url));
writeFileSync(validator, configValidatorCode());
console.log(`wrote ${validator}`);
