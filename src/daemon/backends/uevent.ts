// The uevent backend (opt-in). Linux 6.8.0 to 6.8.7 announced a VM generation ID change with a
// KOBJ_CHANGE uevent carrying NEW_VMGENID=1; later kernels reverted it, so this is never on by default.
// Only messages whose netlink sender is the kernel (port 0) count. It needs the native addon: Node has
// no netlink sockets.

import fs from 'node:fs';
import type { FdWatch } from '../../native/addon.js';
import { POLL_READABLE } from '../../native/addon.js';
import type { BackendContext, BackendReport, RestoreBackend } from './backend.js';

export interface Uevent {
  readonly header: string;
  readonly env: ReadonlyMap<string, string>;
}

export function parseUevent(fields: readonly string[]): Uevent {
  const env = new Map<string, string>();
  for (const f of fields.slice(1)) {
    const eq = f.indexOf('=');
    if (eq > 0) env.set(f.slice(0, eq), f.slice(eq + 1));
  }
  return { header: fields[0] ?? '', env };
}

/**
 * NEW_VMGENID=1 is the kernel's own key. A synthetic event written to a sysfs uevent file (root only)
 * arrives as SYNTH_ARG_NEWVMGENID=1 (keys there cannot hold "_"); it counts only when asked for.
 */
export function isVmGenIdChange(e: Uevent, acceptSynthetic: boolean): boolean {
  if (e.env.get('NEW_VMGENID') === '1') return true;
  return acceptSynthetic && e.env.get('SYNTH_ARG_NEWVMGENID') === '1';
}

/** config.synthetic: accept synthetic SYNTH_ARG_NEWVMGENID=1 events (tests, drills). */
export class UeventBackend implements RestoreBackend {
  readonly name = 'uevent';
  #ctx: BackendContext | undefined;
  #acceptSynthetic = false;
  #fd: number | undefined;
  #watch: FdWatch | undefined;
  #status: BackendReport = { live: false, detail: 'not started' };

  status(): BackendReport {
    return this.#status;
  }

  start(ctx: BackendContext): void {
    this.#ctx = ctx;
    this.#acceptSynthetic = ctx.config.synthetic === true;
    const native = ctx.addon;
    if (!native) {
      this.#status = { live: false, detail: 'needs the native addon (Node has no netlink sockets)' };
      return;
    }
    try {
      const fd = native.ueventOpen();
      this.#fd = fd;
      this.#watch = native.watchFd(fd, POLL_READABLE, () => this.#drain(fd));
    } catch (err) {
      this.#status = { live: false, detail: `cannot open the uevent netlink socket: ${(err as Error).message}` };
      return;
    }
    const synth = this.#acceptSynthetic ? ', synthetic SYNTH_ARG_NEWVMGENID=1 accepted' : '';
    this.#status = {
      live: true,
      detail: `kernel uevents with NEW_VMGENID=1 (only Linux 6.8.0 to 6.8.7 sends them${synth})`,
    };
  }

  stop(): void {
    this.#watch?.close();
    this.#watch = undefined;
    if (this.#fd !== undefined) fs.closeSync(this.#fd);
    this.#fd = undefined;
  }

  #drain(fd: number): void {
    const ctx = this.#ctx;
    const native = ctx?.addon;
    if (!ctx || !native || this.#fd !== fd) return;
    for (;;) {
      let msg: { pid: number; fields: string[] } | null;
      try {
        msg = native.ueventRecv(fd);
      } catch (err) {
        ctx.log.error(`uevent: ${(err as Error).message}`);
        return;
      }
      if (!msg) return;
      const e = parseUevent(msg.fields);
      if (!isVmGenIdChange(e, this.#acceptSynthetic)) {
        if (e.env.has('NEW_VMGENID') || e.env.has('SYNTH_ARG_NEWVMGENID')) {
          ctx.log.warn(`uevent: ignoring ${e.header} (synthetic; start with --uevent-synthetic to accept)`);
        }
        continue;
      }
      if (msg.pid !== 0) {
        ctx.log.warn(`uevent: ignoring a VM generation uevent sent by netlink port ${msg.pid}, not the kernel`);
        continue;
      }
      ctx.restored(`uevent: ${e.header}`);
    }
  }
}
