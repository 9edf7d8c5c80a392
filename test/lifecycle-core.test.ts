// The lifecycle state machine alone (src/core/lifecycle.ts): order, every failure path, restores
// during each state, and the automatic resume policy. Time is a number the test moves.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SysgenidError } from '../src/core/errors.js';
import {
  type CycleReport,
  type LifecycleEffect,
  LifecycleMachine,
  type LifecycleMachineOptions,
} from '../src/core/lifecycle.js';

const REQ = 100; // a requester's connection id
const REQ2 = 101;

function harness(opts: Partial<LifecycleMachineOptions> = {}) {
  const effects: LifecycleEffect[] = [];
  let now = 0;
  const options = { autoResume: true, adjustTimeoutMs: 1000, resumeTimeoutMs: 500, ...opts };
  const lc = new LifecycleMachine(0, options, (e) => effects.push(e), now);
  const asks = (): string[] =>
    effects.flatMap((e) => (e.kind === 'ask' ? [`${e.step[0] === 'q' ? 'Q' : 'U'}${e.id}`] : []));
  const replies = (to?: number): CycleReport[] =>
    effects.flatMap((e) => (e.kind === 'reply' && (to === undefined || e.requesters.includes(to)) ? [e.report] : []));
  const pending = (): { id: number; cycle: number } | undefined => {
    const a = lc.current?.steps.find((s) => s.outcome === 'asked');
    return a && lc.current ? { id: a.id, cycle: lc.current.cycle } : undefined;
  };
  /** Answer whoever is asked now, as a subscriber would: true = done, string = failed. */
  const answer = (result: true | string = true): number => {
    const p = pending();
    assert.ok(p, 'someone is being asked');
    now += 5;
    lc.answer(p.id, p.cycle, result === true, result === true ? null : result, now);
    return p.id;
  };
  const answerAll = (): void => {
    while (pending()) answer();
  };
  const advance = (ms: number): void => {
    now += ms;
    lc.tick(now);
  };
  const timer = (): number | null => {
    const t = [...effects].reverse().find((e) => e.kind === 'timer');
    return t && t.kind === 'timer' ? t.at : null;
  };
  return { lc, effects, asks, replies, pending, answer, answerAll, advance, timer, now: () => now };
}

function subscribeAll(lc: LifecycleMachine, subs: Array<[id: number, name: string, priority: number]>): void {
  for (const [id, name, priority] of subs) lc.subscribe(id, name, priority);
}

describe('lifecycle: order', () => {
  it('quiesces in reverse order and un-quiesces in order: priority, then registration', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'a', 0],
      [2, 'b', 0],
      [3, 'infra', -5],
      [4, 'edge', 5],
    ]);
    assert.deepEqual(h.lc.order(), [3, 1, 2, 4]);
    h.lc.quiesce(REQ, 1000, h.now());
    assert.equal(h.lc.state, 'quiescing');
    // One at a time: the next is asked only when the previous answered.
    assert.deepEqual(h.asks(), ['Q4']);
    h.answer();
    assert.deepEqual(h.asks(), ['Q4', 'Q2']);
    h.answerAll();
    assert.deepEqual(h.asks(), ['Q4', 'Q2', 'Q1', 'Q3']);
    assert.equal(h.lc.state, 'quiesced');
    const q = h.replies(REQ)[0] as CycleReport;
    assert.equal(q.ok, true);
    assert.deepEqual(
      q.steps.map((s) => [s.name, s.outcome]),
      [
        ['edge', 'done'],
        ['b', 'done'],
        ['a', 'done'],
        ['infra', 'done'],
      ],
    );

    h.lc.unquiesce(REQ2, 1000, h.now());
    h.answerAll();
    assert.deepEqual(h.asks().slice(4), ['U3', 'U1', 'U2', 'U4']);
    assert.equal(h.lc.state, 'running');
    assert.equal(h.lc.ready, true);
    assert.equal(h.replies(REQ2)[0]?.ok, true);
  });

  it('rejects an out-of-range priority and a second subscription with another priority', () => {
    const h = harness();
    assert.throws(() => h.lc.subscribe(1, 'x', 1001), SysgenidError);
    assert.throws(() => h.lc.subscribe(1, 'x', 1.5), SysgenidError);
    h.lc.subscribe(1, 'x', 3);
    assert.equal(h.lc.subscribe(1, 'x', 3), 'running');
    assert.throws(
      () => h.lc.subscribe(1, 'x', 4),
      (e: SysgenidError) => e.code === 'EINVAL',
    );
  });
});

