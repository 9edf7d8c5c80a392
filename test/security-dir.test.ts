// Attack tests, directories, clients and the page (issue 12, points 4, 5, 13 and 15): an ordinary user
// cannot steer root's daemon into a directory they control, cannot pass their own daemon off as the
// victim's, and a page no daemon serves is never read silently. Each assertion fails on the code before
// the fix (the daemon started under a user's directory, clients used the squatter's sockets and page, the
// probe read a dead daemon's page, a stale --dev-link was kept, a new page was created empty).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { it } from 'node:test';
import { forceUpdate, openProbe, status } from '../src/client/index.js';
import { addon } from '../src/native/addon.js';
import { SysgenidError } from '../src/protocol/errors.js';
import { daemonListening, unixSocketTable } from '../src/protocol/liveness.js';
import { resolveClientDir } from '../src/protocol/runtime-dir.js';
import { CLI, DIST, ROOT, daemonArgv, startDaemon, tmpDir } from './helpers.js';
import { NOBODY, attackerDir, isRoot, nobodysDaemon, run, squattedDir } from './security-helpers.js';

const skip = !isRoot && 'needs root to play the attacker as nobody';

async function rejectsCode(p: Promise<unknown> | (() => unknown), code: string): Promise<SysgenidError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    assert.ok(err instanceof SysgenidError, String(err));
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, got success`);
}

it(
  'root refuses a runtime directory under a directory another user owns (they could swap it for a link)',
  { skip },
  async (t) => {
    const { dir } = attackerDir(t);
    const victim = path.join(dir, 'sysgenid');
    const r = await run(daemonArgv(victim), { killAfterMs: 10_000 });
    assert.equal(r.code, 1, `exits 1, not serving: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`refusing the runtime directory ${victim}: ${dir} belongs to uid ${NOBODY}`));
    assert.ok(!fs.existsSync(path.join(victim, 'generation')), 'nothing created there');
  },
);

it(
  'clients refuse a daemon and a directory another user controls (a squatted default directory)',
  { skip },
  async (t) => {
    const squat = await squattedDir(t);
    // The library, one-shot and probe alike.
    await rejectsCode(status({ dir: squat }), 'EPERM');
    await rejectsCode(forceUpdate({ dir: squat }), 'EPERM');
    await rejectsCode(() => openProbe({ dir: squat }), 'EPERM');
    // The CLI: exit 1 with the reason, never the attacker's answer.
    const bumped = await run([process.execPath, CLI, 'bump'], { env: { SYSGENID_DIR: squat } });
    assert.notEqual(bumped.code, 0);
    assert.equal(bumped.stdout, '', 'no generation printed');
    assert.match(bumped.stderr, /EPERM: not using sysgenidd at .* belongs to uid 65534/);
    const ready = await run([process.execPath, CLI, 'ready'], { env: { SYSGENID_DIR: squat } });
    assert.notEqual(ready.code, 0, "ready does not pass on the attacker's word");
  },
);

it(
  'a client refuses a daemon that runs as another user even in a directory it trusts (peer credentials)',
  { skip },
  async (t) => {
    // A root-owned directory whose socket nobody bound: the socket file is nobody's.
    const { dir } = attackerDir(t, 'run');
    await nobodysDaemon(t, dir);
    fs.chownSync(dir, 0, 0);
    fs.chmodSync(dir, 0o755);
    const err = await rejectsCode(status({ dir }), 'EPERM');
    assert.match(err.message, /belongs to uid 65534|runs as uid 65534/);
  },
);

it('the probe refuses a page no daemon serves any more instead of reading it silently', async (t) => {
  const d = await startDaemon(t);
  await forceUpdate({ dir: d.dir, min: 4 });
  assert.equal((await status({ dir: d.dir })).devLink, null, 'STATUS devLink is null without --dev-link');
  const live = openProbe({ dir: d.dir });
  assert.equal(live.generation(), 4);
  live.close();
  d.child.kill('SIGKILL');
  await d.exited;
  assert.ok(fs.existsSync(d.paths.page), 'the crash left the page');
  const err = await rejectsCode(() => openProbe({ dir: d.dir }), 'ENOTCONN');
  assert.match(err.message, /left by a daemon that no longer runs/);
  // Asked for by path, the caller chooses; asked to require a daemon, it is refused too.
  openProbe({ path: d.paths.page }).close();
  await rejectsCode(() => openProbe({ path: d.paths.page, requireDaemon: true }), 'ENOTCONN');
});

