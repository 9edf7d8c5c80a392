// sysgenidd: owns the counter, the page, the state file, the watchers and the hooks, and wires the
// composed state machine (src/core/machine.ts) to real sockets; the requests are src/daemon/handlers.ts.

import { DEFAULT_ADJUST_TIMEOUT_MS, DEFAULT_RESUME_TIMEOUT_MS } from '../defaults.js';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { CycleReport } from '../core/lifecycle.js';
import { CoreMachine, type MachineEffect } from '../core/machine.js';
import { SysgenidError } from '../core/errors.js';
import { cycleReportDocument } from '../protocol/cycle-report.js';
import {
  PROTOCOL_VERSION, encodeErr, encodeGen, encodeHello, encodeOk, encodeQuiesce, encodeUnquiesce, type Request,
} from '../protocol/messages.js';
import { type RuntimePaths, runtimePaths } from '../protocol/runtime-dir.js';
import type { BackendStatus, DaemonStatus, WatcherStatus } from '../protocol/status.js';
import { Connection, type ConnectionHost, type ConnectionKind, type Reply, describeConnection } from './connection.js';
import { type Handlers, dispatch, requestHandlers, waitLine } from './handlers.js';
import { linkDevice } from './dev-link.js';
import { HookRunner } from './hooks.js';
import { openFileLimit, connectionLimit } from './limits.js';
import { Admission, type Bucket, defaultLimits } from './admission.js';
import { onSocketInternalsChanged, socketFd } from './socket-fd.js';
import { acquirePidLock, bindName, placeSocket, removeStaleSocket, type PidLock } from './lock.js';
import type { Logger } from './log.js';
import { Page } from './page.js';
import { StartupError, ensureRuntimeDir } from './runtime-dir.js';
import { type BackendConfig, type BackendContext, type RestoreBackend, currentBootId } from './backends/backend.js';
import { BACKENDS, type BackendEntry } from './backends/registry.js';
import { type Addon, addon, addonState } from '../native/addon.js';
import { StateStore, type StateUpdate } from './state-store.js';
import { VERSION } from '../version.js';

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
}


const { EAGAIN } = os.constants.errno;

