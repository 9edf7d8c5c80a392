// The opt-in restore heuristic: a new time namespace, or realtime jumping against monotonic.

import assert from 'node:assert/strict';
import { it } from 'node:test';
import { TimeJumpDetector, sampleTime } from '../src/daemon/backends/timejump.js';
import { startDaemon, statusOf } from './helpers.js';

it('flags a new time namespace and a realtime jump, not ordinary time passing', () => {
  const d = new TimeJumpDetector(2000);
  assert.equal(d.sample({ ns: 'time:[1]', realtimeMs: 1_000_000, monotonicMs: 500 }), undefined);
  assert.equal(d.sample({ ns: 'time:[1]', realtimeMs: 1_001_000, monotonicMs: 1500 }), undefined, '1 s on both clocks');
  assert.equal(d.sample({ ns: 'time:[1]', realtimeMs: 1_002_500, monotonicMs: 2700 }), undefined, '300 ms of NTP slew');
  // A CRIU restore two hours later: monotonic hides the downtime, realtime does not.
  assert.equal(
    d.sample({ ns: 'time:[1]', realtimeMs: 1_002_500 + 7_200_000, monotonicMs: 3700 }),
    'realtime moved 7199000 ms against monotonic',
  );
  assert.equal(
    d.sample({ ns: 'time:[2]', realtimeMs: 9_000_000, monotonicMs: 4700 }),
    'time namespace changed (time:[1] -> time:[2])',
  );
  assert.match(
    d.sample({ ns: 'time:[2]', realtimeMs: 9_000_000 - 5000, monotonicMs: 5700 }) ?? '',
    /realtime moved -6000 ms/,
    'backwards too',
  );
});

it('samples the real clocks and namespace', () => {
  const s = sampleTime();
  assert.ok(s.realtimeMs > 1.7e12);
  assert.ok(s.monotonicMs >= 0);
  if (s.ns !== undefined) assert.match(s.ns, /^time:\[\d+\]$/);
});

it('is opt-in: auto leaves it off, --backends timejump turns it on', async (t) => {
  const on = await startDaemon(t, { args: ['--backends', 'timejump'] });
  const b = ((await statusOf(on.dir)).backends as Array<{ name: string; live: boolean; detail: string }>).find(
    (x) => x.name === 'timejump',
  );
  assert.equal(b?.live, true);
  assert.match(b?.detail ?? '', /^heuristic:/);
  assert.equal((await statusOf(on.dir)).generation, 0);
  const auto = await startDaemon(t, { args: ['--backends', 'auto'] });
  const backends = (await statusOf(auto.dir)).backends as Array<{ name: string; live: boolean; detail: string }>;
  const tj = backends.find((x) => x.name === 'timejump');
  assert.deepEqual(
    [tj?.live, tj?.detail],
    [false, 'opt-in: not enabled (--backends ...,timejump)'],
    'status says why it is off',
  );
  const names = backends.map((x) => x.name);
  assert.ok(names.includes('kmsg') && names.includes('vmclock') && names.includes('uevent'), names.join(','));
});
