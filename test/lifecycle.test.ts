// The lifecycle over real sockets: the protocol (SUBSCRIBE, QUIESCE/UNQUIESCE both ways, FAILED,
// PROBLEM), the Node library's hooks and their order, and the CLI (quiesce, resume, snapshot, ready,
// criu-action) with its exit codes.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { Lifecycle, type Resource } from '../src/client/lifecycle.js';
import { quiesce } from '../src/client/admin.js';
import type { CycleReport } from '../src/core/lifecycle.js';
import type { DaemonStatus } from '../src/protocol/status.js';
import { CLI, RawClient, bump, eventually, runNode, startDaemon, statusOf, tmpDir } from './helpers.js';

const cli = (dir: string, ...args: string[]) => runNode(CLI, [...args, '--dir', dir]);
const lifecycleOf = async (dir: string): Promise<DaemonStatus['lifecycle']> =>
  (await statusOf(dir)).lifecycle as DaemonStatus['lifecycle'];

/** The next n lines in any order: a push may come before the reply to the request that caused it. */
async function nextLines(c: RawClient, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(await c.next());
  return out.sort();
}

async function subscriber(watch: string, name: string, priority = 0): Promise<RawClient> {
  const { c } = await RawClient.open(watch);
  assert.equal(await c.request(`NAME ${name}`), 'OK');
  assert.equal(await c.request(`SUBSCRIBE ${priority}`), 'OK running');
  return c;
}

