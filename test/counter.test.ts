// The counter's guarantees against damage (issue 12 points 11, 12 and 14, and "Test strength" (a)): the
// floor outside the runtime directory, the deliberate way out of the ceiling, a page that is written
// before anyone is told, and a runtime directory removed under a running daemon.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { it } from 'node:test';
import { MAX_BUMP_MIN } from '../src/defaults.js';
import { recoverGeneration } from '../src/daemon/floor.js';
import { decodeU32 } from '../src/protocol/page-format.js';
import {
  RawClient,
  bump,
  eventually,
  pageValue,
  resetGeneration,
  startDaemon,
  statusOf,
  stoppedAt,
  tmpDir,
  writePage,
} from './helpers.js';

const preadU32 = (fd: number): number => {
  const b = Buffer.alloc(4);
  fs.readSync(fd, b, 0, 4, 0);
  return decodeU32(b);
};

it('a runtime directory lost while the daemon is stopped: restarts from the floor, loudly', async (t) => {
  const dir = await stoppedAt(t, 7);
  fs.rmSync(dir, { recursive: true });
  const again = await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 7, 'not back to 0 within this boot');
  assert.match(again.log(), /starting from the counter floor 7 in .*run\.floor/);
  assert.equal(await bump(dir), 8);
});

it('page and state both damaged: a random page does not move the counter towards the ceiling', async (t) => {
  const dir = await stoppedAt(t, 3);
  writePage(path.join(dir, 'generation'), 0xfff0_1234);
  fs.writeFileSync(path.join(dir, 'state'), 'garbage\n');
  const again = await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 3);
  assert.match(again.log(), /the page holds 4293923380, implausible against no state record and the floor 3/);
  assert.equal(pageValue(path.join(dir, 'generation')), 3, 'the damaged value is overwritten');
});

it('the recovery rule: crash cases are kept, damage is not', () => {
  const at = { floorPath: 'F' };
  // A crash after the floor and the page, before the state record.
  assert.equal(recoverGeneration({ page: 6, state: 5, floor: 6, ...at }).initial, 6);
  // A crash after the floor, before the page: no reader saw 6, but staying above costs nothing.
  assert.equal(recoverGeneration({ page: 5, state: 5, floor: 6, ...at }).initial, 6);
  // Damage beyond the floor, and without a floor beyond the largest forced jump.
  assert.equal(recoverGeneration({ page: 99, state: 5, floor: 6, ...at }).initial, 6);
  assert.equal(recoverGeneration({ page: 0xffff_fff0, state: 5, floor: undefined, ...at }).initial, 5);
  assert.equal(recoverGeneration({ page: 0xffff_fff0, state: undefined, floor: undefined, ...at }).initial, 0);
  // A page confirmed by the state record is taken even above a floor (a floor write that failed).
  assert.equal(recoverGeneration({ page: 9, state: 9, floor: 6, ...at }).initial, 9);
  // Without a floor, a forced jump within the bound after a crash is kept.
  assert.equal(recoverGeneration({ page: 5000, state: 5, floor: undefined, ...at }).initial, 5000);
  const nothing = recoverGeneration({ page: undefined, state: undefined, floor: undefined, ...at });
  assert.equal(nothing.initial, 0);
  assert.match(nothing.notes[0]?.message ?? '', /no page, no state record and no counter floor/);
});

it('takes the larger of page and state after a crash between the two writes', async (t) => {
  const dir = await stoppedAt(t, 5);
  // As if the daemon died after writing the floor and the page and before the state file.
  const floor = `${dir}.floor`;
  fs.writeFileSync(floor, fs.readFileSync(floor, 'utf8').replace('"generation":5', '"generation":6'));
  writePage(path.join(dir, 'generation'), 6);
  await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 6);
});

it('everything lost and no floor: starts at 0 and says so', async (t) => {
  const dir = await stoppedAt(t, 4);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(`${dir}.floor`);
  const again = await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 0);
  assert.match(again.log(), /starting at generation 0: no page, no state record and no counter floor/);
});

it('a floor from another boot is ignored', async (t) => {
  const dir = path.join(tmpDir(t), 'run');
  fs.writeFileSync(`${dir}.floor`, `${JSON.stringify({ generation: 9, bootId: 'another-boot' })}\n`);
  const d = await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 0);
  assert.match(d.log(), /is from another boot/);
});