describe('lifecycle: quiesce failures never leave the machine half-quiesced', () => {
  it('a failing subscriber: the others are still asked, then everyone asked is un-quiesced, then the caller hears', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'db', 0],
      [2, 'payments', 0],
      [3, 'http', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answer(); // http
    h.answer('cannot flush the ledger'); // payments
    h.answer(); // db: still asked
    assert.deepEqual(h.asks(), ['Q3', 'Q2', 'Q1', 'U1']);
    assert.equal(h.lc.state, 'unquiescing');
    assert.deepEqual(h.replies(REQ), [], 'the caller waits until the machine is un-quiesced');
    h.answerAll();
    assert.deepEqual(h.asks().slice(3), ['U1', 'U2', 'U3'], 'the failing one is un-quiesced too');
    assert.equal(h.lc.state, 'running');
    const r = h.replies(REQ)[0] as CycleReport;
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /payments failed \(cannot flush the ledger\)/);
    assert.match(r.reason ?? '', /every subscriber asked was un-quiesced \(ok\)/);
  });

  it('a subscriber that never answers: late at the deadline, the rest not asked, those asked un-quiesced', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'db', 0],
      [2, 'stuck', 0],
      [3, 'http', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answer(); // http
    assert.equal(h.timer(), 1000, 'the deadline is armed');
    h.advance(1000);
    assert.equal(h.lc.state, 'unquiescing');
    const q = h.lc.last.quiesce as CycleReport;
    assert.deepEqual(
      q.steps.map((s) => [s.name, s.outcome]),
      [
        ['http', 'done'],
        ['stuck', 'late'],
        ['db', 'skipped'],
      ],
    );
    assert.deepEqual(h.asks(), ['Q3', 'Q2', 'U2']);
    h.answer(); // stuck answers its un-quiesce after all
    assert.deepEqual(h.asks(), ['Q3', 'Q2', 'U2', 'U3']);
    h.answerAll();
    assert.equal(h.lc.state, 'running');
    const r = h.replies(REQ)[0] as CycleReport;
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /stuck late/);
  });

  it('a subscriber that disconnects while asked: gone, the next is asked, and it is not un-quiesced', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'db', 0],
      [2, 'flaky', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    assert.deepEqual(h.asks(), ['Q2']);
    h.lc.unsubscribe(2, h.now());
    assert.deepEqual(h.asks(), ['Q2', 'Q1']);
    h.answer();
    h.answerAll();
    assert.deepEqual(h.asks(), ['Q2', 'Q1', 'U1']);
    assert.equal(h.lc.state, 'running');
    assert.match(h.replies(REQ)[0]?.reason ?? '', /flaky gone \(disconnected before answering\)/);
  });

  it('a restore while quiescing: the caller is told it was interrupted; the copy re-adjusts, then resumes by itself', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'db', 0],
      [2, 'http', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answer(); // http quiesced, db asked
    h.lc.generationChanged(1, 2, h.now());
    assert.equal(h.lc.state, 'adjusting');
    const r = h.replies(REQ)[0] as CycleReport;
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /^interrupted: generation 1 arrived while quiescing/);
    h.lc.outdatedChanged(1, h.now());
    assert.equal(h.lc.state, 'adjusting');
    h.lc.outdatedChanged(0, h.now());
    assert.equal(h.lc.state, 'unquiescing');
    h.answerAll();
    // Both were asked to quiesce (db's answer never came), so both are told to continue.
    assert.deepEqual(h.asks(), ['Q2', 'Q1', 'U1', 'U2']);
    assert.equal(h.lc.state, 'running');
  });

  it('QUIESCE is refused while quiesced or in progress; UNQUIESCE while running is an empty success', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'db', 0]]);
    h.lc.unquiesce(REQ, 1000, h.now());
    assert.deepEqual(h.replies(REQ)[0]?.steps, []);
    assert.equal(h.replies(REQ)[0]?.ok, true);
    h.lc.quiesce(REQ, 1000, h.now());
    assert.throws(
      () => h.lc.quiesce(REQ2, 1000, h.now()),
      (e: SysgenidError) => e.code === 'EBUSY',
    );
    h.answerAll();
    assert.throws(
      () => h.lc.quiesce(REQ2, 1000, h.now()),
      (e: SysgenidError) => e.code === 'EBUSY',
    );
  });

  it('UNQUIESCE while quiescing aborts the quiesce and un-quiesces whoever was asked', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'db', 0],
      [2, 'http', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.lc.unquiesce(REQ2, 1000, h.now());
    assert.match(h.replies(REQ)[0]?.reason ?? '', /aborted/);
    h.answerAll();
    assert.deepEqual(h.asks(), ['Q2', 'U2']);
    assert.equal(h.lc.state, 'running');
    assert.equal(h.replies(REQ2)[0]?.ok, true);
  });
});

describe('lifecycle: un-quiesce tells everyone', () => {
  it('a failure does not stop the others from being told; the report names it', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'a', 0],
      [2, 'b', 0],
      [3, 'c', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.unquiesce(REQ2, 1000, h.now());
    h.answer();
    h.answer('pool would not reconnect');
    h.answer();
    assert.deepEqual(h.asks().slice(3), ['U1', 'U2', 'U3']);
    const r = h.replies(REQ2)[0] as CycleReport;
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /b failed \(pool would not reconnect\)/);
    assert.equal(h.lc.state, 'running');
  });

  it('at the deadline the remaining ones are told without being waited for', () => {
    const h = harness();
    subscribeAll(h.lc, [
      [1, 'a', 0],
      [2, 'b', 0],
      [3, 'c', 0],
    ]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.unquiesce(REQ2, 300, h.now());
    h.answer(); // a
    h.advance(400); // b never answers
    assert.deepEqual(h.asks().slice(3), ['U1', 'U2', 'U3']);
    assert.equal(h.lc.state, 'running');
    const r = h.replies(REQ2)[0] as CycleReport;
    assert.deepEqual(
      r.steps.map((s) => s.outcome),
      ['done', 'late', 'late'],
    );
  });
});

