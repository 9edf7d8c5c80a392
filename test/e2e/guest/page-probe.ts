// The guest's hot-path reader: it never talks to the daemon, it only looks at the mapped page, and notes
// (guest monotonic clock) when the counter it sees changes.

import fs from 'node:fs';
import { openProbe } from '../../../src/client/index.js';

const report = process.env.REPORT ?? '/run/e2e/page-probe.json';
const probe = openProbe();
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const seen: Array<{ generation: number; atMs: number }> = [];
let last = -1;
const write = (): void => {
  fs.writeFileSync(`${report}.tmp`, JSON.stringify({ mapped: probe.mapped, seen }));
  fs.renameSync(`${report}.tmp`, report);
};
for (;;) {
  const g = probe.generation();
  if (g !== last) {
    seen.push({ generation: g, atMs: Number(process.hrtime.bigint()) / 1e6 });
    last = g;
    write();
  }
  // A blocking 1 ms sleep between loads: fine-grained without holding the guest's only CPU.
  Atomics.wait(sleeper, 0, 0, 1);
}
