// The uevent backend (opt-in): real netlink uevents, triggered through sysfs.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { describe, it } from 'node:test';
import { addon } from '../src/native/addon.js';
import { isVmGenIdChange, parseUevent } from '../src/daemon/backends/uevent.js';
import { eventually, sleep, startDaemon, statusOf } from './helpers.js';

const UEVENT = '/sys/devices/virtual/mem/zero/uevent';
const canTrigger = (() => {
  try {
    fs.accessSync(UEVENT, fs.constants.W_OK);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
})();

const trigger = (): void => fs.writeFileSync(UEVENT, `change ${crypto.randomUUID()} NEWVMGENID=1`);
type Backend = { name: string; live: boolean; detail: string };

describe('uevent backend', () => {
  it('recognises the kernel key, and the synthetic one only when asked', () => {
    const real = parseUevent(['change@/devices/LNXSYSTM:00/VMGENCTR:00', 'ACTION=change', 'NEW_VMGENID=1', 'SEQNUM=9']);
    assert.equal(real.env.get('SEQNUM'), '9');
    assert.equal(isVmGenIdChange(real, false), true);
    const synth = parseUevent([
      'change@/devices/virtual/mem/zero',
      'ACTION=change',
      'SYNTH_UUID=x',
      'SYNTH_ARG_NEWVMGENID=1',
    ]);
    assert.equal(isVmGenIdChange(synth, false), false);
    assert.equal(isVmGenIdChange(synth, true), true);
    assert.equal(isVmGenIdChange(parseUevent(['add@/x', 'NEW_VMGENID=0']), true), false);
  });

  it(
    'without the addon the backend is off and says why',
    { skip: addon() ? 'the addon is loaded in this run' : false },
    async (t) => {
      const d = await startDaemon(t, { args: ['--backends', 'uevent'] });
      const b = ((await statusOf(d.dir)).backends as Backend[]).find((x) => x.name === 'uevent');
      assert.deepEqual([b?.live, b?.detail], [false, 'needs the native addon (Node has no netlink sockets)']);
    },
  );

  it(
    'bumps on a kernel uevent carrying the VM generation key',
    { skip: !addon() ? 'needs the native addon' : !canTrigger ? 'needs root to write a sysfs uevent file' : false },
    async (t) => {
      const d = await startDaemon(t, { args: ['--backends', 'uevent', '--uevent-synthetic'] });
      const b = ((await statusOf(d.dir)).backends as Backend[]).find((x) => x.name === 'uevent');
      assert.equal(b?.live, true, b?.detail);
      trigger();
      await eventually(async () => (await statusOf(d.dir)).generation === 1, 5000, 'bumped by the uevent');
      assert.match(
        ((await statusOf(d.dir)).lastBump as { source: string }).source,
        /^uevent: change@\/devices\/virtual\/mem\/zero$/,
      );
    },
  );

  it(
    'ignores a synthetic event unless told to accept it',
    { skip: !addon() ? 'needs the native addon' : !canTrigger ? 'needs root to write a sysfs uevent file' : false },
    async (t) => {
      const d = await startDaemon(t, { args: ['--backends', 'uevent'] });
      trigger();
      await d.waitForLog(/uevent: ignoring change@\/devices\/virtual\/mem\/zero \(synthetic/);
      await sleep(50);
      assert.equal((await statusOf(d.dir)).generation, 0);
    },
  );
});
