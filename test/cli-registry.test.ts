// The sysgenid command's registry (src/cli/commands/index.ts) is what drives the main help, each
// command's --help, the option checks and the dispatch: a command added there is listed, answers for
// itself and refuses the options of the others, with no second table to update.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Command } from '../src/cli/command.js';
import { COMMANDS } from '../src/cli/commands/index.js';
import { MAIN_HELP, allOptions } from '../src/cli/dispatch.js';
import { EXIT } from '../src/cli/exit.js';
import { CLI, runNode, tmpDir } from './helpers.js';

/** Options a command accepts but leaves out of its help on purpose. */
const UNDOCUMENTED: Record<string, string[]> = { 'criu-action': ['timeout'] };

describe('sysgenid command registry', () => {
  it('has one entry per name, each with a usage line and its own options in its help', () => {
    const names = COMMANDS.map((c) => c.name);
    assert.equal(new Set(names).size, names.length, 'command names are unique');
    for (const c of COMMANDS) {
      assert.match(c.help, new RegExp(`^Usage: sysgenid ${c.name}[ \\n]`), c.name);
      assert.ok(c.help.endsWith('\n'), `${c.name}: help ends with a newline`);
      assert.doesNotMatch(c.summary, /\n/, `${c.name}: one-line summary`);
      for (const key of Object.keys(c.options)) {
        if (UNDOCUMENTED[c.name]?.includes(key)) continue;
        assert.ok(c.help.includes(`--${key}`), `${c.name} --help mentions --${key}`);
      }
      assert.ok(c.help.includes('--dir') && c.help.includes('--help'), `${c.name} --help mentions --dir and --help`);
    }
  });

  it('refuses two commands declaring one option differently', () => {
    const fake = (name: string, type: 'string' | 'boolean', key = 'shared'): Command => ({
      name,
      summary: name,
      help: `Usage: sysgenid ${name}\n`,
      options: { [key]: { type } },
      positionals: false,
      run: () => Promise.resolve(EXIT.OK),
    });
    const one = fake('one', 'string');
    assert.throws(() => allOptions([one, fake('two', 'boolean')]), /--shared is declared differently/);
    assert.throws(() => allOptions([one, fake('dirty', 'boolean', 'dir')]), /--dir is declared differently/);
    assert.deepEqual(Object.keys(allOptions([one, fake('two', 'string')])), ['dir', 'help', 'shared']);
  });

  it('lists every command in the main help, and each answers --help with its own usage', async () => {
    const top = await runNode(CLI, ['--help']);
    assert.equal(top.code, EXIT.OK);
    assert.equal(top.stdout, MAIN_HELP);
    const listed = [...top.stdout.matchAll(/^ {2}(\S+) {2,}(.+)$/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(
      listed,
      COMMANDS.map((c) => [c.name, c.summary]),
      'the command list, in registry order',
    );
    for (const c of COMMANDS) {
      const r = await runNode(CLI, [c.name, '--help']);
      assert.equal(r.code, EXIT.OK, c.name);
      assert.equal(r.stdout, c.help, c.name);
      assert.equal(r.stderr, '', c.name);
    }
  });

  it('refuses an option of another command by name, and an unknown command', async () => {
    for (const c of COMMANDS) {
      const foreign = COMMANDS.flatMap((o) => Object.keys(o.options)).find((key) => !Object.hasOwn(c.options, key));
      assert.ok(foreign, c.name);
      const other = COMMANDS.find((o) => Object.hasOwn(o.options, foreign));
      const value = other?.options[foreign]?.type === 'string' ? ['1'] : [];
      const r = await runNode(CLI, [c.name, `--${foreign}`, ...value]);
      assert.equal(r.code, EXIT.USAGE, `${c.name} --${foreign}`);
      assert.equal(r.stderr, `sysgenid: ${c.name} does not take --${foreign}\nRun "sysgenid --help" for usage.\n`);
    }
    const unknown = await runNode(CLI, ['toString', '--help']);
    assert.equal(unknown.code, EXIT.USAGE);
    assert.match(unknown.stderr, /^sysgenid: unknown command "toString"\n/);
  });

  it('dispatches every command to its own run', async (t) => {
    const dir = path.join(tmpDir(t), 'absent');
    for (const c of COMMANDS) {
      // Commands with arguments get one they accept: a connection id, or the command to run.
      const positional = ['exclude', 'disconnect'].includes(c.name) ? ['1'] : ['--', 'true'];
      const args = [c.name, '--dir', dir, ...(c.positionals ? positional : [])];
      const r = await runNode(CLI, args, { CRTOOLS_SCRIPT_ACTION: '' });
      if (c.name === 'criu-action') {
        // Not run by CRIU: an action it ignores, so it answers 0 without looking for a daemon.
        assert.equal(r.code, EXIT.OK, r.stderr);
        continue;
      }
      if (c.name === 'host') {
        // It speaks to a guest through a target it must be given, not to a daemon in --dir.
        assert.equal(r.code, EXIT.USAGE, r.stderr);
        assert.match(r.stderr, /host needs one of restored, quiesce/);
        continue;
      }
      assert.equal(r.code, EXIT.UNREACHABLE, `${c.name}: ${r.stderr}`);
      assert.match(r.stderr, /ENOTCONN: cannot reach sysgenidd at .*absent/, c.name);
    }
  });
});
