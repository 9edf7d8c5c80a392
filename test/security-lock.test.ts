// Attack tests, the lock, start-up, timeouts and deadlines (issue 12, points 7, 8, 9 and 10), played by
// an ordinary user (nobody) against their own daemons and against root's. Each assertion fails on the code
// before the fix (a second daemon took over live sockets, any "sysgenidd" in a command line kept a daemon
// from starting, a too-long --dir hung the daemon, a timeout of 2^31 ms fired after 1 ms, and a frozen
// daemon hung every CLI command).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { CLI, DAEMON, ROOT, RawClient, bump, daemonArgv, startDaemon, tmpDir } from './helpers.js';
import { AS_NOBODY, isRoot, run, sharedTmp, squattedDir } from './security-helpers.js';

const skip = !isRoot && 'needs root to play the attacker as nobody';

it(
  'a second daemon on a directory whose pid file was removed refuses, and the first keeps its sockets',
  { skip },
  async (t) => {
    const dir = await squattedDir(t);
    const watchIno = fs.statSync(path.join(dir, 'watch.sock')).ino;
    const rm = await run(['rm', '-f', path.join(dir, 'sysgenidd.pid')], { nobody: true });
    assert.equal(rm.code, 0);
    const second = await run(daemonArgv(dir), { nobody: true, killAfterMs: 10_000 });
    assert.equal(second.code, 1, `the second daemon must refuse: ${second.stderr}`);
    assert.match(second.stderr, /already owns/);
    assert.equal(fs.statSync(path.join(dir, 'watch.sock')).ino, watchIno, "the first daemon's socket was not removed");
    const { c, generation } = await RawClient.open(path.join(dir, 'watch.sock'));
    c.close();
    assert.equal(generation, 0, 'the first daemon still answers');
  },
);

it("shutdown removes only the sockets this daemon bound, never a successor's", { skip }, async (t) => {
  const dir = path.join(tmpDir(t), 'run');
  fs.mkdirSync(dir, { mode: 0o755 });
  const d = await startDaemon(t, { dir });
  // Someone with the daemon's rights replaced the socket file (the case a second daemon used to create).
  fs.rmSync(d.paths.watch);
  fs.writeFileSync(d.paths.watch, 'not ours');
  assert.equal(await d.stop(), 0);
  assert.equal(fs.readFileSync(d.paths.watch, 'utf8'), 'not ours', 'a file this daemon did not bind is left alone');
  assert.ok(!fs.existsSync(d.paths.control), 'its own control socket is removed');
});

it(
  'a stale pid file naming any process whose command line says sysgenidd does not stop a start',
  { skip },
  async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    fs.mkdirSync(dir, { mode: 0o755 });
    // An ordinary user's process that merely calls itself sysgenidd.
    const decoy = spawn(AS_NOBODY[0] as string, [...AS_NOBODY.slice(1), 'bash', '-c', 'exec -a sysgenidd sleep 60'], {
      stdio: 'ignore',
    });
    t.after(() => decoy.kill('SIGKILL'));
    await new Promise((r) => setTimeout(r, 200));
    assert.match(fs.readFileSync(`/proc/${decoy.pid}/cmdline`, 'latin1'), /sysgenidd/);
    fs.writeFileSync(path.join(dir, 'sysgenidd.pid'), `${decoy.pid}\n`);
    const d = await startDaemon(t, { dir });
    assert.match(d.log(), new RegExp(`did not shut down cleanly`));
    assert.equal(await bump(dir), 1);
  },
);

it('a --dir too long for a socket path is refused at once with a clear message, never a hung daemon', async (t) => {
  const base = tmpDir(t);
  const dir = path.join(base, 'x'.repeat(Math.max(1, 98 - base.length)));
  const r = await run(daemonArgv(dir), { killAfterMs: 10_000 });
  assert.equal(r.signal, null, `the daemon hung and was killed: ${r.stderr}`);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /a Unix socket path holds at most 107/);
});

