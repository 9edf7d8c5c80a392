// Hooks: every executable in the hooks directory runs after each bump with SYSGENID=<n>; failing,
// hanging and flooding hooks are logged and never block or crash the daemon.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { RawClient, bump, eventually, startDaemon, tmpDir } from './helpers.js';

function hook(dir: string, name: string, body: string, mode = 0o755): void {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`);
  fs.chmodSync(file, mode);
}

it('runs every hook concurrently with SYSGENID set, and survives bad ones', async (t) => {
  const base = tmpDir(t);
  const hooks = path.join(base, 'hooks.d');
  fs.mkdirSync(hooks);
  const out = path.join(base, 'out');
  fs.mkdirSync(out);
  hook(hooks, '10-record', `echo "$SYSGENID $SYSGENID_PREVIOUS $SYSGENID_SOURCE" > ${out}/record.$SYSGENID`);
  hook(hooks, '20-fail', 'echo failing on purpose >&2; exit 3');
  hook(hooks, '30-hang', `echo started > ${out}/hang.$SYSGENID; exec sleep 60`);
  hook(hooks, '40-flood', 'exec yes flood');
  hook(hooks, '50-not-executable', `touch ${out}/must-not-run`, 0o644);
  hook(hooks, '60-world-writable', `touch ${out}/must-not-run-either`, 0o777);
  fs.chmodSync(path.join(hooks, '60-world-writable'), 0o777);
  hook(hooks, '.hidden', `touch ${out}/hidden-ran`);

  const d = await startDaemon(t, { args: ['--hooks-dir', hooks, '--hook-timeout', '300'] });
  const started = Date.now();
  assert.equal(await bump(d.dir), 1);
  assert.ok(Date.now() - started < 250, 'the bump does not wait for hooks');
  const { c } = await RawClient.open(d.paths.watch);
  assert.equal(await c.request('PING'), 'OK', 'the daemon serves clients while hooks run');
  c.close();
  await eventually(() => fs.existsSync(path.join(out, 'record.1')), 5000, 'record hook ran');
  assert.match(fs.readFileSync(path.join(out, 'record.1'), 'utf8'), /^1 0 forced( by pid \d+)?\n$/);
  await d.waitForLog(/hook 20-fail: exited with status 3/);
  await d.waitForLog(/hook 20-fail: failing on purpose/);
  await d.waitForLog(/hook 30-hang: still running after 300 ms; terminating it/);
  await d.waitForLog(/hook 40-flood: output beyond 4096 bytes discarded/);
  assert.ok(fs.existsSync(path.join(out, 'hang.1')));
  assert.match(d.log(), /skipping .*60-world-writable/);
  assert.ok(!fs.existsSync(path.join(out, 'must-not-run')));
  assert.ok(!fs.existsSync(path.join(out, 'must-not-run-either')));
  assert.ok(!fs.existsSync(path.join(out, 'hidden-ran')));
  const floodLines = d
    .log()
    .split('\n')
    .filter((l) => l.includes('hook 40-flood: flood')).length;
  assert.ok(floodLines > 0 && floodLines <= 4096 / 6 + 1, `flood output bounded (${floodLines} lines)`);
  // Hooks are read at every bump: a new one runs without a restart.
  hook(hooks, '70-late', `touch ${out}/late.$SYSGENID`);
  assert.equal(await bump(d.dir), 2);
  await eventually(() => fs.existsSync(path.join(out, 'late.2')), 5000, 'late hook ran');
  await eventually(() => fs.existsSync(path.join(out, 'record.2')), 5000, 'hooks run for every bump');
  assert.equal(await d.stop(), 0);
});
