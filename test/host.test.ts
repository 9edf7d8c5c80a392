// The host channel (issue 16): its wire format, one channel's framing and order, the daemon's host
// backend over a stand-in virtio-serial port, fuzzing it, the host command through a stand-in of
// Firecracker's vsock Unix socket and of a QEMU chardev socket, and the vsock listener as far as this
// machine allows (it has AF_VSOCK but no loopback transport and no /dev/vhost-vsock: nothing can
// connect to the listener here, so the accept path of a real host connection is not run).
//
// The stand-in port is a pseudo-terminal in raw mode made by python3 (a character device like a
// virtio-serial port, polled and read the same way); python3 relays its other end to a Unix socket.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { connect } from '../src/client/index.js';
import { HostLink, firecrackerHandshake } from '../src/client/host-link.js';
import {
  HostSession,
  type HostService,
  MAX_PENDING,
  findSerialPort,
  reseedProblem,
} from '../src/daemon/backends/host.js';
import { addon } from '../src/native/addon.js';
import { MAX_HOST_LINE, VSOCK_CID_HOST, encodeRestored, parseHostRequest } from '../src/protocol/host.js';
import {
  CLI,
  DIST,
  type DaemonHandle,
  ROOT,
  errorCode,
  eventually,
  runNode,
  runProgram,
  startDaemon,
  statusOf,
  tmpDir,
} from './helpers.js';
import { onFirstLine } from './fixtures/first-line.js';

const native = addon();
const root = process.geteuid?.() === 0;
const python = spawnSync('python3', ['-c', 'import pty, tty'], { stdio: 'ignore' }).status === 0;
const entropy = (n = 32): string => crypto.randomBytes(n).toString('hex');

test('host requests: RESTORED with a u32 minimum and 32 to 512 bytes of hex; only the lifecycle verbs pass', () => {
  const r = parseHostRequest(`RESTORED 7 ${'ab'.repeat(32)}`);
  assert.equal(r.verb, 'RESTORED');
  if (r.verb === 'RESTORED') {
    assert.equal(r.min, 7);
    assert.equal(r.entropy.length, 32);
  }
  assert.equal(parseHostRequest('quiesce 500').verb, 'QUIESCE');
  assert.equal(parseHostRequest('WAIT 10').verb, 'WAIT');
  for (const bad of [
    'RESTORED',
    'RESTORED 1',
    `RESTORED x ${entropy()}`,
    `RESTORED 1 ${'ab'.repeat(31)}`,
    `RESTORED 1 ${'ab'.repeat(513)}`,
    `RESTORED 1 ${'a'.repeat(65)}`,
    `RESTORED 1 ${'zz'.repeat(32)}`,
    `RESTORED 4294967296 ${entropy()}`,
    `RESTORED 1 ${entropy()} extra`,
  ]) {
    assert.equal(
      errorCode(() => parseHostRequest(bad)),
      'EINVAL',
      bad.slice(0, 40),
    );
  }
  for (const verb of ['BUMP', 'NAME x', 'SUBSCRIBE', 'ACK 1', 'READ', 'QUIT']) {
    assert.equal(
      errorCode(() => parseHostRequest(verb)),
      'ENOSYS',
      verb,
    );
  }
  assert.equal(
    errorCode(() => parseHostRequest('FOO')),
    'ENOSYS',
  );
  assert.equal(
    errorCode(() => parseHostRequest('PING \u0001')),
    'EPROTO',
  );
});

function fakeService(log: string[]): HostService {
  return {
    restored: (_c, min, e) => {
      log.push(`restored ${min} ${e.length}`);
      return { generation: min, bumped: true, reseeded: false, entropyBytes: e.length };
    },
    forward: async (req) => {
      await new Promise((r) => setTimeout(r, 5));
      log.push(`forward ${req.verb}`);
      return `OK ${req.verb}\n`;
    },
    problem: () => undefined,
  };
}

