// The Node client library against the real daemon.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  SysgenidError,
  connect,
  forceUpdate,
  openProbe,
  readNext,
  status,
  waitForWatchers,
} from '../src/client/index.js';
import { RawClient, eventually, resetGeneration, sleep, startDaemon, tmpDir } from './helpers.js';

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof SysgenidError, String(err));
    assert.equal(err.code, code);
    return true;
  });
}

describe('client library', () => {
  it('a one-shot call abandoned through its signal rejects with ECONNRESET, at any moment, and nothing is left unhandled', async (t) => {
    const d = await startDaemon(t);
    for (const delay of [0, 0, 1, 5, 20]) {
      const ac = new AbortController();
      const pending = readNext({ dir: d.dir, signal: ac.signal });
      if (delay > 0) await sleep(delay);
      ac.abort();
      await assert.rejects(pending, (e: SysgenidError) => e.code === 'ECONNRESET');
    }
    // An unhandled rejection would fail this file; give one the chance to surface.
    await sleep(50);
  });

  it('connect, read, ack, and the outdated state', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'lib-test' });
    t.after(() => w.close());
    assert.equal(w.generation, 0);
    assert.equal(w.outdated, false);
    await rejectsWith(w.readNonBlock(), 'EAGAIN');
    const next = w.read();
    assert.equal(await forceUpdate({ dir: d.dir }), 1);
    assert.equal(await next, 1);
    assert.equal(w.outdated, true);
    assert.equal(await w.read(), 1, 'read returns at once while outdated');
    assert.equal(await w.readNonBlock(), 1);
    await rejectsWith(w.ack(0), 'EINVAL');
    await w.ack(1);
    assert.equal(w.outdated, false);
    assert.equal(w.handled, 1);
    const s = await status({ dir: d.dir });
    assert.equal(s.watchers, 1, 'status, bump and wait calls are not watchers');
    assert.equal(s.list?.[0]?.name, 'lib-test');
    assert.equal(s.list?.[0]?.pid, process.pid);
  });

  it('async iteration yields every new generation once', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir });
    t.after(() => w.close());
    const seen: number[] = [];
    const done = (async () => {
      for await (const g of w) {
        seen.push(g);
        await w.ack(g);
        if (seen.length === 3) break;
      }
    })();
    for (let i = 0; i < 3; i++) {
      await forceUpdate({ dir: d.dir });
      await eventually(() => seen.length === i + 1, 5000, `generation ${i + 1}`);
    }
    await done;
    assert.deepEqual(seen, [1, 2, 3]);
  });

  it('handle() acknowledges when the handler resolves and not when it throws', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir });
    t.after(() => w.close());
    const errors: Error[] = [];
    w.on('error', (e) => errors.push(e));
    let fail = true;
    const handled: number[] = [];
    w.handle(async (g) => {
      await sleep(20);
      if (fail) throw new Error(`cannot adjust to ${g}`);
      handled.push(g);
    });
    await forceUpdate({ dir: d.dir });
    await eventually(() => errors.length === 1, 5000, 'handler error reported');
    await rejectsWith(waitForWatchers({ dir: d.dir, timeoutMs: 100 }), 'ETIME');
    fail = false;
    await forceUpdate({ dir: d.dir });
    await waitForWatchers({ dir: d.dir, timeoutMs: 5000 });
    assert.deepEqual(handled, [2]);
    // The waiter may hear of the ack before the watcher reads the daemon's reply to it.
    await eventually(() => w.handled === 2, 5000, 'ack recorded');
  });

  it('waitForWatchers from a watcher: EINTR while the caller is outdated, OK once all acknowledged', async (t) => {
    const d = await startDaemon(t);
    const orchestrator = await connect({ dir: d.dir, name: 'orchestrator' });
    const app = await connect({ dir: d.dir, name: 'app' });
    t.after(() => [orchestrator, app].forEach((w) => w.close()));
    await forceUpdate({ dir: d.dir });
    await orchestrator.read();
    await rejectsWith(orchestrator.waitForWatchers(1000), 'EINTR');
    await orchestrator.ack(1);
    await rejectsWith(orchestrator.waitForWatchers(50), 'ETIME');
    const waiting = orchestrator.waitForWatchers(5000);
    await app.ack(await app.read());
    await waiting;
  });

  it('setTracking(false) keeps notifications and leaves the waiters alone', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, tracked: false });
    t.after(() => w.close());
    assert.equal((await status({ dir: d.dir })).tracked, 0);
    await forceUpdate({ dir: d.dir });
    assert.equal(await w.read(), 1);
    await waitForWatchers({ dir: d.dir, timeoutMs: 1000 });
    await w.setTracking(true);
    await rejectsWith(waitForWatchers({ dir: d.dir, timeoutMs: 50 }), 'ETIME');
  });

  // Deterministic: the generation moves while no daemon runs, so only the reconnect can reveal it; and it
  // fails within seconds (its own timeout), not after the file's.
  it(
    'reconnects after the daemon restarts and reports the generation that moved meanwhile',
    { timeout: 30_000 },
    async (t) => {
      const dir = path.join(tmpDir(t), 'run');
      let d = await startDaemon(t, { dir });
      const w = await connect({ dir, name: 'survivor' });
      t.after(() => w.close());
      const gens: number[] = [];
      w.on('generation', (g) => gens.push(g));
      let reconnects = 0;
      w.on('reconnect', () => reconnects++);
      d.child.kill('SIGKILL');
      await d.exited;
      await eventually(() => !w.connected, 5000, 'disconnect noticed');
      const reset = await resetGeneration(dir, 7);
      assert.equal(reset.code, 0, reset.stderr);
      d = await startDaemon(t, { dir });
      await eventually(() => reconnects === 1, 10_000, 'reconnected');
      await eventually(() => gens.length > 0, 2000, 'the change made while away reported');
      assert.deepEqual(gens, [7]);
      assert.equal(w.generation, 7);
      const s = await status({ dir });
      assert.equal(s.outdated, 1, 'the daemon knows this watcher has not handled 7 yet');
      assert.equal(s.list?.[0]?.name, 'survivor');
      await w.ack(7);
      await waitForWatchers({ dir, timeoutMs: 1000 });
    },
  );

  it('a restart without a change is not reported as a generation', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const d = await startDaemon(t, { dir });
    const w = await connect({ dir });
    t.after(() => w.close());
    const gens: number[] = [];
    w.on('generation', (g) => gens.push(g));
    await d.stop();
    await startDaemon(t, { dir });
    await eventually(() => w.connected, 5000, 'reconnected');
    await sleep(50);
    assert.deepEqual(gens, []);
    assert.equal(w.outdated, false);
  });

  it('a generation pushed in the same read as the greeting is not lost', async (t) => {
    const d = await startDaemon(t);
    // Many watchers connect while bumps happen; each must end up knowing the final generation.
    const watchers = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        if (i % 3 === 0) await forceUpdate({ dir: d.dir });
        return connect({ dir: d.dir });
      }),
    );
    t.after(() => watchers.forEach((w) => w.close()));
    const final = (await status({ dir: d.dir })).generation;
    await eventually(() => watchers.every((w) => w.generation === final), 5000, 'all watchers current');
  });

  it('errors carry codes: daemon absent, control socket denied', async (t) => {
    const dir = path.join(tmpDir(t), 'nothing-here');
    await rejectsWith(connect({ dir, connectTimeoutMs: 200 }), 'ENOTCONN');
    await rejectsWith(status({ dir }), 'ENOTCONN');
    await rejectsWith(forceUpdate({ dir }), 'ENOTCONN');
  });

  it('readNext blocks until the next generation; nonblock is EAGAIN', async (t) => {
    const d = await startDaemon(t);
    await rejectsWith(readNext({ dir: d.dir, nonblock: true }), 'EAGAIN');
    const next = readNext({ dir: d.dir });
    await sleep(50);
    await forceUpdate({ dir: d.dir, min: 5 });
    assert.equal(await next, 5);
  });

  it('the probe reads the page and tells whether the generation changed since the last adjustment', async (t) => {
    const d = await startDaemon(t);
    const probe = openProbe({ dir: d.dir });
    t.after(() => probe.close());
    assert.equal(probe.generation(), 0);
    assert.equal(probe.changed(), false);
    await forceUpdate({ dir: d.dir, min: 3 });
    assert.equal(probe.changed(), true);
    assert.equal(probe.generation(), 3);
    probe.adjusted();
    assert.equal(probe.changed(), false);
    assert.equal(probe.seen, 3);
    assert.equal(probe.refresh(), false);
  });

  it('a watcher closed by the application rejects pending reads with ECLOSED', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir });
    const pending = w.read();
    w.close();
    await rejectsWith(pending, 'ECLOSED');
    await rejectsWith(w.read(), 'ECLOSED');
    const { c } = await RawClient.open(d.paths.watch);
    c.close();
    await eventually(async () => (await status({ dir: d.dir })).watchers === 0, 5000, 'closed watcher gone');
  });
});
