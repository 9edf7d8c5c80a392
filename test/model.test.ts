// Model-based tests (fast-check), two of them:
// - the real daemon over real sockets, step by step against the pure generation machine and a second
//   bookkeeping kept here;
// - the composed machine (src/core/machine.ts), lifecycle included, against a reference kept here: the
//   outdated count, who may subscribe, observe and answer, the order subscribers are asked in, and one
//   reply per QUIESCE/UNQUIESCE. This one covers the glue between the two machines.
// fast-check shrinks a failure and prints its seed, its path and the commands' replayPath (in a comment
// after the counterexample); rerun one with SYSGENID_MODEL_SEED=<seed> SYSGENID_MODEL_PATH=<path>
// SYSGENID_MODEL_REPLAY=<replayPath> (without the last, fast-check cannot follow a path through shrunk
// command lists and says "wrong path"). SYSGENID_MODEL_RUNS sets the number of sequences (default 60 for the
// daemon; the composed machine runs 20 times as many, 3000 by default).

import assert from 'node:assert/strict';
import path from 'node:path';
import { it } from 'node:test';
import fc from 'fast-check';
import { GenerationMachine } from '../src/core/generation.js';
import { CoreMachine, type MachineEffect } from '../src/core/machine.js';
import { cycleReportDocument } from '../src/protocol/cycle-report.js';
import {
  type DaemonHandle,
  RawClient,
  errorCode,
  eventually,
  pageValue,
  startDaemon,
  statusOf,
  tmpDir,
} from './helpers.js';

interface Real {
  daemon: DaemonHandle;
  dir: string;
  clients: Map<number, RawClient>;
  control: RawClient;
  steps: number;
}

interface Model {
  /** The reference state machine. */
  core: GenerationMachine;
  /** A second, independent bookkeeping kept by this test, so a bug shared by daemon and core shows. */
  acked: Map<number, number>;
  tracked: Map<number, boolean>;
  generation: number;
  ids: number[];
  highest: number;
}

type Cmd = fc.AsyncCommand<Model, Real>;

const pick = <T>(xs: readonly T[], i: number): T | undefined => (xs.length === 0 ? undefined : xs[i % xs.length]);

async function check(m: Model, r: Real): Promise<void> {
  r.steps++;
  const s = (await eventually(
    async () => {
      const st = await statusOf(r.dir);
      return st.watchers === m.core.watchers ? st : undefined;
    },
    5000,
    'watcher count settles',
  )) as Awaited<ReturnType<typeof statusOf>>;
  assert.equal(s.generation, m.core.generation, 'generation');
  assert.equal(s.generation, m.generation, 'generation (independent bookkeeping)');
  const expectedOutdated = m.ids.filter((id) => m.tracked.get(id) && m.acked.get(id) !== m.generation).length;
  assert.equal(s.outdated, expectedOutdated, 'outdated (independent bookkeeping)');
  for (const w of s.list ?? []) {
    assert.equal(w.acked, m.acked.get(w.id as number), `acked of watcher ${w.id}`);
    assert.equal(w.tracked, m.tracked.get(w.id as number), `tracking of watcher ${w.id}`);
  }
  assert.ok(s.generation >= m.highest, 'the counter never decreases');
  assert.equal(s.outdated, m.core.outdated, 'outdated = tracked watchers whose ack differs from the counter');
  assert.equal(s.tracked, m.core.tracked, 'tracked');
  assert.equal(pageValue(path.join(r.dir, 'generation')), m.core.generation, 'page = counter');
  m.highest = Math.max(m.highest, s.generation);
}

class Connect implements Cmd {
  check = (m: Readonly<Model>) => m.ids.length < 12;
  async run(m: Model, r: Real): Promise<void> {
    const { c, id, generation } = await RawClient.open(path.join(r.dir, 'watch.sock'));
    assert.equal(generation, m.core.generation, 'greeting carries the generation');
    r.clients.set(id, c);
    m.core.connect(id);
    m.acked.set(id, m.generation);
    m.tracked.set(id, true);
    m.ids.push(id);
    await check(m, r);
  }
  toString = () => 'connect';
}

