// Where the daemon and its clients look, and the default start of a user who is not root.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { resolveRuntimeDir } from '../src/protocol/runtime-dir.js';
import { CLI, DAEMON, eventually, tmpDir } from './helpers.js';

it('resolves SYSGENID_DIR, then /run for root, then XDG_RUNTIME_DIR, then a per-user temp directory', () => {
  assert.equal(
    resolveRuntimeDir({ SYSGENID_DIR: 'rel/dir', XDG_RUNTIME_DIR: '/run/user/1000' }, 0),
    path.resolve('rel/dir'),
  );
  assert.equal(resolveRuntimeDir({ XDG_RUNTIME_DIR: '/run/user/1000' }, 0), '/run/sysgenid');
  assert.equal(resolveRuntimeDir({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000), '/run/user/1000/sysgenid');
  assert.equal(resolveRuntimeDir({}, 1000), path.join(os.tmpdir(), 'sysgenid-1000'));
});

it('an unprivileged user starts the daemon with no options and uses it with no options', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root to run as another user');
    return;
  }
  const tmp = tmpDir(t);
  fs.chmodSync(tmp, 0o1777);
  const env = ['env', '-i', `PATH=${process.env.PATH}`, 'HOME=/nonexistent', `TMPDIR=${tmp}`];
  const daemon = spawn('runuser', ['-u', 'nobody', '--', ...env, process.execPath, DAEMON], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  daemon.stderr.setEncoding('utf8').on('data', (s: string) => (log += s));
  const exited = new Promise((resolve) => daemon.on('close', resolve));
  t.after(() => daemon.kill('SIGKILL'));
  await eventually(() => log.includes('ready'), 10_000, 'daemon ready');
  const dir = path.join(tmp, 'sysgenid-65534');
  assert.ok(log.includes(dir), log);
  const st = fs.statSync(dir);
  assert.equal(st.uid, 65534);
  const bump = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn('runuser', ['-u', 'nobody', '--', ...env, process.execPath, CLI, 'bump'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    c.on('close', (code) => resolve({ code, out }));
  });
  assert.deepEqual(bump, { code: 0, out: '1\n' }, "the daemon's own user may force updates");
  daemon.kill('SIGTERM');
  await exited;
  assert.match(log, /stopped at generation 1/);
});