test('one channel: replies in order, an oversized line gets E2BIG and the channel goes on, a flood gets ENOBUFS', async () => {
  const log: string[] = [];
  const out: string[] = [];
  const s = new HostSession('test', fakeService(log), (l) => out.push(l));
  s.push(Buffer.from(`PING\n\n${encodeRestored(3, crypto.randomBytes(32))}STA`));
  s.push(Buffer.from('TUS\n'));
  s.push(Buffer.alloc(MAX_HOST_LINE + 10, 0x41));
  s.push(Buffer.from('more of the long line\nPING\n'));
  await eventually(() => out.length === 5 || undefined, 2000, 'five replies');
  assert.equal(out[0], 'OK PING\n');
  assert.match(out[1] as string, /^OK \{"generation":3,"bumped":true/);
  assert.equal(out[2], 'OK STATUS\n');
  assert.match(out[3] as string, /^ERR E2BIG /, 'the overflow is answered in its place');
  assert.equal(out[4], 'OK PING\n');
  // A flood while one request is served: MAX_PENDING wait, the rest are refused at once.
  out.length = 0;
  s.push(Buffer.from('PING\n'.repeat(MAX_PENDING + 5)));
  await eventually(() => out.length === MAX_PENDING + 5 || undefined, 5000, 'every line answered');
  assert.deepEqual(
    out.map((l) => l.split(' ').slice(0, 2).join(' ').trim()),
    [...Array(MAX_PENDING + 1).fill('OK PING'), ...Array(4).fill('ERR ENOBUFS')],
  );
  s.close();
});

test("the virtio-serial port is found by name through udev's link or, without udev, through sysfs", (t) => {
  const dir = tmpDir(t);
  const sysfs = path.join(dir, 'sys');
  const dev = path.join(dir, 'dev');
  fs.mkdirSync(path.join(sysfs, 'vport1p1'), { recursive: true });
  fs.mkdirSync(path.join(sysfs, 'vport1p2'), { recursive: true });
  fs.writeFileSync(path.join(sysfs, 'vport1p1', 'name'), 'org.qemu.guest_agent.0\n');
  fs.writeFileSync(path.join(sysfs, 'vport1p2', 'name'), 'org.sysgenid.host.0\n');
  fs.mkdirSync(dev);
  assert.equal(findSerialPort('org.sysgenid.host.0', sysfs, dev), undefined, 'no device node yet');
  fs.writeFileSync(path.join(dev, 'vport1p2'), '');
  assert.equal(findSerialPort('org.sysgenid.host.0', sysfs, dev), path.join(dev, 'vport1p2'));
  fs.mkdirSync(path.join(dev, 'virtio-ports'));
  fs.writeFileSync(path.join(dev, 'virtio-ports', 'org.sysgenid.host.0'), '');
  assert.equal(
    findSerialPort('org.sysgenid.host.0', sysfs, dev),
    path.join(dev, 'virtio-ports', 'org.sysgenid.host.0'),
  );
  assert.equal(findSerialPort('other', sysfs, dev), undefined);
});

test('reseed results in words', () => {
  assert.equal(reseedProblem(0), undefined);
  assert.match(reseedProblem(-1) as string, /^RNDADDENTROPY failed: EPERM \(needs CAP_SYS_ADMIN\)/);
  assert.match(reseedProblem(-1000 - 61) as string, /^RNDRESEEDCRNG failed: ENODATA/);
});

/** A raw pseudo-terminal (the port the daemon opens) whose other end python3 relays to a Unix socket. */
interface StandIn {
  readonly device: string;
  /** A QEMU-style chardev socket: one host connection at a time, bytes straight to the port. */
  readonly chardev: string;
  /** A stand-in of Firecracker's vsock Unix socket: CONNECT <port> to the guest's port `port`. */
  readonly firecracker: string;
  readonly port: number;
  /** Every CONNECT line the Firecracker stand-in got. */
  readonly connects: string[];
  close(): Promise<void>;
}

const RELAY = `
import os, pty, tty, sys, select, socket
m, s = pty.openpty()
tty.setraw(s)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1]); srv.listen(4)
print(os.ttyname(s), flush=True)
client = None
while True:
    fds = [m, srv, 0] + ([client] if client else [])
    r, _, _ = select.select(fds, [], [])
    if 0 in r and not os.read(0, 1): break
    if srv in r:
        c, _ = srv.accept()
        if client: c.close()
        else: client = c
    if client in r:
        d = client.recv(65536)
        if not d: client.close(); client = None
        else: os.write(m, d)
    if m in r:
        d = os.read(m, 65536)
        if client:
            try: client.sendall(d)
            except OSError: client.close(); client = None
`;

async function standIn(dir: string, port = 7744): Promise<StandIn> {
  const chardev = path.join(dir, 'chardev.sock');
  const child: ChildProcess = spawn('python3', ['-c', RELAY, chardev], { stdio: ['pipe', 'pipe', 'inherit'] });
  const device = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    child.on('exit', (code) => reject(new Error(`python3 relay exited with ${code}`)));
  });
  // Firecracker: the host connects to uds_path, says CONNECT <port>; OK <host port> if the guest listens
  // on that port, else the connection is closed. Then the stream is the guest's.
  const firecracker = path.join(dir, 'v.sock');
  const connects: string[] = [];
  const server = net.createServer((c) => {
    onFirstLine(c, (line, rest) => {
      connects.push(line);
      if (line !== `CONNECT ${port}`) {
        c.destroy();
        return;
      }
      c.write('OK 1073741824\n');
      const up = net.createConnection(chardev);
      if (rest) up.write(rest, 'latin1');
      c.pipe(up).pipe(c);
      up.on('error', () => c.destroy());
      c.on('error', () => up.destroy());
    });
  });
  await new Promise<void>((r) => server.listen(firecracker, r));
  return {
    device,
    chardev,
    firecracker,
    port,
    connects,
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      child.stdin?.end();
      child.kill();
    },
  };
}

