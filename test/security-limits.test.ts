// Attacks by an ordinary local user on the daemon's shared resources (issue 12, points 1, 2 and the
// log half of 16): a connection flood must not lock root out, unread replies and notifications must
// not grow the daemon's memory beyond what the bounds say, and a user's PROBLEM reports must not fill
// the log. Each attacker is a real process running as `nobody`; `SYSGENID_STRESS=1` runs them larger.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { addon } from '../src/native/addon.js';
import { CLI, type DaemonHandle, RawClient, runNode, startDaemon, statusOf } from './helpers.js';
import { attackAsNobody, sharedTmp } from './security-helpers.js';

const isRoot = process.getuid?.() === 0;
const stress = process.env.SYSGENID_STRESS === '1';
const native = addon() !== undefined;
// The memory attacks measure the output bounds, so the per-user connection cap must not stop them first.
const UNCAPPED = ['--max-per-user', '100000'];

/** Run the attacker as nobody; it holds its connections until the test ends. */
const attack = (t: TestContext, args: string[]): Promise<{ result: Record<string, unknown> }> =>
  attackAsNobody(t, args);

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

/** The attacked daemon, in a directory the attacker (nobody) can reach, logging warnings only. */
const targetDaemon = (t: TestContext, args: readonly string[] = UNCAPPED): Promise<DaemonHandle> =>
  startDaemon(t, { dir: path.join(sharedTmp(t), 'run'), args: ['--log-level', 'warn', ...args] });

async function openWatchers(t: TestContext, socket: string, n: number): Promise<RawClient[]> {
  const clients: RawClient[] = [];
  t.after(() => clients.forEach((c) => c.close()));
  for (let i = 0; i < n; i++) clients.push((await RawClient.open(socket)).c);
  return clients;
}

describe(
  'security: shared limits under attack by an ordinary user',
  { skip: !isRoot && 'needs root to run as nobody' },
  () => {
    it('a connection flood by one user leaves root, the control socket and other users served', async (t) => {
      const d = await targetDaemon(t, ['--max-connections', '200', '--max-per-user', '50']);
      const flood = await attack(t, ['flood', d.paths.watch, '1000']);
      const s = await statusOf(d.dir);
      if (native) {
        // The kernel says who connected, so the flood stops at the per-user limit.
        assert.equal(flood.result.held, 50, JSON.stringify(flood.result));
        assert.match(String(flood.result.refusedWith), /^ERR EMFILE uid \d+ already holds 50 connections/);
        await d.waitForLog(/per-user connection limit reached by uid \d+/);
        // Root still gets watch connections.
        const mine = await openWatchers(t, d.paths.watch, 20);
        assert.equal(mine.length, 20);
      } else {
        // Without SO_PEERCRED every watch connection is one user's: the flood fills the watch pool, and
        // only the slots kept for control.sock stay free.
        assert.ok((flood.result.held as number) < 200, JSON.stringify(flood.result));
        assert.match(
          String(flood.result.refusedWith),
          /^ERR EMFILE the daemon is at its limit of \d+ connections on watch/,
        );
      }
      assert.ok((s.connections as number) >= (flood.result.held as number));
      // Root's commands go through control.sock, whose slots the flood cannot take.
      const bump = await runNode(CLI, ['bump', '--dir', d.dir]);
      assert.equal(bump.code, 0, bump.stderr);
      const status = await runNode(CLI, ['status', '--dir', d.dir, '--json']);
      assert.equal(status.code, 0, status.stderr);
      assert.equal((JSON.parse(status.stdout) as { generation: number }).generation, 1);
    });

    it('unread STATUS replies by many connections do not grow the daemon with the square of the count', async (t) => {
      // The reply must be larger than the kernel's socket buffer, or the kernel holds it, not the daemon.
      const watchers = stress ? 3500 : 2000;
      const hogs = stress ? 3500 : 300;
      const d = await targetDaemon(t);
      await openWatchers(t, d.paths.watch, watchers);
      const pid = d.child.pid as number;
      const before = rssKiB(pid);
      const hog = await attack(t, ['unread', d.paths.watch, String(hogs), 'STATUS']);
      assert.equal(hog.result.held, hogs, JSON.stringify(hog.result));
      // Root's own status is answered while the hogs' replies wait for their slots.
      const s = await statusOf(d.dir);
      assert.equal(s.watchers, watchers + hogs);
      const replyBytes = JSON.stringify(s).length;
      const grownKiB = rssKiB(pid) - before;
      t.diagnostic(
        `${hogs} unread STATUS replies of ${Math.round(replyBytes / 1024)} KiB each: daemon RSS +${grownKiB} KiB ` +
          `(all of them held would be ${Math.round((hogs * replyBytes) / 1024)} KiB)`,
      );
      // A few replies in flight per user, not one per connection.
      assert.ok(grownKiB * 1024 < (hogs * replyBytes) / 3, `RSS grew ${grownKiB} KiB`);
      assert.ok(grownKiB < 64 * 1024, `RSS grew ${grownKiB} KiB`);
    });

    it('watchers that never read cost their unread bytes, not an object per notification', async (t) => {
      // The kernel buffers about 2000 GEN lines per socket here; past that they queue in the daemon.
      const n = stress ? 1000 : 300;
      const bumps = stress ? 6000 : 5000;
      const d = await targetDaemon(t);
      const pid = d.child.pid as number;
      const before = rssKiB(pid);
      const lazy = await attack(t, ['unread', d.paths.watch, String(n), 'NAME lazy']);
      assert.equal(lazy.result.held, n);
      const ctl = (await RawClient.open(d.paths.control)).c;
      t.after(() => ctl.close());
      for (let done = 0; done < bumps; done += 100) {
        ctl.send('BUMP\n'.repeat(100));
        for (let i = 0; i < 100; i++) assert.match(await ctl.next(), /^OK \d+$/);
      }
      const s = await statusOf(d.dir);
      const backlog = (s.list ?? []).reduce((sum, w) => sum + (w.backlog as number), 0);
      const grownKiB = rssKiB(pid) - before;
      t.diagnostic(
        `${n} watchers that never read, ${bumps} bumps: ${backlog} bytes queued, daemon RSS +${grownKiB} KiB`,
      );
      assert.equal(s.watchers, n, 'still within --max-backlog: nobody was disconnected');
      assert.ok(backlog > 0, 'the notifications did queue');
      // One buffer per client at most twice its bytes, plus the allocator's slack.
      assert.ok(grownKiB * 1024 < 3 * backlog + 24 * 1024 * 1024, `RSS grew ${grownKiB} KiB for ${backlog} bytes`);
    });

    it("one user's PROBLEM reports from many connections are logged about once a second, not once each", async (t) => {
      const n = stress ? 5000 : 300;
      const d = await targetDaemon(t);
      const started = Date.now();
      const flood = await attack(t, ['problem', d.paths.watch, String(n), 'x'.repeat(190)]);
      assert.equal(flood.result.held, n);
      await new Promise((r) => setTimeout(r, 300));
      const seconds = Math.ceil((Date.now() - started) / 1000) + 1;
      const lines = d
        .log()
        .split('\n')
        .filter((l) => l.includes(' reports: '));
      t.diagnostic(`${n} connections reported a problem: ${lines.length} log lines in about ${seconds} s`);
      assert.ok(lines.length >= 1, 'the first report is logged');
      assert.ok(lines.length <= seconds + 1, `${lines.length} lines`);
      // Each connection's report is still kept for status.
      const s = await statusOf(d.dir);
      assert.equal((s.list ?? []).filter((w) => w.problem !== null).length, n);
    });
  },
);