describe('lifecycle protocol', () => {
  it('only watchers subscribe, only the control socket quiesces, only subscribers answer', async (t) => {
    const d = await startDaemon(t);
    const { c: w } = await RawClient.open(d.paths.watch);
    const { c: ctl } = await RawClient.open(d.paths.control);
    const { c: obs } = await RawClient.open(d.paths.watch);
    t.after(() => [w, ctl, obs].forEach((c) => c.close()));
    assert.match(await w.request('QUIESCE 1000'), /^ERR EACCES /);
    assert.match(await w.request('UNQUIESCE'), /^ERR EACCES /);
    assert.match(await ctl.request('SUBSCRIBE'), /^ERR EINVAL /);
    assert.equal(await obs.request('OBSERVE'), 'OK');
    assert.match(await obs.request('SUBSCRIBE'), /^ERR EINVAL /);
    assert.match(await w.request('QUIESCED 1'), /^ERR EINVAL .*not subscribed/);
    assert.equal(await w.request('SUBSCRIBE 7'), 'OK running');
    assert.match(await w.request('SUBSCRIBE 8'), /^ERR EINVAL /);
    assert.match(await w.request('OBSERVE'), /^ERR EINVAL /, 'a subscriber stays a watcher');
    assert.match(await ctl.request('QUIESCE 0'), /^ERR EINVAL /);
    // A name given after subscribing is the one the lifecycle reports.
    assert.equal(await w.request('NAME renamed-later'), 'OK');
    ctl.send('QUIESCE 2000\n');
    assert.equal(await w.next(), 'QUIESCE 1');
    w.send('QUIESCED 1\n');
    const report = JSON.parse((await ctl.next()).slice(3)) as CycleReport;
    assert.deepEqual(
      report.steps.map((st) => st.name),
      ['renamed-later'],
    );
  });

  it('PROBLEM is shown by status and logged once per change, at most once a second: a client cannot flood the log', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    for (let i = 0; i < 200; i++) c.send(`PROBLEM disk ${i % 2 ? 'full' : 'gone'}\n`);
    for (let i = 0; i < 200; i++) assert.equal(await c.next(), 'OK');
    assert.equal((await statusOf(d.dir)).list?.[0]?.problem, 'disk full');
    assert.ok((d.log().match(/reports: disk/g) ?? []).length <= 2, d.log());
    assert.equal(await c.request('PROBLEM'), 'OK');
    assert.equal((await statusOf(d.dir)).list?.[0]?.problem, null);
  });

  it('asks one subscriber at a time in order, reports each step, and status names who is being waited for', async (t) => {
    const d = await startDaemon(t);
    const a = await subscriber(d.paths.watch, 'a', 0);
    const b = await subscriber(d.paths.watch, 'b', 5);
    const { c: ctl } = await RawClient.open(d.paths.control);
    t.after(() => [a, b, ctl].forEach((c) => c.close()));

    ctl.send('QUIESCE 5000\n');
    assert.equal(await b.next(), 'QUIESCE 1', 'the higher priority number quiesces first');
    assert.ok(await a.silent(100), 'a is not asked before b answers');
    const during = await lifecycleOf(d.dir);
    assert.equal(during.state, 'quiescing');
    assert.deepEqual(
      during.current?.steps.map((s) => [s.name, s.outcome]),
      [['b', 'asked']],
    );
    const shown = await cli(d.dir, 'status', '--brief');
    assert.match(shown.stdout, /lifecycle {2}quiescing for .*waiting for b \(asked/);

    b.send('QUIESCED 1\n');
    assert.equal(await b.next(), 'OK');
    assert.equal(await a.next(), 'QUIESCE 1');
    a.send('QUIESCED 1\n');
    const reply = await ctl.next();
    assert.match(reply, /^OK \{/);
    const report = JSON.parse(reply.slice(3)) as CycleReport;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.steps.map((s) => [s.name, s.outcome]),
      [
        ['b', 'done'],
        ['a', 'done'],
      ],
    );
    const st = await statusOf(d.dir);
    assert.equal((st.lifecycle as DaemonStatus['lifecycle']).state, 'quiesced');
    assert.deepEqual(
      st.list?.map((w) => w.subscriber),
      [
        { priority: 0, quiesced: true },
        { priority: 5, quiesced: true },
      ],
    );
    assert.match(await ctl.request('QUIESCE 1000'), /^ERR EBUSY /);

    ctl.send('UNQUIESCE 5000\n');
    assert.equal(await a.next(), 'OK');
    assert.equal(await a.next(), 'UNQUIESCE 2 0', 'the lower priority number resumes first');
    a.send('UNQUIESCED 2\n');
    assert.equal(await b.next(), 'UNQUIESCE 2 0');
    b.send('UNQUIESCED 2\n');
    assert.equal(JSON.parse((await ctl.next()).slice(3)).ok, true);
    assert.equal((await lifecycleOf(d.dir)).state, 'running');
  });

  it('a failure and a disconnect mid-quiesce: every one asked is un-quiesced before the caller hears', async (t) => {
    const d = await startDaemon(t);
    const a = await subscriber(d.paths.watch, 'a');
    const b = await subscriber(d.paths.watch, 'b');
    const c = await subscriber(d.paths.watch, 'c');
    t.after(() => [a, b, c].forEach((x) => x.close()));
    const pending = quiesce({ dir: d.dir, timeoutMs: 5000 });
    assert.equal(await c.next(), 'QUIESCE 1');
    c.send('FAILED 1 cannot drain: 3 requests in flight\n');
    assert.equal(await c.next(), 'OK');
    assert.equal(await b.next(), 'QUIESCE 1', 'the next is still asked after a failure');
    b.close();
    assert.equal(await a.next(), 'QUIESCE 1', 'and after a disconnect');
    a.send('QUIESCED 1\n');
    // Un-quiesce of whoever is still there and was asked: a, then c.
    assert.deepEqual(await nextLines(a, 2), ['OK', 'UNQUIESCE 2 0']);
    a.send('UNQUIESCED 2\n');
    assert.equal(await c.next(), 'UNQUIESCE 2 0');
    c.send('UNQUIESCED 2\n');
    const report = await pending;
    assert.equal(report.ok, false);
    assert.match(report.reason ?? '', /c failed \(cannot drain: 3 requests in flight\)/);
    assert.match(report.reason ?? '', /b gone/);
    assert.equal((await lifecycleOf(d.dir)).state, 'running');
  });

  it('a restore while quiesced: adjusting until every watcher acknowledged, then un-quiesced with the new generation', async (t) => {
    const d = await startDaemon(t, { args: ['--adjust-timeout', '60000'] });
    const a = await subscriber(d.paths.watch, 'a');
    const { c: plain } = await RawClient.open(d.paths.watch);
    t.after(() => [a, plain].forEach((x) => x.close()));
    const q = quiesce({ dir: d.dir });
    assert.equal(await a.next(), 'QUIESCE 1');
    a.send('QUIESCED 1\n');
    assert.equal(await a.next(), 'OK');
    assert.equal((await q).ok, true);

    await bump(d.dir); // what a backend does in the restored copy
    assert.equal(await a.next(), 'GEN 1');
    assert.equal(await plain.next(), 'GEN 1');
    const lc = await lifecycleOf(d.dir);
    assert.equal(lc.state, 'adjusting');
    assert.equal(lc.ready, false);
    assert.equal(lc.adjusting?.quiesced, true);
    assert.equal(lc.adjusting?.outdated.length, 2);
    const notReady = await cli(d.dir, 'ready');
    assert.equal(notReady.code, EXIT.FAILURE);
    assert.match(notReady.stdout, /not ready: lifecycle adjusting .*2 watcher\(s\) outdated/);

    assert.equal(await plain.request('ACK 1'), 'OK 1');
    assert.ok(await a.silent(100), 'not un-quiesced while a watcher is outdated');
    a.send('ACK 1\n');
    assert.deepEqual(await nextLines(a, 2), ['OK 1', 'UNQUIESCE 2 1']);
    a.send('UNQUIESCED 2\n');
    await eventually(async () => (await lifecycleOf(d.dir)).state === 'running', 5000, 'running');
    assert.equal((await cli(d.dir, 'ready')).code, EXIT.OK);
  });
});