describe('lifecycle: after a restore', () => {
  it('quiesced, new generation: adjusting until every watcher acknowledged, then un-quiesced by itself', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.generationChanged(1, 3, h.now());
    assert.equal(h.lc.state, 'adjusting');
    assert.equal(h.lc.adjustingQuiesced, true);
    assert.equal(h.lc.ready, false);
    h.lc.outdatedChanged(0, h.now());
    assert.equal(h.lc.state, 'unquiescing');
    const u = h.pending();
    assert.ok(u);
    const ask = [...h.effects].reverse().find((e) => e.kind === 'ask');
    assert.deepEqual(
      ask,
      { kind: 'ask', id: 1, step: 'unquiesce', cycle: u.cycle, generation: 1 },
      'told the new generation',
    );
    h.answerAll();
    assert.equal(h.lc.state, 'running');
    assert.equal(h.lc.ready, true);
  });

  it('with no tracked watcher outdated, a restore un-quiesces at once', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.generationChanged(1, 0, h.now());
    assert.equal(h.lc.state, 'unquiescing');
  });

  it('the adjust timeout un-quiesces anyway, but the machine is not ready until the late ones acknowledge', () => {
    const h = harness({ adjustTimeoutMs: 1000 });
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.generationChanged(1, 2, h.now());
    assert.equal(h.timer(), h.now() + 1000);
    h.advance(999);
    assert.equal(h.lc.state, 'adjusting');
    h.advance(1);
    assert.equal(h.lc.state, 'unquiescing');
    assert.ok(h.effects.some((e) => e.kind === 'log' && e.level === 'warn' && /un-quiescing anyway/.test(e.message)));
    h.answerAll();
    assert.equal(h.lc.state, 'adjusting', 'still waiting for the late watchers, no longer quiesced');
    assert.equal(h.lc.adjustingQuiesced, false);
    assert.equal(h.lc.ready, false);
    h.lc.outdatedChanged(0, h.now());
    assert.equal(h.lc.state, 'running');
    assert.equal(h.lc.ready, true);
  });

  it('without auto-resume the copy stays quiesced once adjusted, until asked', () => {
    const h = harness({ autoResume: false });
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.generationChanged(1, 1, h.now());
    h.lc.outdatedChanged(0, h.now());
    assert.equal(h.lc.state, 'quiesced');
    h.lc.unquiesce(REQ2, 1000, h.now());
    h.answerAll();
    assert.equal(h.lc.state, 'running');
  });

  it('UNQUIESCE during re-adjusting waits for the watchers (or its own budget), then un-quiesces', () => {
    const h = harness({ autoResume: false, adjustTimeoutMs: 60_000 });
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    h.lc.generationChanged(1, 1, h.now());
    h.lc.unquiesce(REQ2, 2000, h.now());
    assert.equal(h.lc.state, 'adjusting');
    assert.deepEqual(h.replies(REQ2), []);
    assert.equal(h.timer(), h.now() + 2000, "the request's budget is shorter than the adjust timeout");
    h.advance(2000);
    assert.equal(h.lc.state, 'unquiescing');
    h.answerAll();
    assert.equal(h.replies(REQ2)[0]?.ok, true);
  });

  it('a bump while running (a restore nobody quiesced for) is adjusting until acknowledged, never quiesced', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.generationChanged(1, 1, h.now());
    assert.equal(h.lc.state, 'adjusting');
    assert.equal(h.lc.adjustingQuiesced, false);
    assert.equal(h.timer(), null, 'no deadline: there is nothing to un-quiesce');
    h.lc.outdatedChanged(0, h.now());
    assert.equal(h.lc.state, 'running');
    assert.deepEqual(h.asks(), []);
  });

  it('a subscriber arriving while quiesced is quiesced too, and un-quiesced with the others', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.answerAll();
    assert.equal(h.lc.subscribe(2, 'late-starter', 0), 'quiesced');
    assert.deepEqual(h.asks(), ['Q1', 'Q2']);
    h.lc.unquiesce(REQ2, 1000, h.now());
    h.answerAll();
    assert.deepEqual(h.asks().slice(2), ['U1', 'U2']);
  });

  it('a requester that goes away does not stop the cycle', () => {
    const h = harness();
    subscribeAll(h.lc, [[1, 'app', 0]]);
    h.lc.quiesce(REQ, 1000, h.now());
    h.lc.dropRequester(REQ);
    h.answerAll();
    assert.equal(h.lc.state, 'quiesced');
    assert.deepEqual(
      h.effects.filter((e) => e.kind === 'reply').flatMap((e) => (e.kind === 'reply' ? e.requesters : [])),
      [],
    );
  });
});
