// One daemon per runtime directory. The pid file is created with O_EXCL; an existing one is stale
// unless its process is alive and is a sysgenidd, which is what `kill -9` of the daemon leaves behind.

import fs from 'node:fs';
import { StartupError } from './runtime-dir.js';

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function looksLikeDaemon(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1');
    return /sysgenidd|daemon[/\\]main\.js/.test(cmd);
  } catch {
    return false;
  }
}

export interface PidLock {
  /** Pid of the crashed daemon whose pid file was taken over, if any. */
  readonly recoveredFrom: number | undefined;
  release(): void;
}

export function acquirePidLock(file: string, dir: string): PidLock {
  let recoveredFrom: number | undefined;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return {
        recoveredFrom,
        release() {
          try {
            if (fs.readFileSync(file, 'latin1').trim() === String(process.pid)) fs.unlinkSync(file);
          } catch {
            // already gone
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StartupError(`cannot create ${file}: ${(err as Error).message}`);
      }
    }
    const text = fs.readFileSync(file, 'latin1').trim();
    const pid = /^[0-9]+$/.test(text) ? Number(text) : 0;
    if (pid > 0 && pid !== process.pid && processAlive(pid) && looksLikeDaemon(pid)) {
      throw new StartupError(`another sysgenidd (pid ${pid}) already owns ${dir}; stop it first, or use another SYSGENID_DIR`);
    }
    recoveredFrom = pid || undefined;
    fs.rmSync(file, { force: true });
  }
  throw new StartupError(`could not take ${file}: another daemon is starting at the same time`);
}

/** Remove a socket left by a crashed daemon, refusing anything that is not a socket or a symlink. */
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
