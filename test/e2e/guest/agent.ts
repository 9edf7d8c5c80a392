// The test agent inside the end-to-end guest. It sets up the scenario the kernel command line names
// (e2e=vm: sysgenidd with its default backends and four kinds of watcher; e2e=criu: a process tree
// dumped once and restored twice by CRIU), then reports over the serial console as single lines
// `E2E <TAG> <json>`, which the host test parses. Lines typed on the console are commands:
// `report` (the state now) and `logs` (the processes' logs).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type DaemonStatus,
  type Watcher,
  connect,
  forceUpdate,
  readNext,
  status,
  waitForWatchers,
} from '../../../src/client/index.js';
import { VM_FORK_MESSAGE, readKernelLog } from '../../../src/daemon/backends/kmsg.js';

const OUT = '/run/e2e';
const GUEST = '/app/dist/test/e2e/guest';
const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;
const children = new Map<string, ChildProcess>();

function emit(tag: string, value: unknown): void {
  process.stdout.write(`E2E ${tag} ${JSON.stringify(value)}\n`);
}

function start(name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const log = fs.openSync(`${OUT}/${name}.log`, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', log, log], env: { ...process.env, ...env } });
  fs.closeSync(log);
  children.set(name, child);
  child.on('exit', (code, signal) => fs.appendFileSync(`${OUT}/${name}.log`, `[agent] exited: ${code ?? signal}\n`));
  return child;
}

const CRYPTO_APP = `${GUEST}/node-crypto-app.js`;

/** Ask a node-crypto-app (by its pid as seen here) for Node's own random values now; SIGUSR2 is its trigger. */
async function cryptoValues(prefix: string, pid: number): Promise<Record<string, string>> {
  const base = prefix.slice(prefix.lastIndexOf('/') + 1);
  const before = new Set(fs.readdirSync(OUT));
  process.kill(pid, 'SIGUSR2');
  const file = await until(`${base} values from pid ${pid}`, 60_000, () =>
    fs.readdirSync(OUT).find((f) => f.startsWith(`${base}-${pid}-`) && f.endsWith('.json') && !before.has(f)),
  );
  return (readJson(`${OUT}/${file}`) as { values: Record<string, string> }).values;
}

/** The node-crypto-app processes running now, by pid, and whether they run with the flag. */
function cryptoApps(): Array<{ pid: number; flag: boolean }> {
  const found: Array<{ pid: number; flag: boolean }> = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let cmd: string;
    try {
      cmd = fs.readFileSync(`/proc/${e}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (cmd.includes('node-crypto-app.js')) found.push({ pid: Number(e), flag: cmd.includes('sysgenid/register') });
  }
  return found;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = monoMs() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (monoMs() > deadline)
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await sleep(50);
  }
}

/**
 * The kernel stamps records with its local clock; the agent reads CLOCK_MONOTONIC. Their difference is
 * measured by writing a record and reading back its stamp (error: the write's own duration).
 */
function kernelClockOffsetMs(): { offsetMs: number; errorMs: number } {
  const nonce = `sysgenid-e2e-calibrate-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fd = fs.openSync('/dev/kmsg', 'w');
  const t0 = monoMs();
  fs.writeSync(fd, `${nonce}\n`);
  const t1 = monoMs();
  fs.closeSync(fd);
  const rec = readKernelLog().find((r) => r.message.includes(nonce));
  if (!rec) throw new Error('calibration record not found in /dev/kmsg');
  return { offsetMs: rec.usec / 1000 - (t0 + t1) / 2, errorMs: (t1 - t0) / 2 };
}

function forkRecords(): Array<{ seq: number; kernelMs: number; monoMs: number; text: string; facility: number }> {
  const { offsetMs } = kernelClockOffsetMs();
  return readKernelLog()
    .filter((r) => r.message === VM_FORK_MESSAGE)
    .map((r) => ({
      seq: r.seq,
      kernelMs: r.usec / 1000,
      monoMs: r.usec / 1000 - offsetMs,
      text: r.message,
      facility: r.facility,
    }));
}

function watcherSummary(s: DaemonStatus): unknown {
  return (s.list ?? []).map((w) => ({
    id: w.id,
    name: w.name,
    tracked: w.tracked,
    acked: w.acked,
    outdated: w.outdated,
    pid: w.pid,
  }));
}

function shellSecrets(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(OUT)) {
    const m = /^shell-(\d+)$/.exec(f);
    if (m?.[1]) out[m[1]] = fs.readFileSync(`${OUT}/${f}`, 'utf8').trim();
  }
  return out;
}

function dumpLogs(): void {
  for (const f of fs.readdirSync(OUT).filter((n) => n.endsWith('.log'))) {
    for (const line of fs.readFileSync(`${OUT}/${f}`, 'utf8').split('\n').slice(-40)) {
      if (line) process.stdout.write(`E2E-LOG ${f}: ${line}\n`);
    }
  }
}

// ---------------------------------------------------------------- e2e=vm: a whole machine cloned

/** The kernel's own randomness now: 32 bytes of /dev/urandom (the CRNG getrandom() reads), in hex. */
function kernelRandom(): string {
  const buf = Buffer.alloc(32);
  const fd = fs.openSync('/dev/urandom', 'r');
  fs.readSync(fd, buf);
  fs.closeSync(fd);
  return buf.toString('hex');
}

async function vmScenario(): Promise<void> {
  // e2e=host: the same machine, with no VM Generation ID device; the host's notice arrives over the
  // virtio-serial port (test/e2e/host.e2e.ts).
  const daemonArgs = ['--log-level', 'info', ...(scenario === 'host' ? ['--backends', 'kmsg,vmclock,host'] : [])];
  start('sysgenidd', '/usr/bin/sysgenidd', daemonArgs);
  await until('the daemon', 30_000, () => status());
  start('secret-app', '/usr/bin/node', [`${GUEST}/secret-app.js`]);
  start('shell-watcher', '/usr/bin/sysgenid', [
    'watch',
    '--name',
    'shell',
    '--',
    'sh',
    '-c',
    `cat /proc/sys/kernel/random/uuid > ${OUT}/shell-$SYSGENID`,
  ]);
  start('page-probe', '/usr/bin/node', [`${GUEST}/page-probe.js`]);
  // Issue 13: one unmodified program run with the flag and once without it (the negative control).
  start('crypto-flag', '/usr/bin/node', ['--import', 'sysgenid/register', CRYPTO_APP], {
    CRYPTO_OUT: `${OUT}/crypto-flag`,
  });
  start('crypto-plain', '/usr/bin/node', [CRYPTO_APP], { CRYPTO_OUT: `${OUT}/crypto-plain` });
  // The flag without the addon: it cannot reseed OpenSSL, answers the JS calls from the kernel, and says so.
  start('crypto-noaddon', '/usr/bin/node', ['--import', 'sysgenid/register', CRYPTO_APP], {
    CRYPTO_OUT: `${OUT}/crypto-noaddon`,
    SYSGENID_NO_ADDON: '1',
  });
  // The lifecycle scenario: the HTTP example, and a client that asks it all the time.
  start('http-server', '/usr/bin/node', ['/app/examples/http-server.js'], { PORT: '8080' });
  start('http-prober', '/usr/bin/node', [`${GUEST}/http-prober.js`], { PORT: '8080' });
  const untracked: Watcher = await connect({ name: 'untracked', tracked: false });
  const ready = await until('every watcher', 60_000, async () => {
    const s = await status({ list: true });
    const names = new Set((s.list ?? []).map((w) => w.name));
    const all =
      ['secret-app', 'shell', 'untracked', 'http-server :8080'].every((n) => names.has(n)) &&
      [...names].some((n) => n?.startsWith('register node-crypto-app.js')) &&
      ['flag', 'plain', 'noaddon'].every((v) => readJson(`${OUT}/crypto-${v}-start.json`)) &&
      [...names].filter((n) => n?.startsWith('register node-crypto-app.js')).length === 2;
    const prober = readJson(`${OUT}/http-prober.json`) as { answers: number } | null;
    return all && readJson(`${OUT}/secret-app.json`) && readJson(`${OUT}/page-probe.json`) && (prober?.answers ?? 0) > 0
      ? s
      : undefined;
  });

  const report = async (): Promise<Record<string, unknown>> => {
    const s = await status({ list: true });
    return {
      generation: s.generation,
      watchers: s.watchers,
      tracked: s.tracked,
      outdated: s.outdated,
      lastBump: s.lastBump,
      backends: s.backends,
      native: s.native,
      list: watcherSummary(s),
      untrackedSees: untracked.generation,
      app: readJson(`${OUT}/secret-app.json`),
      shell: shellSecrets(),
      probe: readJson(`${OUT}/page-probe.json`),
      http: readJson(`${OUT}/http-prober.json`),
      lifecycle: s.lifecycle,
      forks: forkRecords(),
      kernelRandom: kernelRandom(),
      monoMs: monoMs(),
    };
  };
  onCommand('report', async () => emit('REPORT', await report()));
  onCommand('random', () => emit('RANDOM', { kernelRandom: kernelRandom(), monoMs: monoMs() }));
  onCommand('server-log', () => emit('SERVER-LOG', { text: fs.readFileSync(`${OUT}/http-server.log`, 'utf8') }));
  setupSnapshot(report);

  // Held across the snapshot: in a clone it returns when the daemon's backend bumps.
  const next = readNext();
  emit('READY', await report().then((r) => ({ ...r, statusAtReady: ready.generation })));
  const generation = await next;
  const seenAtMs = monoMs();
  let ackedAtMs: number | null = null;
  let waitError: string | null = null;
  try {
    await waitForWatchers({ timeoutMs: 60_000 });
    ackedAtMs = monoMs();
  } catch (err) {
    waitError = (err as Error).message;
  }
  // The same question asked the way an operator would, through the CLI.
  const cli = spawnSync('/usr/bin/sysgenid', ['wait', '--timeout', '60000'], { encoding: 'utf8' });
  // Node's own crypto in the unmodified program, asked now that every watcher (the flag's included) acknowledged.
  const nodeCrypto = {
    flag: await cryptoValues(`${OUT}/crypto-flag`, children.get('crypto-flag')?.pid as number),
    plain: await cryptoValues(`${OUT}/crypto-plain`, children.get('crypto-plain')?.pid as number),
    noAddon: await cryptoValues(`${OUT}/crypto-noaddon`, children.get('crypto-noaddon')?.pid as number),
    noAddonProblem:
      (await status({ list: true })).list?.find((w) => w.pid === children.get('crypto-noaddon')?.pid)?.problem ?? null,
    noAddonLog: fs
      .readFileSync(`${OUT}/crypto-noaddon.log`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('sysgenid/register'))
      .slice(0, 3),
    start: { flag: readJson(`${OUT}/crypto-flag-start.json`), plain: readJson(`${OUT}/crypto-plain-start.json`) },
  };
  emit('BUMPED', {
    ...(await report()),
    observed: generation,
    seenAtMs,
    ackedAtMs,
    waitError,
    cliWait: { status: cli.status, stderr: cli.stderr },
    nodeCrypto,
  });
  // The host scenario drives the lifecycle from the host and compares generations: no warm bump.
  if (scenario === 'host') return;

  // The same path once more, now that the clone's code is warm: a forced bump, timed the same way. In
  // a software-emulated guest the first run after a restore pays for translating every page of code
  // again; this separates that from the daemon's own cost.
  await snapshotReported;
  await sleep(1000);
  const requestedAtMs = monoMs();
  const warm = await forceUpdate();
  await waitForWatchers({ timeoutMs: 60_000 });
  const warmAckedAtMs = monoMs();
  const s = await status();
  const seen = (readJson(`${OUT}/page-probe.json`) as { seen: Array<{ generation: number; atMs: number }> }).seen.find(
    (x) => x.generation === warm,
  );
  emit('WARM', {
    generation: warm,
    requestedAtMs,
    pageWrittenMonoMs: s.lastBump?.pageWrittenMonoMs ?? null,
    probeSeenMs: seen?.atMs ?? null,
    ackedAtMs: warmAckedAtMs,
  });
}

/**
 * `snapshot` (typed by the host) runs `sysgenid snapshot -- snapshot-cmd`. Once the machine is quiesced
 * the command connects here, and the agent tells the host `SNAPSHOT-NOW`; the host takes the snapshot
 * and types `snapshot-done` (in the source, and in every copy restored from it); the command returns,
 * `sysgenid snapshot` resumes, and the agent reports `SNAPSHOT-RESULT`.
 */
/** Settles once the lifecycle scenario reported, so that the warm bump does not run into it. */
let snapshotReported: Promise<void> = Promise.resolve();

function setupSnapshot(report: () => Promise<Record<string, unknown>>): void {
  const sock = `${OUT}/agent.sock`;
  let waiting: net.Socket | undefined;
  let snapshotting: ChildProcess | undefined;
  net
    .createServer((c) => {
      c.setEncoding('utf8');
      c.once('data', async () => {
        waiting = c;
        let refusedNow = false;
        try {
          await new Promise<void>((resolve, reject) => {
            const probe = net.createConnection(8080, '127.0.0.1', () => {
              probe.destroy();
              reject(new Error('accepting'));
            });
            probe.on('error', () => resolve());
          });
          refusedNow = true;
        } catch {
          refusedNow = false;
        }
        emit('SNAPSHOT-NOW', { ...(await report()), httpRefused: refusedNow });
      });
    })
    .listen(sock);
  onCommand('snapshot', () => {
    let reported = (): void => undefined;
    snapshotReported = new Promise((resolve) => (reported = resolve));
    const log = fs.openSync(`${OUT}/snapshot.log`, 'w');
    snapshotting = spawn(
      '/usr/bin/sysgenid',
      ['snapshot', '--adjust-timeout', '60000', '--', '/usr/bin/node', `${GUEST}/snapshot-cmd.js`],
      {
        stdio: ['ignore', log, log],
        env: { ...process.env, AGENT_SOCKET: sock },
      },
    );
    fs.closeSync(log);
    snapshotting.on('exit', async (code) => {
      // Let the prober see the re-opened server a few times.
      await sleep(1500);
      emit('SNAPSHOT-RESULT', {
        ...(await report()),
        exitCode: code,
        snapshotLog: fs.readFileSync(`${OUT}/snapshot.log`, 'utf8'),
        serverLog: fs.readFileSync(`${OUT}/http-server.log`, 'utf8'),
      });
      reported();
    });
  });
  onCommand('snapshot-done', () => {
    waiting?.write('done\n');
  });
}

// ---------------------------------------------------------------- e2e=criu: a process tree restored twice

function run(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): { status: number | null; out: string; ms: number } {
  const t0 = monoMs();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, ms: monoMs() - t0 };
}

function must(what: string, r: { status: number | null; out: string }, log?: string): void {
  if (r.status === 0) return;
  let detail = r.out;
  if (log && fs.existsSync(log))
    detail +=
      '\n' +
      fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => /Error|error|fail/.test(l))
        .slice(-30)
        .join('\n');
  throw new Error(`${what} failed (${r.status}): ${detail}`);
}

