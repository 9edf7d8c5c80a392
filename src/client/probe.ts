// Reads the page: the cheap way to ask "has the generation changed since I adjusted?" without a
// socket. With the native addon the page is mapped and a read is one memory load; without it, one
// pread of 4 bytes. The page is re-opened when the daemon recreated it, so a probe outlives daemon
// restarts. The mapping is read-only and stays private to this class: a write would kill the process.

import fs from 'node:fs';
import { SysgenidError } from '../protocol/errors.js';
import { decodeU32 } from '../protocol/page-format.js';
import { PAGE_SIZE, runtimePaths } from '../protocol/runtime-dir.js';
import { addon } from '../native/addon.js';

export interface ProbeOptions {
  /** Runtime directory; default: resolved like the daemon does. */
  readonly dir?: string;
  /** Read this file instead of <dir>/generation (for example /dev/sysgenid). */
  readonly path?: string;
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
    const file = opts.path ?? runtimePaths(opts.dir).page;
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