/** A step by one connected client, the `i`-th (modulo) of those `candidates` names; checked afterwards. */
abstract class ClientCmd implements Cmd {
  constructor(readonly i: number) {}
  protected candidates(m: Readonly<Model>): readonly number[] {
    return m.ids;
  }
  check(m: Readonly<Model>): boolean {
    return this.candidates(m).length > 0;
  }
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(this.candidates(m), this.i) as number;
    await this.step(m, id, r.clients.get(id) as RawClient, r);
    await check(m, r);
  }
  protected abstract step(m: Model, id: number, client: RawClient, r: Real): Promise<void>;
}

class Disconnect extends ClientCmd {
  protected async step(m: Model, id: number, client: RawClient, r: Real): Promise<void> {
    client.close();
    r.clients.delete(id);
    m.core.disconnect(id);
    m.acked.delete(id);
    m.tracked.delete(id);
    m.ids = m.ids.filter((x) => x !== id);
  }
  override toString = () => `disconnect(${this.i})`;
}

class ReadNonBlock extends ClientCmd {
  protected async step(m: Model, id: number, client: RawClient): Promise<void> {
    const reply = await client.request('READ NONBLOCK');
    let expected: string;
    try {
      expected = `OK ${m.core.read(id, true)}`;
    } catch {
      expected = 'ERR EAGAIN';
    }
    assert.equal(reply.startsWith('ERR EAGAIN') ? 'ERR EAGAIN' : reply, expected);
  }
  override toString = () => `readNonBlock(${this.i})`;
}

class Read extends ClientCmd {
  // A blocking read is only issued when it returns at once; a pending one would stall this client.
  protected override candidates(m: Readonly<Model>): readonly number[] {
    return m.ids.filter((id) => m.core.isOutdated(id));
  }
  protected async step(m: Model, id: number, client: RawClient): Promise<void> {
    assert.equal(await client.request('READ'), `OK ${m.core.read(id, false)}`);
  }
  override toString = () => `read(${this.i})`;
}

class Ack extends ClientCmd {
  constructor(
    i: number,
    readonly offset: number,
  ) {
    super(i);
  }
  protected async step(m: Model, id: number, client: RawClient): Promise<void> {
    const value = Math.max(0, m.core.generation + this.offset);
    const reply = await client.request(`ACK ${value}`);
    let expected: string;
    try {
      m.core.ack(id, value);
      expected = `OK ${value}`;
    } catch {
      expected = 'ERR EINVAL';
    }
    assert.equal(
      expected === 'ERR EINVAL',
      value !== m.generation,
      'the core agrees: only the exact generation is accepted',
    );
    if (value === m.generation) m.acked.set(id, value);
    assert.equal(reply.startsWith('ERR EINVAL') ? 'ERR EINVAL' : reply, expected);
  }
  override toString = () => `ack(${this.i}, counter${this.offset >= 0 ? '+' : ''}${this.offset})`;
}

class Track extends ClientCmd {
  constructor(
    i: number,
    readonly on: boolean,
  ) {
    super(i);
  }
  protected async step(m: Model, id: number, client: RawClient): Promise<void> {
    assert.equal(await client.request(this.on ? 'TRACK ON' : 'TRACK OFF'), 'OK');
    m.core.setTracking(id, this.on);
    m.tracked.set(id, this.on);
  }
  override toString = () => `track(${this.i}, ${this.on})`;
}

class Wait extends ClientCmd {
  protected async step(m: Model, id: number, client: RawClient): Promise<void> {
    const reply = await client.request('WAIT 15');
    // Nothing else happens meanwhile, so a wait that would pend ends in ETIME.
    const result = m.core.wait(id);
    if (result === undefined) m.core.expireWait(id);
    assert.equal(
      reply.split(' ').slice(0, 2).join(' ').replace(/^OK.*/, 'OK'),
      result === undefined ? 'ERR ETIME' : result === 'OK' ? 'OK' : `ERR ${result}`,
    );
  }
  override toString = () => `wait(${this.i})`;
}

class Bump implements Cmd {
  constructor(readonly min: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const reply = await r.control.request(`BUMP ${this.min}`);
    const next = m.core.nextGeneration(this.min);
    m.core.advance(next, 0);
    assert.equal(next, Math.max(this.min, m.generation + 1), 'max(min, counter + 1)');
    m.generation = next;
    assert.equal(reply, `OK ${next}`);
    // Every watcher is told: each client's next line is this GEN (before any later reply).
    for (const id of m.ids) assert.equal(await (r.clients.get(id) as RawClient).next(), `GEN ${next}`);
    await check(m, r);
  }
  toString = () => `bump(${this.min})`;
}

