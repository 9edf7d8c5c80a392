// The vmclock backend. Linux >= 7.0 (and Amazon Linux backports) exposes the hypervisor's vmclock page
// as /dev/vmclock0; Firecracker >= 1.15 bumps its vm_generation_counter on every snapshot restore. The
// layout follows the kernel's include/uapi/linux/vmclock-abi.h (not the uapi-group web page, whose bits
// and offsets differ): all fields little-endian, the mutable ones under the seq_count sequence lock.

import fs from 'node:fs';
import type { FdWatch } from '../../native/addon.js';
import { POLL_READABLE } from '../../native/addon.js';
import type { BackendContext, BackendReport, Memo, RestoreBackend } from './backend.js';

export const VMCLOCK_PATH = '/dev/vmclock0';
export const VMCLOCK_MAGIC = 0x4b4c4356; // "VCLK"
export const OFF_MAGIC = 0;
export const OFF_SEQ = 12;
export const OFF_FLAGS = 24;
export const OFF_VM_GENERATION = 104; // 0x68
export const FLAG_VM_GEN_COUNTER_PRESENT = 1n << 8n;
export const FLAG_NOTIFICATION_PRESENT = 1n << 9n;
const PAGE = 4096;
/** Without device notifications (or without the addon) the page is re-read this often. */
export const FALLBACK_INTERVAL_MS = 50;

export type VmclockRead =
  | { readonly ok: true; readonly generation: bigint; readonly flags: bigint; readonly seq: number }
  | { readonly ok: false; readonly why: string };

/** Read vm_generation_counter under the sequence lock: a consistent copy, or why there is none. */
export function readVmclock(read: () => Buffer, attempts = 100): VmclockRead {
  for (let i = 0; i < attempts; i++) {
    const page = read();
    if (page.length < OFF_VM_GENERATION + 8) return { ok: false, why: `page too short (${page.length} bytes)` };
    const magic = page.readUInt32LE(OFF_MAGIC);
    if (magic !== VMCLOCK_MAGIC) return { ok: false, why: `bad magic 0x${magic.toString(16)} (not a vmclock page)` };
    const seq = page.readUInt32LE(OFF_SEQ);
    if (seq & 1) continue; // the hypervisor is writing
    const flags = page.readBigUInt64LE(OFF_FLAGS);
    const generation = page.readBigUInt64LE(OFF_VM_GENERATION);
    // The copy is consistent only if seq_count did not move while it was taken.
    const again = read();
    if (again.readUInt32LE(OFF_SEQ) !== seq) continue;
    if ((flags & FLAG_VM_GEN_COUNTER_PRESENT) === 0n) {
      return { ok: false, why: 'the device has no vm_generation_counter (flag VM_GEN_COUNTER_PRESENT is clear)' };
    }
    return { ok: true, generation, flags, seq };
  }
  return { ok: false, why: 'seq_count never settled (the hypervisor kept writing)' };
}

/** The vmclock memo: the last vm_generation_counter seen, a u64 as a decimal string (formerly `vmclockGen`). */
function counterOf(memo: Memo): bigint | undefined {
  return typeof memo === 'string' && /^[0-9]{1,20}$/.test(memo) ? BigInt(memo) : undefined;
}

/** config.path: the vmclock device (default /dev/vmclock0). */
export class VmclockBackend implements RestoreBackend {
  readonly name = 'vmclock';
  #path = VMCLOCK_PATH;
  #ctx: BackendContext | undefined;
  #status: BackendReport = { live: false, detail: 'not started' };
  #fd: number | undefined;
  #view: Uint8Array | undefined;
  #watch: FdWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #last: bigint | undefined;
  /** The counter the state file holds for this boot. */
  #saved: bigint | undefined;
  readonly #buf = Buffer.alloc(PAGE);

  get path(): string {
    return this.#path;
  }

  status(): BackendReport {
    return this.#status;
  }

  /** The vm_generation_counter last seen. */
  get counter(): bigint | undefined {
    return this.#last;
  }