it('a line forged into /proc/net/unix does not pass a dead daemon off as alive (with the addon)', async (t) => {
  const d = await startDaemon(t, { dir: path.join(tmpDir(t, 'sg-'), 'r') });
  d.child.kill('SIGKILL');
  await d.exited;
  // Any local user can bind a socket whose abstract name holds a newline and a made-up listening entry.
  const forged = `0000000000000000: 00000002 00000000 00010000 0001 01 4242 ${d.paths.watch}`;
  // (Node pads an abstract name to the whole address with NULs, shown as '@': the last newline moves them
  // to a line of their own.)
  const name = `\0sysgenid-forgery\n${forged}\n`;
  if (Buffer.byteLength(name) > 107) return t.skip(`the temporary directory's path is too long for the forgery`);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(name, resolve));
  t.after(() => server.close());
  // The forgery works on the table: the made-up entry reads as a line of its own.
  assert.ok(unixSocketTable()?.split('\n').includes(forged), 'the forged line is in the table');
  if (addon()) {
    const err = await rejectsCode(() => openProbe({ dir: d.dir }), 'ENOTCONN');
    assert.match(err.message, /left by a daemon that no longer runs/);
    assert.equal(daemonListening(d.dir), false);
  } else {
    // Documented (docs/reliability.md): without the addon only the table can be asked, and it is fooled.
    assert.equal(daemonListening(d.dir), true);
  }
});

it('every user finds the system daemon by default only when one listens at /run/sysgenid', () => {
  assert.equal(resolveClientDir({ SYSGENID_DIR: '/x/y' }, 1000), '/x/y');
  const listening = fs.existsSync('/run/sysgenid/watch.sock');
  if (!listening) {
    assert.equal(resolveClientDir({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000), '/run/user/1000/sysgenid');
  }
  assert.equal(resolveClientDir({}, 0), '/run/sysgenid');
});

it('a new page appears complete: 4096 bytes holding the generation, linked into place', async (t) => {
  const { Page } = await import('../src/daemon/page.js');
  const dir = tmpDir(t);
  const file = path.join(dir, 'generation');
  const page = Page.open(file, 7);
  t.after(() => page.close());
  const st = fs.statSync(file);
  assert.equal(st.size, 4096);
  assert.equal(fs.readFileSync(file).readUInt32LE(0), 7, 'holds the generation before anyone can open it');
  assert.deepEqual(fs.readdirSync(dir), ['generation'], 'no temporary name left behind');
  // An existing page keeps its inode (readers have it mapped) and its value.
  const again = Page.open(file, 9);
  t.after(() => again.close());
  assert.equal(fs.statSync(file).ino, st.ino);
  assert.equal(again.read(), 7);
});

it(
  "--dev-link replaces a stale link to a dead daemon's page, keeps a live one, and flags an untraversable directory",
  { skip },
  async (t) => {
    const base = tmpDir(t);
    const link = path.join(base, 'sysgenid-dev');
    // A page left by a daemon that died, and a link to it.
    const deadDir = path.join(base, 'dead');
    const dead = await startDaemon(t, { dir: deadDir });
    dead.child.kill('SIGKILL');
    await dead.exited;
    fs.symlinkSync(path.join(deadDir, 'generation'), link);
    const d = await startDaemon(t, { args: ['--dev-link-path', link] });
    assert.equal(fs.readlinkSync(link), d.paths.page, 'the stale link now points at the live page');
    assert.match(d.log(), /replaced the stale link .*\(no daemon serves/);
    const linked = (await status({ dir: d.dir })).devLink;
    assert.equal(linked?.outcome, 'replaced', 'STATUS shows what --dev-link did');
    assert.equal(linked?.path, link);
    // A second daemon does not take a link to a live page.
    const other = await startDaemon(t, { args: ['--dev-link-path', link] });
    assert.equal(fs.readlinkSync(link), d.paths.page);
    assert.match(other.log(), /already exists \(a link to .*\); not replacing it/);
    assert.equal((await status({ dir: other.dir })).devLink?.outcome, 'refused');
    // A 0700 runtime directory: unprivileged readers (AWS-LC in them) cannot map the page.
    const privateDir = path.join(tmpDir(t), 'run');
    fs.mkdirSync(privateDir, { mode: 0o700 });
    const p = await startDaemon(t, { dir: privateDir, args: ['--dev-link-path', path.join(base, 'private-link')] });
    assert.match(p.log(), /--dev-link: unprivileged processes cannot open/);
    assert.equal((await status({ dir: p.dir })).devLink?.readableByAll, false);
    const asNobody = await run(['cat', path.join(base, 'private-link')], { nobody: true });
    assert.notEqual(asNobody.code, 0, 'and indeed nobody cannot read it');
  },
);

it(
  'a probe in another network namespace (a container given the directory) still finds the daemon alive',
  { skip },
  async (t) => {
    const d = await startDaemon(t);
    await forceUpdate({ dir: d.dir, min: 6 });
    const lib = path.join(DIST, 'src/client/index.js');
    const script = `import(${JSON.stringify(lib)}).then(({ openProbe }) => {
    try { console.log(openProbe({ dir: ${JSON.stringify(d.dir)} }).generation()); } catch (e) { console.log(e.code); }
  });`;
    const r = await run(['unshare', '-n', process.execPath, '-e', script]);
    assert.equal(r.code, 0, r.stderr);
    // The kernel's socket table is per namespace; the daemon's flock (addon) is not. A pure-JS daemon holds
    // no flock, so a reader in another namespace cannot tell it is alive (docs/reliability.md).
    const built = fs.existsSync(path.join(ROOT, 'build/Release/sysgenid.node'));
    assert.equal(r.stdout.trim(), process.env.SYSGENID_NO_ADDON !== '1' && built ? '6' : 'ENOTCONN');
  },
);
