// Loads the optional native addon (native/sysgenid.c). Every caller has a pure-JS fallback, used when
// the addon is missing (no compiler at install) or when SYSGENID_NO_ADDON=1 forces it.

import { createRequire } from 'node:module';

export interface PeerCred {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

export interface FdWatch {
  close(): void;
}

export interface Addon {
  /** A read-only MAP_SHARED mapping. Never let user code write to it: a write faults the process. */
  mapFile(path: string, length?: number): ArrayBuffer;
  peerCred(fd: number): PeerCred;
  /**
   * libuv readiness of any descriptor; events: 1 readable, 2 writable, 4 disconnect, 8 priority. The
   * watch stays active (and keeps the process alive) until close(), even if the handle is dropped.
   */
  watchFd(fd: number, events: number, callback: (status: number, events: number) => void): FdWatch;
  /**
   * Send `data` to every socket in `fds` without blocking; `written[i]` gets the bytes sent or -errno.
   * Returns how many did not take all of it. Only for sockets whose own stream has nothing pending.
   */
  broadcast?(fds: Int32Array, data: Buffer, written: Int32Array): number;
  /** A non-blocking NETLINK_KOBJECT_UEVENT socket on the kernel's group; close it with fs.closeSync. */
  ueventOpen(): number;
  /** One queued uevent: the sender's netlink port (0 = the kernel) and its NUL-separated fields. */
  ueventRecv(fd: number): { pid: number; fields: string[] } | null;
  /** flock(2): 0 or -errno (-EWOULDBLOCK with LOCK_NB when another holds it). */
  flock?(fd: number, op: number): number;
  /** prctl(PR_SET_CHILD_SUBREAPER): 0 or -errno. */
  setChildSubreaper?(on: boolean): number;
  /** waitpid(pid, WNOHANG) of one orphan: the pid when reaped, 0 while it runs, -errno. */
  reapPid?(pid: number): number;
  /** Reseed every copy of OpenSSL in this process (absent in an addon built before register existed). */
  opensslReseed?(): OpensslReseed[];
  /** The copies of OpenSSL in this process and their primary DRBG's reseed counter, reseeding nothing. */
  opensslState?(): OpensslCopy[];
  /** A read-only mapping of a character device (st_size 0), such as /dev/vmclock0. */
  mapDevice?(path: string, length?: number): ArrayBuffer;
  /** A non-blocking AF_VSOCK stream socket listening on (any CID, port); close it with fs.closeSync. */
  vsockListen?(port: number): number;
  /** One pending connection, non-blocking; `cid` -1 when the listener is not AF_VSOCK. Null: none. */
  vsockAccept?(fd: number): { fd: number; cid: number; port: number } | null;
  /** A connected non-blocking AF_VSOCK stream socket to (cid, port); throws on failure. */
  vsockConnect?(cid: number, port: number): number;
  /**
   * RNDADDENTROPY with these bytes, then RNDRESEEDCRNG: 0, -errno of the first ioctl, or -(1000 + errno)
   * of the second. Needs CAP_SYS_ADMIN.
   */
  reseedKernel?(entropy: Buffer): number;
}

/** One copy of OpenSSL in this process (Node's own, or the system libcrypto.so.3), for register.ts. */
export interface OpensslCopy {
  /** The object that defines it: the node binary, or a path such as /usr/lib/.../libcrypto.so.3. */
  readonly library: string;
  readonly version: string;
  /** The primary DRBG's reseed_counter (-1 if unreadable); child DRBGs reseed when it moves. */
  readonly primaryReseedCounter: number;
}

export interface OpensslReseed extends OpensslCopy {
  readonly primaryReseedCounterBefore: number;
  /** RAND_poll() returned 1. */
  readonly poll: boolean;
  /** The primary DRBG was reseeded from the kernel (with prediction resistance where supported). */
  readonly primary: boolean;
  /** The calling thread's public and private DRBGs were reseeded at once. */
  readonly public: boolean;
  readonly private: boolean;
  /** The primary was reseeded: every DRBG of every thread draws fresh state at its next use. */
  readonly ok: boolean;
}

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export const POLL_READABLE = 1;

let loaded: Addon | undefined;
let reason = 'not loaded yet';
let tried = false;

function load(): void {
  tried = true;
  if (process.env.SYSGENID_NO_ADDON === '1') {
    reason = 'disabled by SYSGENID_NO_ADDON=1';
    return;
  }
  const require = createRequire(import.meta.url);
  // From dist/src/native/addon.js (the library) or from the bundled programs in dist/: build/Release
  // at the package root either way.
  let last: unknown;
  for (const rel of ['../../../build/Release/sysgenid.node', '../build/Release/sysgenid.node']) {
    try {
      loaded = require(rel) as Addon;
      reason = 'loaded';
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND' || last === undefined) last = err;
    }
  }
  reason = `not built (${(last as NodeJS.ErrnoException).code ?? (last as Error).message}); run npm rebuild with a C toolchain`;
}

/** The addon, or undefined when the pure-JS fallback is in use. */
export function addon(): Addon | undefined {
  if (!tried) load();
  return loaded;
}

/** Why the addon is or is not in use, for logs and status. */
export function addonState(): string {
  if (!tried) load();
  return reason;
}