describe('lifecycle library', () => {
  function recorder(log: string[], name: string, opts: Partial<Resource> = {}): Resource {
    return {
      name,
      ...opts,
      beforeSnapshot: opts.beforeSnapshot ?? (() => void log.push(`${name}.beforeSnapshot`)),
      afterRestore: opts.afterRestore ?? ((g: number) => void log.push(`${name}.afterRestore(${g})`)),
      onResume: opts.onResume ?? ((i) => void log.push(`${name}.onResume(${i.generation}, ${i.restored})`)),
    };
  }

  it('runs the hooks in order, acknowledges only after every afterRestore, and resumes after the copy re-adjusted', async (t) => {
    const d = await startDaemon(t);
    const log: string[] = [];
    const lc = await Lifecycle.open({ dir: d.dir, name: 'web' });
    t.after(() => lc.close());
    lc.register(recorder(log, 'pool', { priority: -1 }));
    lc.register(recorder(log, 'http'));
    lc.register(
      recorder(log, 'keys', {
        afterRestore: async (g) => {
          await new Promise((r) => setTimeout(r, 50));
          const s = await statusOf(d.dir);
          log.push(`keys.afterRestore(${g}) acked=${(s.list?.[0] as { acked: number }).acked}`);
        },
      }),
    );
    assert.equal((await quiesce({ dir: d.dir })).ok, true);
    assert.equal(lc.quiesced, true);
    assert.deepEqual(log, ['keys.beforeSnapshot', 'http.beforeSnapshot', 'pool.beforeSnapshot']);

    log.length = 0;
    // The restored copy: its backend bumps; the daemon resumes by itself once everyone re-adjusted.
    await bump(d.dir);
    await eventually(async () => (await lifecycleOf(d.dir)).state === 'running', 5000, 'resumed by itself');
    assert.equal((await lifecycleOf(d.dir)).lastUnquiesce?.ok, true);
    assert.deepEqual(log, [
      'pool.afterRestore(1)',
      'http.afterRestore(1)',
      'keys.afterRestore(1) acked=0',
      'pool.onResume(1, true)',
      'http.onResume(1, true)',
      'keys.onResume(1, true)',
    ]);
    assert.equal(lc.quiesced, false);
    assert.equal((await statusOf(d.dir)).outdated, 0);
  });

  it('a failing afterRestore leaves the generation unacknowledged and shows the problem in status', async (t) => {
    const d = await startDaemon(t);
    // Retried only after ten minutes here: this test is about what the failure shows.
    const lc = await Lifecycle.open({ dir: d.dir, name: 'payments', retryMinMs: 600_000 });
    t.after(() => lc.close());
    const errors: Error[] = [];
    lc.on('error', (e) => errors.push(e));
    let fail = true;
    lc.register({
      name: 'ledger',
      afterRestore: () => {
        if (fail) throw new Error('HSM unreachable');
      },
    });
    await bump(d.dir);
    const s = (await eventually(
      async () => {
        const st = await statusOf(d.dir);
        return st.list?.[0]?.problem ? st : undefined;
      },
      5000,
      'the problem reported',
    )) as Awaited<ReturnType<typeof statusOf>>;
    assert.equal(s.outdated, 1);
    assert.match(String(s.list?.[0]?.problem), /ledger\.afterRestore: HSM unreachable/);
    const ready = await cli(d.dir, 'ready');
    assert.equal(ready.code, EXIT.FAILURE);
    assert.match(ready.stdout, /payments \(ledger\.afterRestore: HSM unreachable\)/);
    assert.equal(errors.length, 1);
    fail = false;
    await bump(d.dir);
    await eventually(async () => (await statusOf(d.dir)).outdated === 0, 5000, 'acknowledged once the hook succeeds');
    assert.equal((await statusOf(d.dir)).list?.[0]?.problem, null, 'the problem is cleared');
  });

  it('a hook that hangs fails after the hook timeout instead of stalling the machine', async (t) => {
    const d = await startDaemon(t);
    const lc = await Lifecycle.open({ dir: d.dir, name: 'svc', hookTimeoutMs: 200 });
    t.after(() => lc.close());
    lc.on('error', () => undefined);
    lc.register({ name: 'stuck', beforeSnapshot: () => new Promise(() => undefined) });
    const r = await quiesce({ dir: d.dir, timeoutMs: 5000 });
    assert.equal(r.ok, false);
    assert.match(r.reason ?? '', /stuck\.beforeSnapshot did not finish within 200 ms/);
    assert.equal((await lifecycleOf(d.dir)).state, 'running');
  });
});

