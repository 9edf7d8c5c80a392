// The kernel VM-fork backend. Since Linux 5.18 the vmgenid driver reseeds the RNG when the VM
// generation ID changes and logs "random: crng reseeded due to virtual machine fork" (Firecracker,
// QEMU with a new guid=, Hyper-V, EC2). Only facility-0 records are the kernel's: a write to /dev/kmsg
// from userspace is filed under LOG_USER, so a spoofed line never bumps.
//
// One non-blocking descriptor reads the backlog and then follows. With the native addon it is watched
// by libuv's own poll and wakes as soon as the kernel appends a record. Without it Node cannot poll a
// character device, so a timer drains it every FALLBACK_POLL_MS: a blocking read() in libuv's thread
// pool would wake at once too, but it cannot be cancelled, and at exit Node joins the pool's threads, so
// a daemon stopped between two kernel records never exited (it hung until systemd's SIGKILL).

import fs from 'node:fs';
import type { FdWatch } from '../../native/addon.js';
import { POLL_READABLE } from '../../native/addon.js';
import type { BackendContext, BackendReport, Memo, RestoreBackend } from './backend.js';

export const VM_FORK_MESSAGE = 'random: crng reseeded due to virtual machine fork';
export const KMSG_PATH = '/dev/kmsg';
const RECORD_BUFFER = 8192;
/** How often the pure-JS fallback drains /dev/kmsg: the most a VM fork's bump waits without the addon. */
const FALLBACK_POLL_MS = 50;

export interface KmsgRecord {
  readonly facility: number;
  readonly level: number;
  readonly seq: number;
  readonly usec: number;
  readonly message: string;
}

/** One /dev/kmsg record: "PRIO,SEQ,USEC,FLAGS[,...];MESSAGE\n" plus " KEY=VALUE" continuation lines. */
export function parseKmsgRecord(text: string): KmsgRecord | undefined {
  const semi = text.indexOf(';');
  if (semi === -1) return undefined;
  const fields = text.slice(0, semi).split(',');
  const prio = Number(fields[0]);
  const seq = Number(fields[1]);
  const usec = Number(fields[2]);
  if (!Number.isSafeInteger(prio) || !Number.isSafeInteger(seq) || !Number.isSafeInteger(usec) || prio < 0 || seq < 0)
    return undefined;
  const nl = text.indexOf('\n', semi);
  return { facility: prio >> 3, level: prio & 7, seq, usec, message: text.slice(semi + 1, nl === -1 ? undefined : nl) };
}

/**
 * Read every record queued on a non-blocking /dev/kmsg descriptor into `onRecord`. Overwritten records
 * (EPIPE) are reported through `onOverwritten` and skipped; returns why reading stopped if it was not
 * simply drained.
 */
export function drainRecords(
  fd: number,
  buf: Buffer,
  onRecord: (r: KmsgRecord) => void,
  onOverwritten: () => void,
): string | undefined {
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EAGAIN') return undefined;
      if (e.code === 'EPIPE') {
        onOverwritten();
        continue;
      }
      return e.code ?? e.message;
    }
    if (n === 0) return undefined;
    const r = parseKmsgRecord(buf.toString('utf8', 0, n));
    if (r) onRecord(r);
  }
}

