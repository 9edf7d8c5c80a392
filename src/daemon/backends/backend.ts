// Restore backends: what notices, without anyone forcing it, that this machine was restored or cloned,
// and moves the generation. Each backend is one file in this folder implementing RestoreBackend; the
// daemon starts, reports and stops them through registry.ts and knows nothing else about them.
//
// Adding a backend (`host.ts`, the hypervisor host's channel, was added so: one file, one line; it
// needed the three members of BackendContext after `remember`, and restored()'s minimum and result):
//   1. write src/daemon/backends/NAME.ts with a class implementing RestoreBackend; its status() detail
//      says in words why it is live or off, which `sysgenid status` prints as is;
//   2. add one line to BACKENDS in registry.ts, saying whether `--backends auto` turns it on. An opt-in
//      backend that brings much code with it may be loaded only when enabled (`host` is: its `create`
//      imports the module, and the daemon creates the enabled backends before it listens).
// `--backends`, `sysgenidd --help`, the STATUS list and the start-up log follow from that line. Settings
// arrive in ctx.config, the backend's own bag from DaemonOptions.backendConfig[NAME]; bookkeeping that must
// survive a daemon restart (a position, a last counter) goes through ctx.remember and comes back as
// ctx.memo, which the state file keeps under the backend's name without reading it.
//
// Not here: the CRIU action script (`sysgenid criu-action`, src/cli/). It runs in CRIU's process during
// a restore and reaches the daemon inside the restored tree as an ordinary client over the control
// socket (docs/backends/criu.md), so it is not something the daemon starts.

import fs from 'node:fs';
import type { Addon } from '../../native/addon.js';
import type { Logger } from '../log.js';

/** A backend's settings: plain values only, so they can come from a command line or a test. */
export type BackendConfig = Readonly<Record<string, string | number | boolean | undefined>>;

/** A JSON value the daemon persists for one backend and never looks inside. */
export type Memo = unknown;

export interface BackendContext {
  readonly log: Logger;
  /** The native addon, or undefined (not built, or SYSGENID_NO_ADDON=1). */
  readonly addon: Addon | undefined;
  /**
   * What this backend last remembered, if that was in this boot: kernel sequence numbers and device
   * counters only mean something within the boot that wrote them. Undefined on a first start, after a
   * reboot, or where the boot id cannot be read. Check its shape: the file may be old or hand-edited.
   */
  readonly memo: Memo;
  readonly config: BackendConfig;
  /**
   * A restore was seen: a new generation now, with `memo` (if given) in the same state record, so a
   * crash cannot leave a bump without its bookkeeping or the other way round. Never throws; a failure
   * is logged. `min`: the new generation is at least this (as BUMP min). Returns the new generation, or
   * undefined when it could not move.
   */
  restored(source: string, memo?: Memo, min?: number): number | undefined;
  /** Persist `memo` without a bump (a position reached, a counter seen at start). Never throws. */
  remember(memo: Memo): void;
  /** The generation now. */
  generation(): number;
  /**
   * The daemon's runtime directory. A backend that takes requests on the daemon's behalf (the host
   * channel's quiesce, un-quiesce, wait and status) asks its control socket there, so that they keep
   * the control verbs' own semantics instead of a second copy.
   */
  readonly dir: string;
}

export interface BackendReport {
  readonly live: boolean;
  /** Why it is live or off, in words; STATUS and the start-up log show it as is. */
  readonly detail: string;
}

export interface RestoreBackend {
  /** The name in --backends, STATUS and the state file; the same as its registry entry. */
  readonly name: string;
  /** Set up and begin watching; a backend that cannot run says so in status(), it does not throw. */
  start(ctx: BackendContext): void;
  status(): BackendReport;
  /** Release everything start() took; called once, also after a start that left the backend off. */
  stop(): void;
}

/** The kernel's id of this boot, or undefined where /proc does not say. */
export function currentBootId(): string | undefined {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}
