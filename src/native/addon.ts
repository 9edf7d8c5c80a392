// Loads the optional native addon (native/sysgenid.c). Every caller has a pure-JS fallback, used when
// the addon is missing (no prebuilt binary for this platform and no compiler at install) or when
// SYSGENID_NO_ADDON=1 forces it. Found the way the ecosystem finds N-API addons (node-gyp-build): a
// local build in build/Release first, else the binary the package ships in prebuilds/<platform>-<arch>/.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../package-root.js';

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
  /** One datagram to systemd's NOTIFY_SOCKET (a path, or '@' for an abstract name): 0 or -errno. */
  sdNotify?(socketPath: string, message: string): number;
  /** 0 when a stream socket listens at `socketPath` (a non-blocking connect went through), else -errno. */
  unixListening?(socketPath: string): number;
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

let loadedFrom: string | undefined;

function load(): void {
  tried = true;
  if (process.env.SYSGENID_NO_ADDON === '1') {
    reason = 'disabled by SYSGENID_NO_ADDON=1';
    return;
  }
  const require = createRequire(import.meta.url);
  const root = packageRoot();
  // node-gyp-build's own first choice, looked up directly: the daemon starts at boot and after every
  // restart, and resolving through node-gyp-build costs a few milliseconds more (docs/deploy.md).
  const local = path.join(root, 'build', 'Release', 'sysgenid.node');
  let file: string;
  if (fs.existsSync(local)) {
    file = local;
  } else {
    try {
      const nodeGypBuild = require('node-gyp-build') as { path(dir: string): string };
      file = nodeGypBuild.path(root);
    } catch (err) {
      const first = (err as Error).message.split('\n')[0];
      reason =
        `not built and no prebuilt binary for ${process.platform}-${process.arch} (${first}); ` +
        'run npm rebuild with a C toolchain';
      return;
    }
  }
  try {
    loaded = require(file) as Addon;
    loadedFrom = path.relative(root, file);
    reason = loadedFrom.startsWith('prebuilds') ? `loaded (prebuilt ${loadedFrom})` : 'loaded';
  } catch (err) {
    reason =
      `${path.relative(root, file)} does not load (${(err as Error).message.split('\n')[0]}); ` +
      'run npm rebuild with a C toolchain';
  }
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