class Restart implements Cmd {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    r.daemon.child.kill('SIGKILL');
    await r.daemon.exited;
    for (const c of r.clients.values()) c.close();
    r.control.close();
    r.clients.clear();
    r.daemon = await startDaemon(undefined, { dir: r.dir });
    r.control = (await RawClient.open(path.join(r.dir, 'control.sock'))).c;
    m.core = new GenerationMachine(m.core.generation, () => {});
    m.ids = [];
    m.acked.clear();
    m.tracked.clear();
    await check(m, r);
  }
  toString = () => 'kill -9 and restart';
}

const commands = [
  fc.constant(new Connect()),
  fc.nat(20).map((i) => new Disconnect(i)),
  fc.nat(20).map((i) => new ReadNonBlock(i)),
  fc.nat(20).map((i) => new Read(i)),
  fc.tuple(fc.nat(20), fc.integer({ min: -2, max: 1 })).map(([i, o]) => new Ack(i, o)),
  fc.tuple(fc.nat(20), fc.integer({ min: -2, max: 1 })).map(([i, o]) => new Ack(i, o === -2 ? 0 : o)),
  fc.tuple(fc.nat(20), fc.boolean()).map(([i, on]) => new Track(i, on)),
  fc.nat(20).map((i) => new Wait(i)),
  fc.oneof(fc.constant(0), fc.nat(40)).map((min) => new Bump(min)),
  fc.constant(new Restart()),
];

/** The commands' replay hint from the environment (see the top of this file). */
const replay = process.env.SYSGENID_MODEL_REPLAY ? { replayPath: process.env.SYSGENID_MODEL_REPLAY } : {};

/** fast-check's parameters from the environment (see the top of this file). */
function parameters(defaultRuns: number, runsPerRun: number): fc.Parameters<unknown> {
  const env = process.env;
  return {
    numRuns: env.SYSGENID_MODEL_RUNS === undefined ? defaultRuns : runsPerRun * Number(env.SYSGENID_MODEL_RUNS),
    ...(env.SYSGENID_MODEL_SEED !== undefined ? { seed: Number(env.SYSGENID_MODEL_SEED) } : {}),
    ...(env.SYSGENID_MODEL_PATH ? { path: env.SYSGENID_MODEL_PATH } : {}),
  };
}

it('the daemon follows the reference state machine over random sequences (fast-check)', async (t) => {
  const base = tmpDir(t);
  let sequences = 0;
  let steps = 0;
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'max', ...replay }), async (cmds) => {
      const dir = path.join(base, `run-${sequences++}`);
      const daemon = await startDaemon(undefined, { dir });
      const real: Real = {
        daemon,
        dir,
        clients: new Map(),
        control: (await RawClient.open(path.join(dir, 'control.sock'))).c,
        steps: 0,
      };
      const core = new GenerationMachine(0, () => {});
      const model: Model = { core, acked: new Map(), tracked: new Map(), generation: 0, ids: [], highest: 0 };
      try {
        await fc.asyncModelRun(() => ({ model, real }), cmds);
      } finally {
        steps += real.steps;
        for (const c of real.clients.values()) c.close();
        real.control.close();
        await real.daemon.stop('SIGKILL');
      }
    }),
    { ...parameters(60, 1), endOnFailure: false },
  );
  t.diagnostic(`model test: ${sequences} sequences, ${steps} checked steps`);
});

// ------------------------------------------------------------------ the composed machine

/** What this test knows of one connection, kept by hand. */
interface RefConn {
  readonly control: boolean;
  observer: boolean;
  acked: number;
  tracked: boolean;
  /** Subscribed: its priority and registration number; quiesced: told to quiesce and not yet to resume. */
  sub: { priority: number; seq: number; quiesced: boolean } | undefined;
  /** The last cycle it was asked something in. */
  askedCycle?: number;
  /** Excluded by an administrator: untracked, unsubscribed, and may not track or subscribe again. */
  excluded: boolean;
}

/** The uid and pid each connection subscribes as: uid 0 is exempt from the cap, the others share it. */
const uidOf = (id: number): number => [0, 1000, 1001][id % 3] as number;
const pidOf = (id: number): number => 100 + id;
/** Lifecycle subscribers one uid other than 0 may have in this test. */
const SUBSCRIBER_CAP = 2;

