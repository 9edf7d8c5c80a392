// Socket activation and the notify protocol, without systemd as PID 1: systemd-socket-activate (systemd's
// own launcher) and a launcher that hands the same listening sockets to one daemon after another, as
// systemd does across a restart; a stand-in NOTIFY_SOCKET that records what the daemon tells systemd and
// from which pid. The real thing is test/e2e/systemd.e2e.ts.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { activatedSockets } from '../src/daemon/socket-activation.js';
import { runtimePaths } from '../src/protocol/runtime-dir.js';
import { ROOT, RawClient, bump, daemonArgv, eventually, launch, sleep, startDaemon, tmpDir } from './helpers.js';

const haveActivate = spawnSync('systemd-socket-activate', ['--version'], { stdio: 'ignore' }).status === 0;
const havePython = spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;
const noAddon = process.env.SYSGENID_NO_ADDON === '1';

/** Lines a child prints on stdout, as they come. */
function lineReader(child: ChildProcess): { lines: string[]; next(re: RegExp, timeoutMs?: number): Promise<string> } {
  const lines: string[] = [];
  let buf = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  let from = 0;
  return {
    lines,
    next: async (re, timeoutMs = 10_000) =>
      (await eventually(
        () => {
          for (; from < lines.length; from++) {
            if (re.test(lines[from] as string)) return lines[from++];
          }
          return undefined;
        },
        timeoutMs,
        `a line matching ${re}`,
      )) as string,
  };
}

it('reads LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES as sd_listen_fds does, and removes them', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_FDS: '2', LISTEN_PID: '42', LISTEN_FDNAMES: 'control:watch' };
  assert.deepEqual(activatedSockets(env, 42), { watch: 4, control: 3, unknown: [] });
  assert.deepEqual(env, {}, 'no child inherits them');
  assert.equal(activatedSockets({ LISTEN_FDS: '2', LISTEN_PID: '41' }, 42), undefined, 'meant for another process');
  assert.equal(activatedSockets({}, 42), undefined);
  assert.equal(activatedSockets({ LISTEN_FDS: '0', LISTEN_PID: '42' }, 42), undefined);
  assert.deepEqual(
    activatedSockets({ LISTEN_FDS: '2', LISTEN_PID: '42' }, 42),
    { watch: 3, control: 4, unknown: [] },
    'without names, in the order of the ListenStream= lines',
  );
  assert.deepEqual(
    activatedSockets({ LISTEN_FDS: '3', LISTEN_PID: '42', LISTEN_FDNAMES: 'watch:metrics:control' }, 42),
    { watch: 3, control: 5, unknown: [{ fd: 4, name: 'metrics' }] },
  );
});

