// The library as a new user meets it (issue 14): a service that starts before the daemon waits for it
// within a documented bound, a failing handler is retried with backoff and its failure reaches the
// daemon (status and ready show it), and a burst of generations is handled once, for the latest.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { Lifecycle } from '../src/client/lifecycle.js';
import { connect } from '../src/client/watcher.js';
import { DEFAULT_WAIT_FOR_DAEMON_MS } from '../src/defaults.js';
import type { SysgenidError } from '../src/protocol/errors.js';
import { RawClient, bump, eventually, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

describe('waiting for the daemon', () => {
  it('connect({ waitForDaemon }) connects once a daemon starts later', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const pending = connect({ dir, name: 'early', waitForDaemon: 20_000 });
    await sleep(300);
    await startDaemon(t, { dir });
    const w = await pending;
    t.after(() => w.close());
    assert.equal(w.generation, 0);
    await eventually(async () => (await statusOf(dir)).list?.some((x) => x.name === 'early'), 5000, 'listed');
  });

  it('Lifecycle.open waits by default', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const pending = Lifecycle.open({ dir, name: 'early-lifecycle' });
    await sleep(300);
    await startDaemon(t, { dir });
    const lc = await pending;
    t.after(() => lc.close());
    const subscribers = async (): Promise<number> =>
      ((await statusOf(dir)).lifecycle as { subscribers: number }).subscribers;
    await eventually(async () => (await subscribers()) === 1, 5000, 'subscribed');
  });

  it('connect() without the option fails at once with ENOTCONN, and the wait has its bound', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const started = Date.now();
    await assert.rejects(connect({ dir }), (err: SysgenidError) => err.code === 'ENOTCONN');
    assert.ok(Date.now() - started < 1000, 'no wait by default');
    const bounded = Date.now();
    await assert.rejects(
      connect({ dir, waitForDaemon: 400 }),
      (err: SysgenidError) => err.code === 'ENOTCONN' && /waited 400 ms/.test(err.message),
    );
    assert.ok(Date.now() - bounded >= 400, 'waited the bound');
    assert.equal(DEFAULT_WAIT_FOR_DAEMON_MS, 60_000, 'the bound docs/CLI.md and the README state');
    await assert.rejects(connect({ dir, waitForDaemon: -1 }), (err: SysgenidError) => err.code === 'EINVAL');
  });
});

describe('handle(): retries, reported failures, coalescing', () => {
  it('retries a failing handler with backoff, reports its failure to the daemon, clears it on success', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'flaky' });
    t.after(() => w.close());
    const calls: number[] = [];
    const retries: Array<[number, number]> = [];
    w.on('error', () => {});
    w.on('retry', (gen, _err, _attempt, delay) => retries.push([gen, delay]));
    let release = false;
    w.handle(
      async (gen) => {
        calls.push(gen);
        if (!release) throw new Error('database down');
      },
      { retryMinMs: 100, retryMaxMs: 400 },
    );
    await bump(d.dir);
    const problem = await eventually(
      async () => (await statusOf(d.dir)).list?.find((x) => x.name === 'flaky')?.problem,
      5000,
      'problem reported',
    );
    assert.match(String(problem), /generation 1: database down \(attempt \d+, next in \d+ ms\)/);
    await eventually(() => calls.length >= 3, 5000, 'retried');
    assert.deepEqual(
      retries.slice(0, 3).map(([, delay]) => delay),
      [100, 200, 400],
      'doubling up to the maximum',
    );
    assert.equal((await statusOf(d.dir)).outdated, 1, 'unacknowledged while it fails');
    release = true;
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged after a retry succeeded');
    const s = await statusOf(d.dir);
    assert.equal(s.list?.find((x) => x.name === 'flaky')?.problem, null, 'problem cleared');
    assert.ok(calls.every((g) => g === 1));
  });

  it("a successful handler leaves a problem the application reported itself (sysgenid/register's)", async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'own-problem' });
    t.after(() => w.close());
    await w.reportProblem('OpenSSL could not be reseeded');
    w.handle(async () => {});
    await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged');
    const entry = (await statusOf(d.dir)).list?.find((x) => x.name === 'own-problem');
    assert.equal(entry?.problem, 'OpenSSL could not be reseeded');
  });

  it('a burst while the handler runs is handled once, for the latest generation', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'slow' });
    t.after(() => w.close());
    const calls: number[] = [];
    let unblock: () => void = () => {};
    const blocked = new Promise<void>((r) => (unblock = r));
    w.handle(async (gen) => {
      calls.push(gen);
      if (calls.length === 1) await blocked;
    });
    await bump(d.dir);
    await eventually(() => calls.length === 1, 5000, 'first handler running');
    for (let i = 0; i < 4; i++) await bump(d.dir);
    await eventually(() => w.generation === 5, 5000, 'burst seen');
    unblock();
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'latest acknowledged');
    assert.deepEqual(calls, [1, 5]);
  });

  it('generations that arrive together before the handler starts are handled once, for the latest', async (t) => {
    const d = await startDaemon(t);
    const w = await connect({ dir: d.dir, name: 'burst' });
    t.after(() => w.close());
    const calls: number[] = [];
    w.handle((gen) => {
      calls.push(gen);
    });
    const { c } = await RawClient.open(d.paths.control);
    t.after(() => c.close());
    c.send('BUMP\nBUMP\nBUMP\nBUMP\n');
    await eventually(async () => (await statusOf(d.dir)).generation === 4, 5000, 'bumped');
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged');
    assert.equal(calls.at(-1), 4);
    assert.ok(calls.length < 4, `not once per generation: ${calls.join(', ')}`);
  });
});

describe('Lifecycle: a failed afterRestore is retried', () => {
  it('runs afterRestore again with backoff and acknowledges once it succeeds, with no new generation', async (t) => {
    const d = await startDaemon(t);
    const lc = await Lifecycle.open({ dir: d.dir, name: 'keys', retryMinMs: 100 });
    t.after(() => lc.close());
    lc.on('error', () => {});
    const calls: number[] = [];
    lc.register({
      name: 'hsm',
      afterRestore: (g) => {
        calls.push(g);
        if (calls.length < 3) throw new Error('HSM unreachable');
      },
    });
    await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged after the retries');
    assert.deepEqual(calls, [1, 1, 1]);
    assert.equal((await statusOf(d.dir)).list?.[0]?.problem, null, 'problem cleared');
  });
});
