import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES, errorBody, ZpError } from '../../src/errors.ts';

test('docs/errors.md lists every error code with its status', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  for (const [code, info] of Object.entries(ERROR_CODES)) {
    const cells = doc
      .split('\n')
      .map((line) => line.split('|').map((cell) => cell.trim()))
      .find((row) => row[1] === `\`${code}\``);
    assert.ok(cells, `docs/errors.md has no row for ${code}`);
    if (info.side !== 'config') assert.equal(cells[2], String(info.status), `${code} status`);
  }
});

test('ZpError carries code, status, side and retryability', () => {
  const e = new ZpError('ZP_ERR_UPSTREAM_RESET', undefined, { retryable: true });
  assert.equal(e.status, 502);
  assert.equal(e.side, 'upstream');
  assert.equal(e.retryable, true);
  assert.equal(e.message, ERROR_CODES.ZP_ERR_UPSTREAM_RESET.message);
});

test('error bodies are JSON with code, status and message', () => {
  assert.deepEqual(JSON.parse(errorBody('ZP_ERR_NOT_FOUND')), {
    error: { code: 'ZP_ERR_NOT_FOUND', status: 404, message: 'No route matches this request' },
  });
});
