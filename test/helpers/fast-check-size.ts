/**
 * Loaded before every test file (`--import` in package.json's test scripts). fast-check sizes generated
 * values by `baseSize`, and its default ('small') keeps arrays, strings and byte arrays to about 10
 * elements whatever their `maxLength`: `fc.uint8Array({ maxLength: 200 })` never produced more than 10
 * bytes, so the parsers' property and differential tests saw short inputs only. 'medium' allows about
 * 100 (the unit tests then take about the same time); single properties may still ask for `size: 'max'`.
 */
import fc from 'fast-check';

fc.configureGlobal({ baseSize: 'medium' });
