// The vmclock backend against a synthetic page laid out as include/uapi/linux/vmclock-abi.h says,
// rewritten by the test the way a hypervisor would (seq_count odd while writing).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  FLAG_NOTIFICATION_PRESENT,
  FLAG_VM_GEN_COUNTER_PRESENT,
  OFF_FLAGS,
  OFF_MAGIC,
  OFF_SEQ,
  OFF_VM_GENERATION,
  VMCLOCK_MAGIC,
  readVmclock,
} from '../src/daemon/backends/vmclock.js';
import { eventually, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

class FakeVmclock {
  readonly file: string;
  seq = 0;
  constructor(
    file: string,
    generation: bigint,
    flags = FLAG_VM_GEN_COUNTER_PRESENT | FLAG_NOTIFICATION_PRESENT,
    magic = VMCLOCK_MAGIC,
  ) {
    this.file = file;
    const page = Buffer.alloc(4096);
    page.writeUInt32LE(magic, OFF_MAGIC);
    page.writeUInt32LE(4096, 4);
    page.writeUInt16LE(1, 8);
    page.writeBigUInt64LE(flags, OFF_FLAGS);
    page.writeBigUInt64LE(generation, OFF_VM_GENERATION);
    fs.writeFileSync(file, page);
  }
  #poke(offset: number, buf: Buffer): void {
    const fd = fs.openSync(this.file, 'r+');
    fs.writeSync(fd, buf, 0, buf.length, offset);
    fs.closeSync(fd);
  }
  setSeq(seq: number): void {
    this.seq = seq;
    const b = Buffer.alloc(4);
    b.writeUInt32LE(seq);
    this.#poke(OFF_SEQ, b);
  }
  /** A restore as the hypervisor does it: seq odd, write, seq even. `finish: false` leaves it mid-write. */
  setGeneration(generation: bigint, finish = true): void {
    this.setSeq(this.seq + 1);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(generation);
    this.#poke(OFF_VM_GENERATION, b);
    if (finish) this.setSeq(this.seq + 1);
  }
}

describe('vmclock', () => {
  it('reads the counter only from a consistent copy, and says why it cannot', (t) => {
    const dir = tmpDir(t);
    const fake = new FakeVmclock(path.join(dir, 'vmclock'), 7n);
    const read = () => fs.readFileSync(fake.file);
    assert.deepEqual(readVmclock(read), {
      ok: true,
      generation: 7n,
      flags: FLAG_VM_GEN_COUNTER_PRESENT | FLAG_NOTIFICATION_PRESENT,
      seq: 0,
    });
    fake.setGeneration(8n, false);
    assert.deepEqual(readVmclock(read, 3), { ok: false, why: 'seq_count never settled (the hypervisor kept writing)' });
    fake.setSeq(fake.seq + 1);
    assert.equal((readVmclock(read) as { generation: bigint }).generation, 8n);
    const noflag = new FakeVmclock(path.join(dir, 'noflag'), 1n, 0n);
    assert.match(
      (readVmclock(() => fs.readFileSync(noflag.file)) as { why: string }).why,
      /VM_GEN_COUNTER_PRESENT is clear/,
    );
    const bad = new FakeVmclock(path.join(dir, 'bad'), 1n, FLAG_VM_GEN_COUNTER_PRESENT, 0x1234);
    assert.match((readVmclock(() => fs.readFileSync(bad.file)) as { why: string }).why, /bad magic/);
  });

  it('the daemon bumps when vm_generation_counter changes, and not for a write in progress', async (t) => {
    const dir = tmpDir(t);
    const fake = new FakeVmclock(path.join(dir, 'vmclock0'), 100n);
    const d = await startDaemon(t, { args: ['--backends', 'vmclock', '--vmclock-path', fake.file] });
    const s = await statusOf(d.dir);
    const b = (s.backends as Array<{ name: string; live: boolean; detail: string }>).find((x) => x.name === 'vmclock');
    assert.equal(b?.live, true, JSON.stringify(s.backends));
    assert.match(b?.detail ?? '', /vm_generation_counter 100/);
    assert.equal(s.generation, 0, 'the value found at start is not a change');
    fake.setGeneration(101n, false);
    await sleep(200);
    assert.equal((await statusOf(d.dir)).generation, 0, 'seq_count odd: the hypervisor is still writing');
    fake.setSeq(fake.seq + 1);
    await eventually(async () => (await statusOf(d.dir)).generation === 1, 5000, 'bumped');
    const after = await statusOf(d.dir);
    assert.match((after.lastBump as { source: string }).source, /^vmclock: vm_generation_counter 100 -> 101$/);
    fake.setSeq(fake.seq + 2);
    await sleep(200);
    assert.equal((await statusOf(d.dir)).generation, 1, 'seq_count moving alone is no restore');
    // A restore while the daemon is down is counted when it comes back.
    await d.stop();
    fake.setGeneration(102n);
    await startDaemon(t, { dir: d.dir, args: ['--backends', 'vmclock', '--vmclock-path', fake.file] });
    assert.equal((await statusOf(d.dir)).generation, 2);
  });

  it('a missing device or one without the counter leaves the backend off, with the reason', async (t) => {
    const dir = tmpDir(t);
    const d = await startDaemon(t, { args: ['--backends', 'vmclock', '--vmclock-path', path.join(dir, 'absent')] });
    const off = (await statusOf(d.dir)).backends as Array<{ name: string; live: boolean; detail: string }>;
    assert.match(off.find((b) => b.name === 'vmclock')?.detail ?? '', /^no .*absent \(needs Linux >= 7\.0/);
    const noflag = new FakeVmclock(path.join(dir, 'noflag'), 1n, 0n);
    const e = await startDaemon(t, { args: ['--backends', 'vmclock', '--vmclock-path', noflag.file] });
    assert.match(e.log(), /backend vmclock: off: .*VM_GEN_COUNTER_PRESENT is clear/);
  });
});
