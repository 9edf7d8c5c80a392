// Model-based test: random sequences of operations run against the real daemon over real sockets and,
// step by step, against the pure state machine (the reference). fast-check shrinks a failure and prints
// its seed and path; rerun one with SYSGENID_MODEL_SEED=<seed> SYSGENID_MODEL_PATH=<path>.
// SYSGENID_MODEL_RUNS sets the number of sequences (default 25 in the suite).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import fc from 'fast-check';
import { GenerationMachine } from '../src/core/generation.js';
import { decodeU32 } from '../src/protocol/page-format.js';
import { type DaemonHandle, RawClient, eventually, startDaemon, statusOf, tmpDir } from './helpers.js';

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
  const s = (await eventually(async () => {
    const st = await statusOf(r.dir);
    return st.watchers === m.core.watchers ? st : undefined;
  }, 5000, 'watcher count settles')) as Awaited<ReturnType<typeof statusOf>>;
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
  assert.equal(decodeU32(fs.readFileSync(path.join(r.dir, 'generation'))), m.core.generation, 'page = counter');
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

class Disconnect implements Cmd {
  constructor(readonly i: number) {}
  check = (m: Readonly<Model>) => m.ids.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.ids, this.i) as number;
    r.clients.get(id)?.close();
    r.clients.delete(id);
    m.core.disconnect(id);
    m.acked.delete(id);
    m.tracked.delete(id);
    m.ids = m.ids.filter((x) => x !== id);
    await check(m, r);
  }
  toString = () => `disconnect(${this.i})`;
}

class ReadNonBlock implements Cmd {
  constructor(readonly i: number) {}
  check = (m: Readonly<Model>) => m.ids.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.ids, this.i) as number;
    const reply = await (r.clients.get(id) as RawClient).request('READ NONBLOCK');
    let expected: string;
    try {
      expected = `OK ${m.core.read(id, true)}`;
    } catch {
      expected = 'ERR EAGAIN';
    }
    assert.equal(reply.startsWith('ERR EAGAIN') ? 'ERR EAGAIN' : reply, expected);
    await check(m, r);
  }
  toString = () => `readNonBlock(${this.i})`;
}

class Read implements Cmd {
  constructor(readonly i: number) {}
  // A blocking read is only issued when it returns at once; a pending one would stall this client.
  check = (m: Readonly<Model>) => m.ids.some((id) => m.core.isOutdated(id));
  async run(m: Model, r: Real): Promise<void> {
    const outdated = m.ids.filter((id) => m.core.isOutdated(id));
    const id = pick(outdated, this.i) as number;
    assert.equal(await (r.clients.get(id) as RawClient).request('READ'), `OK ${m.core.read(id, false)}`);
    await check(m, r);
  }
  toString = () => `read(${this.i})`;
}

class Ack implements Cmd {
  constructor(readonly i: number, readonly offset: number) {}
  check = (m: Readonly<Model>) => m.ids.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.ids, this.i) as number;
    const value = Math.max(0, m.core.generation + this.offset);
    const reply = await (r.clients.get(id) as RawClient).request(`ACK ${value}`);
    let expected: string;
    try {
      m.core.ack(id, value);
      expected = `OK ${value}`;
    } catch {
      expected = 'ERR EINVAL';
    }
    assert.equal(expected === 'ERR EINVAL', value !== m.generation, 'the core agrees: only the exact generation is accepted');
    if (value === m.generation) m.acked.set(id, value);
    assert.equal(reply.startsWith('ERR EINVAL') ? 'ERR EINVAL' : reply, expected);
    await check(m, r);
  }
  toString = () => `ack(${this.i}, counter${this.offset >= 0 ? '+' : ''}${this.offset})`;
}

class Track implements Cmd {
  constructor(readonly i: number, readonly on: boolean) {}
  check = (m: Readonly<Model>) => m.ids.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.ids, this.i) as number;
    assert.equal(await (r.clients.get(id) as RawClient).request(this.on ? 'TRACK ON' : 'TRACK OFF'), 'OK');
    m.core.setTracking(id, this.on);
    m.tracked.set(id, this.on);
    await check(m, r);
  }
  toString = () => `track(${this.i}, ${this.on})`;
}

class Wait implements Cmd {
  constructor(readonly i: number) {}
  check = (m: Readonly<Model>) => m.ids.length > 0;
  async run(m: Model, r: Real): Promise<void> {
    const id = pick(m.ids, this.i) as number;
    const reply = await (r.clients.get(id) as RawClient).request('WAIT 15');
    // Nothing else happens meanwhile, so a wait that would pend ends in ETIME.
    const result = m.core.wait(id);
    if (result === undefined) m.core.expireWait(id);
    assert.equal(reply.split(' ').slice(0, 2).join(' ').replace(/^OK.*/, 'OK'), result === undefined ? 'ERR ETIME' : result === 'OK' ? 'OK' : `ERR ${result}`);
    await check(m, r);
  }
  toString = () => `wait(${this.i})`;
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

it('the daemon follows the reference state machine over random sequences (fast-check)', async (t) => {
  const runs = Number(process.env.SYSGENID_MODEL_RUNS ?? 60);
  const seed = process.env.SYSGENID_MODEL_SEED === undefined ? undefined : Number(process.env.SYSGENID_MODEL_SEED);
  const base = tmpDir(t);
  let sequences = 0;
  let steps = 0;
  await fc.assert(
    fc.asyncProperty(fc.commands(commands, { maxCommands: 60, size: 'max' }), async (cmds) => {
      const dir = path.join(base, `run-${sequences++}`);
      const daemon = await startDaemon(undefined, { dir });
      const real: Real = { daemon, dir, clients: new Map(), control: (await RawClient.open(path.join(dir, 'control.sock'))).c, steps: 0 };
      const model: Model = { core: new GenerationMachine(0, () => {}), acked: new Map(), tracked: new Map(), generation: 0, ids: [], highest: 0 };
      try {
        await fc.asyncModelRun(() => ({ model, real }), cmds);
      } finally {
        steps += real.steps;
        for (const c of real.clients.values()) c.close();
        real.control.close();
        await real.daemon.stop('SIGKILL');
      }
    }),
    {
      numRuns: runs,
      ...(seed !== undefined ? { seed } : {}),
      ...(process.env.SYSGENID_MODEL_PATH ? { path: process.env.SYSGENID_MODEL_PATH } : {}),
      endOnFailure: false,
    },
  );
  t.diagnostic(`model test: ${sequences} sequences, ${steps} checked steps`);
});
