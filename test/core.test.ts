// The pure state machine: one test per line of the semantics (issue 2, docs/PROTOCOL.md "Semantics").

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Effect, GenerationMachine, U32_MAX } from '../src/core/generation.js';
import { errorCode } from './helpers.js';

function machine(initial = 0): { s: GenerationMachine; effects: Effect[] } {
  const effects: Effect[] = [];
  return { s: new GenerationMachine(initial, (e) => effects.push(e)), effects };
}

function bump(s: GenerationMachine, min = 0, now = 0): number {
  const next = s.nextGeneration(min);
  s.advance(next, now);
  return next;
}

describe('generation counter', () => {
  it('starts at 0 and only goes up', () => {
    const { s } = machine();
    assert.equal(s.generation, 0);
    assert.equal(bump(s), 1);
    assert.equal(bump(s), 2);
    assert.throws(() => s.advance(2, 0), RangeError);
    assert.throws(() => s.advance(1, 0), RangeError);
    assert.equal(s.generation, 2);
  });

  it('starts from a persisted value', () => {
    assert.equal(machine(41).s.generation, 41);
    assert.throws(() => machine(-1), RangeError);
    assert.throws(() => machine(U32_MAX + 1), RangeError);
  });

  it('a forced update moves to max(min, counter + 1)', () => {
    const { s } = machine(5);
    assert.equal(s.nextGeneration(8), 8);
    assert.equal(s.nextGeneration(3), 6);
    assert.equal(s.nextGeneration(6), 6);
    assert.equal(bump(s, 8), 8);
  });

  it('never wraps at the u32 ceiling', () => {
    const { s } = machine(U32_MAX - 1);
    assert.equal(bump(s), U32_MAX);
    assert.equal(
      errorCode(() => s.nextGeneration()),
      'EOVERFLOW',
    );
    assert.equal(
      errorCode(() => s.nextGeneration(5)),
      'EOVERFLOW',
    );
    assert.equal(s.generation, U32_MAX);
  });

  it('jumps straight to the ceiling when asked, and rejects a minimum beyond it', () => {
    const { s } = machine();
    assert.equal(
      errorCode(() => s.nextGeneration(U32_MAX + 1)),
      'EINVAL',
    );
    assert.equal(
      errorCode(() => s.nextGeneration(-1)),
      'EINVAL',
    );
    assert.equal(
      errorCode(() => s.nextGeneration(1.5)),
      'EINVAL',
    );
    assert.equal(bump(s, U32_MAX), U32_MAX);
  });
});

