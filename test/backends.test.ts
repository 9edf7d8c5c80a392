// The restore-backend contract (src/daemon/backends/): the registry is the one list the options, the help
// text, STATUS and the start-up log come from; the state file keeps each backend's memo by name without
// reading it; a memo only comes back within the boot that wrote it; and a state file written before memos
// existed still hands kmsg its position.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import {
  type BackendContext,
  type BackendReport,
  type RestoreBackend,
  currentBootId,
} from '../src/daemon/backends/backend.js';
import { VM_FORK_MESSAGE } from '../src/daemon/backends/kmsg.js';
import { BACKENDS, type BackendEntry, autoBackends, backendNames } from '../src/daemon/backends/registry.js';
import { Daemon, type DaemonOptions } from '../src/daemon/daemon.js';
import { createLogger } from '../src/daemon/log.js';
import { UsageError, parseBackends, usage, usageText } from '../src/daemon/options.js';
import { RECORD_SIZE, StateStore } from '../src/daemon/state-store.js';
import { inProcessOptions, startDaemon, statusOf, tmpDir } from './helpers.js';

const bootId = currentBootId();
const noBootId = bootId === undefined ? 'no boot id here' : false;

/** What a newcomer's backend looks like: one class, here kept in the test instead of its own file. */
class ProbeBackend implements RestoreBackend {
  readonly name = 'probe';
  ctx: BackendContext | undefined;
  stopped = false;

  start(ctx: BackendContext): void {
    this.ctx = ctx;
  }

  status(): BackendReport {
    if (!this.ctx) return { live: false, detail: 'not started' };
    return { live: true, detail: `probing (setting ${String(this.ctx.config.setting)})` };
  }

  stop(): void {
    this.stopped = true;
  }
}

/** The registry plus one line, as adding a backend is meant to be. */
function withProbe(): { registry: BackendEntry[]; probes: ProbeBackend[] } {
  const probes: ProbeBackend[] = [];
  const create = (): ProbeBackend => {
    const p = new ProbeBackend();
    probes.push(p);
    return p;
  };
  const registry = [...BACKENDS, { name: 'probe', auto: false, create }];
  return { registry, probes };
}

function writeRecord(file: string, record: object): void {
  fs.writeFileSync(file, JSON.stringify(record).padEnd(RECORD_SIZE - 1) + '\n');
}

function readRecord(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}

interface InProcess {
  readonly daemon: Daemon;
  log(): string;
}

/** The daemon in this process, for what the command line cannot reach: a test registry, a fake kernel log. */
async function startInProcess(t: TestContext, dir: string, opts: Partial<DaemonOptions>): Promise<InProcess> {
  let log = '';
  const daemon = await Daemon.start(
    inProcessOptions(
      dir,
      createLogger('debug', (line) => (log += line), false),
      opts,
    ),
  );
  t.after(() => daemon.close());
  return { daemon, log: () => log };
}