it('--state-dir keeps the floor there; a floor that is a link is refused and reported', async (t) => {
  const base = tmpDir(t);
  const dir = path.join(base, 'run');
  const state = path.join(base, 'state', 'sysgenid');
  const d = await startDaemon(t, { dir, args: ['--state-dir', state] });
  await bump(dir, 2);
  const s = (await statusOf(dir)) as unknown as { counter: { floor: string; floorProblem: null; maxBumpMin: number } };
  assert.deepEqual(s.counter, { floor: path.join(state, 'floor'), floorProblem: null, maxBumpMin: MAX_BUMP_MIN });
  assert.equal(JSON.parse(fs.readFileSync(path.join(state, 'floor'), 'utf8')).generation, 2);
  assert.ok(!fs.existsSync(`${dir}.floor`));
  await d.stop();
  const linked = path.join(base, 'linked');
  fs.mkdirSync(linked);
  fs.symlinkSync(path.join(base, 'elsewhere'), path.join(linked, 'floor'));
  const l = await startDaemon(t, { dir, args: ['--state-dir', linked] });
  assert.match(l.log(), /no counter floor: .*is a symbolic link; refusing to follow it/);
  const c = ((await statusOf(dir)) as unknown as { counter: { floor: null; floorProblem: string } }).counter;
  assert.equal(c.floor, null);
  assert.match(c.floorProblem, /symbolic link/);
  assert.ok(!fs.existsSync(path.join(base, 'elsewhere')), 'the link was not followed');
});

it('--reset-generation: refused while a daemon runs; with it stopped, sets page, state and floor', async (t) => {
  const dir = path.join(tmpDir(t), 'run');
  const d = await startDaemon(t, { dir });
  await bump(dir, 40);
  const busy = await resetGeneration(dir, 2);
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /already owns/);
  assert.equal((await statusOf(dir)).generation, 40, 'untouched');
  await d.stop();
  const r = await resetGeneration(dir, 2);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /generation reset from 40 to 2 by --reset-generation .*every reader of the page sees a change/,
  );
  assert.equal(pageValue(path.join(dir, 'generation')), 2);
  await startDaemon(t, { dir });
  assert.equal((await statusOf(dir)).generation, 2, 'the floor does not bring the old value back');
  const bad = await resetGeneration(dir, 4294967296);
  assert.equal(bad.code, 2);
});

it('BUMP --min leaves room below the ceiling: up to MAX_BUMP_MIN, EINVAL beyond', async (t) => {
  const d = await startDaemon(t);
  const { c } = await RawClient.open(d.paths.control);
  t.after(() => c.close());
  assert.match(await c.request(`BUMP ${MAX_BUMP_MIN + 1}`), /^ERR EINVAL .*--reset-generation/);
  assert.equal((await statusOf(d.dir)).generation, 0);
  assert.equal(await c.request(`BUMP ${MAX_BUMP_MIN}`), `OK ${MAX_BUMP_MIN}`);
  assert.equal(await c.request('BUMP'), `OK ${MAX_BUMP_MIN + 1}`);
});

it('the counter never wraps at the u32 ceiling', async (t) => {
  // BUMP cannot take it there (MAX_BUMP_MIN); only a deliberate reset with the daemon stopped can.
  const dir = path.join(tmpDir(t), 'run');
  await (await startDaemon(t, { dir })).stop();
  const reset = await resetGeneration(dir, 4294967295);
  assert.equal(reset.code, 0, reset.stderr);
  const d = await startDaemon(t, { dir });
  assert.equal((await statusOf(d.dir)).generation, 0xffff_ffff);
  const { c } = await RawClient.open(d.paths.control);
  t.after(() => c.close());
  assert.match(await c.request('BUMP'), /^ERR EOVERFLOW /);
  assert.match(await c.request('BUMP 4294967296'), /^ERR EINVAL /);
  assert.equal(pageValue(d.paths.page), 0xffff_ffff);
});