interface Ref {
  gen: number;
  conns: Map<number, RefConn>;
  nextId: number;
  nextSeq: number;
  /** QUIESCE/UNQUIESCE requests not answered yet, by requester. */
  pending: Map<number, 'quiesce' | 'unquiesce'>;
  /** Answered requests (by return value or reply effect), for the summary. */
  answered: number;
}

interface Sys {
  readonly m: CoreMachine;
  readonly effects: MachineEffect[];
  now: number;
  timer: number | null;
  /** The last ask of a cycle's sequence, to check the order. */
  lastAsk: { cycle: number; step: 'quiesce' | 'unquiesce'; key: readonly [number, number] } | undefined;
}

type PureCmd = fc.Command<Ref, Sys>;

const ids = (r: Ref, f: (c: RefConn) => boolean): number[] => [...r.conns].filter(([, c]) => f(c)).map(([id]) => id);
const refOutdated = (r: Ref): number => ids(r, (c) => !c.observer && c.tracked && c.acked !== r.gen).length;
const cmp = (a: readonly [number, number], b: readonly [number, number]): number => a[0] - b[0] || a[1] - b[1];

/** Check every effect the last operation produced against the reference, then the invariants. */
function settle(r: Ref, s: Sys, during: 'subscribe' | 'other' = 'other'): void {
  for (const e of s.effects.splice(0)) {
    switch (e.kind) {
      case 'notify':
        for (const id of e.ids) assert.ok(!r.conns.get(id)?.observer, `notify ${id}: only connected watchers`);
        break;
      case 'read':
      case 'wait':
        assert.fail(`${e.kind} effect without a READ or WAIT`);
        break;
      case 'ask': {
        const c = r.conns.get(e.id);
        assert.ok(c?.sub, `ask ${e.step} to ${e.id}: only subscribers are asked`);
        if (e.step === 'unquiesce') assert.ok(c.sub.quiesced, `${e.id} is un-quiesced only after being quiesced`);
        c.sub.quiesced = e.step === 'quiesce';
        c.askedCycle = e.cycle;
        if (during === 'subscribe') break; // A latecomer is asked at once, outside the cycle's order.
        const key = [c.sub.priority, c.sub.seq] as const;
        const last = s.lastAsk;
        if (last && last.cycle === e.cycle && last.step === e.step) {
          const order = cmp(key, last.key);
          assert.ok(e.step === 'quiesce' ? order < 0 : order > 0, `${e.step} order: ${key} after ${last.key}`);
        }
        s.lastAsk = { cycle: e.cycle, step: e.step, key };
        break;
      }
      case 'reply':
        // The wire document is a copy of the core's report with the same bytes.
        assert.equal(JSON.stringify(cycleReportDocument(e.report)), JSON.stringify(e.report), 'report bytes');
        for (const st of e.report.steps) {
          assert.equal(st.uid, uidOf(st.id), `step ${st.id}: its uid`);
          assert.equal(st.pid, pidOf(st.id), `step ${st.id}: its pid`);
          if (st.outcome === 'excluded') assert.ok(r.conns.get(st.id)?.excluded ?? true, `${st.id}: excluded`);
          // A failure names whom to exclude; an exclusion is not a failure.
          if (st.outcome === 'failed' && !/^(interrupted|aborted)/.test(e.report.reason ?? '')) {
            assert.ok(e.report.reason?.includes(`uid ${uidOf(st.id)} pid ${pidOf(st.id)}`), `reason names ${st.id}`);
          }
        }
        if (
          e.report.steps.every(
            (st) => st.outcome === 'done' || st.outcome === 'excluded' || st.outcome === 'skipped',
          ) &&
          e.report.reason === null
        ) {
          assert.equal(e.report.ok, true, 'excluded steps do not fail a cycle');
        }
        for (const id of e.requesters) {
          assert.equal(r.pending.get(id), e.report.kind, `reply to ${id}: one, of the kind it asked for`);
          r.pending.delete(id);
          r.answered++;
        }
        break;
      case 'timer':
        s.timer = e.at;
        break;
      case 'log':
        break;
    }
  }
  const { m } = s;
  const lc = m.lifecycle;
  const outdated = refOutdated(r);
  assert.equal(m.generation, r.gen, 'generation');
  assert.equal(m.outdated, outdated, 'outdated = tracked watchers whose ack differs from the counter');
  assert.equal(m.watchers, ids(r, (c) => !c.observer).length, 'watchers');
  assert.equal(m.tracked, ids(r, (c) => !c.observer && c.tracked).length, 'tracked');
  const subs = ids(r, (c) => c.sub !== undefined);
  const key = (id: number): [number, number] => [r.conns.get(id)?.sub?.priority ?? 0, r.conns.get(id)?.sub?.seq ?? 0];
  assert.deepEqual(
    lc.order(),
    subs.sort((a, b) => cmp(key(a), key(b))),
    'subscribers in order',
  );
  // The glue: the lifecycle sees the same outdated count as the generation machine.
  assert.equal(lc.ready, lc.state === 'running' && outdated === 0, `ready (${lc.state}, ${outdated} outdated)`);
  if (lc.state === 'adjusting') assert.ok(outdated > 0, 'adjusting ends with the last outdated watcher');
  if (lc.state === 'quiescing' || lc.state === 'unquiescing' || lc.adjustingQuiesced) {
    assert.notEqual(s.timer, null, `${lc.state}: a deadline is armed`);
  }
  if (r.pending.size > 0) {
    assert.ok(['quiescing', 'unquiescing', 'adjusting'].includes(lc.state), `${lc.state}: no request left waiting`);
  }
  // A cycle in progress waits for one current subscriber at a time: one excluded or gone is never waited
  // for, and the cycle moves on to the next at once.
  const cur = lc.current;
  if (cur && cur.endedAt === null) {
    const asked = cur.steps.filter((x) => x.outcome === 'asked');
    assert.equal(asked.length, 1, `cycle ${cur.cycle} in progress waits for exactly one subscriber`);
    for (const st of asked) {
      assert.ok(r.conns.get(st.id)?.sub, `cycle ${cur.cycle} waits for ${st.id}, which is not a subscriber`);
    }
  }
  for (const [id, c] of r.conns) {
    assert.equal(m.isExcluded(id), c.excluded, `excluded ${id}`);
  }
  for (const uid of [0, 1000, 1001]) {
    const theirs = ids(r, (c) => c.sub !== undefined).filter((id) => uidOf(id) === uid).length;
    assert.equal(lc.subscribersOf(uid), theirs, `subscribers of uid ${uid}`);
    if (uid !== 0) assert.ok(theirs <= SUBSCRIBER_CAP, `uid ${uid} within its cap`);
  }
}

