// The systemd units (deploy/systemd/) and `sysgenidd install-units`: the units it writes run this package
// with this Node, pass `systemd-analyze verify`, and keep the hardening's exposure at 2.0 or lower. The
// units under a real systemd as PID 1 are the end-to-end test's (test/e2e/systemd.e2e.ts).

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { UNIT_FILES, renderUnits } from '../src/daemon/install-units.js';
import { DAEMON, ROOT, runNode, tmpDir } from './helpers.js';

const analyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;

it('install-units writes the three units, ExecStart on this package and node; with --dest nothing else', async (t) => {
  const dest = tmpDir(t);
  const r = await runNode(DAEMON, ['install-units', '--dest', dest]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(fs.readdirSync(dest).sort(), [...UNIT_FILES].sort());
  const service = fs.readFileSync(path.join(dest, 'sysgenidd.service'), 'utf8');
  const exec = /^ExecStart=(.*)$/m.exec(service)?.[1];
  assert.equal(
    exec,
    `${process.execPath} ${path.join(ROOT, 'dist/sysgenidd.cjs')} --dir /run/sysgenid ` +
      '--state-dir /var/lib/sysgenid --hooks-dir /etc/sysgenid/hooks.d $SYSGENIDD_OPTS',
  );
  assert.match(service, /^StateDirectory=sysgenid$/m);
  assert.match(service, /^Type=notify$/m);
  assert.match(service, /^Sockets=sysgenidd.socket sysgenidd-control.socket$/m);
  assert.match(service, /^RuntimeDirectoryPreserve=yes$/m);
  assert.match(service, /^EnvironmentFile=-\/etc\/sysgenid\/sysgenidd.env$/m);
  const watch = fs.readFileSync(path.join(dest, 'sysgenidd.socket'), 'utf8');
  assert.match(watch, /^ListenStream=\/run\/sysgenid\/watch.sock$/m);
  assert.match(watch, /^FileDescriptorName=watch$/m);
  assert.match(watch, /^SocketMode=0666$/m);
  const control = fs.readFileSync(path.join(dest, 'sysgenidd-control.socket'), 'utf8');
  assert.match(control, /^FileDescriptorName=control$/m);
  assert.match(control, /^SocketMode=0660$/m);
  assert.match(control, /^SocketGroup=sysgenid$/m);
});

it('a package or node under /root or /home gets ProtectHome=read-only, which still lets it run', () => {
  const units = renderUnits({ root: ROOT, node: '/root/.nvm/versions/node/v20/bin/node' });
  assert.match(units.get('sysgenidd.service') ?? '', /^ProtectHome=read-only$/m);
  const plain = renderUnits({ root: ROOT, node: '/usr/bin/node' });
  assert.match(
    plain.get('sysgenidd.service') ?? '',
    ROOT.startsWith('/root/') || ROOT.startsWith('/home/') ? /^ProtectHome=read-only$/m : /^ProtectHome=yes$/m,
  );
  assert.throws(() => renderUnits({ root: ROOT, node: '/opt/my node/bin/node' }), /cannot put/);
});

it('install-units refuses what it cannot do, with a usage error, before writing anything', async (t) => {
  const dest = tmpDir(t);
  const now = await runNode(DAEMON, ['install-units', '--dest', dest, '--now']);
  assert.equal(now.code, 2);
  assert.match(now.stderr, /--now needs the units in \/etc\/systemd\/system/);
  const bad = await runNode(DAEMON, ['install-units', '--dest', dest, '--bogus']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^sysgenidd install-units: Unknown option '--bogus'/);
  assert.deepEqual(fs.readdirSync(dest), []);
  const help = await runNode(DAEMON, ['install-units', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: sysgenidd install-units /);
});

it('--user writes the non-root drop-in with that user and CAP_SYSLOG', () => {
  const units = renderUnits({ root: ROOT, node: process.execPath, user: 'sysgenidd' });
  const dropIn = units.get('sysgenidd.service.d/non-root.conf') ?? '';
  assert.match(dropIn, /^User=sysgenidd$/m);
  assert.match(dropIn, /^AmbientCapabilities=CAP_SYSLOG$/m);
  assert.throws(() => renderUnits({ root: ROOT, node: process.execPath, user: 'x;rm' }), /not a user name/);
});

it(
  "the written units pass systemd-analyze verify, and the service's exposure is 2.0 or lower",
  { skip: !analyze && 'no systemd-analyze (apt-get install systemd)' },
  async (t) => {
    const dest = tmpDir(t);
    const r = await runNode(DAEMON, ['install-units', '--dest', dest]);
    assert.equal(r.code, 0, r.stderr);
    // verify resolves ExecStart and the other units by name from the directory it is run in.
    const v = spawnSync('systemd-analyze', ['verify', '--man=no', ...UNIT_FILES.map((f) => `./${f}`)], {
      cwd: dest,
      encoding: 'utf8',
    });
    assert.equal(v.status, 0, `systemd-analyze verify: ${v.stderr}${v.stdout}`);
    assert.equal(v.stderr.trim(), '', 'verify has nothing to say about the units');
    const out = execFileSync('systemd-analyze', ['security', '--offline=yes', './sysgenidd.service'], {
      cwd: dest,
      encoding: 'utf8',
    });
    const exposure = Number(/Overall exposure level for sysgenidd\.service: ([0-9.]+)/.exec(out)?.[1]);
    t.diagnostic(`systemd-analyze security --offline=yes: exposure ${exposure}`);
    assert.ok(exposure > 0 && exposure <= 2.0, `exposure ${exposure}`);
  },
);
