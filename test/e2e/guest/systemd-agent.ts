// The agent of the systemd end-to-end test (test/e2e/systemd.e2e.ts), run inside the guest by systemd
// itself (e2e-agent.service) once the system is up. It installs the units of the package that was
// installed from the packed tarball, then checks, under systemd as PID 1: activation by a first
// connection, READY=1, a forced bump and the kmsg backend under the hardening, a restart that keeps
// the page and loses no connection, and the hardening's exposure. It reports on the serial console as
// `E2E <TAG> <json>` lines; after CLONE_READY it waits for the host to snapshot and clone the guest.
// Self-contained (no import of the project), because it is copied alone into the guest.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';

const DIR = '/run/sysgenid';
const WATCH = `${DIR}/watch.sock`;
const PAGE = `${DIR}/generation`;

function report(tag: string, value: unknown): void {
  // One write per line: systemd's own console output must not cut into it.
  fs.writeSync(1, `E2E ${tag} ${JSON.stringify(value)}\n`);
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function show(unit: string, props: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of sh('systemctl', ['show', unit, ...props.map((p) => `-p${p}`)]).split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

interface Status {
  generation: number;
  pid: number;
  native: string;
  lastBump: { generation: number; source: string } | null;
  backends: Array<{ name: string; live: boolean; detail: string }>;
}

function status(): Status {
  return JSON.parse(sh('sysgenid', ['status', '--json'])) as Status;
}

/** Connect to the watch socket and read the daemon's HELLO line: ms until it came, or the error. */
function hello(timeoutMs = 20_000): Promise<{ ok: true; ms: number } | { ok: false; error: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const s = net.createConnection(WATCH);
    let buf = '';
    const done = (r: { ok: true; ms: number } | { ok: false; error: string }): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: 'no HELLO in time' }), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) {
        done(
          buf.startsWith('HELLO')
            ? { ok: true, ms: performance.now() - t0 }
            : { ok: false, error: `got ${buf.trim()}` },
        );
      }
    });
    s.on('error', (err) => done({ ok: false, error: err.message }));
    s.on('close', () => done({ ok: false, error: `closed after ${JSON.stringify(buf)}` }));
  });
}

function journal(unit: string, lines = 30): string[] {
  const r = spawnSync('journalctl', ['-u', unit, '-n', String(lines), '--no-pager', '-o', 'cat'], { encoding: 'utf8' });
  return (r.stdout ?? '').split('\n').filter(Boolean);
}

