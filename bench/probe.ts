// Probe cost: ns per read of the generation through the mapped page (addon), through pread (the
// fallback), and a plain in-heap typed-array read as the reference, all in one run.
//
//   node dist/bench/probe.js [--json] [--quick]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { addon } from '../src/native/addon.js';
import { PAGE_SIZE } from '../src/protocol/runtime-dir.js';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, quick: { type: 'boolean' } } });
const READS = values.quick ? 2_000_000 : 20_000_000;
const PREADS = values.quick ? 100_000 : 500_000;
const RUNS = values.quick ? 3 : 7;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-'));
const page = path.join(dir, 'generation');
fs.writeFileSync(page, Buffer.alloc(PAGE_SIZE));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

// Each loop sums what it reads, so the read cannot be optimised away.
function loadLoop(view: Uint32Array, n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += view[0] as number;
  return sum;
}

function time(fn: () => number, n: number): number {
  const t0 = process.hrtime.bigint();
  const sink = fn();
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink === -1) console.log(sink);
  return ns;
}

const heap = new Uint32Array(1024);
const results: Record<string, number | null> = {};
results.heapTypedArray = median(Array.from({ length: RUNS }, () => time(() => loadLoop(heap, READS), READS)));

const native = addon();
if (native) {
  const mapped = new Uint32Array(native.mapFile(page, PAGE_SIZE), 0, 1);
  results.mappedPage = median(Array.from({ length: RUNS }, () => time(() => loadLoop(mapped, READS), READS)));
} else {
  results.mappedPage = null;
}

const fd = fs.openSync(page, 'r');
const buf = Buffer.alloc(4);
results.pread = median(
  Array.from({ length: RUNS }, () =>
    time(() => {
      let sum = 0;
      for (let i = 0; i < PREADS; i++) {
        fs.readSync(fd, buf, 0, 4, 0);
        sum += buf.readUInt32LE(0);
      }
      return sum;
    }, PREADS),
  ),
);
fs.closeSync(fd);
fs.rmSync(dir, { recursive: true, force: true });

const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : a / b);
const report = {
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${os.release()}, node ${process.version}`,
  nsPerRead: results,
  mappedVsHeap: ratio(results.mappedPage ?? null, results.heapTypedArray ?? null),
  preadVsMapped: ratio(results.pread ?? null, results.mappedPage ?? null),
};
if (values.json) {
  console.log(JSON.stringify(report));
} else {
  console.log(`probe, ${report.machine}`);
  console.log(`  heap Uint32Array read   ${results.heapTypedArray?.toFixed(2)} ns   (reference)`);
  console.log(
    `  mapped page (addon)     ` +
      `${results.mappedPage === null ? 'n/a (addon not loaded)' : `${results.mappedPage.toFixed(2)} ns   ${report.mappedVsHeap?.toFixed(2)}x the reference`}`,
  );
  console.log(
    `  pread (fallback)        ${results.pread?.toFixed(0)} ns   ` +
      `${report.preadVsMapped === null ? '' : `${report.preadVsMapped.toFixed(0)}x the mapped read`}`,
  );
}