describe('watchers', () => {
  it('a new connection is a tracked watcher that has seen the current generation', () => {
    const { s } = machine(3);
    s.connect(1);
    assert.deepEqual(s.info(1), { id: 1, acked: 3, tracked: true, observer: false, outdatedSince: undefined });
    assert.equal(s.watchers, 1);
    assert.equal(s.tracked, 1);
    assert.equal(s.outdated, 0);
    assert.equal(s.isOutdated(1), false);
  });

  it('a bump makes every tracked watcher outdated and notifies every watcher once', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(2);
    s.connect(3);
    s.setTracking(3, false);
    bump(s, 0, 100);
    assert.equal(s.outdated, 2);
    assert.deepEqual(effects, [{ kind: 'notify', ids: [1, 2, 3], generation: 1 }]);
    assert.equal(s.info(1).outdatedSince, 100);
    assert.ok(s.isOutdated(3), 'an untracked watcher still learns of the generation');
  });

  it('outdated-since is the time of the first bump it missed', () => {
    const { s } = machine();
    s.connect(1);
    bump(s, 0, 100);
    bump(s, 0, 200);
    assert.equal(s.info(1).outdatedSince, 100);
    s.ack(1, 2);
    assert.equal(s.info(1).outdatedSince, undefined);
  });

  it('read returns the new generation again and again until acknowledged', () => {
    const { s } = machine();
    s.connect(1);
    bump(s);
    assert.equal(s.read(1, true), 1);
    assert.equal(s.read(1, false), 1);
    assert.equal(s.read(1, true), 1);
    s.ack(1, 1);
    assert.equal(
      errorCode(() => s.read(1, true)),
      'EAGAIN',
    );
  });

  it('a non-blocking read when up to date fails with EAGAIN', () => {
    const { s } = machine();
    s.connect(1);
    assert.equal(
      errorCode(() => s.read(1, true)),
      'EAGAIN',
    );
  });

  it('a blocking read when up to date pends until the next bump', () => {
    const { s, effects } = machine();
    s.connect(1);
    assert.equal(s.read(1, false), undefined);
    assert.equal(
      errorCode(() => s.read(1, false)),
      'EINVAL',
      'one pending read per watcher',
    );
    bump(s);
    assert.deepEqual(effects.at(-1), { kind: 'read', id: 1, generation: 1 });
  });

  it('acknowledging needs the exact current generation; anything else is EINVAL and changes nothing', () => {
    const { s } = machine();
    s.connect(1);
    bump(s);
    bump(s);
    assert.equal(
      errorCode(() => s.ack(1, 1)),
      'EINVAL',
      'stale',
    );
    assert.equal(
      errorCode(() => s.ack(1, 3)),
      'EINVAL',
      'future',
    );
    assert.equal(s.outdated, 1);
    assert.equal(s.info(1).acked, 0);
    s.ack(1, 2);
    assert.equal(s.outdated, 0);
  });

  it('acknowledging when already up to date is a harmless no-op', () => {
    const { s } = machine(4);
    s.connect(1);
    s.connect(2);
    bump(s);
    s.ack(1, 5);
    s.ack(1, 5);
    s.ack(1, 5);
    assert.equal(s.outdated, 1, 'repeated acks must not decrement the count twice');
  });

  it('disconnecting an outdated watcher leaves the outdated count', () => {
    const { s } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    s.disconnect(1);
    assert.equal(s.outdated, 1);
    assert.equal(s.watchers, 1);
    s.disconnect(2);
    assert.equal(s.outdated, 0);
    assert.equal(s.watchers, 0);
    s.disconnect(2);
    assert.equal(s.watchers, 0, 'a second disconnect is ignored');
  });

  it('disconnecting an up-to-date watcher does not touch the outdated count', () => {
    const { s } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    s.ack(1, 1);
    s.disconnect(1);
    assert.equal(s.outdated, 1);
  });
});

describe('tracking', () => {
  it('turning tracking off removes an outdated watcher from the count, on puts it back', () => {
    const { s } = machine();
    s.connect(1);
    bump(s);
    assert.equal(s.outdated, 1);
    s.setTracking(1, false);
    assert.equal(s.outdated, 0);
    assert.equal(s.tracked, 0);
    s.setTracking(1, false);
    assert.equal(s.tracked, 0, 'idempotent');
    s.setTracking(1, true);
    assert.equal(s.outdated, 1);
    assert.equal(s.tracked, 1);
  });

  it('untracked watchers are notified but never waited for', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.setTracking(1, false);
    s.connect(2);
    bump(s);
    s.ack(2, 1);
    assert.deepEqual(effects[0], { kind: 'notify', ids: [1, 2], generation: 1 });
    assert.equal(s.wait(2), 'OK');
  });

  it('an observer is not a watcher: not counted, not notified, not tracked', () => {
    const { s, effects } = machine();
    s.connect(1, { observer: true });
    s.connect(2);
    s.observe(2);
    assert.equal(s.watchers, 0);
    assert.equal(s.tracked, 0);
    assert.equal(
      errorCode(() => s.setTracking(1, true)),
      'EINVAL',
    );
    bump(s);
    assert.deepEqual(effects, [{ kind: 'notify', ids: [], generation: 1 }]);
    assert.equal(s.outdated, 0);
    assert.deepEqual([...s.list()], []);
  });

  it('observing an outdated tracked watcher releases waiters', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(9, { observer: true });
    bump(s);
    s.resume(9, 1, 0);
    assert.equal(s.wait(9), undefined);
    s.observe(1);
    assert.deepEqual(effects.at(-1), { kind: 'wait', id: 9, result: 'OK' });
  });
});