async function main(): Promise<void> {
  // 1. Units from the installed package, sockets only: the service must start on the first connection.
  const install = sh('sysgenidd', ['install-units']);
  sh('systemctl', ['enable', 'sysgenidd.socket', 'sysgenidd-control.socket', 'sysgenidd.service']);
  sh('systemctl', ['start', 'sysgenidd.socket', 'sysgenidd-control.socket']);
  const before = show('sysgenidd.service', ['ActiveState']);
  const socketModes = ['watch.sock', 'control.sock'].map((f) => {
    const st = fs.statSync(`${DIR}/${f}`);
    return { file: f, mode: (st.mode & 0o777).toString(8), gid: st.gid, socket: st.isSocket() };
  });
  const pageBefore = fs.existsSync(PAGE);
  const first = await hello(60_000);
  const after = show('sysgenidd.service', [
    'ActiveState',
    'SubState',
    'Type',
    'NotifyAccess',
    'StatusText',
    'MainPID',
    'WatchdogUSec',
    'ExecMainStartTimestampMonotonic',
    'ActiveEnterTimestampMonotonic',
    'NRestarts',
  ]);
  const s1 = status();
  const execStart = /^ExecStart=.*$/m.exec(fs.readFileSync('/etc/systemd/system/sysgenidd.service', 'utf8'))?.[0];
  report('ACTIVATED', {
    install: install.trim().split('\n'),
    execStart,
    serviceBefore: before.ActiveState,
    pageBefore,
    socketModes,
    first,
    service: after,
    native: s1.native,
    generation: s1.generation,
    backends: s1.backends,
    journal: journal('sysgenidd.service', 12),
  });

  // 2. A forced bump through the control socket, under the hardening.
  const bumped = Number(sh('sysgenid', ['bump']).trim());
  const s2 = status();
  report('BUMPED', { bumped, generation: s2.generation, lastBump: s2.lastBump });

  // 3. A restart with clients connecting all along: the page keeps its inode and generation.
  const inodeBefore = fs.statSync(PAGE).ino;
  const pidBefore = s2.pid;
  let stop = false;
  const attempts: Array<{ ok: boolean; ms?: number; error?: string }> = [];
  const loop = (async () => {
    while (!stop) {
      attempts.push(await hello());
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const t0 = performance.now();
  sh('systemctl', ['restart', 'sysgenidd.service']);
  const restartMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  await loop;
  const s3 = status();
  const failed = attempts.filter((a) => !a.ok);
  report('RESTARTED', {
    restartMs,
    inodeBefore,
    inodeAfter: fs.statSync(PAGE).ino,
    generationBefore: s2.generation,
    generationAfter: s3.generation,
    pidBefore,
    pidAfter: s3.pid,
    attempts: attempts.length,
    failed: failed.length,
    failures: failed.slice(0, 5),
    maxHelloMs: Math.max(...attempts.filter((a) => a.ok).map((a) => a.ms ?? 0)),
    service: show('sysgenidd.service', ['ActiveState', 'StatusText', 'NRestarts']),
  });

  // 4. The hardening, as systemd itself rates it.
  const sec = spawnSync('systemd-analyze', ['security', 'sysgenidd.service'], { encoding: 'utf8' });
  const exposure = /Overall exposure level for sysgenidd\.service: ([0-9.]+)/.exec(sec.stdout ?? '')?.[1];
  const worst = (sec.stdout ?? '')
    .split('\n')
    .filter((l) => /^✗/.test(l))
    .map((l) =>
      l
        .replace(/^✗\s*/, '')
        .replace(/\s{2,}/g, ' | ')
        .trim(),
    )
    .slice(0, 40);
  report('SECURITY', { exposure: exposure === undefined ? null : Number(exposure), status: sec.status, open: worst });

  // 5. The host snapshots this guest and restores it with a new VM generation ID: the kmsg backend,
  //    inside the sandbox with only CAP_SYSLOG, must see the kernel's VM-fork notice and bump.
  const s4 = status();
  report('CLONE_READY', { generation: s4.generation, inode: fs.statSync(PAGE).ino });
  const deadline = Date.now() + 180_000;
  for (;;) {
    const s = status();
    if (s.generation > s4.generation) {
      report('CLONED', {
        generation: s.generation,
        lastBump: s.lastBump,
        pid: s.pid,
        pidBefore: s4.pid,
        inode: fs.statSync(PAGE).ino,
        service: show('sysgenidd.service', ['ActiveState', 'StatusText']),
        journal: journal('sysgenidd.service', 8),
      });
      break;
    }
    if (Date.now() > deadline) {
      report('CLONED', { timeout: true, generation: s.generation, journal: journal('sysgenidd.service', 20) });
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  // 6. The non-root variant (a drop-in: User=, AmbientCapabilities=CAP_SYSLOG), reported as found.
  const nonRoot: Record<string, unknown> = {};
  try {
    nonRoot.install = sh('sysgenidd', ['install-units', '--user', 'sysgenidd']).trim().split('\n');
    sh('systemctl', ['restart', 'sysgenidd.service']);
    const props = show('sysgenidd.service', ['ActiveState', 'SubState', 'MainPID', 'StatusText']);
    nonRoot.service = props;
    nonRoot.user = fs
      .readFileSync(`/proc/${props.MainPID}/status`, 'utf8')
      .split('\n')
      .filter((l) => /^(Uid|CapEff|CapAmb):/.test(l));
    nonRoot.page = (() => {
      const st = fs.statSync(PAGE);
      return { uid: st.uid, ino: st.ino };
    })();
    nonRoot.journal = journal('sysgenidd.service', 12).filter((l) => /backend kmsg|ready:|refus|error/i.test(l));
    const cli = spawnSync('sysgenid', ['status', '--brief'], { encoding: 'utf8' });
    nonRoot.cliAsRoot = { status: cli.status, out: (cli.stdout + cli.stderr).trim().split('\n').slice(0, 4) };
  } catch (err) {
    nonRoot.error = (err as Error).message;
  }
  report('NONROOT', nonRoot);
  spawnSync('systemctl', ['poweroff', '--no-block']);
}

main().catch((err: Error) => {
  report('ERROR', { message: err.stack ?? err.message, journal: journal('sysgenidd.service', 40) });
  spawnSync('systemctl', ['poweroff', '--no-block']);
});
