// The CRIU action script, invoked as criu invokes it: CRTOOLS_SCRIPT_ACTION and CRTOOLS_INIT_PID in
// the environment, the daemon found through the restored init process's root and environment.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { CLI, runNode, startDaemon, statusOf, tmpDir } from './helpers.js';

it('bumps the daemon of the restored tree on post-resume only, and never aborts a restore by default', async (t) => {
  const d = await startDaemon(t);
  // Stands in for the restored tree's init process: it carries the tree's SYSGENID_DIR.
  const init = spawn('sleep', ['60'], { env: { ...process.env, SYSGENID_DIR: d.dir }, stdio: 'ignore' });
  t.after(() => init.kill());
  const run = (action: string, ...args: string[]) =>
    runNode(CLI, ['criu-action', ...args], {
      CRTOOLS_SCRIPT_ACTION: action,
      CRTOOLS_INIT_PID: String(init.pid),
      SYSGENID_DIR: '/nonexistent',
    });

  for (const action of ['pre-dump', 'post-dump', 'pre-restore', 'post-restore', 'pre-resume']) {
    const r = await run(action);
    assert.equal(r.code, 0, action);
  }
  assert.equal(
    (await statusOf(d.dir)).generation,
    0,
    'only post-resume bumps (at post-restore the tree is still stopped)',
  );

  const r = await run('post-resume');
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    new RegExp(`restored tree of pid ${init.pid}: generation 1; nothing was quiesced \\(${d.dir}\\)`),
  );
  assert.equal((await statusOf(d.dir)).generation, 1);

  const explicit = await run('post-resume', '--dir', d.dir);
  assert.equal(explicit.code, 0);
  assert.equal((await statusOf(d.dir)).generation, 2);

  const missing = path.join(tmpDir(t), 'none');
  const soft = await run('post-resume', '--dir', missing);
  assert.equal(soft.code, 0, 'a tree without a daemon does not abort the restore');
  assert.match(soft.stderr, /no generation bump: ENOTCONN/);
  const strict = await run('post-resume', '--dir', missing, '--strict');
  assert.equal(strict.code, EXIT.UNREACHABLE);

  const outside = await runNode(CLI, ['criu-action'], { CRTOOLS_SCRIPT_ACTION: '' });
  assert.equal(outside.code, 0, 'an empty action is ignored');
  const noEnv = await runNode(CLI, ['criu-action'], { CRTOOLS_SCRIPT_ACTION: undefined as unknown as string });
  assert.equal(noEnv.code, EXIT.USAGE);
});
