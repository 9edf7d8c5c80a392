// The composed machine (src/core/machine.ts): the glue between the generation and lifecycle machines.
// Each test would fail if the machine forgot one of the rules it owns; test/model.test.ts checks the
// same over random sequences.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SysgenidError } from '../src/core/errors.js';
import type { CycleReport } from '../src/core/lifecycle.js';
import { CoreMachine, type MachineEffect } from '../src/core/machine.js';
import { errorCode } from './helpers.js';

const CTL = 100; // a control connection (an observer), the requester of QUIESCE/UNQUIESCE

function harness(opts: { autoResume?: boolean } = {}) {
  const effects: MachineEffect[] = [];
  const m = new CoreMachine(
    0,
    { autoResume: opts.autoResume ?? true, adjustTimeoutMs: 1000, resumeTimeoutMs: 500 },
    (e) => effects.push(e),
    0,
  );
  m.connect(CTL, { observer: true });
  const bump = (now = 0): number => {
    const next = m.nextGeneration();
    m.advance(next, now);
    return next;
  };
  const replies = (to: number): CycleReport[] =>
    effects.flatMap((e) => (e.kind === 'reply' && e.requesters.includes(to) ? [e.report] : []));
  const asks = (): string[] => effects.flatMap((e) => (e.kind === 'ask' ? [`${e.step}:${e.id}:${e.cycle}`] : []));
  return { m, effects, bump, replies, asks };
}

describe('machine: the lifecycle follows the outdated count', () => {
  it('a bump makes the machine adjust; the last ACK makes it ready', () => {
    const { m, bump } = harness();
    m.connect(1);
    m.connect(2);
    const g = bump();
    assert.equal(m.lifecycle.state, 'adjusting');
    assert.equal(m.lifecycle.ready, false);
    m.ack(1, g, 1);
    assert.equal(m.lifecycle.state, 'adjusting');
    m.ack(2, g, 2);
    assert.equal(m.lifecycle.state, 'running');
    assert.equal(m.lifecycle.ready, true);
  });

  it('tracking off, OBSERVE and a disconnect each take a watcher out of the count', () => {
    for (const leave of ['track', 'observe', 'disconnect'] as const) {
      const { m, bump } = harness();
      m.connect(1);
      bump();
      assert.equal(m.lifecycle.state, 'adjusting', leave);
      if (leave === 'track') m.setTracking(1, false, 1);
      else if (leave === 'observe') m.observe(1, 1);
      else m.disconnect(1, 1);
      assert.equal(m.lifecycle.state, 'running', leave);
      assert.equal(m.lifecycle.ready, true, leave);
    }
  });

  it('RESUME moves the count both ways', () => {
    const { m, bump } = harness();
    m.connect(1);
    const g = bump();
    m.resume(1, g, 1);
    assert.equal(m.lifecycle.state, 'running');
    // Declaring an older generation makes it outdated again: running, but not ready.
    m.resume(1, g - 1, 2);
    assert.equal(m.outdated, 1);
    assert.equal(m.lifecycle.ready, false);
    m.ack(1, g, 3);
    assert.equal(m.lifecycle.ready, true);
  });

  it('a bump to the generation every outdated watcher already declared (RESUME) ends adjusting', () => {
    // Found by the composed model test: the lifecycle stayed adjusting, never ready, with nobody outdated.
    const { m, bump } = harness();
    m.connect(1);
    const g = bump();
    m.resume(1, g + 1, 1);
    assert.equal(m.lifecycle.state, 'adjusting');
    assert.equal(bump(2), g + 1);
    assert.equal(m.outdated, 0);
    assert.equal(m.lifecycle.state, 'running');
    assert.equal(m.lifecycle.ready, true);
  });

  it('after a restore while quiesced, the last ACK starts the un-quiesce', () => {
    const { m, bump, asks, replies } = harness();
    m.connect(1);
    m.subscribe(1, 'svc', 0);
    assert.equal(m.quiesce(CTL, 1000, 0), undefined, 'a subscriber must answer first');
    assert.deepEqual(asks(), ['quiesce:1:1']);
    m.answer(1, 'quiesced', 1, null, 1);
    assert.equal(replies(CTL)[0]?.ok, true);
    assert.equal(m.lifecycle.state, 'quiesced');
    const g = bump(2);
    assert.equal(m.lifecycle.state, 'adjusting');
    assert.equal(m.lifecycle.adjustingQuiesced, true);
    m.ack(1, g, 3);
    assert.equal(m.lifecycle.state, 'unquiescing');
    assert.deepEqual(asks(), ['quiesce:1:1', 'unquiesce:1:2']);
  });
});

