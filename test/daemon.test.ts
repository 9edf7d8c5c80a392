// The semantics over real sockets, against the real daemon running as its own process.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { RawClient, bump, eventually, pageValue, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

describe('sysgenidd over real sockets', () => {
  it('starts at generation 0 with a 4096-byte page readable by everyone and safe socket modes', async (t) => {
    const d = await startDaemon(t);
    const st = fs.statSync(d.paths.page);
    assert.equal(st.size, 4096);
    assert.equal(st.mode & 0o777, 0o644);
    assert.equal(pageValue(d.paths.page), 0);
    assert.equal(fs.statSync(d.paths.control).mode & 0o777, 0o660);
    assert.equal(fs.statSync(d.paths.watch).mode & 0o777, 0o666);
    assert.equal(fs.statSync(d.paths.dir).mode & 0o777, 0o755);
    assert.ok(fs.statSync(d.paths.control).isSocket());
    const { c, generation } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    assert.equal(generation, 0);
  });

  it('notifies every watcher of a bump, the caller included, and updates the page first', async (t) => {
    const d = await startDaemon(t);
    const clients = await Promise.all([1, 2, 3].map(() => RawClient.open(d.paths.watch)));
    t.after(() => clients.forEach(({ c }) => c.close()));
    // The control connection is the caller; a watcher that asked for the bump is notified like the rest.
    const gen = await bump(d.dir);
    assert.equal(gen, 1);
    for (const { c } of clients) {
      const line = await c.next();
      assert.equal(line, 'GEN 1');
      assert.ok(pageValue(d.paths.page) >= 1, 'page updated before the notification');
    }
    const s = await statusOf(d.dir);
    assert.equal(s.outdated, 3);
    assert.equal(s.watchers, 3);
  });

  it('stamps the last bump on the machine-wide monotonic clock that other processes read', async (t) => {
    const d = await startDaemon(t);
    const before = Number(process.hrtime.bigint()) / 1e6;
    await bump(d.dir);
    const after = Number(process.hrtime.bigint()) / 1e6;
    const last = (await statusOf(d.dir)).lastBump as { pageWrittenMonoMs: number };
    assert.ok(
      last.pageWrittenMonoMs >= before && last.pageWrittenMonoMs <= after,
      `${before} <= ${last.pageWrittenMonoMs} <= ${after}`,
    );
  });

  it('read repeats the generation until acknowledged; non-blocking read is EAGAIN when up to date', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    assert.equal(await c.request('READ NONBLOCK'), 'ERR EAGAIN no new generation: this watcher is up to date');
    await bump(d.dir);
    assert.equal(await c.next(), 'GEN 1');
    assert.equal(await c.request('READ'), 'OK 1');
    assert.equal(await c.request('READ NONBLOCK'), 'OK 1');
    assert.match(await c.request('ACK 0'), /^ERR EINVAL /);
    assert.match(await c.request('ACK 2'), /^ERR EINVAL /);
    assert.equal(await c.request('READ NONBLOCK'), 'OK 1', 'a wrong ack changes nothing');
    assert.equal(await c.request('ACK 1'), 'OK 1');
    assert.equal(await c.request('ACK 1'), 'OK 1', 'acknowledging again is a no-op');
    assert.match(await c.request('READ NONBLOCK'), /^ERR EAGAIN/);
    assert.equal((await statusOf(d.dir)).outdated, 0);
  });

  it('a blocking read completes at the next bump', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    c.send('READ\n');
    assert.ok(await c.silent(100), 'read blocks while up to date');
    await bump(d.dir, 10);
    assert.equal(await c.next(), 'GEN 10');
    assert.equal(await c.next(), 'OK 10');
  });

  it('wait: OK when nobody is outdated, ETIME on timeout, released by the last ack, EINTR on a new bump', async (t) => {
    const d = await startDaemon(t);
    const a = (await RawClient.open(d.paths.watch)).c;
    const b = (await RawClient.open(d.paths.watch)).c;
    t.after(() => [a, b].forEach((c) => c.close()));
    assert.equal(await a.request('WAIT 0'), 'OK');
    await bump(d.dir);
    await a.next();
    await b.next();
    assert.match(await a.request('WAIT 50'), /^ERR EINTR /, 'the caller is outdated');
    assert.equal(await a.request('ACK 1'), 'OK 1');
    const started = Date.now();
    assert.match(await a.request('WAIT 80'), /^ERR ETIME 1 watcher/);
    assert.ok(Date.now() - started >= 70);
    a.send('WAIT 0\n');
    assert.ok(await a.silent(100), 'still waiting for b');
    assert.equal(await b.request('ACK 1'), 'OK 1');
    assert.equal(await a.next(), 'OK');
    // A waiter interrupted by a new generation.
    await bump(d.dir);
    await a.next();
    await b.next();
    assert.equal(await a.request('ACK 2'), 'OK 2');
    a.send('WAIT 0\n');
    await sleep(50);
    await bump(d.dir);
    assert.equal(await a.next(), 'GEN 3');
    assert.match(await a.next(), /^ERR EINTR /);
  });

  it('a disconnecting outdated watcher releases the waiter', async (t) => {
    const d = await startDaemon(t);
    const a = (await RawClient.open(d.paths.watch)).c;
    const b = (await RawClient.open(d.paths.watch)).c;
    t.after(() => a.close());
    await bump(d.dir);
    await a.next();
    await a.request('ACK 1');
    a.send('WAIT 0\n');
    assert.ok(await a.silent(50));
    b.close();
    assert.equal(await a.next(), 'OK');
    assert.equal((await statusOf(d.dir)).watchers, 1);
  });

  it('tracking off: still notified, never waited for; a watcher changes only its own tracking', async (t) => {
    const d = await startDaemon(t);
    const a = (await RawClient.open(d.paths.watch)).c;
    const b = (await RawClient.open(d.paths.watch)).c;
    t.after(() => [a, b].forEach((c) => c.close()));
    assert.equal(await b.request('TRACK OFF'), 'OK');
    await bump(d.dir);
    assert.equal(await b.next(), 'GEN 1', 'untracked watchers are notified');
    await a.next();
    assert.equal(await a.request('ACK 1'), 'OK 1');
    assert.equal(await a.request('WAIT 1000'), 'OK', 'b is not waited for');
    const s = await statusOf(d.dir);
    assert.equal(s.tracked, 1);
    assert.equal(s.watchers, 2);
    assert.equal(await b.request('TRACK ON'), 'OK');
    assert.equal((await statusOf(d.dir)).outdated, 1, 'tracked again and still outdated');
  });

  it('forcing an update on the watch socket is EACCES; min is honoured on the control socket', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    assert.match(await c.request('BUMP'), /^ERR EACCES /);
    assert.equal((await statusOf(d.dir)).generation, 0);
    assert.equal(await bump(d.dir, 8), 8);
    assert.equal(await bump(d.dir, 3), 9);
  });

  it('status, wait and bump connections are not watchers; observers get no notifications', async (t) => {
    const d = await startDaemon(t);
    const o = (await RawClient.open(d.paths.watch)).c;
    t.after(() => o.close());
    assert.equal(await o.request('OBSERVE'), 'OK');
    assert.match(await o.request('TRACK ON'), /^ERR EINVAL /);
    const s = await statusOf(d.dir);
    assert.equal(s.watchers, 0);
    assert.deepEqual(s.list, []);
    await bump(d.dir);
    assert.ok(await o.silent(100), 'an observer is not notified');
    assert.equal(await o.request('READ NONBLOCK'), 'OK 1', 'but it can still read');
  });

  it('status lists each watcher with its name, pid, tracking and how long it has been outdated', async (t) => {
    const d = await startDaemon(t);
    const a = (await RawClient.open(d.paths.watch)).c;
    t.after(() => a.close());
    await a.request('NAME payments');
    await a.request('PID 4242');
    await bump(d.dir);
    await sleep(30);
    const s = await statusOf(d.dir);
    const w = s.list?.[0] as Record<string, unknown>;
    assert.equal(w.name, 'payments');
    if (w.pidVerified) {
      // With the addon the kernel's word (SO_PEERCRED) wins over the client's claim.
      assert.equal(w.pid, process.pid);
      assert.equal(w.uid, process.getuid?.());
      assert.equal(w.command, 'node');
    } else {
      assert.equal(w.pid, 4242);
      assert.equal(w.uid, null);
    }
    assert.equal(w.tracked, true);
    assert.equal(w.outdated, true);
    assert.equal(w.acked, 0);
    assert.ok((w.outdatedMs as number) >= 20);
  });

  it('keeps the counter across a restart, in the same page inode', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    let d = await startDaemon(t, { dir });
    await bump(dir, 41);
    const ino = fs.statSync(d.paths.page).ino;
    assert.equal(await d.stop(), 0);
    assert.ok(!fs.existsSync(d.paths.watch), 'a clean stop removes its sockets');
    d = await startDaemon(t, { dir });
    assert.equal((await statusOf(dir)).generation, 41);
    assert.equal(fs.statSync(d.paths.page).ino, ino, 'readers keep their mapping across restarts');
    assert.equal(await bump(dir), 42);
  });

  it('refuses to start when another daemon owns the directory', async (t) => {
    const d = await startDaemon(t);
    const second = await startDaemon(t, { dir: d.dir, expectFailure: true });
    assert.equal(await second.exited, 1);
    assert.match(second.log(), /another sysgenidd \(pid \d+\) already owns/);
    assert.equal((await statusOf(d.dir)).generation, 0, 'the first one is unharmed');
  });

  it('kill -9 in the middle of a cycle: the restarted daemon recovers its sockets and never goes back', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    const d = await startDaemon(t, { dir });
    const a = (await RawClient.open(d.paths.watch)).c;
    t.after(() => a.close());
    await bump(dir);
    await bump(dir);
    await a.next();
    d.child.kill('SIGKILL');
    await d.exited;
    await a.waitClosed();
    assert.ok(fs.existsSync(d.paths.watch), 'the crash left a stale socket');
    const again = await startDaemon(t, { dir });
    assert.match(again.log(), /did not shut down cleanly/);
    const { generation } = await RawClient.open(again.paths.watch).then((r) => (r.c.close(), r));
    assert.equal(generation, 2);
    assert.equal(await bump(dir), 3);
  });

  it('links the page at the device path only when it is free, never replacing a file', async (t) => {
    const base = tmpDir(t);
    const link = path.join(base, 'sysgenid-dev');
    const d = await startDaemon(t, { args: ['--dev-link-path', link] });
    assert.equal(fs.readlinkSync(link), d.paths.page);
    await bump(d.dir, 3);
    assert.equal(pageValue(link), 3);

    const taken = path.join(base, 'taken');
    fs.writeFileSync(taken, 'real device stand-in');
    const d2 = await startDaemon(t, { args: ['--dev-link-path', taken] });
    assert.equal(fs.readFileSync(taken, 'utf8'), 'real device stand-in');
    assert.match(d2.log(), /already exists; not replacing it/);
  });

  it('refuses a runtime directory that is a symlink or writable by others', async (t) => {
    const base = tmpDir(t);
    const real = path.join(base, 'real');
    fs.mkdirSync(real);
    const link = path.join(base, 'link');
    fs.symlinkSync(real, link);
    const a = await startDaemon(t, { dir: link, expectFailure: true });
    assert.equal(await a.exited, 1);
    assert.match(a.log(), /is a symbolic link/);
    const open = path.join(base, 'open');
    fs.mkdirSync(open, { mode: 0o777 });
    fs.chmodSync(open, 0o777);
    const b = await startDaemon(t, { dir: open, expectFailure: true });
    assert.equal(await b.exited, 1);
    assert.match(b.log(), /writable by group or others/);
  });

  it('refuses a page that is a symlink planted in its directory', async (t) => {
    const base = tmpDir(t);
    const dir = path.join(base, 'run');
    fs.mkdirSync(dir, { mode: 0o755 });
    const victim = path.join(base, 'victim');
    fs.writeFileSync(victim, 'precious');
    fs.symlinkSync(victim, path.join(dir, 'generation'));
    const d = await startDaemon(t, { dir, expectFailure: true });
    assert.equal(await d.exited, 1);
    assert.match(d.log(), /is a symbolic link; refusing to follow it/);
    assert.equal(fs.readFileSync(victim, 'utf8'), 'precious');
  });

  it('restores a page truncated by someone else at the next bump', async (t) => {
    const d = await startDaemon(t);
    fs.truncateSync(d.paths.page, 0);
    await bump(d.dir);
    assert.equal(fs.statSync(d.paths.page).size, 4096);
    assert.equal(pageValue(d.paths.page), 1);
    await d.waitForLog(/page was truncated/);
  });

  it('exits cleanly on SIGINT and SIGTERM', async (t) => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const d = await startDaemon(t);
      assert.equal(await d.stop(sig), 0, sig);
      assert.match(d.log(), new RegExp(`${sig}: shutting down`));
      assert.ok(!fs.existsSync(d.paths.pid));
    }
  });

  it('rejects bad options with a message that says how to fix them', async (t) => {
    const d = await startDaemon(t, { args: ['--hook-timeout', 'soon'], expectFailure: true });
    assert.equal(await d.exited, 2);
    assert.match(d.log(), /--hook-timeout needs a positive whole number/);
    const e = await startDaemon(t, { args: ['--group', 'no-such-group-here'], expectFailure: true });
    assert.equal(await e.exited, 2);
    assert.match(e.log(), /no group named "no-such-group-here"/);
  });

  it('many watchers in several processes all see the bump', async (t) => {
    const d = await startDaemon(t);
    const { spawn } = await import('node:child_process');
    const script = `
      const net = require('node:net');
      const n = Number(process.argv[1]); let got = 0; let ready = 0;
      for (let i = 0; i < n; i++) {
        const s = net.createConnection(process.env.SYSGENID_DIR + '/watch.sock');
        let buf = '';
        s.on('data', (d) => { buf += d; if (buf.includes('HELLO') && !s.r) { s.r = 1; if (++ready === n) console.log('ready'); }
          if (buf.includes('GEN 1\\n') && !s.g) { s.g = 1; s.write('ACK 1\\n'); if (++got === n) console.log('all'); } });
      }`;
    const procs = [0, 1, 2].map(() =>
      spawn(process.execPath, ['-e', script, '50'], {
        env: { ...process.env, SYSGENID_DIR: d.dir },
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    t.after(() => procs.forEach((p) => p.kill()));
    const outputs = procs.map((p) => {
      let out = '';
      p.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
      return () => out;
    });
    await eventually(() => outputs.every((o) => o().includes('ready')), 10_000, 'watchers connected');
    assert.equal((await statusOf(d.dir)).watchers, 150);
    const { c } = await RawClient.open(d.paths.watch);
    await c.request('OBSERVE');
    c.send('WAIT 0\n');
    await sleep(20);
    await bump(d.dir);
    assert.equal(await c.next(10_000), 'OK', 'released when all 150 acknowledged');
    c.close();
    await eventually(() => outputs.every((o) => o().includes('all')), 10_000, 'all notified');
  });
});