it('the runtime directory removed while running: bumps reach the mapped page; directory, page, sockets come back', async (t) => {
  const d = await startDaemon(t);
  await bump(d.dir, 5);
  const mapped = fs.openSync(d.paths.page, 'r');
  t.after(() => fs.closeSync(mapped));
  const oldIno = fs.fstatSync(mapped).ino;
  const w = await RawClient.open(d.paths.watch);
  const ctl = await RawClient.open(d.paths.control);
  t.after(() => {
    w.c.close();
    ctl.c.close();
  });
  fs.rmSync(d.dir, { recursive: true });
  // Before or after the daemon notices: never EIO, and the inode readers mapped moves.
  assert.equal(await ctl.c.request('BUMP'), 'OK 6');
  assert.equal(preadU32(mapped), 6);
  assert.equal(await w.c.next(), 'GEN 6');
  await d.waitForLog(/recreated the runtime directory/);
  assert.match(d.log(), /vanished while running; the page readers mapped is still written/);
  assert.equal(pageValue(d.paths.page), 6, 'a page for new readers, same value');
  assert.notEqual(fs.statSync(d.paths.page).ino, oldIno);
  assert.equal(await bump(d.dir), 7, 'the control socket is back');
  assert.equal(preadU32(mapped), 7, 'the old inode is still written');
  assert.equal(pageValue(d.paths.page), 7);
  const s = (await statusOf(d.dir)) as unknown as { runtimeDir: { lost: number; problem: null; orphanPages: number } };
  assert.deepEqual(s.runtimeDir, { lost: 1, problem: null, orphanPages: 1 });
  assert.ok(fs.existsSync(d.paths.state) && fs.existsSync(path.join(d.dir, 'sysgenidd.pid')));
  assert.equal(JSON.parse(fs.readFileSync(d.paths.state, 'utf8')).generation, 7);
});

function hasPrlimit(): boolean {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

it(
  'a page write that fails: BUMP is EIO, no watcher is told, STATUS keeps the old generation',
  { skip: !hasPrlimit() && 'needs prlimit(1)' },
  async (t) => {
    // SIGXFSZ ignored (inherited through exec), then a file size limit of 0 on the running daemon:
    // every pwrite to a regular file fails with EFBIG, sockets and the log pipe are unaffected.
    const d = await startDaemon(t, { shellPrefix: "trap '' XFSZ;" });
    await bump(d.dir, 2);
    const w = await RawClient.open(d.paths.watch);
    const ctl = await RawClient.open(d.paths.control);
    t.after(() => {
      w.c.close();
      ctl.c.close();
    });
    const pid = String(d.child.pid);
    execFileSync('prlimit', ['--pid', pid, '--fsize=0:unlimited']);
    assert.match(await ctl.c.request('BUMP'), /^ERR EIO cannot write the page/);
    assert.ok(await w.c.silent(300), 'no GEN for a generation the page does not hold');
    assert.equal((await statusOf(d.dir)).generation, 2);
    assert.equal(pageValue(d.paths.page), 2);
    assert.match(d.log(), /cannot write the page: .*generation stays 2/);
    execFileSync('prlimit', ['--pid', pid, '--fsize=unlimited:unlimited']);
    assert.equal(await ctl.c.request('BUMP'), 'OK 3');
    assert.equal(await w.c.next(), 'GEN 3');
  },
);

it('the page holds the new value when the first GEN line arrives, bump after bump', async (t) => {
  const d = await startDaemon(t);
  const fd = fs.openSync(d.paths.page, 'r');
  t.after(() => fs.closeSync(fd));
  // Read in the data handler itself, before anything else runs in this process.
  const seen: Array<{ gen: number; page: number }> = [];
  const socket = net.createConnection({ path: d.paths.watch });
  t.after(() => socket.destroy());
  let buf = '';
  socket.setEncoding('latin1').on('data', (s: string) => {
    buf += s;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const m = /^GEN (\d+)$/.exec(line);
      if (m) seen.push({ gen: Number(m[1]), page: preadU32(fd) });
    }
  });
  const ctl = await RawClient.open(d.paths.control);
  t.after(() => ctl.c.close());
  const n = 300;
  for (let i = 1; i <= n; i++) assert.equal(await ctl.c.request('BUMP'), `OK ${i}`);
  await eventually(() => seen.length === n, 10_000, `${n} GEN lines`);
  const behind = seen.filter((s) => s.page < s.gen);
  assert.deepEqual(behind, [], 'never a GEN for a value the page does not hold yet');
});