/** A line client of the chardev socket. */
interface HostClient {
  send(s: string | Buffer): void;
  next(timeoutMs?: number): Promise<string>;
  close(): void;
}

async function hostClient(file: string): Promise<HostClient> {
  const s = net.createConnection(file);
  await new Promise<void>((r, j) => s.once('connect', r).once('error', j));
  const lines: string[] = [];
  let buf = '';
  const waiters: Array<() => void> = [];
  s.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  return {
    send: (x) => s.write(x),
    async next(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (lines.length === 0) {
        if (Date.now() > deadline) throw new Error('no reply');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 50);
        });
      }
      return lines.shift() as string;
    },
    close: () => s.destroy(),
  };
}

const noPython = !python && 'no python3 for the stand-in port';
/** The daemon with only the host backend, on the stand-in port. */
const hostArgs = (device: string, ...more: string[]): string[] => [
  '--backends',
  'host',
  '--host-vsock-port',
  '0',
  '--host-serial',
  device,
  ...more,
];

/**
 * A daemon with the host backend on a stand-in virtio-serial port, and one watcher named w that re-adjusts
 * with `handler` (at once by default).
 */
async function guestOverStandIn(
  t: TestContext,
  handler: () => Promise<void> = async () => undefined,
): Promise<{ dir: string; port: StandIn; d: DaemonHandle }> {
  const dir = tmpDir(t);
  const port = await standIn(dir);
  t.after(() => port.close());
  const d = await startDaemon(t, { args: hostArgs(port.device) });
  await d.waitForLog(/host: listening on virtio-serial/);
  const watcher = await connect({ dir: d.dir, name: 'w' });
  t.after(() => watcher.close());
  watcher.handle(handler);
  return { dir, port, d };
}
type BackendList = { backends: Array<{ name: string; live: boolean; detail: string }> };