describe('lifecycle CLI', () => {
  it('quiesce, resume, ready and their exit codes; a late subscriber is named and the machine resumed', async (t) => {
    const d = await startDaemon(t, { args: ['--resume-timeout', '500'] });
    const lc = await Lifecycle.open({ dir: d.dir, name: 'web' });
    t.after(() => lc.close());
    lc.register({ name: 'http' });
    assert.equal((await cli(d.dir, 'ready')).code, EXIT.OK);
    const q = await cli(d.dir, 'quiesce', '--timeout', '5000');
    assert.equal(q.code, EXIT.OK, q.stderr);
    assert.match(q.stdout, /1 of 1 subscriber\(s\) quiesced in \d+ ms: web/);
    assert.equal((await cli(d.dir, 'quiesce')).code, EXIT.BUSY);
    const notReady = await cli(d.dir, 'ready');
    assert.equal(notReady.code, EXIT.FAILURE);
    assert.match(notReady.stdout, /lifecycle quiesced/);
    const r = await cli(d.dir, 'resume');
    assert.equal(r.code, EXIT.OK, r.stderr);
    assert.equal((await cli(d.dir, 'resume')).stdout.trim(), 'sysgenid resume: nothing was quiesced');

    const { c: late } = await RawClient.open(d.paths.watch);
    t.after(() => late.close());
    assert.equal(await late.request('NAME never-answers'), 'OK');
    assert.equal(await late.request('SUBSCRIBE 9'), 'OK running');
    const timedOut = await cli(d.dir, 'quiesce', '--timeout', '300');
    assert.equal(timedOut.code, EXIT.TIMEOUT);
    assert.match(timedOut.stderr, /never-answers late/);
    assert.match(timedOut.stderr, /web: skipped/);
    assert.equal((await lifecycleOf(d.dir)).state, 'running', 'never left half-quiesced');
    assert.equal(lc.quiesced, false);
  });

  it('quiesce exits 5 when a restore interrupts it, and the copy resumes once re-adjusted', async (t) => {
    const d = await startDaemon(t);
    const { c: slow } = await RawClient.open(d.paths.watch);
    t.after(() => slow.close());
    assert.equal(await slow.request('NAME slow'), 'OK');
    assert.equal(await slow.request('SUBSCRIBE'), 'OK running');
    const pending = cli(d.dir, 'quiesce', '--timeout', '10000');
    assert.equal(await slow.next(), 'QUIESCE 1');
    await bump(d.dir);
    const r = await pending;
    assert.equal(r.code, EXIT.INTERRUPTED, r.stderr);
    assert.match(r.stderr, /interrupted: generation 1 arrived while quiescing/);
    assert.equal((await lifecycleOf(d.dir)).state, 'adjusting');
    slow.send('QUIESCED 1\nACK 1\n');
    // After the acknowledgement the daemon resumes whoever it asked.
    const lines = await nextLines(slow, 3);
    assert.deepEqual(
      lines.filter((l) => l.startsWith('UNQUIESCE')),
      ['UNQUIESCE 2 1'],
    );
    slow.send('UNQUIESCED 2\n');
    await eventually(async () => (await lifecycleOf(d.dir)).state === 'running', 5000, 'running');
  });

  it('snapshot: CMD runs while quiesced; the original resumes at once, a restored copy once re-adjusted', async (t) => {
    const d = await startDaemon(t);
    const log: string[] = [];
    const lc = await Lifecycle.open({ dir: d.dir, name: 'web' });
    t.after(() => lc.close());
    lc.register({
      name: 'http',
      beforeSnapshot: () => void log.push('drain'),
      afterRestore: (g) => void log.push(`keys(${g})`),
      onResume: (i) => void log.push(`reopen(${i.restored})`),
    });
    const out = path.join(tmpDir(t), 'during');
    const env = { ...process.env, SYSGENID_DIR: d.dir };
    const original = await runNode(
      CLI,
      ['snapshot', '--', 'sh', '-c', `"${process.execPath}" "${CLI}" ready > ${out}; echo $? >> ${out}`],
      env,
    );
    assert.equal(original.code, EXIT.OK, original.stderr);
    assert.match(fs.readFileSync(out, 'utf8'), /not ready: lifecycle quiesced[^]*\n1\n$/);
    assert.match(original.stderr, /generation still 0: this is the original/);
    assert.deepEqual(log, ['drain', 'reopen(false)']);

    // The copy: CMD "returns" in a restored machine, whose backend bumps.
    log.length = 0;
    const copy = await runNode(
      CLI,
      ['snapshot', '--adjust-timeout', '10000', '--', process.execPath, CLI, 'bump'],
      env,
    );
    assert.equal(copy.code, EXIT.OK, copy.stderr);
    assert.match(copy.stderr, /generation 0 -> 1: this is a restored copy/);
    assert.deepEqual(log, ['drain', 'keys(1)', 'reopen(true)']);
    assert.equal((await cli(d.dir, 'ready')).code, EXIT.OK);

    // --settle 0: the original resumes as soon as CMD returns.
    const t0 = Date.now();
    const quick = await runNode(CLI, ['snapshot', '--settle', '0', '--', 'true'], env);
    assert.equal(quick.code, EXIT.OK, quick.stderr);
    assert.match(quick.stderr, /this is the original/);
    assert.ok(Date.now() - t0 < 10_000);

    const failing = await runNode(CLI, ['snapshot', '--', 'false'], env);
    assert.equal(failing.code, EXIT.FAILURE);
    assert.match(failing.stderr, /false exited with 1/);
    assert.equal((await lifecycleOf(d.dir)).state, 'running', 'resumed although the snapshot failed');
  });

  it('criu-action: pre-dump quiesces (and fails the dump if that fails), post-dump resumes, post-resume bumps and resumes', async (t) => {
    const d = await startDaemon(t);
    const log: string[] = [];
    const lc = await Lifecycle.open({ dir: d.dir, name: 'app' });
    t.after(() => lc.close());
    let refuse = false;
    lc.register({
      name: 'conn',
      beforeSnapshot: () => {
        if (refuse) throw new Error('busy');
        log.push('quiesce');
      },
      afterRestore: (g) => void log.push(`restore(${g})`),
      onResume: (i) => void log.push(`resume(${i.restored})`),
    });
    // The tree's init, as CRIU names it; the daemon's directory comes from its environment.
    const init = spawn('sleep', ['30'], { env: { ...process.env, SYSGENID_DIR: d.dir } });
    t.after(() => init.kill());
    const act = (action: string) =>
      runNode(CLI, ['criu-action'], {
        CRTOOLS_SCRIPT_ACTION: action,
        CRTOOLS_INIT_PID: String(init.pid),
        SYSGENID_DIR: '/nonexistent',
      });
    const pre = await act('pre-dump');
    assert.equal(pre.code, 0, pre.stderr);
    assert.equal((await lifecycleOf(d.dir)).state, 'quiesced');
    const post = await act('post-dump');
    assert.equal(post.code, 0, post.stderr);
    await eventually(
      async () => (await lifecycleOf(d.dir)).state === 'running',
      5000,
      'resumed by the detached resume',
    );
    assert.deepEqual(log, ['quiesce', 'resume(false)']);

    log.length = 0;
    assert.equal((await act('pre-dump')).code, 0);
    const restored = await act('post-resume');
    assert.equal(restored.code, 0, restored.stderr);
    // The app re-adjusts at once, so the daemon has usually resumed it before the script asks.
    assert.match(
      restored.stdout,
      /generation 1; (already resumed by the daemon after the restore: )?1 of 1 subscriber\(s\) resumed/,
    );
    assert.deepEqual(log, ['quiesce', 'restore(1)', 'resume(true)']);

    refuse = true;
    lc.on('error', () => undefined);
    const refused = await act('pre-dump');
    assert.equal(refused.code, EXIT.FAILURE, 'CRIU aborts the dump');
    assert.match(refused.stderr, /quiesce failed, the dump must not go on: app failed \(conn\.beforeSnapshot: busy\)/);
    assert.equal((await lifecycleOf(d.dir)).state, 'running');
  });
});
