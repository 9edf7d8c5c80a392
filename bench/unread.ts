// Memory under the unread-output attack: N connections that never read, a daemon bumped B times, and
// what it holds for them (the sum of `backlog` in STATUS) and its RSS, with idle connections measured
// in the same run as the reference. Without the addon every watch connection is one bucket, so this is
// the worst case of the per-bucket output budget (docs/reliability.md); pass --addon to keep the addon.
//
//   node dist/bench/unread.js [--connections 5000] [--bumps 4000] [--addon] [--json]

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

/** The package root, from dist/bench/. */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '5000' },
    bumps: { type: 'string', default: '4000' },
    addon: { type: 'boolean' },
    json: { type: 'boolean' },
  },
});
const N = Number(values.connections);
const BUMPS = Number(values.bumps);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Watcher {
  backlog: number;
}

async function request(socket: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const c = net.createConnection({ path: socket }, () => c.write(`${line}\n`));
    c.setEncoding('utf8');
    c.on('error', reject);
    c.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      if (lines.length > 2) {
        c.destroy();
        resolve(lines[1] as string);
      }
    });
  });
}

interface Figures {
  connectionsLeft: number;
  heldMiB: number;
  rssGrowthMiB: number;
}

async function run(bumps: number): Promise<Figures> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sysgenid-bench-unread-'));
  const dir = path.join(tmp, 'run');
  const args = ['--dir', dir, '--backends', 'none', '--hooks-dir', path.join(tmp, 'hooks')];
  const env = { ...process.env, ...(values.addon ? {} : { SYSGENID_NO_ADDON: '1' }) };
  const child = spawn(
    process.execPath,
    [path.join(ROOT, 'dist/sysgenidd.cjs'), ...args, '--state-dir', path.join(tmp, 'state'), '--log-level', 'error'],
    { env, stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const rssKiB = (): number =>
    Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
  const control = path.join(dir, 'control.sock');
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < 200 && !fs.existsSync(control); i++) await sleep(25);
    const before = rssKiB();
    for (let i = 0; i < N; i++) {
      const s = net.createConnection({ path: path.join(dir, 'watch.sock') });
      s.on('error', () => {});
      s.pause();
      sockets.push(s);
      if (i % 500 === 499) await sleep(20);
    }
    const ctl = net.createConnection({ path: control });
    let answered = 0;
    let buf = '';
    ctl.setEncoding('utf8');
    ctl.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop() as string;
      answered += lines.filter((l) => l.startsWith('OK ')).length;
    });
    for (let done = 0; done < bumps; done += 100) {
      ctl.write('BUMP\n'.repeat(100));
      while (answered < done + 100) await sleep(5);
    }
    await sleep(1000);
    const doc = JSON.parse((await request(control, 'STATUS')).slice(3)) as { watchers: number; list?: Watcher[] };
    ctl.destroy();
    return {
      connectionsLeft: doc.watchers,
      heldMiB: (doc.list ?? []).reduce((sum, w) => sum + w.backlog, 0) / 1048576,
      rssGrowthMiB: (rssKiB() - before) / 1024,
    };
  } finally {
    sockets.forEach((s) => s.destroy());
    child.kill();
    await new Promise((r) => child.once('exit', r));
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const idle = await run(0);
const attacked = await run(BUMPS);
const report = { connections: N, bumps: BUMPS, addon: Boolean(values.addon), idle, attacked };
if (values.json) console.log(JSON.stringify(report));
else {
  const f = (x: number): string => x.toFixed(1);
  console.log(`${N} connections that never read, ${values.addon ? 'with' : 'without'} the addon`);
  console.log(`  idle:              RSS +${f(idle.rssGrowthMiB)} MiB`);
  console.log(
    `  after ${BUMPS} bumps: ${f(attacked.heldMiB)} MiB held unread, ${attacked.connectionsLeft} connections left, ` +
      `RSS +${f(attacked.rssGrowthMiB)} MiB (${f(attacked.rssGrowthMiB - idle.rssGrowthMiB)} MiB over idle)`,
  );
}
