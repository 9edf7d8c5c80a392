// Snapshot-safe building blocks on top of the probe. Node's own generators keep state that a clone
// duplicates: crypto.randomUUID() caches entropy for 128 UUIDs, crypto.randomInt() keeps 6 KiB, a UUIDv7
// generator keeps its last timestamp and sequence, and OpenSSL's DRBG only notices a fork through
// getpid(). These helpers check the generation on every call (one load with the addon) and throw their
// state away the moment it changed, refilling from the kernel's RNG, which the kernel reseeds itself on
// a VM fork. The race that remains (a clone made between the check and the use) is closed by the
// quiesce cycle: see docs/probe.md.

import fs from 'node:fs';
import { type Probe, openProbe, type ProbeOptions } from './probe.js';

export interface SafeRandomOptions extends ProbeOptions {
  /** An open probe to share; default: one opened for this source. */
  readonly probe?: Probe;
  /** Bytes of kernel randomness kept ready (default 4096). */
  readonly poolSize?: number;
  /**
   * Start from these pool bytes instead of fresh ones: what a restored memory image holds. Tests use it
   * to reproduce two clones of one process; applications have no reason to.
   */
  readonly initialPool?: Buffer;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

function kernelRandom(buf: Buffer): void {
  // /dev/urandom is the kernel's CRNG, reseeded by the kernel itself on a VM fork (Linux >= 5.18).
  const fd = fs.openSync('/dev/urandom', 'r');
  try {
    let off = 0;
    while (off < buf.length) off += fs.readSync(fd, buf, off, buf.length - off, null);
  } finally {
    fs.closeSync(fd);
  }
}

function formatUuid(b: Buffer, o: number): string {
  const h = (i: number): string => HEX[b[o + i] as number] as string;
  return (
    `${h(0)}${h(1)}${h(2)}${h(3)}-${h(4)}${h(5)}-${h(6)}${h(7)}-${h(8)}${h(9)}-` +
    `${h(10)}${h(11)}${h(12)}${h(13)}${h(14)}${h(15)}`
  );
}

/** Random bytes and UUIDs whose cached state never survives a generation change. */
export class SafeRandom {
  readonly probe: Probe;
  readonly #pool: Buffer;
  #offset: number;
  #generation: number;
  #v7LastMs = -1;
  #v7Seq = 0;
  readonly #ownsProbe: boolean;

  constructor(opts: SafeRandomOptions = {}) {
    this.#ownsProbe = opts.probe === undefined;
    this.probe = opts.probe ?? openProbe(opts);
    this.#pool = Buffer.alloc(opts.poolSize ?? 4096);
    this.#generation = this.probe.generation();
    if (opts.initialPool) {
      opts.initialPool.copy(this.#pool);
      this.#offset = 0;
    } else {
      this.#offset = this.#pool.length;
    }
  }

  /** The generation the cached state belongs to. */
  get generation(): number {
    return this.#generation;
  }

  /** Drop every cached byte and the UUIDv7 state if the generation moved. True if it did. */
  check(): boolean {
    const now = this.probe.generation();
    if (now === this.#generation) return false;
    this.#generation = now;
    this.#pool.fill(0);
    this.#offset = this.#pool.length;
    this.#v7LastMs = -1;
    this.#v7Seq = 0;
    return true;
  }

  randomBytes(n: number): Buffer {
    this.check();
    const out = Buffer.allocUnsafe(n);
    if (n > this.#pool.length / 2) {
      kernelRandom(out);
      return out;
    }
    if (this.#pool.length - this.#offset < n) {
      kernelRandom(this.#pool);
      this.#offset = 0;
    }
    this.#pool.copy(out, 0, this.#offset, this.#offset + n);
    // Used bytes are wiped so that no later copy of this memory can replay them.
    this.#pool.fill(0, this.#offset, this.#offset + n);
    this.#offset += n;
    return out;
  }

  /** An RFC 9562 version 4 UUID. */
  randomUUID(): string {
    const b = this.randomBytes(16);
    b[6] = ((b[6] as number) & 0x0f) | 0x40;
    b[8] = ((b[8] as number) & 0x3f) | 0x80;
    return formatUuid(b, 0);
  }

  /**
   * An RFC 9562 version 7 UUID: 48-bit Unix milliseconds, then a 12-bit sequence that is monotonic
   * within a millisecond (method 1), then 62 random bits. The sequence restarts from a random value at
   * every generation change, so two clones never continue the same run.
   */
  uuidv7(now: number = Date.now()): string {
    this.check();
    const b = this.randomBytes(16);
    let ms = Math.max(now, this.#v7LastMs);
    if (ms === this.#v7LastMs) {
      this.#v7Seq++;
      if (this.#v7Seq > 0xfff) {
        ms++;
        this.#v7Seq = (b[7] as number) & 0x3ff;
      }
    } else {
      this.#v7Seq = (((b[6] as number) << 8) | (b[7] as number)) & 0x3ff;
    }
    this.#v7LastMs = ms;
    b.writeUIntBE(ms, 0, 6);
    b[6] = 0x70 | ((this.#v7Seq >> 8) & 0x0f);
    b[7] = this.#v7Seq & 0xff;
    b[8] = ((b[8] as number) & 0x3f) | 0x80;
    return formatUuid(b, 0);
  }

  close(): void {
    if (this.#ownsProbe) this.probe.close();
  }
}

/** A value computed once per generation: `get()` recomputes it the first time after a change. */
export class GenerationScoped<T> {
  readonly #probe: Probe;
  readonly #compute: (generation: number) => T;
  #value: T | undefined;
  #generation: number | undefined;

  constructor(probe: Probe, compute: (generation: number) => T) {
    this.#probe = probe;
    this.#compute = compute;
  }

  get(): T {
    const now = this.#probe.generation();
    if (this.#generation !== now || this.#value === undefined) {
      this.#value = this.#compute(now);
      this.#generation = now;
    }
    return this.#value;
  }

  /** Forget the value (for example after the application rotated it by itself). */
  reset(): void {
    this.#value = undefined;
    this.#generation = undefined;
  }
}