describe('machine: who may do what', () => {
  it('a subscriber cannot OBSERVE, and stays a watcher', () => {
    const { m } = harness();
    m.connect(1);
    m.subscribe(1, null, 0);
    assert.equal(
      errorCode(() => m.observe(1, 0)),
      'EINVAL',
    );
    assert.equal(m.isObserver(1), false);
    assert.equal(m.watchers, 1);
    m.unsubscribe(1, 0);
    m.observe(1, 0);
    assert.equal(m.watchers, 0);
  });

  it('an observer or a control connection cannot SUBSCRIBE', () => {
    const { m } = harness();
    m.connect(1);
    m.observe(1, 0);
    assert.equal(
      errorCode(() => m.subscribe(1, null, 0)),
      'EINVAL',
    );
    assert.equal(
      errorCode(() => m.subscribe(CTL, null, 0)),
      'EINVAL',
    );
    assert.equal(m.lifecycle.order().length, 0);
  });

  it('only a subscriber answers, and the error names its answer', () => {
    const { m } = harness();
    m.connect(1);
    for (const answer of ['quiesced', 'unquiesced', 'failed'] as const) {
      assert.throws(
        () => m.answer(1, answer, 1, 'x', 0),
        (e: SysgenidError) =>
          e.code === 'EINVAL' && e.message === `${answer.toUpperCase()}: this connection is not subscribed`,
      );
    }
  });

  it('lifecycle errors are SysgenidErrors with their wire codes', () => {
    const { m } = harness();
    m.connect(1);
    m.subscribe(1, null, 0);
    assert.equal(
      errorCode(() => m.subscribe(1, null, 5)),
      'EINVAL',
    );
    m.quiesce(CTL, 1000, 0);
    assert.equal(
      errorCode(() => m.quiesce(CTL + 1, 1000, 0)),
      'EBUSY',
    );
  });
});

describe('machine: replies', () => {
  it('a QUIESCE with nobody to ask returns its report; the cycle is still reported once as an effect', () => {
    const { m, effects, replies } = harness();
    const report = m.quiesce(CTL, 1000, 0);
    assert.equal(report?.kind, 'quiesce');
    assert.equal(report?.ok, true);
    assert.equal(replies(CTL).length, 0, 'the caller is not answered twice');
    const cycles = effects.filter((e) => e.kind === 'reply');
    assert.equal(cycles.length, 1);
    assert.deepEqual(cycles[0]?.kind === 'reply' && cycles[0].requesters, []);
    assert.equal(m.lifecycle.state, 'quiesced');
    assert.equal(m.unquiesce(CTL, 1000, 1)?.kind, 'unquiesce');
    assert.equal(m.lifecycle.state, 'running');
  });

  it('an UNQUIESCE while running is answered at once', () => {
    const { m } = harness();
    const report = m.unquiesce(CTL, 1000, 0);
    assert.deepEqual(report?.steps, []);
    assert.equal(report?.ok, true);
  });

  it('a pending QUIESCE is answered by an effect; another requester is not taken for the caller', () => {
    const { m, replies } = harness();
    m.connect(1);
    m.subscribe(1, null, 0);
    assert.equal(m.quiesce(CTL, 1000, 0), undefined);
    // UNQUIESCE while quiescing aborts the quiesce: its report goes to the QUIESCE caller, the
    // UNQUIESCE caller waits for the un-quiesce.
    assert.equal(m.unquiesce(CTL + 1, 1000, 1), undefined);
    assert.equal(replies(CTL).length, 1);
    assert.equal(replies(CTL)[0]?.ok, false);
    assert.match(replies(CTL)[0]?.reason ?? '', /aborted/);
  });

  it('the requester of a failed quiesce that disconnects during the un-quiesce gets no reply', () => {
    // Found by the composed model test: the report of the failure still went to the departed requester.
    const { m, replies } = harness();
    m.connect(1);
    m.subscribe(1, null, 0);
    m.quiesce(CTL, 1000, 0);
    m.answer(1, 'failed', 1, 'no', 1);
    assert.equal(m.lifecycle.state, 'unquiescing');
    m.disconnect(CTL, 2);
    m.answer(1, 'unquiesced', 2, null, 3);
    assert.equal(m.lifecycle.state, 'running');
    assert.equal(replies(CTL).length, 0);
  });

  it('a requester that disconnects gets no reply', () => {
    const { m, replies } = harness();
    m.connect(1);
    m.subscribe(1, null, 0);
    m.quiesce(CTL, 1000, 0);
    m.disconnect(CTL, 1);
    m.answer(1, 'quiesced', 1, null, 2);
    assert.equal(m.lifecycle.state, 'quiesced');
    assert.equal(replies(CTL).length, 0);
  });
});