  start(ctx: BackendContext): void {
    this.#ctx = ctx;
    if (typeof ctx.config.path === 'string') this.#path = ctx.config.path;
    this.#last = counterOf(ctx.memo);
    this.#saved = this.#last;
    this.#status = this.#start(ctx);
    // Remember the counter this boot starts from, so a restore while no daemon runs is noticed later.
    if (this.#status.live && this.#last !== undefined && this.#last !== this.#saved) {
      this.#saved = this.#last;
      ctx.remember(String(this.#last));
    }
  }

  stop(): void {
    this.#watch?.close();
    this.#watch = undefined;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
    this.#view = undefined;
  }

  #read = (): Buffer => {
    if (this.#view) return Buffer.from(this.#view.slice(0, OFF_VM_GENERATION + 8));
    const n = fs.readSync(this.#fd as number, this.#buf, 0, PAGE, 0);
    return this.#buf.subarray(0, n);
  };

  #start(ctx: BackendContext): BackendReport {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.#path);
    } catch {
      const needs = 'needs Linux >= 7.0 or a backport, and a hypervisor with vmclock such as Firecracker >= 1.15';
      return { live: false, detail: `no ${this.#path} (${needs})` };
    }
    try {
      this.#fd = fs.openSync(this.#path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      return { live: false, detail: `cannot open ${this.#path}: ${why}` };
    }
    const native = ctx.addon;
    // Only the device is mapped: a regular file (a test's stand-in) could be truncated under the mapping.
    if (native && st.isCharacterDevice()) {
      try {
        this.#view = new Uint8Array(native.mapFile(this.#path, PAGE));
      } catch {
        this.#view = undefined;
      }
    }
    const first = readVmclock(this.#read);
    if (!first.ok) {
      this.stop();
      return { live: false, detail: `${this.#path}: ${first.why}` };
    }
    if (this.#last !== undefined && this.#last !== first.generation) {
      ctx.log.warn(
        `vmclock: the VM was restored while no daemon was running (counter ${this.#last} -> ${first.generation})`,
      );
      const from = this.#last;
      this.#last = first.generation;
      this.#saved = first.generation;
      ctx.restored(`vmclock: vm_generation_counter ${from} -> ${first.generation}`, String(first.generation));
    }
    this.#last = first.generation;
    const notifies = (first.flags & FLAG_NOTIFICATION_PRESENT) !== 0n;
    let how: string;
    if (native && st.isCharacterDevice() && notifies) {
      const fd = this.#fd;
      this.#watch = native.watchFd(fd, POLL_READABLE, () => {
        // read() tells the driver this descriptor has seen the current seq_count, which ends POLLIN.
        try {
          fs.readSync(fd, this.#buf, 0, PAGE, 0);
        } catch {
          // nothing to acknowledge
        }
        this.#check();
      });
      how = 'poll on device notifications';
    } else {
      this.#timer = setInterval(() => this.#check(), FALLBACK_INTERVAL_MS);
      this.#timer.unref();
      how =
        `re-read every ${FALLBACK_INTERVAL_MS} ms ` +
        `(${!notifies ? 'the device sends no notifications' : !native ? 'no native addon' : 'not a device'})`;
    }
    return { live: true, detail: `${this.#path}: vm_generation_counter ${first.generation}, ${how}` };
  }

  #check(): void {
    const r = readVmclock(this.#read);
    if (!r.ok) {
      this.#ctx?.log.warn(`vmclock: ${r.why}`);
      return;
    }
    if (r.generation === this.#last) return;
    const from = this.#last as bigint;
    this.#last = r.generation;
    this.#saved = r.generation;
    this.#status = {
      live: true,
      detail: this.#status.detail.replace(/vm_generation_counter \d+/, `vm_generation_counter ${r.generation}`),
    };
    this.#ctx?.restored(`vmclock: vm_generation_counter ${from} -> ${r.generation}`, String(r.generation));
  }
}
