// Seed workflow 3, mapped-memory polling: a hot path checks the page (no socket round trip) and
// rebuilds its cache lazily when the generation moved. Such users adjust on demand, so they are not
// tracked watchers; the orchestrator makes this safe by resuming the workload only after the restore
// (docs/PROTOCOL.md, "The page and its race").
//
//   SYSGENID_DIR=... node examples/mapped-polling.js [COUNT]
import { randomBytes } from 'node:crypto';
import { openProbe } from 'sysgenid';

const count = Number(process.argv[2] ?? Infinity);
const probe = openProbe();
let cached = randomBytes(16).toString('hex');

function safeCachedSecret() {
  if (probe.changed()) {
    const generation = probe.generation();
    cached = randomBytes(16).toString('hex'); // rebuild_caches()
    probe.adjusted(generation);
    console.log(`generation ${generation}: rebuilt cache ${cached}`);
    return { secret: cached, rebuilt: true };
  }
  return { secret: cached, rebuilt: false };
}

console.log(`ready at generation ${probe.generation()}, secret ${cached}`);
let rebuilt = 0;
const timer = setInterval(() => {
  // Stands in for calls on the hot path.
  if (safeCachedSecret().rebuilt && ++rebuilt >= count) {
    clearInterval(timer);
    probe.close();
  }
}, 5);
