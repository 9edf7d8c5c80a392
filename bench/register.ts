// The guard's cost (sysgenid/register, issue 13): ns per call of each guarded entry point against the
// same function unguarded, in the same process and run, rounds interleaved so that a busy neighbour
// hits both alike. Targets: at most 2% on crypto.randomBytes(32), at most 5 ns on randomUUID().
// Then the cost of one reseed (OpenSSL and Node's caches). The page is a file in a temporary directory
// that never changes, as between two clones. With SYSGENID_NO_ADDON=1 the check is a pread instead.
//
//   node dist/bench/register.js [--json] [--quick]

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CryptoGuard } from '../src/client/register-guard.js';
import { addonState } from '../src/native/addon.js';
import { PAGE_SIZE } from '../src/protocol/runtime-dir.js';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, quick: { type: 'boolean' } } });
const ROUNDS = values.quick ? 5 : 15;
const SCALE = values.quick ? 0.2 : 1;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-register-'));
fs.writeFileSync(path.join(dir, 'generation'), Buffer.alloc(PAGE_SIZE));

// The unguarded functions, taken before the guard wraps them.
const plain = {
  randomBytes32: crypto.randomBytes.bind(null, 32) as () => Buffer,
  randomUUID: crypto.randomUUID,
  randomInt: crypto.randomInt.bind(null, 1_000_000) as () => number,
  getRandomValues16: (
    (a: Uint8Array) => () =>
      crypto.getRandomValues(a)
  )(new Uint8Array(16)),
};
const origGetRandomValues = Object.getPrototypeOf(crypto.webcrypto).getRandomValues as (a: Uint8Array) => Uint8Array;
const plainGetRandomValues = (a: Uint8Array): Uint8Array => origGetRandomValues.call(crypto.webcrypto, a);
const guard = new CryptoGuard({ dir, vmclockPath: null, log: () => undefined });
guard.install();
const guarded = {
  randomBytes32: () => crypto.randomBytes(32),
  randomUUID: () => crypto.randomUUID(),
  randomInt: () => crypto.randomInt(1_000_000),
  getRandomValues16: (
    (a: Uint8Array) => () =>
      crypto.getRandomValues(a)
  )(new Uint8Array(16)),
};
const plainCalls = {
  randomBytes32: () => plain.randomBytes32(),
  randomUUID: () => plain.randomUUID(),
  randomInt: () => plain.randomInt(),
  getRandomValues16: (
    (a: Uint8Array) => () =>
      plainGetRandomValues(a)
  )(new Uint8Array(16)),
};
const CALLS: Record<keyof typeof guarded, number> = {
  randomBytes32: 200_000,
  randomUUID: 1_000_000,
  randomInt: 1_000_000,
  getRandomValues16: 200_000,
};

function loop(fn: () => unknown, n: number): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (fn() === undefined) sink++;
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink === -1) console.log(sink);
  return ns;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

interface Row {
  name: string;
  plainNs: number;
  guardedNs: number;
  overheadNs: number;
  overheadPct: number;
}
const rows: Row[] = [];
for (const name of Object.keys(guarded) as Array<keyof typeof guarded>) {
  const n = Math.max(1000, Math.round(CALLS[name] * SCALE));
  // Warm both up to the optimising tier before measuring.
  loop(plainCalls[name], n);
  loop(guarded[name], n);
  const p: number[] = [];
  const g: number[] = [];
  const diff: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const a = loop(plainCalls[name], n);
    const b = loop(guarded[name], n);
    p.push(a);
    g.push(b);
    diff.push(b - a);
  }
  const plainNs = median(p);
  const overheadNs = median(diff);
  rows.push({ name, plainNs, guardedNs: median(g), overheadNs, overheadPct: (overheadNs / plainNs) * 100 });
}

const checkCalls = Math.round(2_000_000 * SCALE);
const check = median(Array.from({ length: ROUNDS }, () => loop(() => guard.check('bench'), checkCalls)));
const reseedUs: number[] = [];
for (let i = 0; i < 20; i++) reseedUs.push(guard.reseed('bench').durationUs);
fs.rmSync(dir, { recursive: true, force: true });

const report = {
  machine:
    `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${os.release()}, node ${process.version}, ` +
    `load ${os.loadavg()[0]?.toFixed(2)}`,
  addon: addonState(),
  mapped: guard.state().mapped,
  rows,
  checkNs: check,
  reseedUsMedian: median(reseedUs),
  targets: {
    randomBytes32Pct: rows.find((r) => r.name === 'randomBytes32')?.overheadPct,
    randomUUIDNs: rows.find((r) => r.name === 'randomUUID')?.overheadNs,
  },
};
if (values.json) {
  console.log(JSON.stringify(report));
} else {
  console.log(`register guard, ${report.machine}; addon ${report.addon}; page ${report.mapped ? 'mapped' : 'pread'}`);
  console.log('  call                  unguarded   guarded   overhead (median of per-round differences)');
  for (const r of rows) {
    console.log(
      `  ${r.name.padEnd(20)} ${r.plainNs.toFixed(1).padStart(9)} ns ` +
        `${r.guardedNs.toFixed(1).padStart(8)} ns ` +
        `${r.overheadNs.toFixed(1).padStart(7)} ns  ${r.overheadPct.toFixed(1).padStart(5)} %`,
    );
  }
  console.log(
    `  the check alone: ${check.toFixed(2)} ns; ` +
      `one reseed (OpenSSL + Node's caches): ${report.reseedUsMedian} us (median of 20)`,
  );
  console.log(
    `  targets: randomBytes(32) <= 2 %: ${report.targets.randomBytes32Pct?.toFixed(1)} %; ` +
      `randomUUID() <= 5 ns: ${report.targets.randomUUIDNs?.toFixed(1)} ns`,
  );
}