const pickId = (r: Ref, i: number, f: (c: RefConn) => boolean = () => true): number | undefined => pick(ids(r, f), i);

class PConnect implements PureCmd {
  constructor(readonly control: boolean) {}
  check = (r: Readonly<Ref>) => r.conns.size < 10;
  run(r: Ref, s: Sys): void {
    const id = r.nextId++;
    s.m.connect(id, { observer: this.control });
    const observer = this.control;
    r.conns.set(id, { control: observer, observer, acked: r.gen, tracked: !observer, sub: undefined, excluded: false });
    settle(r, s);
  }
  toString = () => (this.control ? 'connect(control)' : 'connect');
}

const notControl = (c: RefConn): boolean => !c.control;

/** The machine answers `op` with the error code `expected`, or does it when that is undefined; then `done`. */
function expectCode(op: () => unknown, expected: string | undefined, what: string, done: () => void = () => {}): void {
  assert.equal(errorCode(op), expected, what);
  if (expected === undefined) done();
}

/** A step by one connection, the `i`-th (modulo) of those `admits` lets through; settled afterwards. */
abstract class ConnCmd implements PureCmd {
  constructor(
    readonly i: number,
    readonly admits: (c: RefConn) => boolean = () => true,
  ) {}
  /** What settle() is told the step was: a subscription asks a latecomer at once, outside the order. */
  protected readonly during: 'subscribe' | 'other' = 'other';
  check(r: Readonly<Ref>): boolean {
    return ids(r, this.admits).length > 0;
  }
  run(r: Ref, s: Sys): void {
    const id = pickId(r, this.i, this.admits) as number;
    this.step(r, s, id, r.conns.get(id) as RefConn);
    settle(r, s, this.during);
  }
  protected abstract step(r: Ref, s: Sys, id: number, c: RefConn): void;
}