describe('the state file keeps memos by backend name', () => {
  it('round-trips any JSON memo by name, and only within the boot that wrote it', (t) => {
    const file = path.join(tmpDir(t), 'state');
    const memos = { kmsg: 17, host: { epoch: 'a1b2', seen: [1, 2] }, other: 'x' };
    const first = StateStore.open(file).store;
    first.save({ generation: 3, memos: { bootId: 'boot-a', byName: { kmsg: 17, host: memos.host } } });
    first.save({ memos: { bootId: 'boot-a', byName: { other: 'x' } } });
    first.save({ generation: 4 });
    first.close();
    const { store, loaded } = StateStore.open(file);
    t.after(() => store.close());
    assert.deepEqual(loaded, { generation: 4, bootId: 'boot-a', memos });
    assert.deepEqual(store.memosOf('boot-a'), memos);
    assert.deepEqual(store.memosOf('boot-b'), {}, 'another boot wrote them');
    assert.deepEqual(store.memosOf(undefined), {}, 'this boot is unknown');
    // The first memo of a new boot drops the old boot's, so none can come back later.
    store.save({ memos: { bootId: 'boot-b', byName: { kmsg: 2 } } });
    assert.deepEqual(store.memosOf('boot-b'), { kmsg: 2 });
    assert.deepEqual(readRecord(file), { generation: 4, bootId: 'boot-b', memos: { kmsg: 2 } });
  });

  it('migrates the record of the daemons before memos (kmsgSeq, vmclockGen) to the kmsg and vmclock memos', (t) => {
    const file = path.join(tmpDir(t), 'state');
    writeRecord(file, { generation: 9, bootId: 'boot-a', kmsgSeq: 338, vmclockGen: '18446744073709551615' });
    const { store, loaded } = StateStore.open(file);
    t.after(() => store.close());
    const memos = { kmsg: 338, vmclock: '18446744073709551615' };
    assert.deepEqual(loaded, { generation: 9, bootId: 'boot-a', memos });
    store.save({ generation: 10 });
    assert.deepEqual(readRecord(file), { generation: 10, bootId: 'boot-a', memos });
  });

  it("the largest record of every memo, a host backend's included, fits the 256-byte record (217 bytes)", (t) => {
    const file = path.join(tmpDir(t), 'state');
    const { store } = StateStore.open(file);
    t.after(() => store.close());
    const uuid = 'f81d4fae-7dec-11d0-a765-00a0c91e6bf6';
    const byName = {
      kmsg: Number.MAX_SAFE_INTEGER,
      vmclock: '18446744073709551615',
      host: { vm: uuid, generation: 4294967295 },
    };
    store.save({ generation: 4294967295, memos: { bootId: uuid, byName } });
    const bytes = fs.readFileSync(file);
    assert.equal(bytes.length, RECORD_SIZE);
    assert.deepEqual(readRecord(file), { generation: 4294967295, bootId: uuid, memos: byName });
    assert.equal(Buffer.byteLength(JSON.stringify(readRecord(file))), 217, 'the figure the test name and docs give');
    // Too large is refused whole: the record on disk stays the last good one.
    const tooLarge = { bootId: uuid, byName: { host: 'x'.repeat(RECORD_SIZE) } };
    assert.throws(() => store.save({ memos: tooLarge }), /state record too large/);
    assert.deepEqual(readRecord(file).memos, byName);
  });
});

