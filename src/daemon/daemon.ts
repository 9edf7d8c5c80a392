// sysgenidd: owns the counter, the page, the state file, the watchers and the hooks, and wires the
// pure state machine (src/core/generation.ts) to real sockets.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { GenerationState, type Effect } from '../core/generation.js';
import { type CycleReport, Lifecycle, LifecycleError, type LifecycleEffect } from '../core/lifecycle.js';
import { SysgenidError } from '../protocol/errors.js';
import {
  PROTOCOL_VERSION, VERBS, encodeErr, encodeGen, encodeHello, encodeOk, encodeQuiesce, encodeUnquiesce, sanitizeName, type Request,
} from '../protocol/messages.js';
import { type RuntimePaths, runtimePaths } from '../protocol/runtime-dir.js';
import type { BackendStatus, DaemonStatus, WatcherStatus } from '../protocol/status.js';
import { Connection, type ConnectionHost, type ConnectionKind, type Reply, ok } from './connection.js';
import { linkDevice } from './dev-link.js';
import { HookRunner } from './hooks.js';
import { openFileLimit, connectionLimit } from './limits.js';
import { acquirePidLock, bindName, placeSocket, removeStaleSocket, type PidLock } from './lock.js';
import type { Logger } from './log.js';
import { Page } from './page.js';
import { StartupError, ensureRuntimeDir } from './runtime-dir.js';
import { AUTO_BACKENDS, BACKEND_NAMES, type BackendName } from './backends.js';
import { KmsgBackend, currentBootId } from './kmsg.js';
import { TimeJumpBackend } from './timejump.js';
import { UeventBackend } from './uevent.js';
import { VmclockBackend } from './vmclock.js';
import { type Addon, addon, addonState } from '../native/addon.js';
import { type PersistedState, StateStore } from './state-store.js';
import { VERSION } from './version.js';

export interface DaemonOptions {
  readonly dir: string;
  readonly log: Logger;
  /** Group that may use the control socket (gid). */
  readonly controlGid: number;
  readonly hooksDir: string | undefined;
  readonly hookTimeoutMs: number;
  /** Where to link the page for AWS-LC and other readers of /dev/sysgenid; undefined: do not link. */
  readonly devLink: string | undefined;
  /** Connections accepted at once; undefined: derived from the descriptor limit. */
  readonly maxConnections: number | undefined;
  /** Unread bytes a client may leave queued before it is disconnected. */
  readonly maxBacklog: number;
  /** Restore-detection backends to run besides the forced update ('kmsg'). */
  readonly backends: readonly BackendName[];
  /** Where the kernel log is read (tests of the backend only). */
  readonly kmsgPath?: string;
  /** The vmclock device (default /dev/vmclock0). */
  readonly vmclockPath?: string;
  /** Let the uevent backend accept synthetic events written to sysfs (tests, drills). */
  readonly ueventSynthetic?: boolean;
  /** After a restore while quiesced, un-quiesce once every watcher re-adjusted (default true). */
  readonly autoResume?: boolean;
  /** How long re-adjusting after a restore while quiesced may take (default 30 s). */
  readonly adjustTimeoutMs?: number;
  /** Budget of the automatic un-quiesce (default 10 s). */
  readonly resumeTimeoutMs?: number;
}


const { EAGAIN } = os.constants.errno;

const HELP = `OK requests: ${VERBS.join(' ')}; see docs/PROTOCOL.md\n`;

export class Daemon implements ConnectionHost {
  readonly paths: RuntimePaths;
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #page: Page;
  readonly #store: StateStore;
  readonly #lock: PidLock;
  readonly #core: GenerationState;
  readonly #lifecycle: Lifecycle;
  #lifecycleTimer: NodeJS.Timeout | undefined;
  /** The QUIESCE/UNQUIESCE request being handled right now, whose report may come synchronously. */
  #syncReply: { id: number; line: string | undefined } | undefined;
  /** The outdated count the lifecycle last heard of. */
  #lifecycleOutdated = 0;
  readonly #hooks: HookRunner;
  readonly #conns = new Map<number, Connection>();
  readonly #servers: net.Server[] = [];
  readonly #startedAt = Date.now();
  readonly #maxConnections: number;
  readonly #backends: Array<() => BackendStatus> = [];
  #kmsg: KmsgBackend | undefined;
  #vmclock: VmclockBackend | undefined;
  #timejump: TimeJumpBackend | undefined;
  #uevent: UeventBackend | undefined;
  readonly #native = addon();
  #nextId = 1;
  #lastBump: DaemonStatus['lastBump'] = null;
  #refusedSince = 0;
  #refusedCount = 0;
  #closed = false;

