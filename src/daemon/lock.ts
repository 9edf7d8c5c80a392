// One daemon per runtime directory, by a lock the kernel releases when its holder dies, however it
// dies: never by guessing from a pid file whether a process "looks like" a daemon (a pid is reused,
// and any process may put "sysgenidd" in its command line).
//
// With the native addon: flock(LOCK_EX) on the pid file, kept open for the daemon's life. Without it
// (Node has no flock): a listening Unix socket in the abstract namespace, named for the directory's
// device and inode; the kernel frees the name when the process dies. Its weakness, accepted for the
// fallback only: abstract names have no permissions, so a local user who binds the name first keeps a
// pure-JS daemon from starting on that directory (a denial, never a takeover: the daemon refuses and
// says so). A daemon with the addon holds both, so a pure-JS daemon can never share its directory,
// and ignores a squatter of the name whose peer credentials are not root's or its own.
//
// Sockets are removed only by the lock's holder: stale ones after the lock is taken, and at shutdown
// only the very socket files this daemon bound (same device and inode), never a successor's.

import fs from 'node:fs';
import net from 'node:net';
import { LOCK_EX, LOCK_NB, addon } from '../native/addon.js';
import { peerCredOf } from '../native/socket-fd.js';
import { pidFileLocked, unixSocketTable } from '../protocol/liveness.js';
import { runtimePaths } from '../protocol/runtime-dir.js';
import { trustedUids } from '../protocol/trust.js';
import { StartupError } from './runtime-dir.js';

const { O_RDWR, O_CREAT, O_NOFOLLOW } = fs.constants;
const EWOULDBLOCK = 11;

export interface PidLock {
  /** Pid of the crashed daemon whose pid file was taken over, if any. */
  readonly recoveredFrom: number | undefined;
  /** How the lock is held: 'flock' (addon) or 'abstract-socket' (pure-JS fallback). */
  readonly kind: 'flock' | 'abstract-socket';
  /** Remember a socket file this daemon bound, so that shutdown removes it and nothing else. */
  adopt(file: string): void;
  /** Whether `file` is still the socket this daemon bound and adopted there. */
  owns(file: string): boolean;
  /** Remove the adopted socket files that are still the ones this daemon bound. */
  removeOwned(): void;
  release(): void;
}

/** The abstract socket name that stands for the lock on `dir` (no leading NUL). */
export function lockName(dir: string): string {
  const st = fs.statSync(dir);
  return `sysgenidd-lock:${st.dev}:${st.ino}`;
}

function bindAbstract(name: string): Promise<net.Server | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => socket.destroy());
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    server.listen({ path: `\0${name}` }, () => {
      server.unref();
      resolve(server);
    });
  });
}

/**
 * Whether a listening socket is bound to the abstract `name` in this network namespace, from the kernel's
 * table (the same scope as the name itself); undefined when the table cannot be read.
 */
function abstractBound(name: string): boolean | undefined {
  const table = unixSocketTable();
  if (table === undefined) return undefined;
  // The table prints an abstract name as the last field of its line, each NUL as '@': the leading one,
  // and the padding Node binds (the whole sun_path). A false match only costs the connection attempt.
  return table.includes(` @${name}@`) || table.includes(` @${name}\n`);
}

/** The uid bound to an abstract name (addon only), or undefined when it cannot be told. */
function holderUid(name: string): Promise<number | undefined> {
  const native = addon();
  if (!native) return Promise.resolve(undefined);
  // Connecting costs a socket and a trip through the event loop on every start; the table answers the
  // common case (no such name) at once.
  if (abstractBound(name) === false) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: `\0${name}` });
    socket.once('error', () => resolve(undefined));
    socket.once('connect', () => {
      const uid = peerCredOf(native, socket)?.uid;
      socket.destroy();
      resolve(uid);
    });
  });
}

/** Whether something accepts connections on this socket path (a live daemon), within a second. */
function socketAnswers(file: string): Promise<boolean> {
  // Nothing can answer at a path where there is no file (a first start, or after a clean shutdown):
  // spared the connection attempt, which would cost a socket and a trip through the event loop.
  try {
    fs.lstatSync(file);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const socket = net.createConnection({ path: file });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(true);
    }, 1000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // EAGAIN: a full accept queue is a live daemon too.
      resolve(err.code === 'EAGAIN');
    });
  });
}

function readPid(fd: number): number | undefined {
  const buf = Buffer.alloc(32);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  const text = buf.subarray(0, n).toString('latin1').trim();
  return /^[0-9]+$/.test(text) && Number(text) > 0 ? Number(text) : undefined;
}