describe('the registry is the one list of backends', () => {
  it('every entry creates a backend of its own name, once', async () => {
    const names = backendNames();
    assert.deepEqual(names, ['kmsg', 'vmclock', 'uevent', 'timejump', 'host'], 'the order STATUS has always used');
    assert.equal(new Set(names).size, names.length);
    for (const entry of BACKENDS) assert.equal((await entry.create()).name, entry.name);
    assert.deepEqual(autoBackends(), ['kmsg', 'vmclock']);
  });

  it('--backends and the help text follow the registry, an added line included', () => {
    assert.deepEqual(parseBackends('auto'), ['kmsg', 'vmclock']);
    assert.deepEqual(parseBackends('none'), []);
    assert.deepEqual(parseBackends('forced,vmclock, timejump'), ['vmclock', 'timejump']);
    assert.throws(
      () => parseBackends('probe'),
      (e: Error) => e instanceof UsageError && /known: kmsg, vmclock, uevent, timejump, host, forced/.test(e.message),
    );
    assert.match(
      usageText(),
      new RegExp(
        'list of: kmsg, vmclock, uevent, timejump,\\n +host ' +
          '\\(uevent, the timejump heuristic and the host channel are opt-in;',
      ),
    );

    const { registry } = withProbe();
    assert.deepEqual(parseBackends('probe,kmsg', registry), ['probe', 'kmsg']);
    assert.deepEqual(parseBackends('auto', registry), ['kmsg', 'vmclock'], 'opt-in: not in auto');
    const help = usage(registry);
    assert.ok(
      help
        .replace(/\s+/g, ' ')
        .includes(
          'kmsg, vmclock, uevent, timejump, host, probe ' +
            '(uevent, the timejump heuristic, the host channel and probe are opt-in; ' +
            'auto = kmsg,vmclock)',
        ),
      help,
    );
    for (const line of help.split('\n')) assert.ok(line.length <= 100, line);
    assert.equal(usage(BACKENDS), usageText());
  });

  it('STATUS lists forced, the started backends, then the rest in registry order with why they are off', async (t) => {
    const absent = path.join(tmpDir(t), 'absent');
    const d = await startDaemon(t, { args: ['--backends', 'timejump,vmclock', '--vmclock-path', absent] });
    const backends = (await statusOf(d.dir)).backends as Array<{ name: string; live: boolean; detail: string }>;
    assert.deepEqual(
      backends.map((b) => b.name),
      ['forced', 'vmclock', 'timejump', 'kmsg', 'uevent', 'host'],
    );
    assert.deepEqual(
      backends.slice(3).map((b) => b.detail),
      [
        'not enabled (--backends)',
        'opt-in: not enabled (--backends ...,uevent)',
        'opt-in: not enabled (--backends ...,host)',
      ],
    );
    for (const name of ['forced', 'vmclock', 'timejump', 'kmsg', 'uevent', 'host']) {
      assert.match(d.log(), new RegExp(`backend ${name}: (live|off): `));
    }
  });

  it('a backend loaded at first use is listed from the first request; one that cannot be loaded is off', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    let loaded = 0;
    let listening: boolean | undefined;
    const registry: BackendEntry[] = [
      ...BACKENDS,
      {
        name: 'probe',
        auto: false,
        // Resolves after a trip through the event loop, as a module import does; before the daemon
        // listens, or a request in that trip would find the backend missing from STATUS.
        create: () => {
          loaded++;
          listening = fs.existsSync(path.join(dir, 'watch.sock'));
          return new Promise((resolve) => setImmediate(() => resolve(new ProbeBackend())));
        },
      },
      { name: 'broken', auto: false, create: () => Promise.reject(new Error('Cannot find module host.js')) },
    ];
    const { daemon, log } = await startInProcess(t, dir, { registry, backends: ['probe', 'broken'] });
    assert.equal(loaded, 1);
    assert.equal(listening, false, 'created before the sockets exist');
    const backends = daemon.status(false).backends;
    assert.deepEqual(
      backends.slice(0, 3).map((b) => [b.name, b.live, b.detail]),
      [
        ['forced', true, backends[0]?.detail],
        ['probe', true, 'probing (setting undefined)'],
        ['broken', false, 'cannot be loaded: Cannot find module host.js'],
      ],
    );
    assert.match(log(), /backend broken: off: cannot be loaded: Cannot find module host\.js/);
    assert.equal(daemon.generation, 0, 'the daemon runs on');
  });

  it('a backend added by one registry line gets its memo and settings, is reported, bumps, stops', async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    fs.mkdirSync(dir);
    writeRecord(path.join(dir, 'state'), { generation: 5, bootId, memos: { probe: { last: 'a' }, kmsg: 1 } });
    const { registry, probes } = withProbe();
    const backendConfig = { probe: { setting: 7 } };
    const { daemon, log } = await startInProcess(t, dir, { registry, backends: ['probe'], backendConfig });
    const probe = probes[0] as ProbeBackend;
    assert.equal(probes.length, 1);
    assert.deepEqual(probe.ctx?.memo, { last: 'a' });
    assert.deepEqual(probe.ctx?.config, { setting: 7 });
    assert.equal(probe.ctx?.addon, (await import('../src/native/addon.js')).addon());
    const names = daemon.status(false).backends.map((b) => `${b.name}:${b.live}`);
    assert.deepEqual(names, [
      'forced:true',
      'probe:true',
      'kmsg:false',
      'vmclock:false',
      'uevent:false',
      'timejump:false',
      'host:false',
    ]);
    assert.match(log(), /backend probe: live: probing \(setting 7\)/);

    probe.ctx?.remember({ last: 'b' });
    const state = path.join(dir, 'state');
    assert.deepEqual(readRecord(state), { generation: 5, bootId, memos: { probe: { last: 'b' }, kmsg: 1 } }, 'no bump');
    probe.ctx?.restored('probe: the host said so', { last: 'c' });
    assert.equal(daemon.generation, 6);
    assert.equal(daemon.status(false).lastBump?.source, 'probe: the host said so');
    const both = { generation: 6, bootId, memos: { probe: { last: 'c' }, kmsg: 1 } };
    assert.deepEqual(readRecord(state), both, 'bump and memo in one record');
    probe.ctx?.restored('probe: again, nothing to remember');
    assert.equal(daemon.generation, 7);
    assert.deepEqual(readRecord(state).memos, { probe: { last: 'c' }, kmsg: 1 });
    await daemon.close();
    assert.equal(probe.stopped, true);
  });

  it('a memo written in another boot is not handed to its backend', { skip: noBootId }, async (t) => {
    const dir = path.join(tmpDir(t), 'run');
    fs.mkdirSync(dir);
    const state = path.join(dir, 'state');
    const otherBoot = '00000000-0000-0000-0000-000000000000';
    writeRecord(state, { generation: 2, bootId: otherBoot, memos: { probe: 'old', kmsg: 99 } });
    const { registry, probes } = withProbe();
    const { daemon } = await startInProcess(t, dir, { registry, backends: ['probe'] });
    assert.equal(probes[0]?.ctx?.memo, undefined);
    assert.equal(daemon.generation, 2, 'the generation carries over across boots; only memos do not');
    probes[0]?.ctx?.remember('new');
    const record = { generation: 2, bootId, memos: { probe: 'new' } };
    assert.deepEqual(readRecord(state), record, "the old boot's kmsg memo is gone");
  });
});

