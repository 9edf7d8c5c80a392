// The kernel VM-fork backend against the real /dev/kmsg (read only: a test never writes to the kernel log
// of the machine it runs on), and against a stand-in FIFO for what must be written.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Daemon } from '../src/daemon/daemon.js';
import { createLogger } from '../src/daemon/log.js';
import { currentBootId } from '../src/daemon/backends/backend.js';
import { VM_FORK_MESSAGE, classify, parseKmsgRecord, readKernelLog } from '../src/daemon/backends/kmsg.js';
import { daemonArgv, eventually, inProcessOptions, launch, startDaemon, statusOf, tmpDir } from './helpers.js';

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
      facility: 0,
      level: 5,
      seq: 338,
      usec: 1303808,
      message: VM_FORK_MESSAGE,
    });
    const r = parseKmsgRecord('6,12,99,c,caller=T1;usb 1-1: new device\n SUBSYSTEM=usb\n DEVICE=c189:1\n');
    assert.equal(r?.message, 'usb 1-1: new device');
    assert.equal(r?.seq, 12);
    for (const bad of ['', 'garbage', 'x,1,2,-;m', '5,-1,2,-;m', '5;m'])
      assert.equal(parseKmsgRecord(bad), undefined, bad);
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

describe(
  'kmsg backend on the real kernel log',
  { skip: canReadKmsg ? false : 'cannot read /dev/kmsg here (needs root)' },
  () => {
    it('skips the backlog on first start', async (t) => {
      const d = await startDaemon(t, { args: ['--backends', 'kmsg'] });
      const s = await statusOf(d.dir);
      const kmsg = (s.backends as Array<{ name: string; live: boolean; detail: string }>).find(
        (b) => b.name === 'kmsg',
      );
      assert.equal(kmsg?.live, true, JSON.stringify(s.backends));
      assert.match(kmsg?.detail ?? '', /skipped a backlog of \d+ records/);
      assert.equal(s.generation, 0, 'the boot-time backlog is not new');
    });

    it('stops at once on SIGTERM while it waits for the next record', async (t) => {
      // Without the addon, a blocking read in the thread pool once kept the process until the kernel's next
      // record: Node joins the pool at exit. The run with SYSGENID_NO_ADDON=1 is the one that hung.
      const d = await startDaemon(t, { args: ['--backends', 'kmsg'] });
      await eventually(() => /backend kmsg: live/.test(d.log()), 5000, 'kmsg live');
      const code = await Promise.race([d.stop(), new Promise((r) => setTimeout(r, 5000, 'still running'))]);
      assert.equal(code, 0, `exit after SIGTERM:\n${d.log()}`);
    });

    it('counts a VM fork that happened while the daemon was down, once', async (t) => {
      const fork = readKernelLog().find((r) => r.message === VM_FORK_MESSAGE && r.facility === 0);
      if (!fork) {
        t.skip("no VM-fork record in this machine's kernel log buffer");
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
      // runuser passes SIGTERM on to the daemon; SIGKILL would orphan it with our pipe open.
      const daemon = launch(['runuser', '-u', 'nobody', '--', ...daemonArgv(dir, ['--backends', 'kmsg'])], {
        t,
        stop: 'SIGTERM',
      });
      await eventually(() => daemon.stderr().includes('ready'), 10_000, 'daemon ready');
      assert.match(
        daemon.stderr(),
        /backend kmsg: off: cannot read \/dev\/kmsg: E(ACCES|PERM) \(needs root or CAP_SYSLOG/,
      );
      const s = await statusOf(dir);
      assert.equal(s.generation, 0);
      assert.equal((s.backends as Array<{ name: string; live: boolean }>).find((b) => b.name === 'kmsg')?.live, false);
    });
  },
);

describe('kmsg backend on a stand-in kernel log', () => {
  // What a user's write of the kernel's words to /dev/kmsg becomes (priority 13: facility 1, LOG_USER),
  // fed through a FIFO, which gives one record per read and EAGAIN once drained as the device does. The
  // real write is left to the throwaway guest of the end-to-end test (test/e2e/guest/agent.ts).
  it('ignores a VM-fork line written from userspace', async (t) => {
    const tmp = tmpDir(t);
    const fifo = path.join(tmp, 'kmsg');
    execFileSync('mkfifo', [fifo]);
    const writer = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    t.after(() => fs.closeSync(writer));
    let log = '';
    const logger = createLogger('debug', (line) => (log += line), false);
    const daemon = await Daemon.start(
      inProcessOptions(path.join(tmp, 'run'), logger, { backends: ['kmsg'], backendConfig: { kmsg: { path: fifo } } }),
    );
    t.after(() => daemon.close());
    await eventually(() => /kmsg/.test(log), 5000, 'kmsg backend started');
    fs.writeSync(writer, `13,50,5000000,-;${VM_FORK_MESSAGE}\n`);
    await eventually(
      () => /ignoring a VM-fork line from userspace at seq 50 \(facility 1/.test(log),
      5000,
      `the spoof logged:\n${log}`,
    );
    assert.equal(daemon.generation, 0, 'the spoof did not bump');
    // The same words from the kernel (facility 0) do bump: the check above is not vacuous.
    fs.writeSync(writer, `6,51,5000100,-;${VM_FORK_MESSAGE}\n`);
    await eventually(() => daemon.generation === 1, 5000, `the kernel's record bumped:\n${log}`);
  });
});
