// The kernel VM-fork backend against the real /dev/kmsg.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { currentBootId } from '../src/daemon/backends/backend.js';
import { VM_FORK_MESSAGE, classify, parseKmsgRecord, readKernelLog } from '../src/daemon/backends/kmsg.js';
import { DAEMON, eventually, startDaemon, statusOf, tmpDir } from './helpers.js';

const canReadKmsg = (() => {
  try {
    fs.closeSync(fs.openSync('/dev/kmsg', fs.constants.O_RDONLY | fs.constants.O_NONBLOCK));
    return true;
  } catch {
    return false;
  }
})();

describe('kmsg records', () => {
  it('parses records, continuation lines included', () => {
    assert.deepEqual(parseKmsgRecord(`5,338,1303808,-;${VM_FORK_MESSAGE}\n`), {
      facility: 0, level: 5, seq: 338, usec: 1303808, message: VM_FORK_MESSAGE,
    });
    const r = parseKmsgRecord('6,12,99,c,caller=T1;usb 1-1: new device\n SUBSYSTEM=usb\n DEVICE=c189:1\n');
    assert.equal(r?.message, 'usb 1-1: new device');
    assert.equal(r?.seq, 12);
    for (const bad of ['', 'garbage', 'x,1,2,-;m', '5,-1,2,-;m', '5;m']) assert.equal(parseKmsgRecord(bad), undefined, bad);
  });

  it('only a facility-0 record of the exact line is a VM fork', () => {
    const rec = (prio: number, message: string) => parseKmsgRecord(`${prio},1,1,-;${message}\n`)!;
    assert.equal(classify(rec(5, VM_FORK_MESSAGE)), 'fork');
    assert.equal(classify(rec(6, VM_FORK_MESSAGE)), 'fork');
    assert.equal(classify(rec(13, VM_FORK_MESSAGE)), 'spoof', 'LOG_USER, what a write to /dev/kmsg becomes');
    assert.equal(classify(rec(5, `${VM_FORK_MESSAGE}!`)), 'other');
    assert.equal(classify(rec(5, 'random: crng init done')), 'other');
  });
});

describe('kmsg backend on the real kernel log', { skip: canReadKmsg ? false : 'cannot read /dev/kmsg here (needs root)' }, () => {
  it('skips the backlog on first start and ignores a VM-fork line written from userspace', async (t) => {
    const d = await startDaemon(t, { args: ['--backends', 'kmsg'] });
    const s = await statusOf(d.dir);
    const kmsg = (s.backends as Array<{ name: string; live: boolean; detail: string }>).find((b) => b.name === 'kmsg');
    assert.equal(kmsg?.live, true, JSON.stringify(s.backends));
    assert.match(kmsg?.detail ?? '', /skipped a backlog of \d+ records/);
    assert.equal(s.generation, 0, 'the boot-time backlog is not new');
    // A user writes the kernel's words, even with a kernel priority: the kernel files it as LOG_USER.
    fs.writeFileSync('/dev/kmsg', `<5>${VM_FORK_MESSAGE}\n`);
    const line = await d.waitForLog(/ignoring a VM-fork line from userspace at seq (\d+) \(facility 1/);
    const seq = Number(/seq (\d+)/.exec(line)?.[1]);
    const after = await statusOf(d.dir);
    const lastBump = after.lastBump as { source: string } | null;
    assert.ok(!lastBump?.source.includes(`seq ${seq}`), 'the spoof did not bump');
    if (lastBump === null) assert.equal(after.generation, 0);
  });

  it('counts a VM fork that happened while the daemon was down, once', async (t) => {
    const fork = readKernelLog().find((r) => r.message === VM_FORK_MESSAGE && r.facility === 0);
    if (!fork) {
      t.skip('no VM-fork record in this machine\'s kernel log buffer');
      return;
    }
    const dir = path.join(tmpDir(t), 'run');
    const first = await startDaemon(t, { dir, args: ['--backends', 'kmsg'] });
    await first.stop();
    // As if the daemon had last run just before the kernel logged that fork (a record in the format of
    // the daemons before backend memos, which an upgraded daemon must still read).
    const state = path.join(dir, 'state');
    const record = JSON.stringify({ generation: 0, bootId: currentBootId(), kmsgSeq: fork.seq - 1 });
    fs.writeFileSync(state, record.padEnd(255) + '\n');
    const second = await startDaemon(t, { dir, args: ['--backends', 'kmsg'] });
    const s = await statusOf(dir);
    assert.ok(s.generation >= 1, `generation ${s.generation}`);
    assert.match(second.log(), new RegExp(`kmsg: VM fork \\(seq ${fork.seq}\\)`));
    assert.match(second.log(), /happened while no daemon was running/);
    const persisted = JSON.parse(fs.readFileSync(state, 'utf8')) as { memos: { kmsg: number }; generation: number };
    assert.ok(persisted.memos.kmsg >= fork.seq);
    await second.stop();
    const third = await startDaemon(t, { dir, args: ['--backends', 'kmsg'] });
    assert.equal((await statusOf(dir)).generation, s.generation, 'not counted twice');
    assert.doesNotMatch(third.log(), new RegExp(`seq ${fork.seq}\\)`));
  });

  it('without permission the backend is off with a reason and the daemon keeps running', async (t) => {
    if (process.getuid?.() !== 0 || fs.readFileSync('/proc/sys/kernel/dmesg_restrict', 'utf8').trim() !== '1') {
      t.skip('needs root and kernel.dmesg_restrict=1 to run the daemon as a user who cannot read the log');
      return;
    }
    const tmp = tmpDir(t);
    fs.chmodSync(tmp, 0o1777);
    const dir = path.join(tmp, 'run');
    const child = spawn('runuser', ['-u', 'nobody', '--', process.execPath, DAEMON, '--dir', dir, '--no-hooks', '--backends', 'kmsg'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (log += s));
    // runuser passes SIGTERM on to the daemon; SIGKILL would orphan it with our pipe open.
    const closed = new Promise((resolve) => child.on('close', resolve));
    t.after(async () => {
      child.kill('SIGTERM');
      await closed;
    });
    await eventually(() => log.includes('ready'), 10_000, 'daemon ready');
    assert.match(log, /backend kmsg: off: cannot read \/dev\/kmsg: E(ACCES|PERM) \(needs root or CAP_SYSLOG/);
    const s = await statusOf(dir);
    assert.equal(s.generation, 0);
    assert.equal((s.backends as Array<{ name: string; live: boolean }>).find((b) => b.name === 'kmsg')?.live, false);
  });
});