/**
 * A command that is one call on the machine for one connection: `refusal` is the error code the reference
 * expects it to answer (none: it is done), and `follow` brings the reference along when it is done.
 */
function oneCall(
  name: string,
  call: (s: Sys, id: number) => unknown,
  spec: {
    admits?: (c: RefConn) => boolean;
    refusal?: (c: RefConn) => string | undefined;
    what?: string;
    follow: (c: RefConn, r: Ref, id: number) => void;
  },
) {
  return class extends ConnCmd {
    constructor(i: number) {
      super(i, spec.admits);
    }
    protected step(r: Ref, s: Sys, id: number, c: RefConn): void {
      expectCode(
        () => call(s, id),
        spec.refusal?.(c),
        spec.what ?? name,
        () => spec.follow(c, r, id),
      );
    }
    override toString = () => `${name}(${this.i})`;
  };
}

const PDisconnect = oneCall('disconnect', (s, id) => s.m.disconnect(id, s.now), {
  follow: (_c, r, id) => {
    r.conns.delete(id);
    r.pending.delete(id);
  },
});

const PUnsubscribe = oneCall('unsubscribe', (s, id) => s.m.unsubscribe(id, s.now), {
  follow: (c) => (c.sub = undefined),
});

const PObserve = oneCall('observe', (s, id) => s.m.observe(id, s.now), {
  admits: notControl,
  refusal: (c) => (c.sub ? 'EINVAL' : undefined),
  what: 'a subscriber cannot observe',
  follow: (c) => {
    c.observer = true;
    c.tracked = false;
  },
});

class PExclude extends oneCall('exclude', (s, id) => s.m.exclude(id, s.now), {
  refusal: (c) => (c.observer ? 'ENOENT' : undefined),
  what: 'only a watcher',
  follow: (c) => {
    c.excluded = true;
    c.tracked = false;
    c.sub = undefined;
  },
}) {
  // A third as often as the other commands, so that most sequences still keep most of their watchers.
  override check(r: Readonly<Ref>): boolean {
    return super.check(r) && this.i % 3 === 0;
  }
}

class PAck extends ConnCmd {
  constructor(
    i: number,
    readonly exact: boolean,
  ) {
    super(i, notControl);
  }
  protected step(r: Ref, s: Sys, id: number, c: RefConn): void {
    const value = this.exact ? r.gen : r.gen + 1;
    expectCode(
      () => s.m.ack(id, value, s.now),
      this.exact ? undefined : 'EINVAL',
      'only the current generation is acknowledged',
      () => (c.acked = value),
    );
  }
  override toString = () => `ack(${this.i}, ${this.exact ? 'current' : 'wrong'})`;
}

class PTrack extends ConnCmd {
  constructor(
    i: number,
    readonly on: boolean,
  ) {
    super(i);
  }
  protected step(_r: Ref, s: Sys, id: number, c: RefConn): void {
    const expected = c.observer ? 'EINVAL' : c.excluded && this.on ? 'EACCES' : undefined;
    expectCode(
      () => s.m.setTracking(id, this.on, s.now),
      expected,
      'an excluded watcher stays untracked',
      () => (c.tracked = this.on),
    );
  }
  override toString = () => `track(${this.i}, ${this.on})`;
}

class PResume extends ConnCmd {
  constructor(
    i: number,
    readonly delta: number,
  ) {
    super(i, notControl);
  }
  protected step(r: Ref, s: Sys, id: number, c: RefConn): void {
    const handled = Math.max(0, r.gen + this.delta);
    s.m.resume(id, handled, s.now);
    c.acked = handled;
  }
  override toString = () => `resume(${this.i}, counter${this.delta >= 0 ? '+' : ''}${this.delta})`;
}

class PBump implements PureCmd {
  constructor(readonly min: number) {}
  check = () => true;
  run(r: Ref, s: Sys): void {
    const next = s.m.nextGeneration(this.min);
    assert.equal(next, Math.max(this.min, r.gen + 1), 'max(min, counter + 1)');
    s.m.advance(next, s.now);
    r.gen = next;
    const notified = s.effects.filter((e) => e.kind === 'notify').flatMap((e) => (e.kind === 'notify' ? e.ids : []));
    assert.deepEqual(notified.sort(), ids(r, (c) => !c.observer && c.acked !== next).sort(), 'every watcher is told');
    settle(r, s);
  }
  toString = () => `bump(${this.min})`;
}