function pidInFile(file: string): number | undefined {
  try {
    const fd = fs.openSync(file, fs.constants.O_RDONLY | O_NOFOLLOW);
    try {
      return readPid(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

function openPidFile(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, O_RDWR | O_CREAT | O_NOFOLLOW, 0o644);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ELOOP') throw new StartupError(`${file} is a symbolic link; refusing to follow it`);
    throw new StartupError(`cannot open ${file}: ${e.message}`);
  }
  const st = fs.fstatSync(fd);
  const uid = process.geteuid?.() ?? 0;
  if (!st.isFile() || st.uid !== uid) {
    fs.closeSync(fd);
    throw new StartupError(`${file} is not a regular file owned by uid ${uid}; refusing to use it`);
  }
  return fd;
}

function sameFile(file: string, fd: number): boolean {
  try {
    const a = fs.lstatSync(file);
    const b = fs.fstatSync(fd);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

/**
 * `handedOver`: the sockets were passed in by the service manager (socket activation). They are this
 * daemon's by definition, and probing them would only connect to this daemon's own listen queue (and
 * leave a phantom client in it), so the check that a daemon still answers on them is skipped.
 */
export async function acquirePidLock(file: string, dir: string, handedOver = false): Promise<PidLock> {
  const native = addon();
  const name = lockName(dir);
  const busy = (pid: number | undefined, how: string): StartupError =>
    new StartupError(
      `another sysgenidd${pid ? ` (pid ${pid})` : ''} already owns ${dir} (${how}); ` +
        'stop it first, or use another SYSGENID_DIR',
    );

  let fd = -1;
  if (native?.flock) {
    for (let attempt = 0; ; attempt++) {
      fd = openPidFile(file);
      const rc = native.flock(fd, LOCK_EX | LOCK_NB);
      if (rc === -EWOULDBLOCK) {
        const pid = readPid(fd);
        fs.closeSync(fd);
        throw busy(pid, `it holds the lock on ${file}`);
      }
      if (rc < 0) {
        fs.closeSync(fd);
        throw new StartupError(`cannot lock ${file}: errno ${-rc}`);
      }
      // The previous holder may have unlinked the file between our open and our flock: a lock on a
      // file no longer at that name excludes nobody.
      if (sameFile(file, fd)) break;
      fs.closeSync(fd);
      if (attempt >= 5) throw new StartupError(`could not take ${file}: it keeps being replaced`);
    }
  }
  // With flock the kernel holds the lock. The abstract socket is only the pure-JS daemon's lock: bound by
  // every daemon, it kept a second CRIU copy of a daemon's tree from being restored beside the first in
  // one network namespace. Each kind still refuses a directory the other kind holds.
  // A pid file removed under a running daemon takes its flock with it: the sockets tell the truth. The
  // probes are independent connection attempts, started together rather than one after the other.
  const paths = runtimePaths(dir);
  const socks = handedOver ? [] : [paths.watch, paths.control];
  const answering = Promise.all(socks.map((sock) => socketAnswers(sock)));
  let server: net.Server | undefined;
  if (fd >= 0) {
    const uid = await holderUid(name);
    // A name bound by an untrusted user is a squatter, not a daemon of this directory.
    if (uid !== undefined && trustedUids().has(uid)) {
      fs.closeSync(fd);
      throw busy(pidInFile(file), `a daemon without the native addon holds the lock socket @${name}`);
    }
  } else {
    if (pidFileLocked(dir)) throw busy(pidInFile(file), `it holds the flock on ${file}`);
    const bound = await bindAbstract(name);
    if (bound instanceof net.Server) {
      server = bound;
    } else if (bound.code === 'EADDRINUSE') {
      throw busy(
        pidInFile(file),
        `the lock socket @${name} is bound; without the native addon any local user can hold that name`,
      );
    } else {
      throw new StartupError(`cannot bind the lock socket @${name}: ${bound.message}`);
    }
  }
  const answers = await answering;
  const live = socks.find((_, i) => answers[i]);
  if (live !== undefined) {
    if (fd >= 0) fs.closeSync(fd);
    server?.close();
    throw busy(undefined, `a daemon still answers on ${live}, although ${file} was not locked`);
  }
  if (fd < 0) fd = openPidFile(file);
  const previous = readPid(fd);
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  // An inode number alone is reused at once on tmpfs: the change time tells a successor's file apart.
  const adopted = new Map<string, { dev: number; ino: number; ctimeMs: number }>();
  let released = false;
  return {
    recoveredFrom: previous !== undefined && previous !== process.pid ? previous : undefined,
    kind: native?.flock ? 'flock' : 'abstract-socket',
    adopt(socketFile: string) {
      const st = fs.lstatSync(socketFile);
      adopted.set(socketFile, { dev: st.dev, ino: st.ino, ctimeMs: st.ctimeMs });
    },
    owns(socketFile: string) {
      const id = adopted.get(socketFile);
      try {
        const st = fs.lstatSync(socketFile);
        return id !== undefined && st.isSocket() && st.dev === id.dev && st.ino === id.ino && st.ctimeMs === id.ctimeMs;
      } catch {
        return false;
      }
    },
    removeOwned() {
      for (const [f, id] of adopted) {
        try {
          const st = fs.lstatSync(f);
          if (st.isSocket() && st.dev === id.dev && st.ino === id.ino && st.ctimeMs === id.ctimeMs) fs.unlinkSync(f);
        } catch {
          // already gone
        }
      }
      adopted.clear();
    },
    release() {
      if (released) return;
      released = true;
      // Unlinked while still locked, so a successor never locks a file that is about to vanish.
      try {
        if (sameFile(file, fd)) fs.unlinkSync(file);
      } catch {
        // already gone
      }
      fs.closeSync(fd);
      server?.close();
    },
  };
}

/**
 * Remove a socket left by a crashed daemon (the caller holds the lock), refusing anything that is not a
 * socket or a symlink.
 */
export function removeStaleSocket(file: string): boolean {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    return false;
  }
  if (!st.isSocket() && !st.isSymbolicLink()) {
    throw new StartupError(`${file} exists and is not a socket; remove it by hand`);
  }
  fs.unlinkSync(file);
  return true;
}
