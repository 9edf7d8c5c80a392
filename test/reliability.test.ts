// Reliability under hostile input, faults and churn, and the security boundary as an unprivileged user.
// Sizes are reduced for CI; `npm run stress` runs them at full size (SYSGENID_STRESS=1).

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EXIT } from '../src/cli/exit.js';
import { connect } from '../src/client/index.js';
import { ERROR_CODES } from '../src/protocol/errors.js';
import { decodeU32 } from '../src/protocol/page-format.js';
import { CLI, ROOT, RawClient, bump, eventually, sleep, startDaemon, statusOf, tmpDir } from './helpers.js';

const FULL = process.env.SYSGENID_STRESS === '1';
const isRoot = process.getuid?.() === 0;

function randomLine(rng: () => number): Buffer {
  const kind = Math.floor(rng() * 6);
  const verbs = ['ACK', 'READ', 'WAIT', 'TRACK', 'BUMP', 'NAME', 'PID', 'STATUS', 'RESUME', 'FROB', 'ack', ''];
  const verb = verbs[Math.floor(rng() * verbs.length)] as string;
  switch (kind) {
    case 0: // random bytes, newline-terminated
      return Buffer.concat([crypto.randomBytes(1 + Math.floor(rng() * 40)), Buffer.from('\n')]);
    case 1: // valid-looking verb, random argument
      return Buffer.from(
        `${verb} ${['-1', '4294967296', 'x', '1 2', '0x1', '', '99999999999', 'ON', 'NONBLOCK'][Math.floor(rng() * 9)]}\n`,
      );
    case 2: // oversized
      return Buffer.from(`${verb} ${'7'.repeat(600 + Math.floor(rng() * 2000))}\n`);
    case 3: // control characters inside a line
      return Buffer.from(`${verb}\t${Math.floor(rng() * 10)}\u0000\n`);
    case 4: // valid but harmless for accounting: a wrong ACK or a non-blocking read
      return Buffer.from(rng() < 0.5 ? 'ACK 4294967295\n' : 'READ NONBLOCK\n');
    default: // truncated frame: no newline yet; the next line completes it
      return Buffer.from(verb);
  }
}