class PSubscribe extends ConnCmd {
  constructor(
    i: number,
    readonly priority: number,
  ) {
    super(i);
  }
  protected override readonly during = 'subscribe';
  protected step(r: Ref, s: Sys, id: number, c: RefConn): void {
    const uid = uidOf(id);
    const full =
      uid !== 0 &&
      c.sub === undefined &&
      ids(r, (o) => o.sub !== undefined).filter((o) => uidOf(o) === uid).length >= SUBSCRIBER_CAP;
    const expected = c.observer
      ? 'EINVAL'
      : c.excluded
        ? 'EACCES'
        : full
          ? 'EDQUOT'
          : c.sub !== undefined && c.sub.priority !== this.priority
            ? 'EINVAL'
            : undefined;
    const as = { uid, pid: pidOf(id), maxPerUid: uid === 0 ? undefined : SUBSCRIBER_CAP };
    expectCode(
      () => s.m.subscribe(id, null, this.priority, as),
      expected,
      "only a watcher subscribes, once per priority, never excluded, within its uid's cap",
      () => (c.sub ??= { priority: this.priority, seq: r.nextSeq++, quiesced: false }),
    );
  }
  override toString = () => `subscribe(${this.i}, ${this.priority})`;
}

class PAnswer implements PureCmd {
  constructor(
    readonly i: number,
    readonly answer: 'quiesced' | 'unquiesced' | 'failed',
    readonly stale: boolean,
  ) {}
  check = (r: Readonly<Ref>) => r.conns.size > 0;
  run(r: Ref, s: Sys): void {
    // Mostly a subscriber answering what it was asked; sometimes anyone, or an old cycle.
    const asked = pickId(r, this.i, (c) => c.askedCycle !== undefined && c.sub !== undefined);
    const id = (asked ?? pickId(r, this.i)) as number;
    const c = r.conns.get(id) as RefConn;
    const cycle = (c.askedCycle ?? 1) - (this.stale ? 1 : 0);
    expectCode(
      () => s.m.answer(id, this.answer, cycle, 'no', s.now),
      c.sub ? undefined : 'EINVAL',
      'only a subscriber answers',
    );
    settle(r, s);
  }
  toString = () => `answer(${this.i}, ${this.answer}${this.stale ? ', stale' : ''})`;
}

class PRequest implements PureCmd {
  constructor(
    readonly i: number,
    readonly kind: 'quiesce' | 'unquiesce',
    readonly budget: number,
  ) {}
  // One request at a time per connection, as the daemon's request queue guarantees.
  check = (r: Readonly<Ref>) => ids(r, (c) => c.control).some((id) => !r.pending.has(id));
  run(r: Ref, s: Sys): void {
    const id = pickId(r, this.i, (c) => c.control) ?? 0;
    if (r.pending.has(id)) return;
    const lc = s.m.lifecycle;
    const busy =
      this.kind === 'quiesce' &&
      (lc.state === 'quiescing' || lc.state === 'unquiescing' || lc.state === 'quiesced' || lc.adjustingQuiesced);
    let report: ReturnType<CoreMachine['quiesce']>;
    const code = errorCode(() => {
      report = this.kind === 'quiesce' ? s.m.quiesce(id, this.budget, s.now) : s.m.unquiesce(id, this.budget, s.now);
    });
    assert.equal(code, busy ? 'EBUSY' : undefined, `${this.kind} in ${lc.state}`);
    if (!busy) {
      if (report === undefined) r.pending.set(id, this.kind);
      else {
        assert.equal(report.kind, this.kind);
        r.answered++;
      }
    }
    settle(r, s);
  }
  toString = () => `${this.kind}(${this.i}, ${this.budget} ms)`;
}

class PPass implements PureCmd {
  constructor(readonly ms: number) {}
  check = () => true;
  run(r: Ref, s: Sys): void {
    s.now += this.ms;
    // As the daemon's timer does: it fires when its time has come.
    if (s.timer !== null && s.timer <= s.now) s.m.tick(s.now);
    settle(r, s);
  }
  toString = () => `pass(${this.ms} ms)`;
}