it(
  'systemd-socket-activate: a first connection starts the daemon, which serves the sockets handed over and leaves them',
  { skip: !haveActivate && 'no systemd-socket-activate (apt-get install systemd)' },
  async (t) => {
    const base = tmpDir(t);
    const dir = path.join(base, 'run');
    fs.mkdirSync(dir, { mode: 0o755 });
    const paths = runtimePaths(dir);
    // A hook that records which descriptors it inherited: the listening sockets must not be among them.
    const hooks = path.join(base, 'hooks');
    fs.mkdirSync(hooks, { mode: 0o755 });
    const fdsFile = path.join(base, 'hook-fds');
    fs.writeFileSync(
      path.join(hooks, '10-fds'),
      `#!/bin/sh\nfor f in /proc/$$/fd/*; do echo "$\{f##*/} $(readlink $f)"; done > ${fdsFile}\n`,
      { mode: 0o755 },
    );
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    if (noAddon) env.SYSGENID_NO_ADDON = '1';
    const activate = launch(
      [
        'systemd-socket-activate',
        '-l',
        paths.watch,
        '-l',
        paths.control,
        '--fdname=watch:control',
        ...Object.entries(env).map(([k, v]) => `-E${k}=${v}`),
        ...daemonArgv(dir, ['--hooks-dir', hooks]),
      ],
      { t },
    );
    await eventually(() => /as 4\./.test(activate.stderr()), 10_000, 'systemd-socket-activate listening');
    const inodes = [paths.watch, paths.control].map((f) => fs.statSync(f).ino);
    assert.equal(fs.existsSync(paths.page), false, 'nothing has started the daemon yet');

    const { c, generation } = await RawClient.open(paths.watch);
    assert.equal(generation, 0, 'the first connection waited in the backlog and was served by the daemon it started');
    c.close();
    assert.equal(await bump(dir), 1, 'the control socket is the handed-over one too');
    assert.match(activate.stderr(), /sockets from the service manager: watch\.sock \(fd 3\), control\.sock \(fd 4\)/);
    assert.deepEqual(
      [paths.watch, paths.control].map((f) => fs.statSync(f).ino),
      inodes,
      'the daemon did not bind its own',
    );
    const inherited = (await eventually(
      () => fs.existsSync(fdsFile) && fs.readFileSync(fdsFile, 'utf8'),
      5000,
      'the hook ran',
    )) as string;
    // The listening sockets' inodes, from the kernel's table of bound Unix sockets.
    const listening = fs
      .readFileSync('/proc/net/unix', 'latin1')
      .split('\n')
      .filter((l) => l.endsWith(` ${paths.watch}`) || l.endsWith(` ${paths.control}`))
      .map((l) => l.trim().split(/\s+/))
      // Accepted connections carry the path too: only the listening ones (__SO_ACCEPTCON in Flags).
      .filter((cols) => (parseInt(cols[3] ?? '0', 16) & 0x10000) !== 0)
      .map((cols) => cols[6]);
    assert.equal(listening.length, 2);
    // They arrive without FD_CLOEXEC (they had to survive exec); libuv sets it when it adopts them.
    for (const ino of listening)
      assert.ok(!inherited.includes(`socket:[${ino}]`), `a hook inherited socket ${ino}:\n${inherited}`);
    activate.child.kill('SIGTERM');
    await activate.closed;
    assert.match(activate.stderr(), /stopped at generation 1/);
    assert.ok(
      fs.statSync(paths.watch).isSocket() && fs.statSync(paths.control).isSocket(),
      'the sockets the daemon did not bind are not removed by it',
    );
  },
);