test(
  'the daemon over a virtio-serial stand-in: notice, lifecycle, status; reseeded only with the addon, as root',
  { skip: noPython },
  async (t) => {
    let handled = 0;
    const { port, d } = await guestOverStandIn(t, async () => {
      await new Promise((r) => setTimeout(r, 100));
      handled++;
    });
    const host = await hostClient(port.chardev);
    t.after(() => host.close());
    host.send('\nPING\n');
    assert.equal(await host.next(), 'OK');
    host.send(encodeRestored(0, crypto.randomBytes(48)));
    const reply = JSON.parse((await host.next()).replace(/^OK /, '')) as Record<string, unknown>;
    const canReseed = native !== undefined && root;
    assert.equal(reply.generation, 1);
    assert.equal(reply.bumped, true);
    assert.equal(reply.reseeded, canReseed, JSON.stringify(reply));
    assert.equal(reply.entropyBytes, 48);
    if (!canReseed) assert.match(String(reply.reseedError), native ? /EPERM/ : /native addon is not loaded/);
    host.send('WAIT 5000\n');
    assert.equal(await host.next(), 'OK');
    assert.equal(handled, 1, 'WAIT returned only after the watcher re-adjusted');
    // The minimum: already reached, no second bump (one bump per restore with a VM Generation ID).
    host.send(encodeRestored(1, crypto.randomBytes(32)));
    assert.match(await host.next(), /"generation":1,"bumped":false/);
    host.send(encodeRestored(5, crypto.randomBytes(32)));
    assert.match(await host.next(), /"generation":5,"bumped":true/);
    const st = await statusOf(d.dir);
    assert.equal(st.generation, 5);
    assert.match(String((st.lastBump as { source: string }).source), /^host: restore notice over virtio-serial/);
    host.send('QUIESCE 2000\nSTATUS BRIEF\nUNQUIESCE 2000\nBUMP\nNAME x\n');
    assert.match(await host.next(), /^OK \{"cycle":1,"kind":"quiesce","ok":true/);
    assert.match(await host.next(), /^OK \{.*"lifecycle":\{"state":"quiesced"/);
    assert.match(await host.next(), /^OK \{"cycle":2,"kind":"unquiesce","ok":true/);
    assert.match(await host.next(), /^ERR ENOSYS BUMP is not a host request/);
    assert.match(await host.next(), /^ERR ENOSYS NAME/);
    const { backends } = (await statusOf(d.dir)) as unknown as BackendList;
    const hb = backends.find((b) => b.name === 'host');
    assert.equal(hb?.live, true);
    assert.match(hb?.detail ?? '', /vsock: off \(--host-vsock-port 0\); virtio-serial: .* open, host connected/);
  },
);

test(
  'fuzz the host channel: random bytes, oversized lines, half lines, a flood of notices; only valid notices move ' +
    'the counter',
  { skip: noPython },
  async (t) => {
    const dir = tmpDir(t);
    const port = await standIn(dir);
    t.after(() => port.close());
    const d = await startDaemon(t, { args: hostArgs(port.device, '--log-level', 'warn') });
    await eventually(
      async () =>
        ((await statusOf(d.dir)) as unknown as BackendList).backends.some(
          (b) => b.name === 'host' && /open/.test(b.detail),
        ) || undefined,
      10_000,
      'the port open',
    );
    const host = await hostClient(port.chardev);
    t.after(() => host.close());
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 100000);
    let x = seed;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x % n;
    };
    const before = await statusOf(d.dir);
    let valid = 0;
    let requests = 0;
    const t0 = performance.now();
    for (let round = 0; round < 200; round++) {
      const kind = rand(6);
      if (kind === 0) {
        // Random bytes ending in a newline: one garbage line (an empty or blank line gets no reply, as on
        // the sockets, so it starts with a letter).
        const b = crypto.randomBytes(1 + rand(300));
        host.send(Buffer.concat([Buffer.from('X'), b.map((c) => (c === 0x0a ? 0x20 : c)), Buffer.from('\n')]));
        requests++;
      } else if (kind === 1) {
        host.send(Buffer.concat([Buffer.alloc(MAX_HOST_LINE + rand(100_000), 0x52), Buffer.from('\n')]));
        requests++;
      } else if (kind === 2) {
        // A notice with bad entropy or a bad minimum.
        host.send(`RESTORED ${rand(2) ? 'x' : '1'} ${entropy(1 + rand(20))}\n`);
        requests++;
      } else {
        host.send(encodeRestored(0, crypto.randomBytes(32 + rand(100))));
        valid++;
        requests++;
      }
      if (round % 10 === 9) {
        // A half line, then the resynchronising newline a host sends when it connects.
        host.send('RESTORED 0 abc');
        host.send('\n');
        requests++;
      }
      // Keep within the channel's queue: read as we go.
      while (requests > 8) {
        await host.next(20_000);
        requests--;
      }
    }
    while (requests > 0) {
      await host.next(20_000);
      requests--;
    }
    host.send('PING\n');
    assert.equal(await host.next(), 'OK');
    const after = await statusOf(d.dir);
    assert.equal(after.generation, before.generation + valid, `seed ${seed}: the counter moved once per valid notice`);
    assert.equal(after.watchers, before.watchers);
    assert.equal(d.child.exitCode, null, 'the daemon is up');
    process.stdout.write(
      `# fuzz seed ${seed}: 200 rounds, ${valid} valid notices, generation ${before.generation} -> ` +
        `${after.generation}, ${(performance.now() - t0).toFixed(0)} ms\n`,
    );
  },
);

test(
  "sysgenid host through a stand-in of Firecracker's vsock socket and of a QEMU chardev socket",
  { skip: noPython },
  async (t) => {
    const { dir, port } = await guestOverStandIn(t);
    const r = await runNode(CLI, [
      'host',
      '--firecracker',
      port.firecracker,
      'restored',
      '--allow-no-reseed',
      '--timeout',
      '5000',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1\n');
    assert.match(r.stderr, /generation 1; kernel CRNG (reseeded with 64 bytes|NOT reseeded)/);
    assert.match(r.stderr, /every watcher re-adjusted/);
    assert.deepEqual(port.connects, ['CONNECT 7744']);
    // Without --allow-no-reseed a guest that could not reseed is a failure of its own.
    const strict = await runNode(CLI, ['host', '--serial', port.chardev, 'restored', '--timeout', '5000']);
    assert.equal(strict.code, native && root ? 0 : 9, strict.stderr);
    // Nothing listens on that port: Firecracker closes the connection; exit 7, unreachable.
    const wrong = await runNode(CLI, ['host', '--firecracker', port.firecracker, '--port', '9', 'ping']);
    assert.equal(wrong.code, 7, wrong.stderr);
    assert.match(wrong.stderr, /Firecracker closed the connection after CONNECT 9/);
    // The lifecycle from the host: quiesce, a command, resume.
    const marker = path.join(dir, 'ran');
    const snap = await runNode(CLI, [
      'host',
      '--serial',
      port.chardev,
      'snapshot',
      '--',
      'sh',
      '-c',
      `echo $SYSGENID > ${marker}`,
    ]);
    assert.equal(snap.code, 0, snap.stderr);
    assert.equal(fs.readFileSync(marker, 'utf8').trim(), '2');
    assert.match(snap.stderr, /running sh -c/);
    const ping = await runNode(CLI, ['host', '--serial', port.chardev, 'ping']);
    assert.equal(ping.code, 0, ping.stderr);
    const usage = await runNode(CLI, ['host', 'restored']);
    assert.equal(usage.code, 2);
  },
);

test('the handshake client against a stand-in that answers garbage, and one that never answers', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'fc.sock');
  const server = net.createServer((c) => c.once('data', () => c.write('NOPE\n')));
  await new Promise<void>((r) => server.listen(file, r));
  t.after(() => server.close());
  const s = net.createConnection(file);
  await new Promise<void>((r) => s.once('connect', r));
  await assert.rejects(firecrackerHandshake(s, 7744, 2000), /unexpected answer "NOPE"/);
  s.destroy();
  const mute = path.join(dir, 'mute.sock');
  const server2 = net.createServer(() => undefined);
  await new Promise<void>((r) => server2.listen(mute, r));
  t.after(() => server2.close());
  await assert.rejects(
    HostLink.open({ kind: 'firecracker', path: mute }, { connectTimeoutMs: 300 }),
    /did not answer CONNECT 7744/,
  );
});

test(
  'vsock as far as this machine goes: the listener binds, accepts nothing, a connect fails cleanly',
  { skip: !native?.vsockListen && 'needs the native addon' },
  async (t) => {
    let fd: number;
    try {
      fd = (native?.vsockListen as (p: number) => number)(40000 + (process.pid % 20000));
    } catch (err) {
      t.skip(`no AF_VSOCK here: ${(err as Error).message}`);
      return;
    }
    assert.equal(native?.vsockAccept?.(fd), null, 'nothing pending');
    fs.closeSync(fd);
    // The daemon's backend on a vsock port: live, and says whom it accepts.
    const port = 40000 + ((process.pid + 1) % 20000);
    const d = await startDaemon(t, {
      args: ['--backends', 'host', '--host-vsock-port', String(port), '--host-serial', ''],
    });
    const st = (await statusOf(d.dir)) as unknown as {
      backends: Array<{ name: string; live: boolean; detail: string }>;
    };
    const hb = st.backends.find((b) => b.name === 'host');
    assert.equal(hb?.live, true, hb?.detail);
    assert.match(hb?.detail ?? '', new RegExp(`listening on port ${port}, host \\(CID ${VSOCK_CID_HOST}\\) only`));
    // The host command to a CID with no vsock transport behind it: exit 7 with the kernel's reason.
    const r = await runNode(CLI, ['host', '--cid', '3', '--port', String(port), 'ping']);
    assert.equal(r.code, 7, r.stderr);
    assert.match(r.stderr, /cannot connect to vsock CID 3/);
  },
);

test(
  'without the addon the vsock channel says why it is off and the host command refuses --cid',
  { skip: native !== undefined && 'runs in the SYSGENID_NO_ADDON=1 pass' },
  async (t) => {
    const d = await startDaemon(t, { args: ['--backends', 'host', '--host-serial', ''] });
    const st = (await statusOf(d.dir)) as unknown as {
      backends: Array<{ name: string; live: boolean; detail: string }>;
    };
    const hb = st.backends.find((b) => b.name === 'host');
    assert.equal(hb?.live, false);
    assert.match(hb?.detail ?? '', /vsock: off: needs the native addon/);
    const r = await runNode(CLI, ['host', '--cid', '3', 'ping']);
    assert.equal(r.code, 7);
    assert.match(r.stderr, /vsock needs the native addon/);
  },
);

const socat = spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;

test(
  'the examples for orchestrators not written in Node: Python and shell with socat',
  { skip: noPython },
  async (t) => {
    const { port, d } = await guestOverStandIn(t);
    const reseeds = native !== undefined && root;
    const run = (cmd: string, args: string[]) => runProgram([cmd, ...args]);
    const py = await run('python3', [path.join(ROOT, 'examples/host_notice.py'), 'firecracker', port.firecracker]);
    assert.equal(py.code, reseeds ? 0 : 1, py.stderr);
    assert.equal(py.stdout, '1\n');
    assert.match(py.stderr, /watchers: OK/);
    const py2 = await run('python3', [
      path.join(ROOT, 'examples/host_notice.py'),
      'serial',
      port.chardev,
      '--min',
      '2',
    ]);
    assert.equal(py2.stdout, '2\n', py2.stderr);
    if (!socat) {
      t.diagnostic('socat not installed: the shell example was not run');
      return;
    }
    const sh = await run('sh', [path.join(ROOT, 'examples/host-notice.sh'), 'serial', port.chardev]);
    assert.equal(sh.code, reseeds ? 0 : 1, sh.stderr);
    if (reseeds) assert.equal(sh.stdout, '3\n');
    const fc = await run('sh', [path.join(ROOT, 'examples/host-notice.sh'), 'firecracker', port.firecracker, '9']);
    assert.equal(fc.code, reseeds ? 0 : 1, fc.stderr);
    assert.equal((await statusOf(d.dir)).generation, 9);
  },
);

test(
  "the vsock accept path on a stand-in listener: the host's connections are served, others closed unanswered, " +
    'at most 8 kept',
  { skip: (!python && 'no python3') || (!native && 'needs the native addon') },
  async (t) => {
    const dir = tmpDir(t);
    const sock = path.join(dir, 'standin.sock');
    const run = path.join(dir, 'run');
    // python3 makes the listening socket and execs node with it inherited: a descriptor libuv does not own.
    const py =
      'import os, socket, sys\ns = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\ns.bind(sys.argv[1])\n' +
      's.listen(16)\nos.set_inheritable(s.fileno(), True)\n' +
      'os.execv(sys.argv[2], [sys.argv[2], sys.argv[3], str(s.fileno()), sys.argv[4]])\n';
    // Accepted in this order: host, host, CID 3, then the host for the rest.
    const fixture = path.join(DIST, 'test/fixtures/vsock-standin.js');
    const child = spawn('python3', ['-c', py, sock, process.execPath, fixture, run], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, STANDIN_CIDS: '2,2,3,2,2,2,2,2,2,2,2,2,2,2,2' },
    });
    let log = '';
    child.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    t.after(() => child.kill('SIGKILL'));
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (d: Buffer) => d.toString().includes('READY') && resolve());
      child.on('exit', (code) => reject(new Error(`the stand-in daemon exited with ${code}:\n${log}`)));
    });
    const watcher = await connect({ dir: run, name: 'w' });
    t.after(() => watcher.close());
    watcher.handle(async () => undefined);
    const first = await hostClient(sock);
    first.send('PING\n');
    assert.equal(await first.next(), 'OK');
    const second = await hostClient(sock);
    second.send(encodeRestored(0, crypto.randomBytes(32)));
    assert.match(await second.next(), /^OK \{"generation":1,"bumped":true/);
    second.send('WAIT 5000\n');
    assert.equal(await second.next(), 'OK');
    // The third peer is not the host: closed without a word, and logged.
    const stranger = net.createConnection(sock);
    const strangerGot: string[] = [];
    stranger.on('data', (d: Buffer) => strangerGot.push(d.toString()));
    const strangerClosed = new Promise<void>((resolve, reject) => {
      stranger.on('close', () => resolve());
      setTimeout(() => reject(new Error('a peer that is not the host was kept')), 5000).unref();
    });
    stranger.on('error', () => undefined);
    stranger.write(encodeRestored(0, crypto.randomBytes(32)));
    await strangerClosed;
    assert.deepEqual(strangerGot, []);
    await eventually(() => /refused a connection from CID 3/.test(log) || undefined, 5000, 'the refusal logged');
    // Half-open connections from the host: the oldest go once 8 are kept; the newest is served.
    const idle: net.Socket[] = [];
    for (let i = 0; i < 9; i++) {
      const c = net.createConnection(sock);
      c.on('error', () => undefined);
      c.write('RESTORED 0 ab');
      idle.push(c);
    }
    const closed = idle.map(
      (c) =>
        new Promise<boolean>((r) => {
          c.on('close', () => r(true));
          setTimeout(() => r(false), 3000);
        }),
    );
    const last = await hostClient(sock);
    last.send('\nSTATUS BRIEF\n');
    assert.match(await last.next(), /^OK \{.*"generation":1,/);
    // first, second and the two oldest idle ones made room (8 kept: 7 idle and the last).
    const gone = await Promise.all(closed);
    assert.deepEqual(gone, [true, true, false, false, false, false, false, false, false]);
    for (const c of idle) c.destroy();
    first.close();
    second.close();
    last.close();
    assert.equal((await statusOf(run)).generation, 1, 'only the valid notice from the host moved the counter');
    child.kill('SIGTERM');
  },
);