it("timeouts beyond what Node's timers hold are EINVAL, from a user and on the command line", { skip }, async (t) => {
  const d = await startDaemon(t, { dir: path.join(sharedTmp(t), 'run') });
  // An outdated watcher, so that a WAIT really waits.
  const w = await RawClient.open(d.paths.watch);
  t.after(() => w.c.close());
  await bump(d.dir);
  const dir = sharedTmp(t);
  const probe = path.join(dir, 'wait.cjs');
  fs.writeFileSync(
    probe,
    `
    const net = require('node:net');
    const s = net.createConnection(process.argv[2]);
    const lines = [];
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      const parts = buf.split('\\n');
      buf = parts.pop();
      lines.push(...parts);
    });
    s.write('OBSERVE\\nWAIT 2147483648\\nWAIT 2147483647\\n');
    setTimeout(() => { console.log(JSON.stringify(lines)); process.exit(0); }, 300);
  `,
  );
  const r = await run([process.execPath, probe, d.paths.watch], { nobody: true });
  const lines = JSON.parse(r.stdout) as string[];
  assert.match(lines[2] ?? '', /^ERR EINVAL /, `WAIT 2^31 must be refused, got ${lines[2]}`);
  assert.equal(lines[3], undefined, 'WAIT 2^31-1 is accepted and still waiting 300 ms later');
  const { c } = await RawClient.open(d.paths.control);
  assert.match(await c.request('QUIESCE 4294967295'), /^ERR EINVAL /);
  c.close();
  const optDir = path.join(tmpDir(t), 'run');
  const opt = await run([process.execPath, DAEMON, '--dir', optDir, '--hook-timeout', '2147483648'], {
    killAfterMs: 10_000,
  });
  assert.equal(opt.code, 2);
  assert.match(opt.stderr, /--hook-timeout is at most 2147483647/);
});

it(
  'a frozen daemon (SIGSTOP) cannot hang the CLI: wait --timeout and status give up on their own',
  { skip },
  async (t) => {
    const d = await startDaemon(t, { dir: path.join(sharedTmp(t), 'run') });
    const w = await RawClient.open(d.paths.watch);
    t.after(() => w.c.close());
    await bump(d.dir);
    d.child.kill('SIGSTOP');
    t.after(() => d.child.kill('SIGCONT'));
    const env = { SYSGENID_DIR: d.dir };
    const waited = await run([process.execPath, CLI, 'wait', '--timeout', '2000'], {
      nobody: true,
      env,
      killAfterMs: 20_000,
    });
    assert.equal(waited.signal, null, 'wait hung until the test killed it');
    t.diagnostic(`wait --timeout 2000 against a frozen daemon returned in ${waited.ms} ms`);
    assert.ok(waited.ms < 6000, `wait --timeout 2000 took ${waited.ms} ms`);
    assert.equal(waited.code, 7, waited.stderr);
    assert.match(waited.stderr, /did not (answer|greet) within/);
    const st = await run([process.execPath, CLI, 'status'], { nobody: true, env, killAfterMs: 30_000 });
    assert.equal(st.signal, null, 'status hung until the test killed it');
    t.diagnostic(`status against a frozen daemon returned in ${st.ms} ms`);
    assert.equal(st.code, 7, st.stderr);
    d.child.kill('SIGCONT');
  },
);

it('the lock is one the kernel holds: flock on the pid file with the addon, an abstract socket without it', async (t) => {
  const dir = path.join(tmpDir(t), 'run');
  const d = await startDaemon(t, { dir });
  const st = fs.statSync(dir);
  const pidIno = fs.statSync(path.join(dir, 'sysgenidd.pid')).ino;
  const unix = fs.readFileSync('/proc/net/unix', 'latin1');
  const abstract = unix.includes(`@sysgenidd-lock:${st.dev}:${st.ino}`);
  const flocked = fs
    .readFileSync('/proc/locks', 'latin1')
    .split('\n')
    .some((l) => /FLOCK\s+ADVISORY\s+WRITE/.test(l) && l.includes(` ${d.child.pid} `) && l.includes(`:${pidIno} `));
  const built = fs.existsSync(path.join(ROOT, 'build/Release/sysgenid.node'));
  const withAddon = process.env.SYSGENID_NO_ADDON !== '1' && built;
  const expectation = withAddon ? 'expected with' : 'not expected without';
  assert.equal(flocked, withAddon, `flock on the pid file ${expectation} the addon`);
  // Only one of the two: a bound name would keep a second CRIU copy of the tree from being restored
  // beside the first in one network namespace.
  assert.equal(abstract, !withAddon, `the abstract lock socket bound ${withAddon ? 'with' : 'without'} the addon`);
  // A daemon of the other kind (addon or pure JS) is excluded too.
  const other = await run(daemonArgv(dir), { env: { SYSGENID_NO_ADDON: withAddon ? '1' : '0' }, killAfterMs: 10_000 });
  assert.equal(other.code, 1, other.stderr);
  assert.match(other.stderr, /already owns/);
  assert.equal(await d.stop(), 0);
  assert.ok(!fs.existsSync(path.join(dir, 'sysgenidd.pid')), 'released and removed at shutdown');
});