function seeded(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

describe('reliability', () => {
  it('protocol fuzzing: every malformed line gets a documented error, other clients are never stalled', async (t) => {
    const d = await startDaemon(t, { args: ['--log-level', 'warn'] });
    const seed = Number(process.env.SYSGENID_FUZZ_SEED ?? Date.now() % 1_000_000);
    t.diagnostic(`fuzz seed ${seed} (rerun with SYSGENID_FUZZ_SEED=${seed})`);
    const rng = seeded(seed);
    const fuzzers = await Promise.all([0, 1, 2, 3].map(() => RawClient.open(d.paths.watch)));
    const good = (await RawClient.open(d.paths.watch)).c;
    t.after(() => [...fuzzers.map((f) => f.c), good].forEach((c) => c.close()));
    const inputs = FULL ? 100_000 : 8_000;
    let sent = 0;
    let cycles = 0;
    while (sent < inputs) {
      for (const { c } of fuzzers) {
        if (c.closed) continue;
        for (let k = 0; k < 50; k++, sent++) c.send(randomLine(rng));
      }
      // The well-behaved client keeps doing full cycles meanwhile, and is never held up.
      const gen = await bump(d.dir);
      assert.equal(await good.next(2000), `GEN ${gen}`);
      assert.equal(await good.request(`ACK ${gen}`, 2000), `OK ${gen}`);
      cycles++;
    }
    for (const { c } of fuzzers) c.send('\nPING\n');
    await sleep(200);
    const documented = new Set(Object.keys(ERROR_CODES));
    let errors = 0;
    for (const { c } of fuzzers) {
      for (const line of c.lines) {
        if (line.startsWith('ERR ')) {
          errors++;
          assert.ok(documented.has(line.split(' ')[1] as string), `undocumented error: ${line.slice(0, 60)}`);
        } else {
          assert.match(line, /^(OK|GEN \d+|HELLO )/, `unexpected line ${line.slice(0, 60)}`);
        }
      }
    }
    assert.ok(errors > inputs / 4, `${errors} error replies for ${inputs} inputs`);
    // Accounting stays exact: fuzzers never acknowledged, so each is outdated; the good one is not.
    const s = await statusOf(d.dir);
    const live = fuzzers.filter(({ c }) => !c.closed).length;
    assert.equal(s.watchers, live + 1);
    const trackedFuzzers = (s.list ?? []).filter((w) => w.tracked && w.outdated).length;
    assert.equal(s.outdated, trackedFuzzers);
    t.diagnostic(
      `fuzz: ${sent} inputs from 4 clients, ${errors} error replies, ${cycles} full cycles of a good client, ` +
        `daemon alive`,
    );
  });

  it('kill -9 at random points of a cycle: the counter never goes back, clients reconnect and see every change', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    let d = await startDaemon(t, { dir, args: ['--log-level', 'warn'] });
    const watchers = await Promise.all([0, 1, 2].map((i) => connect({ dir, name: `survivor-${i}` })));
    t.after(() => watchers.forEach((w) => w.close()));
    const rounds = FULL ? 60 : 10;
    let confirmed = 0;
    for (let i = 0; i < rounds; i++) {
      const ctl = (await RawClient.open(path.join(dir, 'control.sock'))).c;
      ctl.send('BUMP\n'.repeat(1 + (i % 5)));
      await sleep(Math.random() * 4);
      // Every BUMP answered before the kill is a promise the restarted daemon must keep.
      const answered = ctl.lines.filter((l) => /^OK \d+$/.test(l)).map((l) => Number(l.slice(3)));
      d.child.kill('SIGKILL');
      await d.exited;
      ctl.close();
      confirmed = Math.max(confirmed, ...answered);
      d = await startDaemon(t, { dir, args: ['--log-level', 'warn'] });
      const s = await statusOf(dir);
      assert.ok(s.generation >= confirmed, `restart ${i}: generation ${s.generation} < confirmed ${confirmed}`);
      assert.equal(decodeU32(fs.readFileSync(path.join(dir, 'generation'))), s.generation);
    }
    const final = (await statusOf(dir)).generation;
    await eventually(
      () => watchers.every((w) => w.connected && w.generation === final),
      10_000,
      'every watcher reconnected and current',
    );
    for (const w of watchers) await w.ack(final);
    await eventually(async () => (await statusOf(dir)).outdated === 0, 5000, 'all acknowledged after the storm');
    t.diagnostic(`faults: ${rounds} kill -9 during bumps, final generation ${final}, highest confirmed ${confirmed}`);
  });

  it('churn: 10000 watchers connect and disconnect while bumps run; nothing leaks, nothing is lost', async (t) => {
    // With a test-only preload, SIGUSR2 makes the daemon collect its garbage, so heap figures mean something.
    const gcPreload = path.join(ROOT, 'test/fixtures/gc-on-signal.cjs');
    const d = await startDaemon(t, { args: ['--log-level', 'warn'], env: { NODE_OPTIONS: `--require ${gcPreload}` } });
    const heapAfterGc = async (): Promise<number> => {
      d.child.kill('SIGUSR2');
      await sleep(300);
      return Math.round(((await statusOf(d.dir)).memory as { heapUsed: number }).heapUsed / 1024);
    };
    const perProc = FULL ? 2500 : 400;
    const procs = 4;
    // At full size each connection lives 5 to 15 s; the bump loop goes as fast as the daemon answers.
    const seconds = FULL ? 40 : 3;
    // Each client process opens its watchers, says "up" once all are connected (so the churn starts
    // from the full count), then keeps closing each one at the end of its life and opening another.
    const script = `
      const net = require('node:net');
      const sock = process.env.SYSGENID_DIR + '/watch.sock';
      const n = Number(process.argv[1]), seconds = Number(process.argv[2]), lifeMs = Number(process.argv[3]);
      let until = Infinity, open = 0, connected = 0, notified = 0, cycles = 0, errors = 0, up = false;
      const waiting = [];
      const one = () => {
        if (Date.now() > until) { if (open === 0) finish(); return; }
        const s = net.createConnection(sock); let buf = ''; open++;
        let failed = false, timer;
        const live = () => { timer = setTimeout(() => s.destroy(), lifeMs * (0.5 + Math.random())); };
        s.on('connect', () => {
          cycles++; connected++;
          // The first watchers hold until all are connected; from then on each lives its life.
          if (up) live(); else waiting.push(live);
          if (!up && connected === n) { up = true; until = Date.now() + seconds * 1000; waiting.splice(0).forEach((f) => f()); process.stdout.write('up\\n'); }
        });
        s.on('data', (d) => { buf += d; const m = buf.match(/GEN (\\d+)\\n/); if (m) { notified++; buf = ''; s.write('ACK ' + m[1] + '\\n'); } });
        // A refused connect (EAGAIN: accept queue full) backs off instead of spinning.
        s.on('error', () => { failed = true; errors++; });
        s.on('close', () => { open--; if (!failed) connected--; clearTimeout(timer); setTimeout(one, failed ? 20 + Math.random() * 80 : 0); });
      };
      let done = false;
      const finish = () => { if (done) return; done = true; console.log(JSON.stringify({ notified, cycles, errors })); };
      for (let i = 0; i < n; i++) one();
      setInterval(() => { if (Date.now() > until + 2000) finish(); }, 200);`;
    let generation = 0;
    const round = async (): Promise<{
      atStart: number;
      rampMs: number;
      peak: number;
      bumps: number;
      notified: number;
      cycles: number;
      refused: number;
      rssKiB: number;
      heapKiB: number;
    }> => {
      const children = Array.from({ length: procs }, () =>
        spawn(process.execPath, ['-e', script, String(perProc), String(seconds), String(FULL ? 10_000 : 1000)], {
          env: { ...process.env, SYSGENID_DIR: d.dir },
          stdio: ['ignore', 'pipe', 'inherit'],
        }),
      );
      t.after(() => children.forEach((c) => c.kill('SIGKILL')));
      const ups: Array<Promise<void>> = [];
      const results = children.map(
        (c) =>
          new Promise<{ notified: number; cycles: number; errors: number }>((resolve) => {
            let out = '';
            let markUp = (): void => undefined;
            ups.push(new Promise<void>((r) => (markUp = r)));
            c.stdout.setEncoding('utf8').on('data', (s: string) => {
              out += s;
              if (out.startsWith('up\n')) {
                markUp();
                out = out.slice(3);
              }
              if (out.includes('\n')) resolve(JSON.parse(out));
            });
          }),
      );
      await Promise.all(ups);
      // A client's connect completes in the kernel's accept queue, before the daemon has accepted it.
      const rampStart = Date.now();
      const atStart = (
        (await eventually(
          async () => {
            const st = await statusOf(d.dir);
            return st.watchers === procs * perProc ? st : undefined;
          },
          30_000,
          'every watcher accepted',
        )) as Awaited<ReturnType<typeof statusOf>>
      ).watchers;
      const rampMs = Date.now() - rampStart;
      let bumps = 0;
      let peak = atStart;
      const until = Date.now() + seconds * 1000;
      while (Date.now() < until) {
        await bump(d.dir);
        bumps++;
        if (bumps % 20 === 0) peak = Math.max(peak, (await statusOf(d.dir)).watchers);
        await sleep(3);
      }
      generation += bumps;
      const r = await Promise.all(results);
      children.forEach((c) => c.kill('SIGKILL'));
      await eventually(async () => (await statusOf(d.dir)).watchers === 0, 10_000, 'no watcher leaked');
      // Connections of earlier bump and status calls may still be closing on the daemon's side.
      const st = (await eventually(
        async () => {
          const x = await statusOf(d.dir);
          return x.connections === 1 ? x : undefined;
        },
        5000,
        'only the status connection itself',
      )) as Awaited<ReturnType<typeof statusOf>>;
      assert.equal(st.outdated, 0, 'outdated count exact at the end');
      assert.equal(st.tracked, 0);
      assert.equal(st.generation, generation, 'every bump counted once');
      await sleep(500);
      return {
        atStart,
        rampMs,
        peak,
        bumps,
        notified: r.reduce((a, x) => a + x.notified, 0),
        cycles: r.reduce((a, x) => a + x.cycles, 0),
        refused: r.reduce((a, x) => a + x.errors, 0),
        rssKiB: rss(d.child.pid as number),
        heapKiB: await heapAfterGc(),
      };
    };
    const rssBefore = rss(d.child.pid as number);
    const heapBefore = await heapAfterGc();
    // The same churn twice: memory the allocator kept after the first is reused by the second; a leak
    // would grow it again.
    const first = await round();
    const second = await round();
    for (const [i, x] of [first, second].entries()) {
      t.diagnostic(
        `churn round ${i + 1}: ${procs}x${perProc} watchers, all ${x.atStart} connected at the start (accepted ` +
          `${x.rampMs} ms after the clients saw them connected), then churning for ${seconds} s: ${x.cycles} ` +
          `connections made (${x.refused} connects refused and retried), peak ${x.peak} watchers seen by ` +
          `status, ${x.bumps} bumps, ${x.notified} notifications received; after it RSS ${x.rssKiB} KiB, JS ` +
          `heap used ${x.heapKiB} KiB`,
      );
      assert.equal(x.atStart, procs * perProc, 'every watcher connected at once before the churn');
      assert.ok(x.cycles > procs * perProc, 'watchers really churned');
    }
    t.diagnostic(
      `churn memory: RSS ${rssBefore} -> ${first.rssKiB} -> ${second.rssKiB} KiB, JS heap in use after a full ` +
        `collection ${heapBefore} -> ${first.heapKiB} -> ${second.heapKiB} KiB`,
    );
    // What the daemon holds returns to where it started: every watcher's state was released.
    assert.ok(
      second.heapKiB < heapBefore + 2048,
      `JS heap after collection: ${heapBefore} KiB before, ${second.heapKiB} KiB after two rounds`,
    );
    const grewAgain = second.rssKiB - first.rssKiB;
    assert.ok(
      grewAgain < Math.max(8 * 1024, (first.rssKiB - rssBefore) / 4),
      `RSS grew again by ${grewAgain} KiB in the second round (first round: ${first.rssKiB - rssBefore} KiB)`,
    );
  });

  it('replaced page: the daemon notices at the next bump, recreates it and logs why', async (t) => {
    const d = await startDaemon(t);
    fs.rmSync(d.paths.page);
    fs.writeFileSync(d.paths.page, Buffer.alloc(4096, 0xff));
    await bump(d.dir);
    await d.waitForLog(/was replaced by someone else; recreated it/);
    assert.equal(decodeU32(fs.readFileSync(d.paths.page)), 1);
  });

  it(
    'a read-only or full runtime directory at start is a clear error',
    { skip: isRoot ? false : 'needs root to mount a tmpfs' },
    async (t) => {
      const base = tmpDir(t);
      const mnt = path.join(base, 'mnt');
      fs.mkdirSync(mnt);
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8k,mode=0755', 'tmpfs', mnt]);
      } catch {
        t.skip('mount is not permitted here');
        return;
      }
      try {
        // Full: no room left for the page.
        fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(8192));
        const full = await startDaemon(undefined, { dir: path.join(mnt, 'run'), expectFailure: true });
        assert.equal(await full.exited, 1);
        assert.match(full.log(), /(no space left|ENOSPC)/i);
        fs.rmSync(path.join(mnt, 'filler'));
        fs.mkdirSync(path.join(mnt, 'ro'), { mode: 0o755 });
        execFileSync('mount', ['-o', 'remount,ro', mnt]);
        const ro = await startDaemon(undefined, { dir: path.join(mnt, 'ro'), expectFailure: true });
        assert.equal(await ro.exited, 1);
        assert.match(ro.log(), /read-only/);
      } finally {
        execFileSync('umount', ['-l', mnt]);
      }
    },
  );
});

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

