// Is a daemon serving a runtime directory right now? A socket file outlives the daemon that bound it
// (kill -9 leaves it), and so does the page; a listening socket does not. Synchronous and unprivileged,
// so the probe and --dev-link can ask it too. With the addon the kernel is asked by a connect() to the
// socket file; without it, by reading /proc/net/unix, which a local user can forge (a socket's name may
// hold a newline and a whole made-up line after it: see docs/reliability.md).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon } from '../native/addon.js';

/** The socket every daemon listens on (runtime-dir.ts's WATCH_SOCKET, not imported: it imports this). */
const WATCH_SOCKET = 'watch.sock';
/** __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket is listening. */
const LISTENING = 0x10000;

/**
 * True when a daemon serves `dir`: a socket is listening at <dir>/watch.sock in this network namespace,
 * or (for a reader in another network namespace, such as a container given the directory by a bind
 * mount) a process holds the daemon's flock on <dir>/sysgenidd.pid. False when neither, undefined when
 * the kernel's socket table cannot be read (then the caller cannot tell).
 */
export function daemonListening(dir: string): boolean | undefined {
  const listening = socketListening(dir);
  if (listening === true) return true;
  return pidFileLocked(dir) ? true : listening;
}

/** A lock on <dir>/sysgenidd.pid in /proc/locks, which, unlike the socket table, is not per namespace. */
export function pidFileLocked(dir: string): boolean {
  let st: fs.Stats;
  let locks: string;
  try {
    st = fs.statSync(path.join(dir, 'sysgenidd.pid'));
    locks = fs.readFileSync('/proc/locks', 'latin1');
  } catch {
    return false;
  }
  // glibc's dev_t encoding, as the kernel prints it: MAJOR:MINOR:inode, the device numbers in hex.
  const major = ((st.dev >>> 8) & 0xfff) >>> 0;
  const minor = ((st.dev & 0xff) | ((st.dev >>> 12) & 0xfff00)) >>> 0;
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  const id = ` ${hex(major)}:${hex(minor)}:${st.ino} `;
  return locks.split('\n').some((l) => /\bFLOCK\s+ADVISORY\s+WRITE\b/.test(l) && l.includes(id));
}

/** The kernel's table of Unix sockets in this network namespace, or undefined when it cannot be read. */
export function unixSocketTable(): string | undefined {
  try {
    return fs.readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return undefined;
  }
}

const { ECONNREFUSED, ENOENT, ENOTDIR } = os.constants.errno;

function socketListening(dir: string): boolean | undefined {
  const native = addon();
  if (native?.unixListening) {
    const rc = native.unixListening(path.join(dir, WATCH_SOCKET));
    if (rc === 0) return true;
    // Nothing listens there, or there is no socket: the kernel's answer, whatever the table says.
    if (rc === -ECONNREFUSED || rc === -ENOENT || rc === -ENOTDIR) return false;
    // EACCES, a path too long for a socket address: only the table can tell.
  }
  const table = unixSocketTable();
  if (table === undefined) return undefined;
  const want = path.join(dir, WATCH_SOCKET);
  let real: string | undefined;
  try {
    real = path.join(fs.realpathSync(dir), WATCH_SOCKET);
  } catch {
    real = undefined;
  }
  for (const line of table.split('\n')) {
    // Num RefCount Protocol Flags Type St Inode Path: the path is everything after the seventh field.
    const m = /^\s*\S+\s+\S+\s+\S+\s+([0-9A-Fa-f]+)\s+\S+\s+\S+\s+\S+\s(.*)$/.exec(line);
    if (!m) continue;
    if ((parseInt(m[1] as string, 16) & LISTENING) === 0) continue;
    const p = m[2] as string;
    if (p === want || p === real) return true;
  }
  return false;
}