describe('wait for watchers', () => {
  it('returns at once when no tracked watcher is outdated', () => {
    const { s } = machine();
    s.connect(1);
    assert.equal(s.wait(1), 'OK');
  });

  it('is EINTR when the caller itself is outdated at the call', () => {
    const { s } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    assert.equal(s.wait(1), 'EINTR');
    s.setTracking(1, false);
    assert.equal(s.wait(1), 'EINTR', 'untracked callers too: they have a generation to handle');
  });

  it('is released exactly when the last outdated watcher acknowledges', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(2);
    s.connect(3);
    bump(s);
    s.ack(1, 1);
    assert.equal(s.wait(1), undefined);
    s.ack(2, 1);
    assert.equal(effects.filter((e) => e.kind === 'wait').length, 0);
    s.ack(3, 1);
    assert.deepEqual(effects.at(-1), { kind: 'wait', id: 1, result: 'OK' });
  });

  it('is released when the last outdated watcher disconnects or stops being tracked', () => {
    for (const leave of ['disconnect', 'untrack'] as const) {
      const { s, effects } = machine();
      s.connect(1);
      s.connect(2);
      bump(s);
      s.ack(1, 1);
      assert.equal(s.wait(1), undefined);
      if (leave === 'disconnect') s.disconnect(2);
      else s.setTracking(2, false);
      assert.deepEqual(effects.at(-1), { kind: 'wait', id: 1, result: 'OK' }, leave);
    }
  });

  it('is EINTR when the caller becomes outdated while waiting', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    s.ack(1, 1);
    assert.equal(s.wait(1), undefined);
    bump(s);
    assert.deepEqual(effects.at(-1), { kind: 'wait', id: 1, result: 'EINTR' });
  });

  it('times out through expireWait and a late release no longer applies', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    s.ack(1, 1);
    assert.equal(s.wait(1), undefined);
    assert.equal(s.expireWait(1), true);
    assert.equal(s.expireWait(1), false);
    s.ack(2, 1);
    assert.equal(effects.filter((e) => e.kind === 'wait').length, 0);
  });

  it('a waiter that disconnects is forgotten', () => {
    const { s, effects } = machine();
    s.connect(1);
    s.connect(2);
    bump(s);
    s.ack(1, 1);
    s.wait(1);
    s.disconnect(1);
    s.ack(2, 1);
    assert.equal(effects.filter((e) => e.kind === 'wait').length, 0);
  });
});

describe('resume (reconnect after a daemon restart)', () => {
  it('a client that had handled an older generation becomes outdated and is told at once', () => {
    const { s, effects } = machine(7);
    s.connect(1);
    s.resume(1, 5, 50);
    assert.equal(s.outdated, 1);
    assert.equal(s.info(1).outdatedSince, 50);
    assert.deepEqual(effects.at(-1), { kind: 'notify', ids: [1], generation: 7 });
    s.ack(1, 7);
    assert.equal(s.outdated, 0);
  });

  it('resuming the current generation changes nothing; resuming it later makes the watcher current', () => {
    const { s, effects } = machine(7);
    s.connect(1);
    s.resume(1, 7, 0);
    assert.equal(effects.length, 0);
    s.resume(1, 3, 0);
    s.resume(1, 7, 0);
    assert.equal(s.outdated, 0);
  });

  it('rejects a value that is not a u32', () => {
    const { s } = machine();
    s.connect(1);
    assert.equal(
      errorCode(() => s.resume(1, -1, 0)),
      'EINVAL',
    );
  });
});