describe(
  'security, as an unprivileged user',
  { skip: isRoot ? false : 'needs root to run commands as another user' },
  () => {
    const asNobody = (code: string, env: Record<string, string>): { status: number | null; out: string } => {
      try {
        const out = execFileSync('runuser', ['-u', 'nobody', '--', process.execPath, '-e', code], {
          env: { ...process.env, ...env },
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        return { status: 0, out };
      } catch (err) {
        const e = err as { status: number | null; stdout: string };
        return { status: e.status, out: e.stdout };
      }
    };

    it('cannot force an update, write the page, or replace the sockets and files', async (t) => {
      const base = tmpDir(t);
      fs.chmodSync(base, 0o755);
      const d = await startDaemon(t, { dir: path.join(base, 'run') });
      const r = asNobody(
        `
      const fs = require('node:fs'), net = require('node:net'), dir = process.env.D; const out = {};
      const tryIt = (name, fn) => { try { fn(); out[name] = 'ALLOWED'; } catch (e) { out[name] = e.code; } };
      tryIt('writePage', () => fs.openSync(dir + '/generation', 'r+'));
      const evil = require('node:os').tmpdir() + '/sysgenid-evil-' + process.pid;
      fs.writeFileSync(evil, 'forged');
      tryIt('replacePage', () => fs.renameSync(evil, dir + '/generation'));
      fs.rmSync(evil, { force: true });
      tryIt('unlinkWatch', () => fs.unlinkSync(dir + '/watch.sock'));
      tryIt('unlinkControl', () => fs.unlinkSync(dir + '/control.sock'));
      tryIt('writeState', () => fs.openSync(dir + '/state', 'r+'));
      tryIt('plantLink', () => fs.symlinkSync('/etc/passwd', dir + '/evil'));
      tryIt('readPage', () => fs.readFileSync(dir + '/generation'));
      const s = net.createConnection(dir + '/control.sock');
      s.on('error', (e) => { out.control = e.code; console.log(JSON.stringify(out)); });
      s.on('connect', () => { out.control = 'ALLOWED'; console.log(JSON.stringify(out)); s.destroy(); });`,
        { D: d.dir },
      );
      const out = JSON.parse(r.out) as Record<string, string>;
      assert.deepEqual(out, {
        writePage: 'EACCES',
        replacePage: 'EACCES',
        unlinkWatch: 'EACCES',
        unlinkControl: 'EACCES',
        writeState: 'EACCES',
        plantLink: 'EACCES',
        readPage: 'ALLOWED',
        control: 'EACCES',
      });
      assert.equal((await statusOf(d.dir)).generation, 0);
    });

    it('cannot quiesce or resume the machine, answer for a subscriber it is not, but can ask whether it is ready', async (t) => {
      const base = tmpDir(t);
      fs.chmodSync(base, 0o755);
      const d = await startDaemon(t, { dir: path.join(base, 'run') });
      const sub = (await RawClient.open(d.paths.watch)).c;
      t.after(() => sub.close());
      assert.equal(await sub.request('SUBSCRIBE'), 'OK running');
      const cliAs = (...args: string[]) => {
        try {
          execFileSync(
            'runuser',
            ['-u', 'nobody', '--', process.execPath, CLI, args[0] as string, '--dir', d.dir, ...args.slice(1)],
            { stdio: 'pipe' },
          );
          return 0;
        } catch (err) {
          return (err as { status: number }).status;
        }
      };
      assert.equal(cliAs('quiesce'), EXIT.DENIED);
      assert.equal(cliAs('resume'), EXIT.DENIED);
      assert.equal(cliAs('snapshot', '--', 'true'), EXIT.DENIED);
      assert.equal(cliAs('ready'), EXIT.OK);
      // On the watch socket (which anyone may use) the requests are refused, and a stranger's answer to
      // a cycle counts for nothing: answers are bound to the connection that was asked.
      const r = asNobody(
        `
      const net = require('node:net'); const s = net.createConnection(process.env.D + '/watch.sock'); let buf = '';
      s.on('data', (d) => { buf += d; if (buf.split('\\n').length > 4) { console.log(JSON.stringify(buf.split('\\n').slice(1, 4))); s.destroy(); } });
      s.on('connect', () => s.write('QUIESCE 1000\\nUNQUIESCE 1000\\nQUIESCED 1\\n'));`,
        { D: d.dir },
      );
      const replies = JSON.parse(r.out) as string[];
      assert.match(replies[0] ?? '', /^ERR EACCES /);
      assert.match(replies[1] ?? '', /^ERR EACCES /);
      assert.match(replies[2] ?? '', /^ERR EINVAL .*not subscribed/);
      assert.equal(((await statusOf(d.dir)).lifecycle as { state: string }).state, 'running');
    });

    it('a symlink planted at the device path is never followed or replaced', async (t) => {
      const base = tmpDir(t);
      const victim = path.join(base, 'victim');
      fs.writeFileSync(victim, 'do not touch');
      const link = path.join(base, 'sysgenid-dev');
      fs.symlinkSync(victim, link);
      const d = await startDaemon(t, { args: ['--dev-link-path', link] });
      await bump(d.dir, 5);
      assert.equal(fs.readlinkSync(link), victim);
      assert.equal(fs.readFileSync(victim, 'utf8'), 'do not touch');
      assert.match(d.log(), /already exists \(a link to .*victim\); not replacing it/);
    });

    it('a watcher can only acknowledge or change tracking for itself', async (t) => {
      const d = await startDaemon(t);
      const a = (await RawClient.open(d.paths.watch)).c;
      const b = (await RawClient.open(d.paths.watch)).c;
      t.after(() => [a, b].forEach((c) => c.close()));
      await bump(d.dir);
      await a.request('ACK 1');
      await a.request('TRACK OFF');
      await a.request('TRACK ON');
      const list = (await statusOf(d.dir)).list ?? [];
      const other = list.find((w) => w.outdated);
      assert.ok(other, 'b is still outdated: nothing a does reaches it');
      assert.equal((await statusOf(d.dir)).outdated, 1);
      assert.equal(await b.request('READ NONBLOCK'), 'OK 1');
    });
  },
);