/** Every subscriber answers what it was last asked and every watcher acknowledges, until nothing moves. */
function drain(r: Ref, s: Sys): void {
  for (let round = 0; round < 50; round++) {
    for (const [id, c] of r.conns) {
      if (c.sub && c.askedCycle !== undefined) {
        s.m.answer(id, c.sub.quiesced ? 'quiesced' : 'unquiesced', c.askedCycle, null, s.now);
        settle(r, s);
      }
      if (!c.control && c.acked !== r.gen) {
        s.m.ack(id, r.gen, s.now);
        c.acked = r.gen;
        settle(r, s);
      }
    }
    if (s.timer !== null) {
      s.now = Math.max(s.now, s.timer);
      s.m.tick(s.now);
      settle(r, s);
    }
    const state = s.m.lifecycle.state;
    if (r.pending.size === 0 && s.timer === null && (state === 'running' || state === 'quiesced')) break;
  }
  const { state } = s.m.lifecycle;
  assert.equal(r.pending.size, 0, 'every request was answered');
  assert.ok(state === 'running' || state === 'quiesced', `settled in ${state}`);
  if (state === 'running') {
    assert.equal(s.m.lifecycle.ready, true, 'running with everyone acknowledged is ready');
    assert.deepEqual(
      ids(r, (c) => c.sub?.quiesced === true),
      [],
      'running: nobody left quiesced',
    );
  }
}

const pureCommands = [
  fc.boolean().map((control) => new PConnect(control)),
  fc.nat(20).map((i) => new PDisconnect(i)),
  fc.tuple(fc.nat(20), fc.boolean()).map(([i, exact]) => new PAck(i, exact || i % 4 !== 0)),
  fc.tuple(fc.nat(20), fc.boolean()).map(([i, on]) => new PTrack(i, on)),
  fc.tuple(fc.nat(20), fc.integer({ min: -2, max: 1 })).map(([i, d]) => new PResume(i, d)),
  fc.nat(20).map((i) => new PObserve(i)),
  fc.oneof(fc.constant(0), fc.nat(40)).map((min) => new PBump(min)),
  fc.tuple(fc.nat(20), fc.integer({ min: -1, max: 1 })).map(([i, p]) => new PSubscribe(i, p)),
  fc.nat(20).map((i) => new PUnsubscribe(i)),
  fc.nat(40).map((i) => new PExclude(i)),
  fc
    .tuple(fc.nat(20), fc.constantFrom('quiesced', 'unquiesced', 'failed' as const), fc.boolean())
    .map(([i, a, stale]) => new PAnswer(i, a === 'failed' && i % 2 === 0 ? 'quiesced' : a, stale && i % 3 === 0)),
  fc
    .tuple(fc.nat(20), fc.constantFrom('quiesce', 'unquiesce' as const), fc.constantFrom(10, 100, 1000))
    .map(([i, k, b]) => new PRequest(i, k, b)),
  fc.constantFrom(1, 20, 200, 2000).map((ms) => new PPass(ms)),
];

it('the composed machine follows the reference over random sequences, lifecycle included (fast-check)', (t) => {
  let sequences = 0;
  let steps = 0;
  let answered = 0;
  const states = new Set<string>();
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.commands(pureCommands, { maxCommands: 80, size: 'max', ...replay }),
      (autoResume, cmds) => {
        sequences++;
        const effects: MachineEffect[] = [];
        const m = new CoreMachine(
          0,
          { autoResume, adjustTimeoutMs: 1000, resumeTimeoutMs: 300 },
          (e) => {
            effects.push(e);
            if (e.kind === 'log') states.add(e.message);
          },
          0,
        );
        const sys: Sys = { m, effects, now: 0, timer: null, lastAsk: undefined };
        const ref: Ref = { gen: 0, conns: new Map(), nextId: 1, nextSeq: 0, pending: new Map(), answered: 0 };
        fc.modelRun(() => ({ model: ref, real: sys }), cmds);
        drain(ref, sys);
        steps += [...cmds].length;
        answered += ref.answered;
      },
    ),
    { ...parameters(3000, 20), includeErrorInReport: true },
  );
  t.diagnostic(
    `composed model: ${sequences} sequences, ${steps} commands, ${answered} requests answered, ` +
      `${[...states].filter((s) => s.startsWith('lifecycle: ') && s.includes('->')).length} distinct transitions seen`,
  );
});
