// sysgenidd: owns the counter, the page, the state file, the watchers and the hooks, and wires the
// composed state machine (src/core/machine.ts) to real sockets. The other jobs have their own files:
// the requests src/daemon/handlers.ts, the sockets listener.ts, the GEN fan-out broadcast.ts, the
// STATUS document status-view.ts, the restore backends backends/runner.ts.

import {
  DEFAULT_ADJUST_TIMEOUT_MS,
  DEFAULT_MAX_SUBSCRIBERS_PER_USER,
  DEFAULT_RESUME_TIMEOUT_MS,
  MAX_BUMP_MIN,
} from '../defaults.js';
import fs from 'node:fs';
import type net from 'node:net';
import type { CycleReport } from '../core/lifecycle.js';
import { CoreMachine, type MachineEffect } from '../core/machine.js';
import { SysgenidError } from '../core/errors.js';
import { cycleReportDocument } from '../protocol/cycle-report.js';
import {
  encodeGen,
  encodeHello,
  encodeOk,
  encodeQuiesce,
  encodeUnquiesce,
  type Request,
} from '../protocol/messages.js';
import { type RuntimePaths, runtimePaths } from '../protocol/runtime-dir.js';
import type { DaemonStatus, DevLinkStatus } from '../protocol/status.js';
import { Connection, type ConnectionHost, type ConnectionKind, type Reply, describeConnection } from './connection.js';
import { type Handlers, describeWho, dispatch, requestHandlers, waitLine } from './handlers.js';
import { devLinkStatus, linkDevice } from './dev-link.js';
import { HookRunner } from './hooks.js';
import { openFileLimit, connectionLimit } from './limits.js';
import { Admission, type Bucket, bucketName, defaultLimits } from './admission.js';
import { onSocketInternalsChanged } from '../native/socket-fd.js';
import { acquirePidLock, type PidLock } from './lock.js';
import { type Logger, fields } from './log.js';
import { Page } from './page.js';
import { ensureRuntimeDir, unlinkIfPresent } from './runtime-dir.js';
import { type BackendConfig, currentBootId } from './backends/backend.js';
import { CounterFloor, recoverGeneration } from './floor.js';
import { BACKENDS, type BackendEntry } from './backends/registry.js';
import { BackendRunner } from './backends/runner.js';
import { Broadcast } from './broadcast.js';
import { Listener } from './listener.js';
import { type DaemonObserver, Observers } from './observers.js';
import { type ActivatedSockets, activatedSockets } from './socket-activation.js';
import { statusDocument } from './status-view.js';
import { addon, addonState } from '../native/addon.js';
import { StateStore, type StateUpdate } from './state-store.js';

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
  /** Watch-socket connections one non-root user may hold; undefined: a share of the connection limit. */
  readonly maxPerUser?: number | undefined;
  /** Lifecycle subscribers one user other than root and the daemon's may have (default 8). */
  readonly maxSubscribersPerUser?: number | undefined;
  /** Restore-detection backends to run besides the forced update, by name ('kmsg'). */
  readonly backends: readonly string[];
  /** Each backend's settings by name, handed to it as ctx.config (e.g. { vmclock: { path } }). */
  readonly backendConfig?: Readonly<Record<string, BackendConfig>>;
  /** The backends this daemon knows (default: src/daemon/backends/registry.ts; tests add their own). */
  readonly registry?: readonly BackendEntry[];
  /** After a restore while quiesced, un-quiesce once every watcher re-adjusted (default true). */
  readonly autoResume?: boolean;
  /** How long re-adjusting after a restore while quiesced may take (default 30 s). */
  readonly adjustTimeoutMs?: number;
  /** Budget of the automatic un-quiesce (default 10 s). */
  readonly resumeTimeoutMs?: number;
  /** The counter floor's file (src/daemon/floor.ts); undefined: `DIR.floor` beside the runtime directory. */
  readonly floor?: { readonly file: string; readonly inStateDir: boolean } | undefined;
  /** How often to check that the runtime directory still exists (default 1000 ms). */
  readonly dirCheckMs?: number;
}