  private constructor(opts: DaemonOptions, paths: RuntimePaths, lock: PidLock, page: Page, store: StateStore, initial: number) {
    this.#opts = opts;
    this.#log = opts.log;
    this.paths = paths;
    this.#lock = lock;
    this.#page = page;
    this.#store = store;
    this.#core = new GenerationState(initial, (e) => this.#apply(e));
    this.#lifecycle = new Lifecycle(initial, {
      autoResume: opts.autoResume ?? true,
      adjustTimeoutMs: opts.adjustTimeoutMs ?? 30_000,
      resumeTimeoutMs: opts.resumeTimeoutMs ?? 10_000,
    }, (e) => this.#applyLifecycle(e), Date.now());
    this.#hooks = new HookRunner(opts.hooksDir, opts.hookTimeoutMs, opts.log, {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      SYSGENID_DIR: paths.dir,
    });
    this.#maxConnections = opts.maxConnections ?? connectionLimit(openFileLimit());
    const forced: BackendStatus = { name: 'forced', live: true, detail: `privileged BUMP on ${paths.control}` };
    this.#backends.push(() => forced);
  }

  /** Take the directory, recover what a crashed daemon left, and start listening. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    const paths = runtimePaths(opts.dir);
    ensureRuntimeDir(paths.dir, 0o755);
    const lock = await acquirePidLock(paths.pid, paths.dir);
    let page: Page | undefined;
    let store: StateStore | undefined;
    try {
      if (lock.recoveredFrom !== undefined) {
        opts.log.warn(`recovering from a daemon (pid ${lock.recoveredFrom}) that did not shut down cleanly`);
      }
      const opened = StateStore.open(paths.state);
      store = opened.store;
      if (opened.problem) opts.log.error(`${opened.problem}; taking the generation from the page`);
      page = Page.open(paths.page, opened.loaded?.generation ?? 0);
      // The page is written before the state file on every bump, so after a crash it may be ahead.
      const fromPage = page.read();
      const fromState = opened.loaded?.generation ?? 0;
      const initial = Math.max(fromPage, fromState);
      page.write(initial);
      if (initial !== fromState || !opened.loaded) store.save({ generation: initial });
      const daemon = new Daemon(opts, paths, lock, page, store, initial);
      await daemon.#listen();
      if (opts.devLink) linkDevice(opts.devLink, paths.page, opts.log);
      daemon.#startBackends();
      opts.log.info(
        `ready: generation ${initial}, watch socket ${paths.watch}, control socket ${paths.control} ` +
          `(gid ${opts.controlGid}), page ${paths.page}, up to ${daemon.#maxConnections} connections, native addon ${addonState()}`,
      );
      return daemon;
    } catch (err) {
      page?.close();
      store?.close();
      for (const f of [paths.watch, paths.control]) fs.rmSync(f, { force: true });
      lock.release();
      throw err;
    }
  }

  get generation(): number {
    return this.#core.generation;
  }

  get hooks(): HookRunner {
    return this.#hooks;
  }

  /** The hook for backends, the kernel's sysgenid_bump_generation(): a new generation, now. */
  bump(min: number, source: string, record: Partial<PersistedState> = {}): number {
    const next = this.#core.nextGeneration(min);
    const previous = this.#core.generation;
    const problem = this.#page.repair();
    if (problem) this.#log.error(problem);
    try {
      this.#page.write(next);
    } catch (err) {
      this.#log.error(`cannot write the page: ${(err as Error).message}; generation stays ${previous}`);
      throw new SysgenidError('EIO', `cannot write the page: ${(err as Error).message}`);
    }
    const writtenAt = Number(process.hrtime.bigint()) / 1e6;
    try {
      this.#store.save({ ...record, generation: next });
    } catch (err) {
      // The page already holds the new value and a restart takes the larger of the two.
      this.#log.error(`cannot write the state file: ${(err as Error).message}`);
    }
    const at = Date.now();
    this.#core.advance(next, at);
    this.#lifecycleOutdated = this.#core.outdated;
    this.#lifecycle.generationChanged(next, this.#core.outdated, at);
    this.#lastBump = { generation: next, source, at: new Date(at).toISOString(), pageWrittenMonoMs: writtenAt };
    this.#log.info(`generation ${previous} -> ${next} (${source}); ${this.#core.outdated} of ${this.#core.watchers} watchers outdated`);
    void this.#hooks.run({ generation: next, previous, source });
    return next;
  }

  /** A backend saw a restore: bump, and keep its bookkeeping in the same state record. Never throws. */
  #backendBump(source: string, record: Partial<PersistedState> = {}): void {
    try {
      this.bump(0, source, record);
    } catch (err) {
      this.#log.error(`${source}: a restore was seen but the generation could not move: ${(err as Error).message}`);
    }
  }

  #startBackends(): void {
    const log = this.#log;
    // Kernel sequence numbers and device counters only mean something within the boot that wrote them.
    const bootId = currentBootId();
    const boot = bootId ? { bootId } : {};
    const saved = this.#store.state;
    const sameBoot = bootId !== undefined && saved.bootId === bootId;
    if (this.#opts.backends.includes('kmsg')) {
      const kmsg = new KmsgBackend({
        ...(this.#opts.kmsgPath ? { path: this.#opts.kmsgPath } : {}),
        log,
        lastSeq: sameBoot ? saved.kmsgSeq : undefined,
        onFork: (r) => this.#backendBump(`kmsg: VM fork (seq ${r.seq})`, { kmsgSeq: r.seq, ...boot }),
        saveSeq: (seq) => this.#store.save({ kmsgSeq: seq, ...boot }),
      });
      this.#kmsg = kmsg;
      this.#backends.push(() => ({ name: 'kmsg', ...kmsg.status }));
      kmsg.start();
    }
    if (this.#opts.backends.includes('vmclock')) {
      const vmclock = new VmclockBackend({
        ...(this.#opts.vmclockPath ? { path: this.#opts.vmclockPath } : {}),
        log,
        last: sameBoot && saved.vmclockGen !== undefined ? BigInt(saved.vmclockGen) : undefined,
        onChange: (from, to) => this.#backendBump(`vmclock: vm_generation_counter ${from} -> ${to}`, { vmclockGen: String(to), ...boot }),
      });
      this.#vmclock = vmclock;
      this.#backends.push(() => ({ name: 'vmclock', ...vmclock.status }));
      const counter = vmclock.start().live ? vmclock.counter : undefined;
      if (counter !== undefined && this.#store.state.vmclockGen !== String(counter)) {
        this.#store.save({ vmclockGen: String(counter), ...boot });
      }
    }
    if (this.#opts.backends.includes('uevent')) {
      const uevent = new UeventBackend({
        log,
        acceptSynthetic: this.#opts.ueventSynthetic === true,
        onChange: (e) => this.#backendBump(`uevent: ${e.header}`),
      });
      this.#uevent = uevent;
      this.#backends.push(() => ({ name: 'uevent', ...uevent.status }));
      uevent.start();
    }
    if (this.#opts.backends.includes('timejump')) {
      const timejump = new TimeJumpBackend((why) => this.#backendBump(`timejump: ${why}`));
      this.#timejump = timejump;
      const status = { name: 'timejump', ...timejump.start() };
      this.#backends.push(() => status);
    }
    for (const name of BACKEND_NAMES) {
      if (this.#opts.backends.includes(name)) continue;
      const why = AUTO_BACKENDS.includes(name) ? 'not enabled (--backends)' : `opt-in: not enabled (--backends ...,${name})`;
      const off: BackendStatus = { name, live: false, detail: why };
      this.#backends.push(() => off);
    }
    for (const b of this.#backends) {
      const s = b();
      if (s.live) log.info(`backend ${s.name}: live: ${s.detail}`);
      // Asked for and not working deserves a warning; left off on purpose is just information.
      else if ((this.#opts.backends as readonly string[]).includes(s.name)) log.warn(`backend ${s.name}: off: ${s.detail}`);
      else log.info(`backend ${s.name}: off: ${s.detail}`);
    }
  }

  status(withList: boolean): DaemonStatus {
    const now = Date.now();
    const base: DaemonStatus = {
      version: VERSION,
      protocol: PROTOCOL_VERSION,
      pid: process.pid,
      dir: this.paths.dir,
      generation: this.#core.generation,
      watchers: this.#core.watchers,
      tracked: this.#core.tracked,
      outdated: this.#core.outdated,
      connections: this.#conns.size,
      maxConnections: this.#maxConnections,
      uptimeMs: now - this.#startedAt,
      lastBump: this.#lastBump,
      backends: this.#backends.map((b) => b()),
      hooks: { dir: this.#hooks.dir ?? null, running: this.#hooks.running },
      native: addonState(),
      memory: { rss: process.memoryUsage.rss(), heapUsed: process.memoryUsage().heapUsed },
      lifecycle: this.#lifecycleStatus(now),
    };
    if (!withList) return base;
    const list: WatcherStatus[] = [];
    for (const w of this.#core.list()) {
      const c = this.#conns.get(w.id);
      list.push({
        id: w.id,
        name: c?.name ?? null,
        pid: c?.pid ?? null,
        pidVerified: c?.pidVerified ?? false,
        uid: c?.uid ?? null,
        command: c ? commandOf(c) : null,
        tracked: w.tracked,
        acked: w.acked,
        outdated: w.acked !== this.#core.generation,
        outdatedMs: w.outdatedSince === undefined ? null : now - w.outdatedSince,
        connectedMs: c ? now - c.connectedAt : 0,
        backlog: c?.backlog ?? 0,
        subscriber: this.#lifecycle.subscriber(w.id) ?? null,
        problem: c?.problem ?? null,
      });
    }
    return { ...base, list };
  }

  #lifecycleStatus(now: number): DaemonStatus['lifecycle'] {
    const lc = this.#lifecycle;
    const current = lc.current && lc.current.endedAt === null ? lc.current : null;
    let late: Array<{ id: number; name: string | null }> = [];
    if (lc.state === 'adjusting') {
      late = [...this.#core.list()].filter((w) => w.tracked && w.acked !== this.#core.generation)
        .map((w) => ({ id: w.id, name: this.#conns.get(w.id)?.name ?? null }));
    }
    return {
      state: lc.state,
      sinceMs: now - lc.since,
      ready: lc.ready,
      subscribers: lc.order().length,
      autoResume: this.#opts.autoResume ?? true,
      current,
      adjusting: lc.state === 'adjusting'
        ? { quiesced: lc.adjustingQuiesced, deadlineInMs: lc.adjustDeadline === null ? null : lc.adjustDeadline - now, outdated: late }
        : null,
      lastQuiesce: lc.last.quiesce ?? null,
      lastUnquiesce: lc.last.unquiesce ?? null,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#lifecycleTimer);
    this.#kmsg?.stop();
    this.#vmclock?.stop();
    this.#timejump?.stop();
    this.#uevent?.stop();
    const closing = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    for (const c of this.#conns.values()) c.destroy();
    await Promise.all(closing);
    this.#hooks.killAll();
    this.#lock.removeOwned();
    this.#page.close();
    this.#store.close();
    this.#lock.release();
    this.#log.info(`stopped at generation ${this.#core.generation}`);
  }

  // ConnectionHost

  handle(conn: Connection, req: Request): Reply {
    const core = this.#core;
    switch (req.verb) {
      case 'NAME':
        conn.name = sanitizeName(req.name);
        this.#lifecycle.rename(conn.id, conn.name);
        return ok();
      case 'PID':
        // A verified pid (SO_PEERCRED) is never replaced by the client's own claim.
        if (!conn.pidVerified) conn.pid = req.pid;
        return ok();
      case 'READ': {
        const gen = core.read(conn.id, req.nonblock);
        return gen === undefined ? 'deferred' : ok(gen);
      }
      case 'ACK':
        core.ack(conn.id, req.generation);
        this.#outdatedMayHaveChanged(Date.now());
        return ok(req.generation);
      case 'TRACK':
        core.setTracking(conn.id, req.on);
        this.#outdatedMayHaveChanged(Date.now());
        return ok();
      case 'WAIT': {
        const result = core.wait(conn.id);
        if (result === undefined) {
          if (req.timeoutMs > 0) {
            conn.armWaitTimer(req.timeoutMs, () => {
              if (core.expireWait(conn.id)) {
                conn.complete(encodeErr('ETIME', `${core.outdated} watcher(s) still outdated after ${req.timeoutMs} ms`));
              }
            });
          }
          return 'deferred';
        }
        return { line: waitLine(result, core.outdated) };
      }
      case 'RESUME':
        core.resume(conn.id, req.generation, Date.now());
        this.#outdatedMayHaveChanged(Date.now());
        return ok(core.generation);
      case 'OBSERVE':
        if (this.#lifecycle.isSubscribed(conn.id)) return { line: encodeErr('EINVAL', 'a lifecycle subscriber must stay a watcher; UNSUBSCRIBE first') };
        core.observe(conn.id);
        this.#outdatedMayHaveChanged(Date.now());
        return ok();
      case 'STATUS':
        return ok(JSON.stringify(this.status(!req.brief)));
      case 'BUMP':
        if (conn.kind !== 'control') {
          return { line: encodeErr('EACCES', `forcing an update needs the control socket ${this.paths.control}`) };
        }
        return ok(this.bump(req.min, `forced${conn.pid ? ` by pid ${conn.pid}` : ''}`));
      case 'SUBSCRIBE':
        if (conn.kind !== 'watch' || core.isObserver(conn.id)) {
          return { line: encodeErr('EINVAL', 'only a watcher on the watch socket can subscribe to the lifecycle') };
        }
        return this.#lifecycleCall(() => ok(this.#lifecycle.subscribe(conn.id, conn.name ?? null, req.priority)));
      case 'UNSUBSCRIBE':
        this.#lifecycle.unsubscribe(conn.id, Date.now());
        return ok();
      case 'QUIESCED':
      case 'UNQUIESCED':
      case 'FAILED':
        if (!this.#lifecycle.isSubscribed(conn.id)) return { line: encodeErr('EINVAL', `${req.verb}: this connection is not subscribed`) };
        this.#lifecycle.answer(conn.id, req.cycle, req.verb !== 'FAILED', req.verb === 'FAILED' ? req.message : null, Date.now());
        return ok();
      case 'PROBLEM': {
        const changed = (req.message || undefined) !== conn.problem;
        conn.problem = req.message || undefined;
        // Logged when it changes, and at most once a second per connection: a client repeating itself
        // must not fill the log.
        const now = Date.now();
        if (req.message && changed && now - conn.problemLoggedAt >= 1000) {
          conn.problemLoggedAt = now;
          this.#log.warn(`${describe(conn)} reports: ${req.message}`);
        }
        return ok();
      }
      case 'QUIESCE':
      case 'UNQUIESCE': {
        if (conn.kind !== 'control') {
          return { line: encodeErr('EACCES', `${req.verb} needs the control socket ${this.paths.control}`) };
        }
        const now = Date.now();
        return this.#lifecycleCall(() => {
          // The report may come at once (nothing to do); otherwise it completes the deferred request.
          this.#syncReply = { id: conn.id, line: undefined };
          try {
            if (req.verb === 'QUIESCE') this.#lifecycle.quiesce(conn.id, req.timeoutMs, now);
            else this.#lifecycle.unquiesce(conn.id, req.timeoutMs, now);
            const line = this.#syncReply.line;
            return line === undefined ? 'deferred' : { line };
          } finally {
            this.#syncReply = undefined;
          }
        });
      }
      case 'PING':
        return ok();
      case 'HELP':
        return { line: HELP };
      case 'QUIT':
        return { line: encodeOk(), close: true };
    }
  }

  closed(conn: Connection): void {
    this.#conns.delete(conn.id);
    this.#core.disconnect(conn.id);
    const now = Date.now();
    this.#lifecycle.dropRequester(conn.id);
    this.#lifecycle.unsubscribe(conn.id, now);
    this.#outdatedMayHaveChanged(now);
  }

  /** Acknowledgements, disconnects and tracking change the outdated count; the lifecycle follows it. */
  #outdatedMayHaveChanged(now: number): void {
    const outdated = this.#core.outdated;
    if (outdated === this.#lifecycleOutdated) return;
    this.#lifecycleOutdated = outdated;
    this.#lifecycle.outdatedChanged(outdated, now);
  }

  #lifecycleCall(fn: () => Reply): Reply {
    try {
      return fn();
    } catch (err) {
      if (err instanceof LifecycleError) return { line: encodeErr(err.code, err.message) };
      throw err;
    }
  }

  #applyLifecycle(e: LifecycleEffect): void {
    switch (e.kind) {
      case 'ask': {
        const line = e.step === 'quiesce' ? encodeQuiesce(e.cycle) : encodeUnquiesce(e.cycle, e.generation);
        this.#conns.get(e.id)?.write(line);
        return;
      }
      case 'reply': {
        const line = encodeOk(JSON.stringify(e.report));
        for (const id of e.requesters) {
          if (this.#syncReply?.id === id) this.#syncReply.line = line;
          else this.#conns.get(id)?.complete(line);
        }
        this.#logCycle(e.report);
        return;
      }
      case 'timer':
        clearTimeout(this.#lifecycleTimer);
        this.#lifecycleTimer = undefined;
        if (e.at !== null && !this.#closed) {
          this.#lifecycleTimer = setTimeout(() => this.#lifecycle.tick(Date.now()), Math.max(0, e.at - Date.now()));
        }
        return;
      case 'log':
        this.#log[e.level](e.message);
        return;
    }
  }

  #logCycle(report: CycleReport): void {
    const took = (report.endedAt ?? report.startedAt) - report.startedAt;
    const what = `${report.kind} (cycle ${report.cycle}, ${report.steps.length} subscriber(s), ${took} ms)`;
    if (report.ok) this.#log.info(`lifecycle: ${what} done`);
    else this.#log.warn(`lifecycle: ${what} failed: ${report.reason}`);
  }

  tooSlow(conn: Connection): void {
    this.#log.warn(
      `disconnecting ${describe(conn)}: it left ${conn.backlog} bytes unread (limit ${this.#opts.maxBacklog})`,
    );
  }

  // Effects of the state machine.

  #apply(e: Effect): void {
    switch (e.kind) {
      case 'notify': {
        if (e.ids.length === 0) return;
        const line = Buffer.from(encodeGen(e.generation));
        if (this.#native?.broadcast) this.#broadcastNative(e.ids, line, this.#native.broadcast);
        else for (const id of e.ids) this.#conns.get(id)?.write(line);
        return;
      }
      case 'read':
        this.#conns.get(e.id)?.complete(encodeOk(e.generation));
        return;
      case 'wait':
        this.#conns.get(e.id)?.complete(waitLine(e.result, this.#core.outdated));
        return;
    }
  }

  #fds = new Int32Array(0);
  #written = new Int32Array(0);

  /**
   * The notification hot loop in one native call: a send() per socket instead of a libuv stream write
   * per socket. A socket whose stream has bytes queued, or that does not take the whole line at once,
   * goes through its stream as before, so the order of bytes and the backlog bound still hold.
   */
  #broadcastNative(ids: readonly number[], line: Buffer, send: NonNullable<Addon['broadcast']>): void {
    if (this.#fds.length < ids.length) {
      this.#fds = new Int32Array(ids.length * 2);
      this.#written = new Int32Array(ids.length * 2);
    }
    const fds = this.#fds;
    const direct: Connection[] = [];
    for (const id of ids) {
      const c = this.#conns.get(id);
      if (!c) continue;
      const fd = c.directFd();
      if (fd < 0) c.write(line);
      else {
        fds[direct.length] = fd;
        direct.push(c);
      }
    }
    if (direct.length === 0) return;
    const incomplete = send(fds.subarray(0, direct.length), line, this.#written);
    if (incomplete === 0) return;
    for (let i = 0; i < direct.length; i++) {
      const n = this.#written[i] as number;
      if (n === line.length) continue;
      // EAGAIN: the socket's buffer is full; queue it in the stream, where the backlog bound applies.
      // Another error (the peer went away): the stream's own close handling takes over.
      if (n >= 0) (direct[i] as Connection).write(line.subarray(n));
      else if (n === -EAGAIN) (direct[i] as Connection).write(line);
    }
  }

  async #listen(): Promise<void> {
    const { paths } = this;
    for (const f of [paths.watch, paths.control]) {
      if (removeStaleSocket(f)) this.#log.info(`removed stale socket ${f}`);
    }
    // Bind with a restrictive umask and widen afterwards, so neither socket is ever more open than intended.
    const umask = process.umask(0o077);
    try {
      await this.#listenOn('watch', paths.watch);
      await this.#listenOn('control', paths.control);
    } finally {
      process.umask(umask);
    }
    fs.chmodSync(paths.watch, 0o666);
    try {
      fs.chownSync(paths.control, process.geteuid?.() ?? 0, this.#opts.controlGid);
    } catch (err) {
      throw new StartupError(`cannot give ${paths.control} to group ${this.#opts.controlGid}: ${(err as Error).message} (choose a group you belong to with --group)`);
    }
    fs.chmodSync(paths.control, 0o660);
    for (const f of [paths.watch, paths.control]) this.#lock.adopt(f);
  }

  #listenOn(kind: ConnectionKind, file: string): Promise<void> {
    const server = net.createServer({ pauseOnConnect: false }, (socket) => this.#accept(kind, socket));
    this.#servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: bindName(file), backlog: 4096 }, () => {
        server.off('error', reject);
        try { placeSocket(file); } catch (err) { reject(err); return; }
        server.on('error', (err) => this.#log.error(`${kind} socket: ${err.message}`));
        resolve();
      });
    });
  }

  #accept(kind: ConnectionKind, socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    if (this.#conns.size >= this.#maxConnections) {
      this.#refuse(socket);
      return;
    }
    const id = this.#nextId++;
    const conn = new Connection(id, kind, socket, this, this.#opts.maxBacklog);
    if (this.#native) identify(this.#native, conn);
    this.#conns.set(id, conn);
    this.#core.connect(id, { observer: kind === 'control' });
    conn.write(encodeHello(this.#core.generation, id));
  }

  // Past the limit a client is told why and closed; libuv would otherwise drop it silently once the
  // descriptor table is full. The log says so loudly but at most once a second.
  #refuse(socket: net.Socket): void {
    socket.on('error', () => {});
    socket.end(encodeErr('EMFILE', `the daemon is at its limit of ${this.#maxConnections} connections; try again later`));
    this.#refusedCount++;
    const now = Date.now();
    if (now - this.#refusedSince >= 1000) {
      this.#log.error(
        `connection limit reached (${this.#maxConnections}, from the descriptor limit); refused ${this.#refusedCount} ` +
          `client(s) with EMFILE. Raise LimitNOFILE / ulimit -n or --max-connections`,
      );
      this.#refusedSince = now;
      this.#refusedCount = 0;
    }
  }
}

function waitLine(result: 'OK' | 'EINTR' | 'ETIME', outdated: number): string {
  if (result === 'OK') return encodeOk();
  if (result === 'EINTR') return encodeErr('EINTR', 'a new generation arrived; acknowledge it and wait again');
  return encodeErr('ETIME', `${outdated} watcher(s) still outdated`);
}

function identify(native: Addon, conn: Connection): void {
  const fd = (conn.socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) return;
  try {
    const cred = native.peerCred(fd);
    conn.pid = cred.pid;
    conn.uid = cred.uid;
    conn.pidVerified = cred.pid > 0;
  } catch {
    // The peer may already be gone; it is then just a connection without credentials.
  }
}

// Read when a status first asks, not at accept: a connect storm should not cost a file read each.
function commandOf(conn: Connection): string | null {
  if (!conn.pidVerified) return null;
  if (conn.command === undefined) {
    try {
      conn.command = fs.readFileSync(`/proc/${conn.pid}/comm`, 'utf8').trim();
    } catch {
      conn.command = '';
    }
  }
  return conn.command || null;
}

function describe(conn: Connection): string {
  return `watcher ${conn.id}${conn.name ? ` (${conn.name})` : ''}${conn.pid ? ` pid ${conn.pid}` : ''}`;
}
