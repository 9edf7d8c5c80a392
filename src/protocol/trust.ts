// Whom a path can be trusted to: a directory is only as safe as every directory above it, because
// whoever can write to a parent can swap the child for a link to anything. The daemon checks its
// runtime and hooks directories with this, and clients check the daemon's directory before they
// believe a socket or a page in it (issue 12, points 3, 4 and 5).

import fs from 'node:fs';
import path from 'node:path';

const S_ISVTX = 0o1000;

/** Root and the calling user: the only owners a path may have. */
export function trustedUids(uid: number = process.geteuid?.() ?? 0): ReadonlySet<number> {
  return new Set([0, uid]);
}

function prefixes(p: string): string[] {
  const out = ['/'];
  let cur = '/';
  for (const part of p.split('/').filter(Boolean)) {
    cur = path.join(cur, part);
    out.push(cur);
  }
  return out;
}

function problemWith(p: string, st: fs.Stats, trusted: ReadonlySet<number>): string | undefined {
  if (!trusted.has(st.uid)) {
    return `${p} belongs to uid ${st.uid}, not to root or uid ${[...trusted].filter((u) => u !== 0).join(', ') || 0}`;
  }
  if (st.isSymbolicLink()) return undefined;
  if (!st.isDirectory()) return `${p} is not a directory`;
  // A sticky directory such as /tmp is shared, but nobody can rename or remove what another put there.
  if ((st.mode & 0o022) !== 0 && (st.mode & S_ISVTX) === 0) {
    return `${p} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)}) and not sticky`;
  }
  return undefined;
}

/**
 * Undefined when every directory from / down to `dir` (as written and after resolving links) is owned
 * by a trusted uid and not writable by anyone else (sticky directories excepted); else what is wrong.
 * A missing component is not a problem here: whoever creates it is checked when it is used.
 */
export function untrustedPath(dir: string, trusted: ReadonlySet<number> = trustedUids()): string | undefined {
  const abs = path.resolve(dir);
  const lists = [prefixes(abs)];
  try {
    const real = fs.realpathSync(abs);
    if (real !== abs) lists.push(prefixes(real));
  } catch {
    // not there yet
  }
  for (const list of lists) {
    for (const p of list) {
      let st: fs.Stats;
      try {
        st = fs.lstatSync(p);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
        return `cannot check ${p}: ${(err as Error).message}`;
      }
      const problem = problemWith(p, st, trusted);
      if (problem) return problem;
    }
  }
  return undefined;
}

/** True when others can reach files in `dir`: every directory on its real path is searchable by all. */
export function traversableByAll(dir: string): boolean {
  let real: string;
  try {
    real = fs.realpathSync(dir);
  } catch {
    return false;
  }
  for (const p of prefixes(real)) {
    try {
      if ((fs.statSync(p).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
  }
  return true;
}

/** What stat or lstat says of `file`, or undefined when it cannot say (then connect() reports why). */
function statOrNothing(file: string, stat: (f: string) => fs.Stats): fs.Stats | undefined {
  try {
    return stat(file);
  } catch {
    return undefined;
  }
}

/**
 * Why a client must not believe what it finds in the daemon directory `dir`, or undefined: the
 * directory and every one above it must belong to root or to the caller (a directory another user
 * squatted, such as a pre-created /tmp/sysgenid-<uid>, holds that user's sockets and page), and the
 * directory itself must not be writable by anyone else. A missing directory is for connect() to report.
 */
export function untrustedDaemonDir(dir: string, uid: number = process.geteuid?.() ?? 0): string | undefined {
  const trusted = trustedUids(uid);
  const problem = untrustedPath(dir, trusted);
  if (problem) return problem;
  const st = statOrNothing(dir, fs.statSync);
  if (!st) return undefined;
  if ((st.mode & 0o022) !== 0) return `${dir} is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})`;
  return undefined;
}

/**
 * Why a file in a daemon directory (a socket, the page) must not be believed, or undefined; missing is
 * not a problem here.
 */
export function untrustedDaemonFile(file: string, uid: number = process.geteuid?.() ?? 0): string | undefined {
  const dirProblem = untrustedDaemonDir(path.dirname(file), uid);
  if (dirProblem) return dirProblem;
  const st = statOrNothing(file, fs.lstatSync);
  if (!st) return undefined;
  if (st.isSymbolicLink()) return `${file} is a symbolic link`;
  if (!trustedUids(uid).has(st.uid)) return `${file} belongs to uid ${st.uid}, not to root or uid ${uid}`;
  return undefined;
}
