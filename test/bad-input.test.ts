// Bad input and faults: the daemon answers every malformed request with a documented error, one bad
// client never harms another, and memory and descriptors stay bounded.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { MAX_QUEUED_REQUESTS } from '../src/daemon/connection.js';
import { MAX_REQUEST_LINE } from '../src/protocol/messages.js';
import { RawClient, bump, eventually, sleep, startDaemon, statusOf } from './helpers.js';

describe('bad input', () => {
  it('answers malformed, unknown, oversized and binary requests, and keeps serving the connection', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    assert.match(await c.request('FROBNICATE'), /^ERR ENOSYS /);
    assert.match(await c.request('ACK banana'), /^ERR EINVAL /);
    assert.match(await c.request('ACK 1 2 3'), /^ERR EINVAL /);
    assert.match(await c.request(''), /^ERR EINVAL /);
    c.send(Buffer.from([0x00, 0x01, 0xff, 0xfe, 0x0a]));
    assert.match(await c.next(), /^ERR EPROTO /);
    c.send(`ACK ${'9'.repeat(MAX_REQUEST_LINE * 4)}\n`);
    assert.match(await c.next(), /^ERR E2BIG /);
    assert.equal(await c.request('PING'), 'OK', 'the connection still works');
    assert.equal((await statusOf(d.dir)).watchers, 1);
  });

  it('an endless line without a newline is bounded and skipped', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    const junk = Buffer.alloc(64 * 1024, 0x41);
    for (let i = 0; i < 32; i++) c.send(junk);
    c.send('\nPING\n');
    assert.match(await c.next(), /^ERR E2BIG /);
    assert.equal(await c.next(), 'OK');
  });

  it('a request split across many writes, and many requests in one write', async (t) => {
    const d = await startDaemon(t);
    const { c } = await RawClient.open(d.paths.watch);
    t.after(() => c.close());
    for (const ch of 'NAME split\n') {
      c.send(ch);
      await sleep(1);
    }
    assert.equal(await c.next(), 'OK');
    c.send('PING\nREAD NONBLOCK\nSTATUS BRIEF\nTRACK OFF\nTRACK ON\nPING\n');
    assert.equal(await c.next(), 'OK');
    assert.match(await c.next(), /^ERR EAGAIN/);
    assert.match(await c.next(), /^OK \{/);
    assert.equal(await c.next(), 'OK');
    assert.equal(await c.next(), 'OK');
    assert.equal(await c.next(), 'OK');
  });

  it('requests piled up behind a blocking one are bounded: ENOBUFS and close', async (t) => {
    const d = await startDaemon(t);
    const bad = (await RawClient.open(d.paths.watch)).c;
    const good = (await RawClient.open(d.paths.watch)).c;
    t.after(() => good.close());
    bad.send('READ\n' + 'PING\n'.repeat(MAX_QUEUED_REQUESTS + 10));
    await bad.waitClosed();
    assert.ok(
      bad.lines.some((l) => l.startsWith('ERR ENOBUFS')),
      bad.lines.join('|'),
    );
    assert.equal(await good.request('PING'), 'OK');
    assert.equal((await statusOf(d.dir)).watchers, 1);
  });

  it('a client that never reads is listed with its backlog, then disconnected; others are unharmed', async (t) => {
    const d = await startDaemon(t, { args: ['--max-backlog', '4096', '--log-level', 'warn'] });
    const lazy = (await RawClient.open(d.paths.watch)).c;
    lazy.socket.pause();
    await lazy.request('NAME lazy').catch(() => {});
    const good = (await RawClient.open(d.paths.watch)).c;
    t.after(() => good.close());
    const ctl = (await RawClient.open(d.paths.control)).c;
    t.after(() => ctl.close());
    // Enough notifications to fill the kernel's socket buffer and then the daemon's bound.
    let listedWithBacklog = false;
    let gen = 0;
    for (let round = 0; round < 200 && !lazy.closed; round++) {
      ctl.send('BUMP\n'.repeat(500));
      for (let i = 0; i < 500; i++) assert.match(await ctl.next(), /^OK \d+$/);
      gen += 500;
      good.lines.length = 0;
      const s = await statusOf(d.dir);
      const entry = s.list?.find((w) => w.name === 'lazy');
      if (entry && (entry.backlog as number) > 0) listedWithBacklog = true;
      if (!entry) break;
    }
    await d.waitForLog(/disconnecting watcher \d+ \(lazy\)[^:]*: it left \d+ bytes unread/);
    const times = d
      .log()
      .split('\n')
      .filter((l) => l.includes('(lazy)')).length;
    assert.equal(times, 1, 'said once, not once per dropped notification');
    assert.ok(listedWithBacklog, 'status showed the backlog before the disconnect');
    assert.equal(await good.request(`ACK ${gen}`), `OK ${gen}`);
    const s = await statusOf(d.dir);
    assert.equal(s.watchers, 1);
    assert.equal(s.outdated, 0);
  });

  it('a connect storm of thousands of clients from several processes is accepted in full', async (t) => {
    const d = await startDaemon(t, { args: ['--log-level', 'warn'] });
    const script = `
      const net = require('node:net');
      const n = Number(process.argv[1]); let ok = 0, failed = 0;
      const go = (delay) => {
        const s = net.createConnection(process.env.SYSGENID_DIR + '/watch.sock');
        s.on('error', (e) => { if (e.code === 'EAGAIN') setTimeout(() => go(Math.min(delay * 2, 100)), delay * Math.random()); else { failed++; done(); } });
        s.once('data', (b) => { if (String(b).startsWith('HELLO')) ok++; else failed++; done(); });
      };
      const done = () => { if (ok + failed === n) console.log(JSON.stringify({ ok, failed })); };
      for (let i = 0; i < n; i++) go(1);
      setInterval(() => {}, 1000);`;
    const procs = [0, 1, 2, 3].map(() =>
      spawn(process.execPath, ['-e', script, '1000'], {
        env: { ...process.env, SYSGENID_DIR: d.dir },
        stdio: ['ignore', 'pipe', 'inherit'],
      }),
    );
    t.after(() => procs.forEach((p) => p.kill('SIGKILL')));
    const results = await Promise.all(
      procs.map(
        (p) =>
          new Promise<{ ok: number; failed: number }>((resolve) => {
            let out = '';
            p.stdout.setEncoding('utf8').on('data', (s: string) => {
              out += s;
              if (out.includes('\n')) resolve(JSON.parse(out));
            });
          }),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.failed),
      [0, 0, 0, 0],
    );
    assert.equal(
      results.reduce((a, r) => a + r.ok, 0),
      4000,
    );
    assert.equal((await statusOf(d.dir)).watchers, 4000);
    procs.forEach((p) => p.kill('SIGKILL'));
    await eventually(async () => (await statusOf(d.dir)).watchers === 0, 10_000, 'all watchers gone');
  });

  it('at the descriptor limit a client is refused with EMFILE and the daemon logs it loudly', async (t) => {
    const d = await startDaemon(t, { shellPrefix: 'ulimit -n 64;' });
    const clients: RawClient[] = [];
    t.after(() => clients.forEach((c) => c.close()));
    const limit = (await statusOf(d.dir)).maxConnections as number;
    assert.ok(limit < 64, `connection limit ${limit} leaves room below the descriptor limit`);
    let refused: string | undefined;
    for (let i = 0; i < 80 && !refused; i++) {
      const c = await RawClient.connect(d.paths.watch);
      clients.push(c);
      const first = await c.next();
      if (first.startsWith('ERR ')) refused = first;
    }
    assert.match(refused ?? '', /^ERR EMFILE the daemon is at its limit of \d+ connections/);
    await d.waitForLog(/connection limit reached/);
    // Freeing one slot lets the next client in: nothing leaked.
    clients.shift()?.close();
    await eventually(
      async () => {
        const c = await RawClient.connect(d.paths.watch);
        clients.push(c);
        return (await c.next()).startsWith('HELLO');
      },
      5000,
      'a free slot',
    );
  });

  it('a client that hangs up mid-request or resets is cleaned up', async (t) => {
    const d = await startDaemon(t);
    for (let i = 0; i < 20; i++) {
      const c = await RawClient.connect(d.paths.watch);
      c.send(i % 2 ? 'WAIT 0\nREAD\nAC' : 'READ\n');
      c.close();
    }
    await eventually(async () => (await statusOf(d.dir)).watchers === 0, 5000, 'no watcher left');
    assert.equal(await bump(d.dir), 1);
  });
});