/** Every record the kernel log holds now (tests and tools; the backend follows the log instead). */
export function readKernelLog(file: string = KMSG_PATH): KmsgRecord[] {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const out: KmsgRecord[] = [];
  try {
    const failure = drainRecords(
      fd,
      Buffer.alloc(RECORD_BUFFER),
      (r) => out.push(r),
      () => undefined,
    );
    if (failure) throw new Error(`reading ${file} failed: ${failure}`);
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

export type ForkVerdict = 'fork' | 'spoof' | 'other';

export function classify(r: KmsgRecord): ForkVerdict {
  if (r.message !== VM_FORK_MESSAGE) return 'other';
  return r.facility === 0 ? 'fork' : 'spoof';
}

/** The kmsg memo: the last sequence number handled, a number (the state file's former `kmsgSeq`). */
function seqOf(memo: Memo): number | undefined {
  return typeof memo === 'number' && Number.isSafeInteger(memo) ? memo : undefined;
}

/** config.path: where the kernel log is read (tests of the backend only; default /dev/kmsg). */
export class KmsgBackend implements RestoreBackend {
  readonly name = 'kmsg';
  #path = KMSG_PATH;
  #ctx: BackendContext | undefined;
  readonly #buf = Buffer.alloc(RECORD_BUFFER);
  #fd: number | undefined;
  #watch: FdWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastSeq = -1;
  #stopped = false;
  #status: BackendReport = { live: false, detail: 'not started' };

  get path(): string {
    return this.#path;
  }

  get lastSeq(): number {
    return this.#lastSeq;
  }

  status(): BackendReport {
    return this.#status;
  }

  /**
   * Read the backlog at once (counting forks after the persisted sequence number, which happened
   * while no daemon ran), then follow new records.
   */
  start(ctx: BackendContext): void {
    this.#ctx = ctx;
    if (typeof ctx.config.path === 'string') this.#path = ctx.config.path;
    this.#status = this.#start(ctx);
  }

  #start(ctx: BackendContext): BackendReport {
    const { log } = ctx;
    let fd: number;
    try {
      fd = fs.openSync(this.path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const hint =
        e.code === 'EACCES' || e.code === 'EPERM' ? ' (needs root or CAP_SYSLOG when kernel.dmesg_restrict=1)' : '';
      return { live: false, detail: `cannot read ${this.path}: ${e.code ?? e.message}${hint}` };
    }
    const since = seqOf(ctx.memo);
    let backlog = 0;
    let missed = 0;
    const failure = drainRecords(
      fd,
      this.#buf,
      (r) => {
        backlog++;
        this.#lastSeq = r.seq;
        if (since !== undefined && r.seq > since && this.#handle(r)) missed++;
      },
      () => this.#overwritten(),
    );
    if (failure) {
      fs.closeSync(fd);
      return { live: false, detail: `cannot read ${this.path}: ${failure}` };
    }
    if (missed > 0) log.warn(`kmsg: ${missed} VM fork(s) happened while no daemon was running; counted them`);
    if (this.#lastSeq >= 0 && this.#lastSeq !== since) ctx.remember(this.#lastSeq);
    // The same descriptor follows from where the backlog ended.
    this.#fd = fd;
    const native = ctx.addon;
    try {
      if (native) {
        this.#watch = native.watchFd(fd, POLL_READABLE, (status) => this.#drainReady(fd, status));
      } else {
        this.#timer = setInterval(() => this.#drainReady(fd, 0), FALLBACK_POLL_MS);
        // The daemon's sockets keep it alive; this timer must not keep a stopping one.
        this.#timer.unref();
      }
    } catch (err) {
      this.stop();
      return { live: false, detail: `cannot follow ${this.path}: ${(err as Error).message}` };
    }
    const from = since === undefined ? `skipped a backlog of ${backlog} records` : `resumed after seq ${since}`;
    const how = native ? 'poll' : `drained every ${FALLBACK_POLL_MS} ms without the native addon`;
    return { live: true, detail: `following ${this.path} for "${VM_FORK_MESSAGE}" (facility 0, ${how}); ${from}` };
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.close();
    this.#watch = undefined;
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }

  /** Readiness from the addon's poll, or the fallback's timer: read every record there is, then wait again. */
  #drainReady(fd: number, status: number): void {
    if (this.#stopped) return;
    if (status < 0) {
      this.#fail(`poll failed (${status})`);
      return;
    }
    const failure = drainRecords(
      fd,
      this.#buf,
      (r) => this.#record(r),
      () => this.#overwritten(),
    );
    if (failure) this.#fail(failure);
  }

  #overwritten(): void {
    this.#ctx?.log.warn(
      'kmsg: records were overwritten before they were read (EPIPE); continuing with the oldest kept',
    );
  }

  #record(r: KmsgRecord | undefined): void {
    // A sequence number already handled is never counted twice.
    if (r && r.seq > this.#lastSeq) {
      this.#lastSeq = r.seq;
      this.#handle(r);
    }
  }

  #fail(why: string): void {
    this.#ctx?.log.error(`kmsg: reading ${this.path} failed: ${why}; the kernel backend stops`);
    this.#status = { live: false, detail: `stopped: reading ${this.path} failed: ${why}` };
    this.stop();
  }

  /** True when the record was a VM fork that was acted on. */
  #handle(r: KmsgRecord): boolean {
    const verdict = classify(r);
    if (verdict === 'spoof') {
      this.#ctx?.log.warn(
        `kmsg: ignoring a VM-fork line from userspace at seq ${r.seq} (facility ${r.facility}, not the kernel's 0)`,
      );
      return false;
    }
    if (verdict !== 'fork') return false;
    this.#ctx?.restored(`kmsg: VM fork (seq ${r.seq})`, r.seq);
    return true;
  }
}