/** What start-up found and what the daemon keeps of it. */
interface Resources {
  readonly paths: RuntimePaths;
  readonly lock: PidLock;
  readonly page: Page;
  readonly store: StateStore;
  readonly floor: CounterFloor | undefined;
  readonly floorProblem: string | null;
  readonly initial: number;
}

export class Daemon implements ConnectionHost {
  readonly paths: RuntimePaths;
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #page: Page;
  readonly #store: StateStore;
  #lock: PidLock;
  readonly #floor: CounterFloor | undefined;
  #floorProblem: string | null;
  /** The pid file as locked (device and inode): a directory put back by someone else lacks it. */
  #pidId: { dev: number; ino: number } | undefined;
  #dirTimer: NodeJS.Timeout | undefined;
  #dirRecovering = false;
  #dirLost = 0;
  #dirProblem: string | null = null;
  readonly #core: CoreMachine;
  readonly #handlers: Handlers;
  #lifecycleTimer: NodeJS.Timeout | undefined;
  readonly #hooks: HookRunner;
  readonly #conns = new Map<number, Connection>();
  readonly #startedAt = Date.now();
  readonly #maxConnections: number;
  readonly #admission: Admission;
  readonly #listener: Listener;
  readonly #broadcast: Broadcast;
  readonly #backends: BackendRunner;
  /** When each bucket (user) last had a PROBLEM report logged: one line a second per user at most. */
  readonly #problemLoggedAt: LoggedAt = new Map();
  /** Likewise for clients disconnected for what they left unread. */
  readonly #cutLoggedAt: LoggedAt = new Map();
  readonly #native = addon();
  #nextId = 1;
  #lastBump: DaemonStatus['lastBump'] = null;
  #devLink: DevLinkStatus | null = null;
  #closed = false;
  readonly #observers: Observers;

