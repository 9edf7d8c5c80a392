// Is a daemon serving a runtime directory right now? A socket file outlives the daemon that bound it
// (kill -9 leaves it), and so does the page; the kernel's own table of bound Unix sockets does not.
// Synchronous and unprivileged, so the probe and --dev-link can ask it too.

import fs from 'node:fs';
import path from 'node:path';

/** The socket every daemon listens on (runtime-dir.ts's WATCH_SOCKET, not imported: it imports this). */
const WATCH_SOCKET = 'watch.sock';
/** __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket is listening. */
const LISTENING = 0x10000;

/**
 * True when a socket is listening at <dir>/watch.sock in this network namespace, false when none is,
 * undefined when the kernel's table cannot be read (then the caller cannot tell).
 */
export function daemonListening(dir: string): boolean | undefined {
  let table: string;
  try {
    table = fs.readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return undefined;
  }
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
    // The daemon binds under a private name and renames the socket into place (src/daemon/lock.ts):
    // the kernel's table keeps the name it was bound under.
    const p = (m[2] as string).replace(/\.bind-[0-9]+$/, '');
    if (p === want || p === real) return true;
  }
  return false;
}