describe('a daemon upgraded in place keeps its kernel log position', { skip: noBootId }, () => {
  // A stand-in for /dev/kmsg: a FIFO gives one queued record per read and EAGAIN once drained, as the
  // device does. Each start gets its own, so a read a stopped daemon left blocked cannot take a record.
  function fakeKmsg(t: TestContext, dir: string, name: string, records: string[]): string {
    const file = path.join(dir, name);
    execFileSync('mkfifo', [file]);
    const writer = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    t.after(() => fs.closeSync(writer));
    for (const r of records) fs.writeSync(writer, r);
    return file;
  }

  it('reads the old state file, counts the fork after kmsgSeq once, and keeps the position', async (t) => {
    const tmp = tmpDir(t);
    const dir = path.join(tmp, 'run');
    fs.mkdirSync(dir);
    const state = path.join(dir, 'state');
    writeRecord(state, { generation: 4, bootId, kmsgSeq: 41 });
    const fork = `6,42,5000000,-;${VM_FORK_MESSAGE}\n`;
    const kmsgAt = (file: string): Partial<DaemonOptions> => ({
      backends: ['kmsg'],
      backendConfig: { kmsg: { path: file } },
    });
    const first = await startInProcess(t, dir, kmsgAt(fakeKmsg(t, tmp, 'kmsg1', [fork])));
    assert.equal(first.daemon.generation, 5, first.log());
    assert.match(first.log(), /generation 4 -> 5 \(kmsg: VM fork \(seq 42\)\)/);
    assert.match(first.log(), /1 VM fork\(s\) happened while no daemon was running/);
    assert.deepEqual(readRecord(state), { generation: 5, bootId, memos: { kmsg: 42 } });
    await first.daemon.close();

    // The kernel log still holds that record; the restarted daemon knows it has handled it.
    const second = await startInProcess(t, dir, kmsgAt(fakeKmsg(t, tmp, 'kmsg2', [fork])));
    assert.equal(second.daemon.generation, 5, second.log());
    assert.match(second.log(), /resumed after seq 42/);
    await second.daemon.close();
  });
});
