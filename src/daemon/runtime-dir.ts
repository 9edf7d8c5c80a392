// Creates the runtime directory, or accepts an existing one only if nobody else could have placed
// files in it: a real directory (not a symlink), owned by us, writable by nobody else, under parents
// that only root or we can write (else a user who owns a parent swaps the directory for a link and
// the daemon's page repair and shutdown act on files in a directory of the attacker's choosing).

import fs from 'node:fs';
import path from 'node:path';
import { untrustedPath } from '../protocol/trust.js';

export class StartupError extends Error {
  override readonly name = 'StartupError';
}

export function ensureRuntimeDir(dir: string, mode: number): void {
  const uid = process.geteuid?.() ?? 0;
  const parentProblem = untrustedPath(path.dirname(dir));
  if (parentProblem) {
    throw new StartupError(
      `refusing the runtime directory ${dir}: ${parentProblem}; every directory above it must ` +
        `belong to root or to uid ${uid} and not be writable by others (sticky directories such as /tmp excepted)`,
    );
  }
  try {
    fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o755 });
    fs.mkdirSync(dir, { mode });
    fs.chmodSync(dir, mode);
    return;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== 'EEXIST') {
      throw new StartupError(`cannot create the runtime directory ${dir}: ${e.message}` + hintFor(e.code));
    }
  }
  const st = fs.lstatSync(dir);
  if (st.isSymbolicLink())
    throw new StartupError(`${dir} is a symbolic link; refusing to use it (remove it, or set SYSGENID_DIR)`);
  if (!st.isDirectory()) throw new StartupError(`${dir} exists and is not a directory`);
  if (st.uid !== uid) {
    throw new StartupError(
      `${dir} belongs to uid ${st.uid}, not to this user (uid ${uid}); refusing to use a directory someone else ` +
        `controls`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw new StartupError(
      `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); fix it with chmod go-w`,
    );
  }
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new StartupError(
      `the runtime directory ${dir} is not writable: ${(err as Error).message}` +
        hintFor((err as NodeJS.ErrnoException).code),
    );
  }
}

/** sun_path holds 108 bytes with its terminating NUL: a longer socket path is silently truncated by bind. */
export const MAX_SOCKET_PATH = 107;

/** Why sockets cannot be bound in `dir`, or undefined. */
export function socketPathProblem(dir: string): string | undefined {
  const longest = path.join(dir, 'control.sock');
  const n = Buffer.byteLength(longest);
  if (n <= MAX_SOCKET_PATH) return undefined;
  return (
    `the socket path ${longest} is ${n} bytes; a Unix socket path holds at most ${MAX_SOCKET_PATH} ` +
    '(choose a shorter --dir)'
  );
}

export function hintFor(code: string | undefined): string {
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return ' (run as root, or set SYSGENID_DIR to a directory you own)';
    case 'EROFS':
      return ' (the file system is read-only; set SYSGENID_DIR to a writable tmpfs such as /dev/shm)';
    case 'ENOSPC':
    case 'EDQUOT':
      return ' (no space left; free some, or set SYSGENID_DIR to another file system)';
    default:
      return '';
  }
}

/**
 * unlink(2) of `file` when it exists: fs.rmSync's `force` without its cost, a third of a millisecond
 * at its first call (it loads Node's recursive remover), on the path every start takes.
 */
export function unlinkIfPresent(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
