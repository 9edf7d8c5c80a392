// npm run bench: the daemon's cycle (forced update -> every watcher notified -> every watcher
// acknowledged) next to two references measured in the same run: a minimal C epoll server speaking the
// same exchange (bench/epoll-reference.c, built here with cc) and the kernel's own netlink uevent
// broadcast to as many sockets, read by the same kind of client processes. Then the per-watcher slope,
// memory per watcher, detection (a uevent to the page and the first watcher), and start-up against a
// bare Node listener. The probe has its own script (bench/probe.ts).
//
//   node dist/bench/run.js [--json] [--quick] [--sizes N,N,...]

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { json: { type: 'boolean' }, quick: { type: 'boolean' }, sizes: { type: 'string' } },
});
const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON = path.resolve(here, '../sysgenidd.cjs');
/** A device's uevent file: writing "change UUID KEY=VALUE" makes the kernel broadcast a synthetic uevent. */
const UEVENT = '/sys/devices/virtual/mem/zero/uevent';
const SIZES = values.sizes ? values.sizes.split(',').map(Number) : values.quick ? [100, 1000] : [100, 1000, 10_000];
const ROUNDS = values.quick ? 15 : 60;
const PROCS = 4;
// The daemon "as shipped" uses its addon whatever the caller's environment says; the pure-JS daemon
// is measured beside it with SYSGENID_NO_ADDON=1 set explicitly.
const env: NodeJS.ProcessEnv = { ...process.env, NODE_EXTRA_CA_CERTS: '' };
delete env.SYSGENID_NO_ADDON;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;

