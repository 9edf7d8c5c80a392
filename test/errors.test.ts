// Every error code is documented in docs/PROTOCOL.md and carries a stable code and message.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { ERROR_CODES, SysgenidError, isErrorCode } from '../src/protocol/errors.js';
import { VERSION } from '../src/version.js';
import { ROOT } from './helpers.js';

it('each error code has a row in docs/PROTOCOL.md', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/PROTOCOL.md'), 'utf8');
  for (const code of Object.keys(ERROR_CODES)) {
    assert.match(doc, new RegExp(`^\\| \`${code}\` \\|`, 'm'), `${code} missing from the error table`);
  }
});

it('SysgenidError carries its code and a default message', () => {
  for (const [code, message] of Object.entries(ERROR_CODES)) {
    assert.ok(isErrorCode(code));
    const err = new SysgenidError(code);
    assert.equal(err.code, code);
    assert.equal(err.message, message);
    assert.equal(err.name, 'SysgenidError');
  }
  assert.equal(isErrorCode('ENOPE'), false);
});

it('the daemon version matches package.json', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(VERSION, pkg.version);
});
