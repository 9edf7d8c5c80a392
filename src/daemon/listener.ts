// The two sockets: bind them no wider than intended, accept through admission (src/daemon/admission.ts),
// and refuse past a limit with a reason instead of letting libuv drop the client silently.

import fs from 'node:fs';
import net from 'node:net';
import type { Addon } from '../native/addon.js';
import { peerCredOf } from '../native/socket-fd.js';
import { encodeErr } from '../protocol/messages.js';
import type { RuntimePaths } from '../protocol/runtime-dir.js';
import { type Admission, type Bucket, bucketName } from './admission.js';
import type { ConnectionKind } from './connection.js';
import { removeStaleSocket, type PidLock } from './lock.js';
import type { Logger } from './log.js';
import { StartupError, unlinkIfPresent } from './runtime-dir.js';
import type { ActivatedSockets } from './socket-activation.js';

/** A client that got past admission, with its peer credentials when the addon could read them. */
export type Accepted = (
  kind: ConnectionKind,
  socket: net.Socket,
  bucket: Bucket,
  cred: { pid: number; uid: number } | undefined,
) => void;

export interface ListenerOptions {
  readonly paths: RuntimePaths;
  readonly log: Logger;
  /** Group that may use the control socket (gid). */
  readonly controlGid: number;
  readonly admission: Admission;
  readonly maxConnections: number;
  readonly native: Addon | undefined;
  readonly accepted: Accepted;
  /** Sockets the service manager bound (sysgenidd.socket): served as they are, never bound, changed or removed. */
  readonly activated?: ActivatedSockets | undefined;
}

export class Listener {
  readonly #o: ListenerOptions;
  /** `file` is the path this daemon bound; undefined for a socket handed over by the service manager. */
  #servers: Array<{ server: net.Server; file: string | undefined }> = [];
  #lock: PidLock | undefined;
  #refusedSince = 0;
  #refusedCount = 0;
  #closed = false;
  #activatedUsed = false;

  constructor(opts: ListenerOptions) {
    this.#o = opts;
  }

  /** Whether the sockets came from the service manager (then they are its to remove, not ours). */
  get activated(): boolean {
    return this.#o.activated !== undefined;
  }

  /** Bind both sockets; again after the runtime directory was lost (the old servers are closed first). */
  async listen(lock: PidLock): Promise<void> {
    const { paths, log, controlGid, activated } = this.#o;
    if (activated && !this.#activatedUsed) {
      this.#activatedUsed = true;
      this.#lock = lock;
      await this.#listenActivated(activated);
      return;
    }
    if (activated) {
      log.warn(
        'the socket files the service manager bound are gone; binding new ones here (restart ' +
          'sysgenidd.socket and sysgenidd-control.socket to hand sockets over again)',
      );
    }
    // Closed before binding again: libuv unlinks a server's path when it closes. Its connections stay.
    void this.#closeServers();
    this.#lock = lock;
    for (const f of [paths.watch, paths.control]) {
      if (removeStaleSocket(f)) log.info(`removed stale socket ${f}`);
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
      fs.chownSync(paths.control, process.geteuid?.() ?? 0, controlGid);
    } catch (err) {
      throw new StartupError(
        `cannot give ${paths.control} to group ${controlGid}: ${(err as Error).message} (choose a group you ` +
          `belong to with --group)`,
      );
    }
    fs.chmodSync(paths.control, 0o660);
    for (const f of [paths.watch, paths.control]) lock.adopt(f);
  }

  /** Stop accepting; resolves when the servers have closed (their connections are the daemon's to end). */
  close(): Promise<void> {
    this.#closed = true;
    return this.#closeServers();
  }

