// The sysgenid command's messages for the mistakes a new user makes (issue 14): "did you mean", plain
// words for a bad number, --count 0 refused. Watch's retries and wait for the daemon are in cli-watch.test.ts.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { CLI, DAEMON, ROOT, runNode } from './helpers.js';

describe('usage errors', () => {
  it('suggest the command or option meant', async () => {
    const cmd = await runNode(CLI, ['stauts']);
    assert.equal(cmd.code, EXIT.USAGE);
    assert.match(cmd.stderr, /unknown command "stauts"; did you mean "status"\?/);
    const opt = await runNode(CLI, ['status', '--jsn']);
    assert.equal(opt.code, EXIT.USAGE);
    assert.match(opt.stderr, /status does not take --jsn; did you mean "--json"\?/);
    const other = await runNode(CLI, ['status', '--timeout', '5']);
    assert.match(other.stderr, /status does not take --timeout/, 'an option of another command, by name');
  });

  it("say what a number must be instead of the parser's words", async () => {
    const r = await runNode(CLI, ['bump', '--min', '-1']);
    assert.equal(r.code, EXIT.USAGE);
    assert.match(r.stderr, /--min needs a whole number from 0 to 4294967295, got "-1"/);
    assert.doesNotMatch(r.stderr, /ambiguous/);
    const missing = await runNode(CLI, ['wait', '--timeout']);
    assert.match(missing.stderr, /--timeout needs a value/);
  });

  it('refuse --count 0 instead of watching for ever', async () => {
    const r = await runNode(CLI, ['watch', '--count', '0']);
    assert.equal(r.code, EXIT.USAGE);
    assert.match(r.stderr, /--count needs at least 1/);
  });

  it('sysgenidd prints one line and a pointer, not its whole help', async () => {
    const r = await runNode(DAEMON, ['--bogus']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 2, r.stderr);
    assert.match(r.stderr, /Run "sysgenidd --help" for usage/);
  });

  it('criu-action --help lists the options docs/CLI.md gives it', async () => {
    const help = (await runNode(CLI, ['criu-action', '--help'])).stdout;
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'CLI.md'), 'utf8');
    const synopsis = /^sysgenid criu-action (.*)$/m.exec(doc)?.[1] ?? '';
    assert.ok(synopsis.length > 0);
    for (const opt of synopsis.match(/--[a-z-]+/g) ?? []) assert.match(help, new RegExp(`^  ${opt}`, 'm'), opt);
    assert.match(help, new RegExp(`^Usage: sysgenid criu-action ${synopsis.replace(/[[\]]/g, '\\$&')}$`, 'm'));
    for (const action of ['pre-dump', 'post-dump', 'post-resume']) assert.match(help, new RegExp(action));
  });
});
