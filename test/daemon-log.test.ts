// The daemon's log can never take it down (issue 14): with its stderr piped into a reader that goes away
// (`sysgenidd 2>&1 | head -1`) it keeps serving, and stops cleanly, removing its sockets, on SIGTERM.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { runtimePaths } from '../src/protocol/runtime-dir.js';
import { bump, daemonArgv, eventually, sleep, statusOf, tmpDir } from './helpers.js';

it('keeps serving after the reader of its log pipe has gone, and cleans up on SIGTERM', async (t) => {
  const dir = path.join(tmpDir(t), 'run');
  const paths = runtimePaths(dir);
  const shell = spawn('sh', ['-c', `"$0" "$@" 2>&1 | head -1`, ...daemonArgv(dir, ['--log-level', 'debug'])], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let first = '';
  shell.stdout.setEncoding('utf8').on('data', (s: string) => (first += s));
  const pid = (): number => Number(fs.readFileSync(paths.pid, 'utf8').trim());
  t.after(() => {
    try {
      process.kill(pid(), 'SIGKILL');
    } catch {
      // already gone
    }
  });
  // control.sock is bound after watch.sock: the bumps below need both.
  await eventually(
    () => fs.existsSync(paths.watch) && fs.existsSync(paths.control) && fs.existsSync(paths.pid),
    10_000,
    'daemon up',
  );
  await eventually(() => first.length > 0, 5000, 'head read its line');
  // Every bump logs a line or more at debug level, into a pipe nobody reads any more.
  for (let i = 0; i < 20; i++) await bump(dir);
  await sleep(200);
  const s = await statusOf(dir);
  assert.equal(s.generation, 20, 'still serving');
  const daemonPid = pid();
  process.kill(daemonPid, 'SIGTERM');
  await eventually(
    () => {
      try {
        process.kill(daemonPid, 0);
        return false;
      } catch {
        return true;
      }
    },
    10_000,
    'daemon exited',
  );
  assert.equal(fs.existsSync(paths.watch), false, 'watch socket removed');
  assert.equal(fs.existsSync(paths.control), false, 'control socket removed');
  await new Promise((r) => (shell.exitCode === null ? shell.on('close', r) : r(undefined)));
});
