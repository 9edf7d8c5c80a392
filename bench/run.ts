// npm run bench: the daemon's cycle (forced update -> every watcher notified -> every watcher
// acknowledged) next to a minimal C epoll server speaking the same exchange (bench/epoll-reference.c,
// built here with cc), memory per watcher, and start-up against a bare Node listener, each measured in
// this run. The kernel-netlink reference of issue 4 is not here yet; the probe has its own script
// (bench/probe.ts).
//
//   node dist/bench/run.js [--json] [--quick] [--sizes N,N,...]

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, quick: { type: 'boolean' }, sizes: { type: 'string' } } });
const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON = path.resolve(here, '../src/daemon/main.js');
const SIZES = values.sizes ? values.sizes.split(',').map(Number) : values.quick ? [100, 1000] : [100, 1000, 10_000];
const ROUNDS = values.quick ? 15 : 60;
const PROCS = 4;
const env = { ...process.env, NODE_EXTRA_CA_CERTS: '' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] as number;

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
  return (line) => new Promise((resolve) => {
    waiting.push(resolve);
    sock.write(`${line}\n`);
  });
}

const WATCHERS = `
  const net = require('node:net');
  const [file, n] = [process.argv[1], Number(process.argv[2])];
  let ready = 0, got = 0, target = 0;
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

function buildReference(): string | undefined {
  const src = path.resolve(here, '../../bench/epoll-reference.c');
  const out = path.join(os.tmpdir(), `sysgenid-epoll-reference-${process.pid}`);
  try {
    execFileSync('cc', ['-O2', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    return out;
  } catch (err) {
    process.stderr.write(`bench: cannot build the C epoll reference (${(err as Error).message.split('\n')[0]}); skipping it\n`);
    return undefined;
  }
}

type Server = 'daemon' | 'epoll';

async function cycle(n: number, server: Server, reference?: string): Promise<{ notified: number[]; acked: number[]; rssPerWatcher: number; heapPerWatcher: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-'));
  const daemon = server === 'daemon'
    ? spawn(process.execPath, [DAEMON, '--dir', dir, '--no-hooks', '--backends', 'none', '--log-level', 'error'], { env, stdio: 'ignore' })
    : spawn(reference as string, [dir], { stdio: 'ignore' });
  const children: ChildProcess[] = [];
  try {
    const ctl = client(await connectWhenUp(path.join(dir, 'control.sock')));
    const before = JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as { memory: { rss: number; heapUsed: number } };
    const notify: Array<() => void> = [];
    let notifiedProcs = 0;
    await Promise.all(Array.from({ length: PROCS }, (_, i) => new Promise<void>((resolve) => {
      const per = Math.floor(n / PROCS) + (i < n % PROCS ? 1 : 0);
      const c = spawn(process.execPath, ['-e', WATCHERS, path.join(dir, 'watch.sock'), String(per)], { env, stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(c);
      lines(c.stdout as unknown as net.Socket, (l) => {
        if (l === 'ready') resolve();
        else if (l === 'notified' && ++notifiedProcs === PROCS) notify.shift()?.();
      });
    })));
    const after = JSON.parse((await ctl('STATUS BRIEF')).slice(3)) as { watchers: number; memory: { rss: number; heapUsed: number } };
    if (after.watchers !== n) throw new Error(`${after.watchers} watchers connected, expected ${n}`);
    const waiter = client(await connectWhenUp(path.join(dir, 'watch.sock')));
    await waiter('OBSERVE');
    const notified: number[] = [];
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
      const [tn, ta] = await Promise.all([allNotified, w]);
      notified.push(tn - t0);
      acked.push(ta - t0);
    }
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

const report: Record<string, unknown> = {
  machine: `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${os.release()}, node ${process.version}`,
  rounds: ROUNDS,
  processes: PROCS,
  cycle: {} as Record<string, unknown>,
};
const reference = buildReference();
for (const n of SIZES) {
  const r = await cycle(n, 'daemon');
  const ref = reference ? await cycle(n, 'epoll', reference) : undefined;
  (report.cycle as Record<string, unknown>)[n] = {
    notifiedMs: { p50: pct(r.notified, 0.5), p99: pct(r.notified, 0.99), max: Math.max(...r.notified) },
    ackedMs: { p50: pct(r.acked, 0.5), p99: pct(r.acked, 0.99), max: Math.max(...r.acked) },
    rssBytesPerWatcher: Math.round(r.rssPerWatcher),
    heapBytesPerWatcher: Math.round(r.heapPerWatcher),
    epollReferenceAckedMs: ref ? { p50: pct(ref.acked, 0.5), p99: pct(ref.acked, 0.99), max: Math.max(...ref.acked) } : null,
    ackedVsEpollP50: ref ? pct(r.acked, 0.5) / pct(ref.acked, 0.5) : null,
  };
}
if (reference) fs.rmSync(reference, { force: true });
report.startup = await startup(values.quick ? 5 : 15);

if (values.json) {
  console.log(JSON.stringify(report));
} else {
  console.log(`sysgenid bench, ${report.machine}; ${ROUNDS} rounds, watchers spread over ${PROCS} processes`);
  console.log('  N       all notified* p50/p99/max ms   all acknowledged p50/p99/max ms   C epoll acknowledged p50/p99/max ms   ratio p50   RSS / heap per watcher');
  for (const [n, c] of Object.entries(report.cycle as Record<string, { notifiedMs: Record<string, number>; ackedMs: Record<string, number>; epollReferenceAckedMs: Record<string, number> | null; ackedVsEpollP50: number | null; rssBytesPerWatcher: number; heapBytesPerWatcher: number }>)) {
    const f = (x: Record<string, number> | null) => (x ? `${x.p50?.toFixed(2)} / ${x.p99?.toFixed(2)} / ${x.max?.toFixed(2)}` : 'n/a');
    console.log(`  ${n.padEnd(7)} ${f(c.notifiedMs).padEnd(30)} ${f(c.ackedMs).padEnd(33)} ${f(c.epollReferenceAckedMs).padEnd(37)} ${(c.ackedVsEpollP50?.toFixed(2) ?? 'n/a').padEnd(11)} ${c.rssBytesPerWatcher} B / ${c.heapBytesPerWatcher} B`);
  }
  const s = report.startup as { daemon: number; bare: number };
  console.log(`  start-up to accepting: daemon ${s.daemon.toFixed(1)} ms, bare Node listener ${s.bare.toFixed(1)} ms, ratio ${(s.daemon / s.bare).toFixed(2)}`);
  console.log('  * as reported by the last client process over its stdout pipe: includes that hop and its scheduling');
  console.log('  (kernel netlink reference: not implemented yet; see issue 4)');
}