  private constructor(opts: DaemonOptions, r: Resources, activated: ActivatedSockets | undefined) {
    const { paths, store, initial } = r;
    this.#opts = opts;
    this.#log = opts.log;
    this.paths = paths;
    this.#lock = r.lock;
    this.#page = r.page;
    this.#store = store;
    this.#floor = r.floor;
    this.#floorProblem = r.floorProblem;
    this.#pidId = fileIdOf(paths.pid);
    this.#observers = new Observers(opts.log);
    const lifecycle = {
      autoResume: opts.autoResume ?? true,
      adjustTimeoutMs: opts.adjustTimeoutMs ?? DEFAULT_ADJUST_TIMEOUT_MS,
      resumeTimeoutMs: opts.resumeTimeoutMs ?? DEFAULT_RESUME_TIMEOUT_MS,
    };
    this.#core = new CoreMachine(initial, lifecycle, (e) => this.#apply(e), Date.now());
    this.#handlers = requestHandlers({
      machine: this.#core,
      controlPath: paths.control,
      status: (withList) => this.status(withList),
      bump: (min, source) => this.bump(min, source),
      problemReported: (conn, message) => this.problemReported(conn, message),
      subscriberCap: (uid) =>
        uid === 0 || uid === (process.geteuid?.() ?? 0)
          ? undefined
          : (opts.maxSubscribersPerUser ?? DEFAULT_MAX_SUBSCRIBERS_PER_USER),
      connection: (id) => this.#conns.get(id),
      connections: () => this.#conns.values(),
      disconnect: (target, by) => {
        this.#log.warn(`disconnecting ${describeWho(target)}: asked by ${describeWho(by)}`);
        target.destroy();
      },
      adminAction: (message) => this.#log.warn(message),
    });
    this.#hooks = new HookRunner(opts.hooksDir, opts.hookTimeoutMs, opts.log, {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      SYSGENID_DIR: paths.dir,
    });
    this.#maxConnections = opts.maxConnections ?? connectionLimit(openFileLimit());
    const euid = process.geteuid?.() ?? 0;
    this.#admission = new Admission(defaultLimits(this.#maxConnections, opts.maxBacklog, opts.maxPerUser), [0, euid]);
    onSocketInternalsChanged((m) => opts.log.error(m));
    this.#listener = new Listener({
      paths,
      log: opts.log,
      controlGid: opts.controlGid,
      admission: this.#admission,
      maxConnections: this.#maxConnections,
      native: this.#native,
      accepted: (kind, socket, bucket, cred) => this.#accepted(kind, socket, bucket, cred),
      activated,
    });
    this.#broadcast = new Broadcast(this.#conns, this.#native);
    this.#backends = new BackendRunner({
      log: opts.log,
      addon: this.#native,
      store,
      registry: opts.registry ?? BACKENDS,
      enabled: opts.backends,
      config: opts.backendConfig,
      controlPath: paths.control,
      dir: paths.dir,
      generation: () => this.#core.generation,
      bump: (source, record, min) => this.bump(min, source, record),
    });
  }

  /** Take the directory, recover what a crashed daemon left, and start listening. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    // Read, and removed from the environment, before anything else: no child ever inherits them.
    const activated = activatedSockets();
    const r = await Daemon.#open(opts, activated !== undefined);
    const { paths } = r;
    try {
      const daemon = new Daemon(opts, r, activated);
      await daemon.#backends.load();
      await daemon.#listener.listen(r.lock);
      if (opts.devLink) {
        linkDevice(opts.devLink, paths.page, opts.log);
        daemon.#devLink = devLinkStatus();
      }
      daemon.#backends.start();
      daemon.#dirTimer = setInterval(() => daemon.#checkDir(false), opts.dirCheckMs ?? 1000).unref();
      opts.log.info(
        `ready: generation ${r.initial}, watch socket ${paths.watch}, control socket ${paths.control} ` +
          `(gid ${opts.controlGid}), page ${paths.page}, up to ${daemon.#maxConnections} connections, native ` +
          `addon ${addonState()}`,
      );
      return daemon;
    } catch (err) {
      r.page.close();
      r.store.close();
      r.floor?.close();
      // The service manager's sockets stay: they are its, and clients wait on them for the next start.
      if (!activated) for (const f of [paths.watch, paths.control]) unlinkIfPresent(f);
      r.lock.release();
      throw err;
    }
  }

  /**
   * Set the generation to `generation` in the page, the state record and the floor, with no daemon
   * running: the deliberate way out of the u32 ceiling. Every reader of the page sees a change.
   */
  static async resetGeneration(opts: DaemonOptions, generation: number): Promise<number> {
    const r = await Daemon.#open(opts);
    try {
      r.floor?.save(generation);
      r.page.write(generation);
      r.store.save({ generation });
      opts.log.warn(
        `generation reset from ${r.initial} to ${generation} by --reset-generation (page ${r.paths.page}` +
          `${r.floor ? `, floor ${r.floor.path}` : ''}); every reader of the page sees a change`,
      );
      return r.initial;
    } finally {
      r.page.close();
      r.store.close();
      r.floor?.close();
      r.lock.release();
    }
  }

  /** The directory, the lock, and the generation from the page, the state record and the floor. */
  static async #open(opts: DaemonOptions, handedOver = false): Promise<Resources> {
    const paths = runtimePaths(opts.dir);
    ensureRuntimeDir(paths.dir, 0o755);
    const lock = await acquirePidLock(paths.pid, paths.dir, handedOver);
    let page: Page | undefined;
    let store: StateStore | undefined;
    let floor: CounterFloor | undefined;
    try {
      if (lock.recoveredFrom !== undefined) {
        opts.log.warn(`recovering from a daemon (pid ${lock.recoveredFrom}) that did not shut down cleanly`);
      }
      const where = opts.floor ?? { file: `${paths.dir}.floor`, inStateDir: false };
      let fromFloor: number | undefined;
      let floorProblem: string | null = null;
      try {
        const opened = CounterFloor.open(where.file, currentBootId(), where.inStateDir);
        floor = opened.floor;
        fromFloor = opened.loaded?.generation;
        if (opened.note) opts.log.info(opened.note);
      } catch (err) {
        floorProblem = `no counter floor: ${(err as Error).message}`;
        opts.log.error(`${floorProblem}; losing the runtime directory would take the generation back (--state-dir)`);
      }
      const opened = StateStore.open(paths.state);
      store = opened.store;
      if (opened.problem) opts.log.error(`${opened.problem}; taking the generation from the page and the floor`);
      const hadPage = fs.existsSync(paths.page);
      page = Page.open(paths.page, 0);
      const fromState = opened.loaded?.generation;
      const { initial, notes } = recoverGeneration({
        page: hadPage ? page.read() : undefined,
        state: fromState,
        floor: fromFloor,
        floorPath: where.file,
      });
      for (const n of notes) opts.log[n.level](n.message);
      floor?.save(initial);
      page.write(initial);
      if (initial !== fromState) store.save({ generation: initial });
      return { paths, lock, page, store, floor, floorProblem, initial };
    } catch (err) {
      page?.close();
      store?.close();
      floor?.close();
      lock.release();
      throw err;
    }
  }

  get generation(): number {
    return this.#core.generation;
  }

  /** Follow bumps and acknowledgements from outside: metrics, systemd's STATUS= (src/daemon/main.ts). */
  observe(observer: DaemonObserver): void {
    this.#observers.add(observer);
  }

  get hooks(): HookRunner {
    return this.#hooks;
  }

  /** The hook for backends, the kernel's sysgenid_bump_generation(): a new generation, now. */
  bump(min: number, source: string, record: StateUpdate = {}): number {
    if (min > MAX_BUMP_MIN) {
      throw new SysgenidError(
        'EINVAL',
        `a minimum above ${MAX_BUMP_MIN} would leave the counter no room below its ` +
          'u32 ceiling; to move it there deliberately, stop the daemon and use sysgenidd --reset-generation',
      );
    }
    const next = this.#core.nextGeneration(min);
    const previous = this.#core.generation;
    // The floor first: it must never be below a value a reader could have seen in the page.
    try {
      this.#floor?.save(next);
    } catch (err) {
      this.#floorProblem = `cannot write the counter floor: ${(err as Error).message}`;
      this.#log.error(`${this.#floorProblem}; bumping anyway`);
    }
    // Through the open descriptor, whatever happened to the directory: that inode is what readers mapped.
    try {
      this.#page.write(next);
    } catch (err) {
      this.#log.error(`cannot write the page: ${(err as Error).message}; generation stays ${previous}`);
      throw new SysgenidError('EIO', `cannot write the page: ${(err as Error).message}`);
    }
    const writtenAt = Number(process.hrtime.bigint()) / 1e6;
    this.#checkDir(true);
    try {
      this.#store.save({ ...record, generation: next });
    } catch (err) {
      // The page already holds the new value and a restart takes the larger of the two.
      this.#log.error(`cannot write the state file: ${(err as Error).message}`);
    }
    const at = Date.now();
    this.#core.advance(next, at);
    this.#lastBump = { generation: next, source, at: new Date(at).toISOString(), pageWrittenMonoMs: writtenAt };
    this.#log.info(
      `generation ${previous} -> ${next} (${source}); ${this.#core.outdated} of ${this.#core.watchers} ` +
        `watchers outdated ${fields({ generation: next, previous, source, outdated: this.#core.outdated })}`,
    );
    this.#observers.bumped(source, next);
    void this.#hooks.run({ generation: next, previous, source });
    return next;
  }

  status(withList: boolean): DaemonStatus {
    return statusDocument(
      {
        dir: this.paths.dir,
        core: this.#core,
        conns: this.#conns,
        maxConnections: this.#maxConnections,
        startedAt: this.#startedAt,
        lastBump: this.#lastBump,
        backends: this.#backends.statuses(),
        hooks: this.#hooks,
        autoResume: this.#opts.autoResume ?? true,
        devLink: this.#devLink,
        counter: {
          floor: this.#floor?.path ?? null,
          floorProblem: this.#floorProblem,
          maxBumpMin: MAX_BUMP_MIN,
        },
        runtimeDir: { lost: this.#dirLost, problem: this.#dirProblem, orphanPages: this.#page.orphans },
      },
      withList,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#lifecycleTimer);
    clearInterval(this.#dirTimer);
    this.#backends.stop();
    const closing = this.#listener.close();
    for (const c of this.#conns.values()) c.destroy();
    await closing;
    this.#hooks.killAll();
    this.#lock.removeOwned();
    this.#page.close();
    this.#store.close();
    this.#floor?.close();
    this.#lock.release();
    this.#log.info(`stopped at generation ${this.#core.generation}`);
  }

  #accepted(
    kind: ConnectionKind,
    socket: net.Socket,
    bucket: Bucket,
    cred: { pid: number; uid: number } | undefined,
  ): void {
    const id = this.#nextId++;
    const conn = new Connection(id, kind, socket, this, this.#opts.maxBacklog, bucket);
    if (cred) {
      conn.pid = cred.pid;
      conn.uid = cred.uid;
      conn.pidVerified = cred.pid > 0;
    }
    this.#conns.set(id, conn);
    this.#core.connect(id, { observer: kind === 'control' });
    conn.write(encodeHello(this.#core.generation, id));
    this.#observers.changed();
  }

  /**
   * The runtime directory removed (or replaced) while running: the page is still written through its
   * open descriptor, and the directory, a page with the same value for new readers, the state record,
   * the lock and the sockets are put back. Otherwise the page is only repaired (truncated or replaced).
   */
  #checkDir(repairPage: boolean): void {
    if (this.#closed || this.#dirRecovering) return;
    const { paths } = this;
    // A daemon restored by CRIU finds its directory under a new inode with everything in it: not a loss.
    const lost = !isDir(paths.dir) || !exists(paths.watch) || !exists(paths.control);
    if (!lost) {
      if (!repairPage) return;
      try {
        const problem = this.#page.repair();
        if (problem) this.#log.error(problem);
      } catch (err) {
        this.#log.error(`cannot repair the page ${paths.page}: ${(err as Error).message}`);
      }
      return;
    }
    this.#dirRecovering = true;
    if (this.#dirProblem === null) {
      this.#dirLost++;
      this.#log.error(
        `the runtime directory ${paths.dir} (or its sockets) vanished while running; the page readers ` +
          `mapped is still written (generation ${this.#core.generation}); recreating the directory, the page ` +
          `and the sockets`,
      );
    }
    void this.#recoverDir().finally(() => {
      this.#dirRecovering = false;
    });
  }

  async #recoverDir(): Promise<void> {
    const { paths } = this;
    try {
      ensureRuntimeDir(paths.dir, 0o755);
      const pid = fileIdOf(paths.pid);
      if (!pid || !this.#pidId || pid.dev !== this.#pidId.dev || pid.ino !== this.#pidId.ino) {
        const lock = await acquirePidLock(paths.pid, paths.dir);
        if (this.#closed) {
          lock.release();
          return;
        }
        const old = this.#lock;
        this.#lock = lock;
        old.release();
        this.#pidId = fileIdOf(paths.pid);
      }
      const problem = this.#page.repair();
      if (problem) this.#log.error(problem);
      if (!exists(paths.state)) this.#store.reopen();
      await this.#listener.listen(this.#lock);
      this.#dirProblem = null;
      this.#log.error(
        `recreated the runtime directory ${paths.dir}: a page with generation ` +
          `${this.#core.generation} for new readers, the state record and the sockets`,
      );
    } catch (err) {
      // Tried again at the next check or bump; bumps keep reaching the mapped page meanwhile.
      const problem =
        `the runtime directory ${paths.dir} is gone and could not be recreated: ` + `${(err as Error).message}`;
      if (problem !== this.#dirProblem) this.#log.error(problem);
      this.#dirProblem = problem;
    }
  }

  // ConnectionHost

  handle(conn: Connection, req: Request): Reply {
    const outdated = this.#core.outdated;
    const reply = dispatch(this.#handlers, conn, req);
    if (this.#core.outdated !== outdated) this.#observers.acknowledged(this.#core.outdated, this.#core.generation);
    return reply;
  }

  /**
   * Logged when it changes, at most once a second per connection and per user: the text is the
   * sender's, so neither one client repeating itself nor thousands of one user's may fill the log.
   */
  problemReported(conn: Connection, message: string): void {
    const now = Date.now();
    if (now - conn.problemLoggedAt < 1000) return;
    const skipped = oncePerSecond(this.#problemLoggedAt, conn.bucket, now);
    if (skipped === undefined) return;
    conn.problemLoggedAt = now;
    const more = skipped > 0 ? ` (${skipped} more from ${bucketName(conn.bucket)} not logged)` : '';
    this.#log.warn(`${describeConnection(conn)} reports: ${message}${more} ${watcherFields(conn)}`);
  }

  chargeOutput(conn: Connection, delta: number): string | undefined {
    if (!this.#admission.chargeOutput(conn.bucket, delta)) return undefined;
    const { outputPerBucket } = this.#admission.limits;
    const held = this.#admission.outputBy(conn.bucket);
    const limit = `limit ${outputPerBucket}, --max-per-user x --max-backlog`;
    return `${bucketName(conn.bucket)} together left ${held} bytes unread (${limit})`;
  }

  largeReply(conn: Connection, start: () => void): () => void {
    return this.#admission.largeReply(conn.bucket, start);
  }

  largeReplyDone(conn: Connection): void {
    this.#admission.largeReplyDone(conn.bucket);
  }

  closed(conn: Connection): void {
    this.#conns.delete(conn.id);
    this.#admission.release(conn.bucket);
    const outdated = this.#core.outdated;
    this.#core.disconnect(conn.id, Date.now());
    if (this.#core.outdated !== outdated) this.#observers.acknowledged(this.#core.outdated, this.#core.generation);
    else this.#observers.changed();
  }

  // Effects of the state machine.

  #apply(e: MachineEffect): void {
    switch (e.kind) {
      case 'notify': {
        if (e.ids.length > 0) this.#broadcast.send(e.ids, Buffer.from(encodeGen(e.generation)));
        return;
      }
      case 'read':
        this.#conns.get(e.id)?.complete(encodeOk(e.generation));
        return;
      case 'wait':
        this.#conns.get(e.id)?.complete(waitLine(e.result, this.#core.outdated));
        return;
      case 'ask': {
        const line = e.step === 'quiesce' ? encodeQuiesce(e.cycle) : encodeUnquiesce(e.cycle, e.generation);
        this.#conns.get(e.id)?.write(line);
        return;
      }
      case 'reply': {
        const line = encodeOk(JSON.stringify(cycleReportDocument(e.report)));
        for (const id of e.requesters) this.#conns.get(id)?.complete(line);
        this.#logCycle(e.report);
        return;
      }
      case 'timer':
        clearTimeout(this.#lifecycleTimer);
        this.#lifecycleTimer = undefined;
        if (e.at !== null && !this.#closed) {
          this.#lifecycleTimer = setTimeout(() => this.#core.tick(Date.now()), Math.max(0, e.at - Date.now()));
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

  // A client provokes its own cut (it asks and never reads), so these are throttled per user like PROBLEM.
  tooSlow(conn: Connection, why: string): void {
    const skipped = oncePerSecond(this.#cutLoggedAt, conn.bucket, Date.now());
    if (skipped === undefined) return;
    const more = skipped > 0 ? ` (${skipped} more of ${bucketName(conn.bucket)} not logged)` : '';
    this.#log.warn(`disconnecting ${describeConnection(conn)}: ${why}${more} ${watcherFields(conn)}`);
  }
}

type LoggedAt = Map<Bucket, { at: number; suppressed: number }>;

/** One log line a second per bucket: how many were skipped since the last one, or undefined to skip this. */
function oncePerSecond(logged: LoggedAt, bucket: Bucket, now: number): number | undefined {
  const last = logged.get(bucket);
  if (last && now - last.at < 1000) {
    last.suppressed++;
    return undefined;
  }
  logged.set(bucket, { at: now, suppressed: 0 });
  return last?.suppressed ?? 0;
}

function watcherFields(conn: Connection): string {
  return fields({ watcher: conn.id, name: conn.name ?? undefined, pid: conn.pid || undefined });
}

function fileIdOf(file: string): { dev: number; ino: number } | undefined {
  try {
    const st = fs.lstatSync(file);
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

function isDir(dir: string): boolean {
  try {
    return fs.lstatSync(dir).isDirectory();
  } catch {
    return false;
  }
}

function exists(file: string): boolean {
  return fileIdOf(file) !== undefined;
}
