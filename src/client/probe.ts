// Reads the page: the cheap way to ask "has the generation changed since I adjusted?" without a
// socket. With the native addon the page is mapped and a read is one memory load; without it, one
// pread of 4 bytes. The page is re-opened when the daemon recreated it, so a probe outlives daemon
// restarts. The mapping is read-only and stays private to this class: a write would kill the process.
// What it opens is checked first: the page and the directories above it must belong to root or to the
// caller (another user's page could hold any value), and a page found through the runtime directory
// must have a daemon serving it: a page left by a stopped daemon never changes again, and reading it
// silently would tell the caller that nothing was ever restored.

import fs from 'node:fs';
import path from 'node:path';
import { SysgenidError } from '../protocol/errors.js';
import { decodeU32 } from '../protocol/page-format.js';
import { daemonListening } from '../protocol/liveness.js';
import { PAGE_SIZE, clientPaths } from '../protocol/runtime-dir.js';
import { untrustedDaemonFile } from '../protocol/trust.js';
import { addon } from '../native/addon.js';

export interface ProbeOptions {
  /** Runtime directory; default: resolved like the daemon does. */
  readonly dir?: string;
  /**
   * Read this file instead of <dir>/generation (for example /dev/sysgenid). It is checked for its
   * owner like the page, but not for a live daemon unless `requireDaemon` is true.
   */
  readonly path?: string;
  /** Refuse a page no daemon serves (ENOTCONN). Default: true for the runtime directory's page, false for `path`. */
  readonly requireDaemon?: boolean;
}

export class Probe {
  readonly path: string;
  #fd: number;
  #ino: number;
  #seen: number;
  #mapped: Uint32Array | undefined;
  readonly #buf = Buffer.alloc(4);

  private constructor(file: string, fd: number, ino: number) {
    this.path = file;
    this.#fd = fd;
    this.#ino = ino;
    this.#mapped = Probe.#map(file);
    this.#seen = this.generation();
  }

  static #map(file: string): Uint32Array | undefined {
    const native = addon();
    if (!native) return undefined;
    try {
      return new Uint32Array(native.mapFile(file, PAGE_SIZE), 0, 1);
    } catch {
      return undefined;
    }
  }

  /** True when reads are loads from a mapping (native addon), false when they are preads. */
  get mapped(): boolean {
    return this.#mapped !== undefined;
  }

  static open(opts: ProbeOptions = {}): Probe {
    const file = opts.path ?? clientPaths(opts.dir).page;
    let real = file;
    try {
      real = fs.realpathSync(file);
    } catch {
      // reported by open below
    }
    const why = untrustedDaemonFile(real);
    if (why) {
      throw new SysgenidError(
        'EPERM',
        `not reading the page ${file}: ${why} ` + "(another user's page could hold any value)",
      );
    }
    if ((opts.requireDaemon ?? opts.path === undefined) && daemonListening(path.dirname(real)) === false) {
      const sock = path.join(path.dirname(real), 'watch.sock');
      throw new SysgenidError(
        'ENOTCONN',
        `the page ${file} was left by a daemon that no longer runs (nothing listens on ${sock}): ` +
          'it would never change',
      );
    }
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (err) {
      throw new SysgenidError('ENOTCONN', `cannot open the page ${file}: ${(err as Error).message}`);
    }
    return new Probe(file, fd, fs.fstatSync(fd).ino);
  }

  /** The generation in the page now. */
  generation(): number {
    if (this.#mapped) return this.#mapped[0] as number;
    const n = fs.readSync(this.#fd, this.#buf, 0, 4, 0);
    if (n < 4) throw new SysgenidError('EIO', `the page ${this.path} is shorter than 4 bytes`);
    return decodeU32(this.#buf);
  }

  /** True when the generation differs from the one last passed to adjusted() (or seen at open). */
  changed(): boolean {
    return this.generation() !== this.#seen;
  }

  /** Record that the caller has re-adjusted to `generation` (default: the current one). */
  adjusted(generation: number = this.generation()): void {
    this.#seen = generation;
  }

  /** The generation the caller last adjusted to. */
  get seen(): number {
    return this.#seen;
  }

  /** Re-open the page if the daemon replaced it; true if it did. Cheap enough to call now and then. */
  refresh(): boolean {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.path);
    } catch {
      return false;
    }
    if (st.ino === this.#ino) return false;
    // A replacement is believed only on the terms open() sets.
    let real = this.path;
    try {
      real = fs.realpathSync(this.path);
    } catch {
      return false;
    }
    if (untrustedDaemonFile(real)) return false;
    const fd = fs.openSync(this.path, 'r');
    fs.closeSync(this.#fd);
    this.#fd = fd;
    this.#ino = fs.fstatSync(fd).ino;
    this.#mapped = Probe.#map(this.path);
    return true;
  }

  close(): void {
    this.#mapped = undefined;
    fs.closeSync(this.#fd);
  }
}

export function openProbe(opts: ProbeOptions = {}): Probe {
  return Probe.open(opts);
}