it(
  'across a restart on handed-over sockets no connection attempt fails and the page keeps its inode and generation',
  { skip: !havePython && 'no python3' },
  async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    fs.mkdirSync(dir, { mode: 0o755 });
    const paths = runtimePaths(dir);
    const launcher = spawn(
      'python3',
      [
        path.join(ROOT, 'test/fixtures/socket-launcher.py'),
        paths.watch,
        paths.control,
        ...daemonArgv(dir, ['--log-level', 'warn']),
      ],
      { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } },
    );
    const out = lineReader(launcher);
    const exited = new Promise((r) => launcher.on('exit', r));
    t.after(async () => {
      launcher.stdin?.end();
      await exited;
    });
    await out.next(/^listening$/);
    launcher.stdin?.write('start\n');
    await out.next(/^started [0-9]+$/);
    assert.equal((await RawClient.open(paths.watch)).generation, 0);
    await bump(dir);
    await bump(dir);
    const inode = fs.statSync(paths.page).ino;

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const loop = (async () => {
      while (!stop) {
        try {
          const r = await RawClient.open(paths.watch);
          r.c.close();
          if (r.generation === 2) ok++;
          else failures.push(`generation ${r.generation}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        await sleep(2);
      }
    })();
    await sleep(100);
    launcher.stdin?.write('stop\n');
    assert.equal(await out.next(/^stopped /), 'stopped 0');
    const okWhileStopped = ok;
    await sleep(200);
    assert.equal(ok, okWhileStopped, 'with no daemon, attempts wait in the listen queue (none is served, none fails)');
    launcher.stdin?.write('start\n');
    await out.next(/^started [0-9]+$/);
    await eventually(() => ok > okWhileStopped + 20, 10_000, 'clients served by the new daemon');
    stop = true;
    await loop;
    assert.deepEqual(failures, [], 'no connection attempt failed');
    t.diagnostic(`${ok} connections across the restart, none failed`);
    assert.equal(fs.statSync(paths.page).ino, inode, 'the page is the same file');
    assert.equal((await RawClient.open(paths.watch)).generation, 2);
  },
);

it(
  'tells a notify socket READY=1 and a status, pings the watchdog, updates STATUS=, says STOPPING=1, from its own pid',
  { skip: !havePython && 'no python3' },
  async (t) => {
    const sock = path.join(tmpDir(t), 'notify');
    const reader = spawn('python3', [path.join(ROOT, 'test/fixtures/notify-socket.py'), sock], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const out = lineReader(reader);
    const exited = new Promise((r) => reader.on('exit', r));
    t.after(async () => {
      reader.stdin?.end();
      await exited;
    });
    await out.next(/"bound"/);
    const d = await startDaemon(t, { env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '400000' } });
    const pid = d.child.pid as number;
    // Each message as systemd reads it, with MAINPID= apart (the addon puts it last, systemd-notify first).
    // BARRIER=1 is systemd-notify's own handshake, from its own pid, which systemd treats apart too.
    const messages = (): Array<{ pid: number; msg: string; mainPid: string | undefined }> =>
      out.lines
        .slice(1)
        .map((l) => JSON.parse(l) as { pid: number; msg: string })
        .filter((m) => m.msg !== 'BARRIER=1')
        .map((m) => {
          const lines = m.msg.split('\n');
          return {
            pid: m.pid,
            msg: lines.filter((x) => !x.startsWith('MAINPID=')).join('\n'),
            mainPid: lines.find((x) => x.startsWith('MAINPID='))?.slice(8),
          };
        });
    const ready = (await eventually(
      () => messages().find((m) => m.msg.startsWith('READY=1')),
      10_000,
      `READY=1 (daemon log:\n${d.log()})`,
    ))!;
    assert.equal(ready.pid, pid, `sent as the daemon's pid (${noAddon ? 'systemd-notify --pid' : 'the addon'})`);
    assert.equal(ready.msg, 'READY=1\nSTATUS=generation 0; 0 watcher(s), 0 outdated; lifecycle running');
    assert.equal(ready.mainPid, String(pid));
    await eventually(() => messages().filter((m) => m.msg === 'WATCHDOG=1').length >= 3, 5000, 'three watchdog pings');
    assert.ok(messages().every((m) => m.pid === pid));

    const w = await RawClient.open(d.paths.watch);
    await bump(d.dir);
    await eventually(
      () =>
        messages().some((m) =>
          /^STATUS=generation 1; 1 watcher\(s\), 1 outdated; lifecycle (running|adjusting)$/.test(m.msg),
        ),
      5000,
      'STATUS= after the bump',
    );
    assert.equal(await w.c.request('ACK 1'), 'OK 1');
    await eventually(
      () => messages().some((m) => m.msg === 'STATUS=generation 1; 1 watcher(s), 0 outdated; lifecycle running'),
      5000,
      'STATUS= after the ack',
    );
    w.c.close();
    assert.equal(await d.stop('SIGTERM'), 0);
    const stopping = (await eventually(
      () => messages().find((m) => m.msg.startsWith('STOPPING=1')),
      5000,
      'STOPPING=1',
    ))!;
    assert.equal(stopping.msg, 'STOPPING=1\nSTATUS=stopping (SIGTERM) at generation 1');
    assert.equal(stopping.pid, pid);
  },
);

it('without NOTIFY_SOCKET nothing is sent and nothing is said about it', async (t) => {
  const d = await startDaemon(t, { env: { NOTIFY_SOCKET: '', WATCHDOG_USEC: '' } });
  await d.stop();
  assert.doesNotMatch(d.log(), /notify|systemd/i);
});