export class Daemon implements ConnectionHost {
  readonly paths: RuntimePaths;
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #page: Page;
  readonly #store: StateStore;
  readonly #lock: PidLock;
  readonly #core: CoreMachine;
  readonly #handlers: Handlers;
  #lifecycleTimer: NodeJS.Timeout | undefined;
  readonly #hooks: HookRunner;
  readonly #conns = new Map<number, Connection>();
  readonly #servers: net.Server[] = [];
  readonly #startedAt = Date.now();
  readonly #maxConnections: number;
  readonly #admission: Admission;
  /** When each bucket (user) last had a PROBLEM report logged: one line a second per user at most. */
  readonly #problemLoggedAt = new Map<Bucket, { at: number; suppressed: number }>();
  /** What STATUS lists under `backends`, in order: forced, the started ones, the ones left off. */
  readonly #backends: Array<() => BackendStatus> = [];
  readonly #started: RestoreBackend[] = [];
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
    });
    this.#hooks = new HookRunner(opts.hooksDir, opts.hookTimeoutMs, opts.log, {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      SYSGENID_DIR: paths.dir,
    });
    this.#maxConnections = opts.maxConnections ?? connectionLimit(openFileLimit());
    const euid = process.geteuid?.() ?? 0;
    this.#admission = new Admission(defaultLimits(this.#maxConnections, opts.maxPerUser), [0, euid]);
    onSocketInternalsChanged((m) => opts.log.error(m));
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
  bump(min: number, source: string, record: StateUpdate = {}): number {
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
    this.#lastBump = { generation: next, source, at: new Date(at).toISOString(), pageWrittenMonoMs: writtenAt };
    this.#log.info(`generation ${previous} -> ${next} (${source}); ${this.#core.outdated} of ${this.#core.watchers} watchers outdated`);
    void this.#hooks.run({ generation: next, previous, source });
    return next;
  }

  /** A backend saw a restore: bump, and keep its bookkeeping in the same state record. Never throws. */
  #backendBump(source: string, record: StateUpdate = {}, min = 0): number | undefined {
    try {
      return this.bump(min, source, record);
    } catch (err) {
      this.#log.error(`${source}: a restore was seen but the generation could not move: ${(err as Error).message}`);
      return undefined;
    }
  }

  #startBackends(): void {
    const log = this.#log;
    const registry = this.#opts.registry ?? BACKENDS;
    const enabled = (name: string): boolean => this.#opts.backends.includes(name);
    const bootId = currentBootId();
    const memos = this.#store.memosOf(bootId);
    for (const entry of registry) {
      if (!enabled(entry.name)) continue;
      const { name } = entry;
      const backend = entry.create();
      const ctx: BackendContext = {
        log,
        addon: this.#native,
        memo: memos[name],
        config: this.#opts.backendConfig?.[name] ?? {},
        restored: (source, memo, min) =>
          this.#backendBump(source, memo === undefined ? {} : { memos: { bootId, byName: { [name]: memo } } }, min),
        generation: () => this.#core.generation,
        dir: this.paths.dir,
        remember: (memo) => {
          try {
            this.#store.save({ memos: { bootId, byName: { [name]: memo } } });
          } catch (err) {
            log.error(`backend ${name}: cannot write the state file: ${(err as Error).message}`);
          }
        },
      };
      this.#started.push(backend);
      this.#backends.push(() => ({ name, ...backend.status() }));
      backend.start(ctx);
    }
    for (const { name, auto } of registry) {
      if (enabled(name)) continue;
      const why = auto ? 'not enabled (--backends)' : `opt-in: not enabled (--backends ...,${name})`;
      const off: BackendStatus = { name, live: false, detail: why };
      this.#backends.push(() => off);
    }
    for (const b of this.#backends) {
      const s = b();
      if (s.live) log.info(`backend ${s.name}: live: ${s.detail}`);
      // Asked for and not working deserves a warning; left off on purpose is just information.
      else if (enabled(s.name)) log.warn(`backend ${s.name}: off: ${s.detail}`);
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
        subscriber: this.#core.lifecycle.subscriber(w.id) ?? null,
        problem: c?.problem ?? null,
      });
    }
    return { ...base, list };
  }

  #lifecycleStatus(now: number): DaemonStatus['lifecycle'] {
    const lc = this.#core.lifecycle;
    const current = lc.current && lc.current.endedAt === null ? cycleReportDocument(lc.current) : null;
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
      lastQuiesce: lc.last.quiesce ? cycleReportDocument(lc.last.quiesce) : null,
      lastUnquiesce: lc.last.unquiesce ? cycleReportDocument(lc.last.unquiesce) : null,
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#lifecycleTimer);
    for (const b of this.#started) b.stop();
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
    return dispatch(this.#handlers, conn, req);
  }

  /**
   * Logged when it changes, at most once a second per connection and per user: the text is the
   * sender's, so neither one client repeating itself nor thousands of one user's may fill the log.
   */
  problemReported(conn: Connection, message: string): void {
    const now = Date.now();
    if (now - conn.problemLoggedAt < 1000) return;
    const last = this.#problemLoggedAt.get(conn.bucket);
    if (last && now - last.at < 1000) {
      last.suppressed++;
      return;
    }
    conn.problemLoggedAt = now;
    const more = last && last.suppressed > 0 ? ` (${last.suppressed} more from ${bucketName(conn.bucket)} not logged)` : '';
    this.#problemLoggedAt.set(conn.bucket, { at: now, suppressed: 0 });
    this.#log.warn(`${describeConnection(conn)} reports: ${message}${more}`);
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
    this.#core.disconnect(conn.id, Date.now());
  }

  // Effects of the state machine.

  #apply(e: MachineEffect): void {
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

  tooSlow(conn: Connection, why: string): void {
    this.#log.warn(`disconnecting ${describeConnection(conn)}: ${why}`);
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
    const cred = this.#native ? peerCredOf(this.#native, socket) : undefined;
    const bucket: Bucket = kind === 'control' ? 'control' : (cred?.uid ?? 'unverified');
    const refused = this.#admission.admit(bucket);
    if (refused) {
      this.#refuse(socket, refused.message, refused.perUser ? bucket : undefined);
      return;
    }
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
  }

  // Past a limit a client is told why and closed; libuv would otherwise drop it silently once the
  // descriptor table is full. The log says so loudly but at most once a second.
  #refuse(socket: net.Socket, message: string, perUser: Bucket | undefined): void {
    socket.on('error', () => {});
    socket.end(encodeErr('EMFILE', message));
    this.#refusedCount++;
    const now = Date.now();
    if (now - this.#refusedSince >= 1000) {
      const what =
        perUser === undefined
          ? `connection limit reached (${this.#maxConnections}, from the descriptor limit); refused ${this.#refusedCount} ` +
            `client(s) with EMFILE. Raise LimitNOFILE / ulimit -n or --max-connections`
          : `per-user connection limit reached by ${bucketName(perUser)} ` +
            `(${this.#admission.limits.perUser}, --max-per-user); refused ${this.#refusedCount} client(s) with EMFILE`;
      this.#log.error(what);
      this.#refusedSince = now;
      this.#refusedCount = 0;
    }
  }
}

function peerCredOf(native: Addon, socket: net.Socket): { pid: number; uid: number } | undefined {
  const fd = socketFd(socket);
  if (fd < 0) return undefined;
  try {
    return native.peerCred(fd);
  } catch {
    // The peer may already be gone; it is then just a connection without credentials.
    return undefined;
  }
}

function bucketName(bucket: Bucket): string {
  return typeof bucket === 'number' ? `uid ${bucket}` : `${bucket} connections`;
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