  /**
   * libuv unlinks the path a server was bound to when it closes (at once, in close()), whatever file is
   * there by then. The sockets are bound at their own paths (CRIU restores a listening socket by its
   * bound name), so a file that is no longer this daemon's socket is kept aside across the close. The
   * promise waits for the servers' connections too, which the daemon ends itself.
   */
  #closeServers(): Promise<void> {
    const servers = this.#servers;
    this.#servers = [];
    const closed = servers.map(({ server, file }) => {
      // A handed-over socket was never bound here, so libuv unlinks nothing when it closes: nothing to keep.
      const kept = file !== undefined && this.#lock && !this.#lock.owns(file) ? keepAside(file) : undefined;
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      if (kept && file !== undefined) fs.renameSync(kept, file);
      return done;
    });
    return Promise.all(closed).then(() => undefined);
  }

  /**
   * Serve the listening sockets the service manager bound: their files, modes and group are the socket
   * units', and they outlive this daemon, so a restart loses no client (they wait in the listen queue).
   */
  async #listenActivated(sockets: ActivatedSockets): Promise<void> {
    const { paths, log } = this.#o;
    if (sockets.watch === undefined || sockets.control === undefined) {
      const got = [
        sockets.watch === undefined ? '' : 'watch',
        sockets.control === undefined ? '' : 'control',
        ...sockets.unknown.map((u) => u.name),
      ]
        .filter(Boolean)
        .join(', ');
      throw new StartupError(
        `socket activation: need descriptors named "watch" and "control" (LISTEN_FDNAMES), got ${got || 'none'}`,
      );
    }
    for (const u of sockets.unknown) {
      log.warn(`socket activation: ignoring descriptor ${u.fd} named ${JSON.stringify(u.name)}`);
    }
    await this.#listenOnFd('watch', sockets.watch);
    await this.#listenOnFd('control', sockets.control);
    log.info(
      `sockets from the service manager: watch.sock (fd ${sockets.watch}), control.sock (fd ${sockets.control})`,
    );
    for (const [file, loosest] of [
      [paths.watch, 0o666],
      [paths.control, 0o660],
    ] as const) {
      try {
        const mode = fs.statSync(file).mode & 0o777;
        if ((mode & ~loosest) !== 0) {
          log.warn(`${file} has mode ${mode.toString(8)}, more open than ${loosest.toString(8)} (SocketMode=)`);
        }
      } catch {
        log.warn(`${file} does not exist: clients find the daemon by that path (ListenStream=)`);
      }
    }
  }

  #listenOnFd(kind: ConnectionKind, fd: number): Promise<void> {
    const server = net.createServer({ pauseOnConnect: false }, (socket) => this.#accept(kind, socket));
    this.#servers.push({ server, file: undefined });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => {
        reject(new StartupError(`socket activation: cannot listen on fd ${fd} (${kind}): ${err.message}`));
      });
      server.listen({ fd }, () => {
        server.removeAllListeners('error');
        server.on('error', (err) => this.#o.log.error(`${kind} socket: ${err.message}`));
        resolve();
      });
    });
  }

  #listenOn(kind: ConnectionKind, file: string): Promise<void> {
    const server = net.createServer({ pauseOnConnect: false }, (socket) => this.#accept(kind, socket));
    this.#servers.push({ server, file });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: file, backlog: 4096 }, () => {
        server.off('error', reject);
        server.on('error', (err) => this.#o.log.error(`${kind} socket: ${err.message}`));
        resolve();
      });
    });
  }

  #accept(kind: ConnectionKind, socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const cred = peerCredOf(this.#o.native, socket);
    const bucket: Bucket = kind === 'control' ? 'control' : (cred?.uid ?? 'unverified');
    const refused = this.#o.admission.admit(bucket);
    if (refused) {
      this.#refuse(socket, refused.message, refused.perUser ? bucket : undefined);
      return;
    }
    this.#o.accepted(kind, socket, bucket, cred);
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
          ? `connection limit reached (${this.#o.maxConnections}, from the descriptor limit); refused ` +
            `${this.#refusedCount} ` +
            `client(s) with EMFILE. Raise LimitNOFILE / ulimit -n or --max-connections`
          : `per-user connection limit reached by ${bucketName(perUser)} ` +
            `(${this.#o.admission.limits.perUser}, --max-per-user); refused ${this.#refusedCount} client(s) ` +
            `with EMFILE`;
      this.#o.log.error(what);
      this.#refusedSince = now;
      this.#refusedCount = 0;
    }
  }
}

/** Hard-link a foreign file at `file` to a private name; undefined when there is nothing there. */
function keepAside(file: string): string | undefined {
  const aside = `${file}.kept-${process.pid}`;
  try {
    unlinkIfPresent(aside);
    fs.linkSync(file, aside);
    return aside;
  } catch {
    return undefined;
  }
}