function loadModules(): string[] {
  const order = fs.readFileSync('/lib/modules/order', 'utf8').split('\n').filter(Boolean);
  const loaded = fs.readFileSync('/proc/modules', 'utf8');
  for (const m of order) {
    if (new RegExp(`^${m} `, 'm').test(loaded)) continue;
    must(`insmod ${m}`, run('insmod', [`/lib/modules/${m}.ko`]));
  }
  return order;
}

/** The tree's init: the child that `unshare -p -f` made pid 1 of the new namespace. */
async function treeInit(unsharePid: number): Promise<number> {
  return until('the tree init', 10_000, () => {
    const kids = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim();
    const pid = Number(kids.split(' ')[0]);
    if (!pid) return undefined;
    return /node/.test(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1')) ? pid : undefined;
  });
}

async function criuScenario(): Promise<void> {
  const modules = loadModules();
  const tree = '/run/tree';
  const dump = '/run/criu/dump';
  fs.mkdirSync(tree, { recursive: true, mode: 0o755 });
  fs.mkdirSync(dump, { recursive: true });
  const env = { SYSGENID_DIR: tree, REPORT: `${OUT}/criu-app-{pid}.json` };
  const unshare = start('tree', 'unshare', ['-p', '-f', 'setsid', '/usr/bin/node', `${GUEST}/criu-tree.js`], env);
  const init = await treeInit(unshare.pid as number);
  await until('the tree watcher', 60_000, async () => {
    const s = await status({ dir: tree, list: true });
    const names = (s.list ?? []).map((w) => w.name ?? '');
    return names.includes('criu-app') &&
      fs.readdirSync(OUT).some((f) => f.startsWith('criu-app-')) &&
      names.some((n) => n.startsWith('register node-crypto-app.js')) &&
      readJson(`${OUT}/criu-crypto-flag-start.json`) &&
      readJson(`${OUT}/criu-crypto-plain-start.json`)
      ? s
      : undefined;
  });

  // The action script quiesces the tree at pre-dump, so nothing is in flight in the image.
  const dumped = run('criu', [
    'dump',
    '-t',
    String(init),
    '-D',
    dump,
    '-o',
    'dump.log',
    '-v4',
    '--file-locks',
    '--action-script',
    '/usr/sbin/sysgenid-criu-action',
  ]);
  must('criu dump', dumped, `${dump}/dump.log`);
  // What the source app published last: its state as dumped (quiesced).
  const source = fs
    .readdirSync(OUT)
    .filter((f) => /^criu-app-\d+\.json$/.test(f))
    .map((f) => readJson(`${OUT}/${f}`));
  // The tree's runtime directory as it was at the dump: every copy is restored onto such a directory.
  must('save the tree directory', run('cp', ['-a', tree, `${tree}.saved`]));

  const copies: Record<string, unknown>[] = [];
  const crypto: Array<{ copy: string; flag: Record<string, string>; plain: Record<string, string> }> = [];
  const cryptoSeen = new Set(cryptoApps().map((a) => a.pid));
  for (const name of ['A', 'B']) {
    if (name !== 'A') must('lay out the directory', run('cp', ['-a', `${tree}.saved`, tree]));
    const restored = run('criu', [
      'restore',
      '-D',
      dump,
      '-d',
      '-o',
      `restore-${name}.log`,
      '-v4',
      '--file-locks',
      '--action-script',
      '/usr/sbin/sysgenid-criu-action',
    ]);
    must(`criu restore ${name}`, restored, `${dump}/restore-${name}.log`);
    const t0 = monoMs();
    const waited = run('/usr/bin/sysgenid', ['wait', '--timeout', '60000'], { SYSGENID_DIR: tree });
    const s = await status({ dir: tree, list: true });
    const restoreActions = fs
      .readFileSync(`${dump}/restore-${name}.log`, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('sysgenid:'));
    copies.push({
      name,
      restoreActions,
      restoreMs: restored.ms,
      waitMs: monoMs() - t0,
      wait: waited,
      generation: s.generation,
      outdated: s.outdated,
      lastBump: s.lastBump,
      list: watcherSummary(s),
      lifecycle: s.lifecycle,
    });
    // The copy keeps its files through its open descriptors; the path is free for the next copy.
    // Node's own crypto in this copy's unmodified program, with and without the flag (issue 13).
    const apps = cryptoApps().filter((a) => !cryptoSeen.has(a.pid));
    for (const a of apps) cryptoSeen.add(a.pid);
    const flag = apps.find((a) => a.flag);
    const plain = apps.find((a) => !a.flag);
    if (!flag || !plain) {
      throw new Error(`copy ${name}: the two node-crypto-app processes are not both there (${JSON.stringify(apps)})`);
    }
    crypto.push({
      copy: name,
      flag: await cryptoValues(`${OUT}/criu-crypto-flag`, flag.pid),
      plain: await cryptoValues(`${OUT}/criu-crypto-plain`, plain.pid),
    });
    fs.renameSync(tree, `${tree}-${name}`);
  }
  // Give both copies' apps the moment to publish what they regenerated.
  await until('both copies acknowledged', 30_000, () => {
    const files = fs
      .readdirSync(OUT)
      .filter((f) => /^criu-app-\d+\.json$/.test(f))
      .map((f) => readJson(`${OUT}/${f}`) as { generation: number; ackedAtMs: number | null });
    return files.filter((f) => f.generation === 1 && f.ackedAtMs !== null && (f as { resumed?: unknown }).resumed)
      .length >= 2
      ? true
      : undefined;
  }).catch(() => undefined);
  const apps = fs
    .readdirSync(OUT)
    .filter((f) => /^criu-app-\d+\.json$/.test(f))
    .map((f) => readJson(`${OUT}/${f}`));
  const live = await Promise.all(
    ['A', 'B'].map(async (n) => {
      const s = await status({ dir: `${tree}-${n}`, list: true });
      return {
        name: n,
        generation: s.generation,
        outdated: s.outdated,
        watchers: s.watchers,
        lifecycle: s.lifecycle.state,
      };
    }),
  );
  // CRIU writes its action script's output into its own log, not to its stdout.
  const actionLines = (file: string): string[] =>
    fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('sysgenid:'))
      .slice(0, 20);
  const cryptoStart = {
    flag: readJson(`${OUT}/criu-crypto-flag-start.json`),
    plain: readJson(`${OUT}/criu-crypto-plain-start.json`),
  };
  emit('CRIU', {
    modules,
    dumpMs: dumped.ms,
    dumpActions: actionLines(`${dump}/dump.log`),
    source,
    copies,
    apps,
    live,
    crypto,
    cryptoStart,
  });
}

// ---------------------------------------------------------------- console commands

const commands = new Map<string, () => Promise<void> | void>([['logs', dumpLogs]]);
function onCommand(name: string, fn: () => Promise<void> | void): void {
  commands.set(name, fn);
}
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const fn = commands.get(line.trim());
  if (fn) Promise.resolve(fn()).catch((err: Error) => emit('ERROR', { command: line.trim(), message: err.message }));
});

fs.mkdirSync(OUT, { recursive: true });
const scenario = /\be2e=(\w+)/.exec(fs.readFileSync('/proc/cmdline', 'utf8'))?.[1] ?? 'vm';
emit('BOOTED', { scenario, monoMs: monoMs(), kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim() });
try {
  if (scenario === 'criu') await criuScenario();
  else await vmScenario();
} catch (err) {
  emit('ERROR', { message: (err as Error).stack ?? String(err) });
  dumpLogs();
}