function lines(sock: net.Socket, onLine: (l: string) => void): void {
  let buf = '';
  sock.setEncoding('latin1');
  sock.on('data', (s: string) => {
    buf += s;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

async function connectWhenUp(file: string): Promise<net.Socket> {
  for (;;) {
    const s = await new Promise<net.Socket | undefined>((resolve) => {
      const c = net.createConnection(file);
      c.once('connect', () => resolve(c));
      c.once('error', () => resolve(undefined));
    });
    if (s) return s;
    await sleep(2);
  }
}

/** A request/response client on one connection (GEN lines are skipped). */
function client(sock: net.Socket): (line: string) => Promise<string> {
  const waiting: Array<(l: string) => void> = [];
  let greeted = false;
  lines(sock, (l) => {
    if (!greeted) {
      greeted = true;
      return;
    }
    if (l.startsWith('GEN ')) return;
    waiting.shift()?.(l);
  });
  return (line) =>
    new Promise((resolve) => {
      waiting.push(resolve);
      sock.write(`${line}\n`);
    });
}

// The clients of the acknowledged cycle: N/K watcher connections per Node process, each acknowledging
// every GEN line at once.
const WATCHERS = `
  const net = require('node:net');
  const [file, n] = [process.argv[1], Number(process.argv[2])];
  let ready = 0, got = 0;
  for (let i = 0; i < n; i++) {
    const go = () => {
      const s = net.createConnection(file); let buf = '';
      s.on('error', (e) => { if (e.code === 'EAGAIN') setTimeout(go, 5); });
      s.on('data', (d) => {
        buf += d; let nl;
        while ((nl = buf.indexOf('\\n')) !== -1) {
          const l = buf.slice(0, nl); buf = buf.slice(nl + 1);
          if (l.startsWith('HELLO') && ++ready === n) process.stdout.write('ready\\n');
          else if (l.startsWith('GEN ')) { s.write('ACK ' + l.slice(4) + '\\n'); if (++got === n) { got = 0; process.stdout.write('notified\\n'); } }
        }
      });
    };
    go();
  }`;

/** Why this run cannot make the kernel broadcast uevents (it needs root), or undefined. */
function netlinkUsable(): string | undefined {
  try {
    fs.accessSync(UEVENT, fs.constants.W_OK);
  } catch {
    return `cannot write ${UEVENT} (needs root)`;
  }
  return undefined;
}

/**
 * Detection: a synthetic NEWVMGENID uevent (what Linux 6.8.0 to 6.8.7 sent on a VM fork) to the page
 * written (the daemon's own monotonic stamp) and to the first watcher notified (a client process's
 * monotonic clock at the GEN line). All on CLOCK_MONOTONIC, which every process of the machine shares.
 */
async function detection(rounds: number): Promise<{ pageMs: number[]; watcherMs: number[] } | { skipped: string }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-'));
  const daemon = spawn(
    process.execPath,
    // --state-dir keeps the counter floor inside the temporary directory too.
    [
      DAEMON,
      '--dir',
      dir,
      '--state-dir',
      dir,
      '--no-hooks',
      '--backends',
      'uevent',
      '--uevent-synthetic',
      '--log-level',
      'error',
    ],
    { env, stdio: 'ignore' },
  );
  let watcher: ChildProcess | undefined;
  try {
    const ctl = client(await connectWhenUp(path.join(dir, 'control.sock')));
    const backends = (
      JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as {
        backends: Array<{ name: string; live: boolean; detail: string }>;
      }
    ).backends;
    const uevent = backends.find((b) => b.name === 'uevent');
    if (!uevent?.live) return { skipped: `the uevent backend is off (${uevent?.detail ?? 'absent'})` };
    // Started once the daemon listens.
    watcher = spawn(
      process.execPath,
      [
        '-e',
        `
      const s = require('node:net').createConnection(process.argv[1]); let buf = '';
      s.on('data', (d) => { buf += d; let nl; while ((nl = buf.indexOf('\\n')) !== -1) { const l = buf.slice(0, nl); buf = buf.slice(nl + 1);
        if (l.startsWith('GEN ')) process.stdout.write(process.hrtime.bigint() + '\\n'); else if (l.startsWith('HELLO')) process.stdout.write('ready\\n'); } });`,
        path.join(dir, 'watch.sock'),
      ],
      { env, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const got: Array<(l: string) => void> = [];
    const w = watcher;
    await new Promise<void>((resolve) =>
      lines(w.stdout as unknown as net.Socket, (l) => (l === 'ready' ? resolve() : got.shift()?.(l))),
    );
    const pageMs: number[] = [];
    const watcherMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const seen = new Promise<string>((resolve, reject) => {
        got.push(resolve);
        setTimeout(() => reject(new Error('detection: no GEN line within 5 s of the uevent')), 5000).unref();
      });
      const t0 = process.hrtime.bigint();
      fs.writeFileSync(UEVENT, `change ${crypto.randomUUID()} NEWVMGENID=1`);
      const at = BigInt(await seen);
      const st = JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as { lastBump: { pageWrittenMonoMs: number } };
      pageMs.push(st.lastBump.pageWrittenMonoMs - Number(t0) / 1e6);
      watcherMs.push(Number(at - t0) / 1e6);
      await sleep(5);
    }
    return { pageMs, watcherMs };
  } finally {
    watcher?.kill('SIGKILL');
    daemon.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Least-squares slope of y over x, in the units of y per unit of x. */
function slope(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

/** Compile one of bench/*.c with cc; undefined (and a note) when there is no compiler. */
function buildC(name: string): string | undefined {
  const src = path.resolve(here, `../../bench/${name}.c`);
  const out = path.join(os.tmpdir(), `sysgenid-${name}-${process.pid}`);
  try {
    execFileSync('cc', ['-O2', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    return out;
  } catch (err) {
    process.stderr.write(
      `bench: cannot build bench/${name}.c (${(err as Error).message.split('\n')[0]}); skipping what needs it\n`,
    );
    return undefined;
  }
}

/**
 * "All notified": `trigger` makes every one of N sockets receive one message; the time until the C
 * reader processes (bench/reader-client.c, N/K sockets each) have all read it. The same readers serve
 * the daemon's watch socket and the kernel's netlink broadcast, so only the sender differs.
 */
async function readersNotified(
  reader: string,
  n: number,
  target: string[],
  trigger: () => Promise<void> | void,
): Promise<number[]> {
  const children: ChildProcess[] = [];
  const notify: Array<() => void> = [];
  let notifiedProcs = 0;
  try {
    await Promise.all(
      Array.from(
        { length: PROCS },
        (_, i) =>
          new Promise<void>((resolve, reject) => {
            const per = Math.floor(n / PROCS) + (i < n % PROCS ? 1 : 0);
            const c = spawn(reader, [...target, String(per)], { stdio: ['ignore', 'pipe', 'inherit'] });
            children.push(c);
            c.on('exit', (code) => reject(new Error(`reader-client exited with ${code}`)));
            lines(c.stdout as unknown as net.Socket, (l) => {
              if (l === 'ready') resolve();
              else if (l === 'notified' && ++notifiedProcs === PROCS) notify.shift()?.();
            });
          }),
      ),
    );
    const out: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      notifiedProcs = 0;
      const all = new Promise<number>((resolve) => notify.push(() => resolve(performance.now())));
      const t0 = performance.now();
      await trigger();
      out.push((await all) - t0);
      await sleep(2);
    }
    return out;
  } finally {
    for (const c of children) {
      c.removeAllListeners('exit');
      c.kill('SIGKILL');
    }
  }
}

type Server = 'daemon' | 'daemon-js' | 'epoll';

async function cycle(
  n: number,
  server: Server,
  reference?: string,
  reader?: string,
): Promise<{ notified: number[] | null; acked: number[]; rssPerWatcher: number; heapPerWatcher: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-'));
  const daemon =
    server === 'epoll'
      ? spawn(reference as string, [dir], { stdio: 'ignore' })
      : spawn(
          process.execPath,
          [DAEMON, '--dir', dir, '--state-dir', dir, '--no-hooks', '--backends', 'none', '--log-level', 'error'],
          {
            env: server === 'daemon-js' ? { ...env, SYSGENID_NO_ADDON: '1' } : env,
            stdio: 'ignore',
          },
        );
  const children: ChildProcess[] = [];
  try {
    const ctl = client(await connectWhenUp(path.join(dir, 'control.sock')));
    const before = JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as { memory: { rss: number; heapUsed: number } };
    const notify: Array<() => void> = [];
    let notifiedProcs = 0;
    await Promise.all(
      Array.from(
        { length: PROCS },
        (_, i) =>
          new Promise<void>((resolve) => {
            const per = Math.floor(n / PROCS) + (i < n % PROCS ? 1 : 0);
            const c = spawn(process.execPath, ['-e', WATCHERS, path.join(dir, 'watch.sock'), String(per)], {
              env,
              stdio: ['ignore', 'pipe', 'inherit'],
            });
            children.push(c);
            lines(c.stdout as unknown as net.Socket, (l) => {
              if (l === 'ready') resolve();
              else if (l === 'notified' && ++notifiedProcs === PROCS) notify.shift()?.();
            });
          }),
      ),
    );
    const after = JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as {
      watchers: number;
      memory: { rss: number; heapUsed: number };
    };
    if (after.watchers !== n) throw new Error(`${after.watchers} watchers connected, expected ${n}`);
    const waiter = client(await connectWhenUp(path.join(dir, 'watch.sock')));
    await waiter('OBSERVE');
    const acked: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      notifiedProcs = 0;
      const allNotified = new Promise<number>((resolve) => notify.push(() => resolve(performance.now())));
      const t0 = performance.now();
      const gen = (await ctl('BUMP')).slice(3);
      // The observer has seen the new generation too (else its WAIT is EINTR).
      await waiter(`ACK ${gen}`);
      // Sent once the bump is answered (so it cannot overtake it): released when every watcher acknowledged.
      const w = waiter('WAIT 10000').then((l) => {
        if (l !== 'OK') throw new Error(`wait: ${l}`);
        return performance.now();
      });
      const [, ta] = await Promise.all([allNotified, w]);
      acked.push(ta - t0);
    }
    // Then "all notified", with the C readers in place of the Node clients.
    for (const c of children.splice(0)) c.kill('SIGKILL');
    await sleep(50);
    const notified =
      reader && server !== 'epoll'
        ? await readersNotified(reader, n, ['unix', path.join(dir, 'watch.sock')], async () => void (await ctl('BUMP')))
        : null;
    return {
      notified,
      acked,
      rssPerWatcher: (after.memory.rss - before.memory.rss) / n,
      heapPerWatcher: (after.memory.heapUsed - before.memory.heapUsed) / n,
    };
  } finally {
    for (const c of children) c.kill('SIGKILL');
    daemon.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function startup(runs: number): Promise<{ daemon: number; bare: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-'));
  const bareScript = path.join(dir, 'bare.mjs');
  fs.writeFileSync(bareScript, "import net from 'node:net'; net.createServer().listen(process.argv[2]);");
  const measure = async (args: string[], sock: string): Promise<number> => {
    fs.rmSync(sock, { force: true });
    const t0 = performance.now();
    const c = spawn(process.execPath, args, { env, stdio: 'ignore' });
    (await connectWhenUp(sock)).destroy();
    const ms = performance.now() - t0;
    c.kill('SIGKILL');
    await new Promise((r) => c.on('exit', r));
    return ms;
  };
  const d: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < runs; i++) {
    const run = path.join(dir, `run${i}`);
    d.push(await measure([DAEMON, '--dir', run, '--no-hooks', '--backends', 'auto'], path.join(run, 'watch.sock')));
    b.push(await measure([bareScript, path.join(dir, 'bare.sock')], path.join(dir, 'bare.sock')));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return { daemon: pct(d, 0.5), bare: pct(b, 0.5) };
}

const noNetlink = netlinkUsable();
const reference = buildC('epoll-reference');
const reader = buildC('reader-client');
const report: Record<string, unknown> = {
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${os.release()}, node ${process.version}`,
  rounds: ROUNDS,
  processes: PROCS,
  netlinkReference: noNetlink
    ? `skipped: ${noNetlink}`
    : reader
      ? 'measured'
      : 'skipped: no C compiler for bench/reader-client.c',
  cycle: {},
};

type Stats = { p50: number; p99: number; max: number };
const stats = (xs: number[]): Stats => ({ p50: pct(xs, 0.5), p99: pct(xs, 0.99), max: Math.max(...xs) });
const progress = (what: string): void => {
  if (!values.json) process.stderr.write(`bench: ${what}\n`);
};
// First, on a quiet machine: tearing down 10000 sockets keeps the kernel busy for a while after.
if (!noNetlink) {
  progress('detection');
  const d = await detection(values.quick ? 20 : 100);
  report.detection =
    'skipped' in d ? `skipped: ${d.skipped}` : { pageWrittenMs: stats(d.pageMs), firstWatcherMs: stats(d.watcherMs) };
} else {
  report.detection = `skipped: ${noNetlink}`;
}
progress('start-up');
report.startup = await startup(values.quick ? 5 : 15);

for (const n of SIZES) {
  progress(`N = ${n}: daemon`);
  const r = await cycle(n, 'daemon', undefined, reader);
  progress(`N = ${n}: daemon, pure JS (SYSGENID_NO_ADDON=1)`);
  const js = await cycle(n, 'daemon-js', undefined, reader);
  progress(`N = ${n}: C epoll reference`);
  const ref = reference ? await cycle(n, 'epoll', reference) : undefined;
  if (!noNetlink) progress(`N = ${n}: kernel netlink reference`);
  const kernel =
    noNetlink || !reader
      ? undefined
      : await readersNotified(reader, n, ['netlink'], () =>
          fs.writeFileSync(UEVENT, `change ${crypto.randomUUID()} SYSGENIDBENCH=1`),
        );
  (report.cycle as Record<string, unknown>)[n] = {
    notifiedMs: r.notified ? stats(r.notified) : null,
    ackedMs: stats(r.acked),
    rssBytesPerWatcher: Math.round(r.rssPerWatcher),
    heapBytesPerWatcher: Math.round(r.heapPerWatcher),
    epollReferenceAckedMs: ref ? stats(ref.acked) : null,
    ackedVsEpollP50: ref ? pct(r.acked, 0.5) / pct(ref.acked, 0.5) : null,
    netlinkReferenceNotifiedMs: kernel ? stats(kernel) : null,
    notifiedVsNetlinkP50: kernel && r.notified ? pct(r.notified, 0.5) / pct(kernel, 0.5) : null,
    pureJs: {
      notifiedMs: js.notified ? stats(js.notified) : null,
      ackedMs: stats(js.acked),
      ackedVsEpollP50: ref ? pct(js.acked, 0.5) / pct(ref.acked, 0.5) : null,
      notifiedVsNetlinkP50: kernel && js.notified ? pct(js.notified, 0.5) / pct(kernel, 0.5) : null,
    },
  };
}
for (const bin of [reference, reader]) if (bin) fs.rmSync(bin, { force: true });
type CycleRow = {
  pureJs: {
    notifiedMs: Stats | null;
    ackedMs: Stats;
    ackedVsEpollP50: number | null;
    notifiedVsNetlinkP50: number | null;
  };
  notifiedMs: Stats | null;
  ackedMs: Stats;
  epollReferenceAckedMs: Stats | null;
  ackedVsEpollP50: number | null;
  netlinkReferenceNotifiedMs: Stats | null;
  notifiedVsNetlinkP50: number | null;
  rssBytesPerWatcher: number;
  heapBytesPerWatcher: number;
};
const rows = Object.entries(report.cycle as Record<string, CycleRow>).map(([n, c]) => ({ n: Number(n), c }));
if (rows.length >= 2) {
  const xs = rows.map((r) => r.n);
  const us = (get: (c: CycleRow) => Stats | null): number | null => {
    const ys = rows.map((r) => get(r.c)?.p50);
    return ys.every((y) => y !== undefined) ? slope(xs, ys) * 1000 : null;
  };
  report.slopeUsPerWatcher = {
    daemonNotified: us((c) => c.notifiedMs),
    daemonAcked: us((c) => c.ackedMs),
    pureJsNotified: us((c) => c.pureJs.notifiedMs),
    pureJsAcked: us((c) => c.pureJs.ackedMs),
    epollAcked: us((c) => c.epollReferenceAckedMs),
    netlinkNotified: us((c) => c.netlinkReferenceNotifiedMs),
  };
}

if (values.json) {
  console.log(JSON.stringify(report));
} else {
  const f = (x: Stats | null) => (x ? `${x.p50.toFixed(2)} / ${x.p99.toFixed(2)} / ${x.max.toFixed(2)}` : 'n/a');
  const ratio = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(2)}x`);
  console.log(`sysgenid bench, ${report.machine}; ${ROUNDS} rounds, watchers spread over ${PROCS} processes`);
  console.log('\nCycle (ms, p50 / p99 / max):');
  console.log(
    `  ${'N'.padEnd(7)} ${'daemon notified*'.padEnd(24)} ${'kernel netlink notified*'.padEnd(26)} ` +
      `${'ratio'.padEnd(7)} ${'daemon acknowledged'.padEnd(24)} ${'C epoll acknowledged'.padEnd(24)} ` +
      `${'ratio'.padEnd(7)} RSS / heap per watcher`,
  );
  for (const { n, c } of rows) {
    console.log(
      `  ${String(n).padEnd(7)} ${f(c.notifiedMs).padEnd(24)} ${f(c.netlinkReferenceNotifiedMs).padEnd(26)} ` +
        `${ratio(c.notifiedVsNetlinkP50).padEnd(7)} ${f(c.ackedMs).padEnd(24)} ` +
        `${f(c.epollReferenceAckedMs).padEnd(24)} ${ratio(c.ackedVsEpollP50).padEnd(7)} ${c.rssBytesPerWatcher} ` +
        `B / ${c.heapBytesPerWatcher} B`,
    );
  }
  for (const { n, c } of rows) {
    console.log(
      `  ${`${n} JS`.padEnd(7)} ${f(c.pureJs.notifiedMs).padEnd(24)} ${''.padEnd(26)} ` +
        `${ratio(c.pureJs.notifiedVsNetlinkP50).padEnd(7)} ${f(c.pureJs.ackedMs).padEnd(24)} ${''.padEnd(24)} ` +
        `${ratio(c.pureJs.ackedVsEpollP50).padEnd(7)} (daemon with SYSGENID_NO_ADDON=1)`,
    );
  }
  if (noNetlink) console.log(`  kernel netlink reference skipped: ${noNetlink}`);
  const sl = report.slopeUsPerWatcher as
    | {
        daemonNotified: number | null;
        daemonAcked: number | null;
        pureJsNotified: number | null;
        pureJsAcked: number | null;
        epollAcked: number | null;
        netlinkNotified: number | null;
      }
    | undefined;
  if (sl) {
    const u = (x: number | null) => (x === null ? 'n/a' : `${x.toFixed(2)} us`);
    console.log(
      `  per-watcher slope of p50 (least squares over N): notified: daemon ${u(sl.daemonNotified)}, pure JS ` +
        `${u(sl.pureJsNotified)}, kernel netlink ${u(sl.netlinkNotified)}; acknowledged: daemon ` +
        `${u(sl.daemonAcked)}, pure JS ${u(sl.pureJsAcked)}, C epoll ${u(sl.epollAcked)}`,
    );
  }
  console.log(
    '  * read by C clients (bench/reader-client.c) for both the daemon and the kernel, reported over a pipe: includes that hop',
  );
  console.log('    acknowledged: Node clients acknowledging at once, the same for the daemon and the C epoll server');
  const det = report.detection as { pageWrittenMs: Stats; firstWatcherMs: Stats } | string;
  console.log(
    typeof det === 'string'
      ? `\nDetection: ${det}`
      : `\nDetection (synthetic NEWVMGENID uevent, uevent backend): page written ${f(det.pageWrittenMs)} ms, ` +
          `first watcher notified ${f(det.firstWatcherMs)} ms`,
  );
  const s = report.startup as { daemon: number; bare: number };
  console.log(
    `\nStart-up to accepting: daemon ${s.daemon.toFixed(1)} ms, bare Node listener ${s.bare.toFixed(1)} ms, ` +
      `ratio ${(s.daemon / s.bare).toFixed(2)}`,
  );
}
