// The mapped page: a 4096-byte file whose first 4 bytes are the counter in native byte order, the
// format AWS-LC maps at /dev/sysgenid. Readers keep a mapping of the inode they opened, so the file is
// only ever updated in place (one aligned 4-byte pwrite), never replaced and never shortened: a
// mapping of a truncated file kills its reader with SIGBUS. A new page is built complete (4096 bytes
// holding the generation) under a temporary name and linked into place: a reader that finds the name
// (AWS-LC through /dev/sysgenid, at any moment) never maps an empty file, and link() fails rather than
// replace a page someone may have mapped.

import fs from 'node:fs';
import { decodeU32, encodeU32 } from '../protocol/page-format.js';
import { PAGE_SIZE } from '../protocol/runtime-dir.js';
import { StartupError, hintFor, unlinkIfPresent } from './runtime-dir.js';

const {
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_NOFOLLOW,
  O_CLOEXEC = 0o2000000,
} = fs.constants as typeof fs.constants & { O_CLOEXEC?: number };

/** Open a file the daemon owns for in-place updates, refusing symlinks and files someone else owns. */
export function openOwnedFile(file: string, mode: number, what: string): { fd: number; st: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ELOOP') throw new StartupError(`${what} ${file} is a symbolic link; refusing to follow it`);
    throw new StartupError(`cannot open the ${what} ${file}: ${e.message}` + hintFor(e.code));
  }
  const st = fs.fstatSync(fd);
  const uid = process.geteuid?.() ?? 0;
  if (!st.isFile() || st.uid !== uid) {
    fs.closeSync(fd);
    throw new StartupError(`${what} ${file} is not a regular file owned by uid ${uid}; refusing to use it`);
  }
  fs.fchmodSync(fd, mode);
  return { fd, st };
}

/** Earlier pages (removed or replaced while readers had them mapped) still written on every bump. */
const MAX_ORPHANS = 4;

export class Page {
  readonly path: string;
  #fd: number;
  /** Descriptors of pages no longer at `path` that readers may still have mapped: written too. */
  readonly #orphans: number[] = [];
  readonly #buf = Buffer.alloc(4);

  private constructor(file: string, fd: number) {
    this.path = file;
    this.#fd = fd;
  }

  /**
   * Open the page, or create it holding `initial`; an existing page keeps its inode so that live
   * mappings stay valid.
   */
  static open(file: string, initial = 0): Page {
    // Created complete, then opened by its own name like an existing page: a descriptor left on the
    // temporary name would look like a deleted file to CRIU, which then refuses to dump the daemon.
    createComplete(file, initial);
    const { fd, st } = openOwnedFile(file, 0o644, 'page');
    try {
      if (st.size < PAGE_SIZE) fs.ftruncateSync(fd, PAGE_SIZE);
    } catch (err) {
      fs.closeSync(fd);
      const e = err as NodeJS.ErrnoException;
      throw new StartupError(`cannot size the page ${file}: ${e.message}` + hintFor(e.code));
    }
    return new Page(file, fd);
  }

  /** The counter the page holds now (after a daemon crash it may be ahead of the state file). */
  read(): number {
    fs.readSync(this.#fd, this.#buf, 0, 4, 0);
    return decodeU32(this.#buf);
  }

  write(generation: number): void {
    encodeU32(generation, this.#buf);
    const n = fs.writeSync(this.#fd, this.#buf, 0, 4, 0);
    if (n !== 4) throw new Error(`short write to the page (${n} of 4 bytes)`);
    for (const fd of this.#orphans) {
      try {
        fs.writeSync(fd, this.#buf, 0, 4, 0);
      } catch {
        // Best effort: the page at `path` is the one that counts.
      }
    }
  }

  /** How many earlier pages are still written for readers that mapped them. */
  get orphans(): number {
    return this.#orphans.length;
  }

  /**
   * Someone with the daemon's rights (or root) may have truncated, replaced or removed the page. Put
   * it right and say what was found, so the log explains why a reader lost its mapping.
   */
  repair(): string | undefined {
    let problem: string | undefined;
    const st = fs.fstatSync(this.#fd);
    if (st.size < PAGE_SIZE) {
      fs.ftruncateSync(this.#fd, PAGE_SIZE);
      problem = `the page was truncated to ${st.size} bytes; restored to ${PAGE_SIZE}`;
    }
    let onDisk: fs.Stats | undefined;
    try {
      onDisk = fs.lstatSync(this.path);
    } catch {
      onDisk = undefined;
    }
    // Compared with the open file as it is now, not with an inode remembered at start: a daemon that
    // CRIU restored (or migrated to another host) holds the file at its path under a new inode, and
    // that file is the one its readers have mapped.
    if (onDisk?.ino !== st.ino || onDisk.dev !== st.dev || !onDisk.isFile()) {
      const value = this.read();
      if (onDisk) unlinkIfPresent(this.path);
      const fresh = Page.open(this.path, value);
      // Readers that mapped the old file keep it: it is still written, so they keep seeing changes.
      this.#orphans.push(this.#fd);
      if (this.#orphans.length > MAX_ORPHANS) fs.closeSync(this.#orphans.shift() as number);
      this.#fd = fresh.#fd;
      this.write(value);
      problem =
        `the page ${this.path} was ${onDisk ? 'replaced' : 'removed'} by someone else; recreated it with ` +
        `generation ${value} for new readers (readers that mapped the old file are still updated)`;
    }
    return problem;
  }

  close(): void {
    fs.closeSync(this.#fd);
    for (const fd of this.#orphans.splice(0)) fs.closeSync(fd);
  }
}

/**
 * Create the page complete under a temporary name and link it into place, unless a page (or anything)
 * already exists at `file`: that one is then opened as it is.
 */
function createComplete(file: string, initial: number): void {
  if (fs.existsSync(file) || isLink(file)) return;
  const tmp = `${file}.new-${process.pid}`;
  unlinkIfPresent(tmp);
  let fd: number;
  try {
    fd = fs.openSync(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new StartupError(`cannot create the page ${tmp}: ${e.message}` + hintFor(e.code));
  }
  try {
    fs.fchmodSync(fd, 0o644);
    fs.ftruncateSync(fd, PAGE_SIZE);
    const buf = Buffer.alloc(4);
    encodeU32(initial, buf);
    fs.writeSync(fd, buf, 0, 4, 0);
    fs.linkSync(tmp, file);
  } catch (err) {
    fs.closeSync(fd);
    unlinkIfPresent(tmp);
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'EEXIST') return;
    throw new StartupError(`cannot create the page ${file}: ${e.message}` + hintFor(e.code));
  }
  unlinkIfPresent(tmp);
  fs.closeSync(fd);
}

function isLink(file: string): boolean {
  try {
    return fs.lstatSync(file).isSymbolicLink();
  } catch {
    return false;
  }
}
