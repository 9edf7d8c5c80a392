// Every restore backend the daemon knows, in the order STATUS lists them (after the always-on forced
// update). `auto: true`: `--backends auto` (the default) turns it on because it reads a real signal;
// `auto: false`: opt-in, named in --backends to run. See backend.ts for how to add one.

import { lazyModule } from '../lazy.js';
import type { RestoreBackend } from './backend.js';
import type * as HostModule from './host.js';
import { KmsgBackend } from './kmsg.js';
import { TimeJumpBackend } from './timejump.js';
import { UeventBackend } from './uevent.js';
import { VmclockBackend } from './vmclock.js';

export interface BackendEntry {
  readonly name: string;
  readonly auto: boolean;
  /** How `sysgenidd --help` calls an opt-in backend, when its name alone says too little. */
  readonly label?: string;
  /**
   * A new instance. A promise when its module is loaded only when the backend is enabled: `host` brings
   * a third of a client library with it, which a daemon without it should not parse at every start.
   */
  readonly create: () => RestoreBackend | Promise<RestoreBackend>;
}

export const BACKENDS: readonly BackendEntry[] = [
  { name: 'kmsg', auto: true, create: () => new KmsgBackend() },
  { name: 'vmclock', auto: true, create: () => new VmclockBackend() },
  { name: 'uevent', auto: false, create: () => new UeventBackend() },
  { name: 'timejump', auto: false, label: 'the timejump heuristic', create: () => new TimeJumpBackend() },
  {
    name: 'host',
    auto: false,
    label: 'the host channel',
    create: async () => new (await lazyModule<typeof HostModule>('backends/host.js')).HostBackend(),
  },
];

export function backendNames(registry: readonly BackendEntry[] = BACKENDS): string[] {
  return registry.map((b) => b.name);
}

/** What --backends auto turns on. */
export function autoBackends(registry: readonly BackendEntry[] = BACKENDS): string[] {
  return registry.filter((b) => b.auto).map((b) => b.name);
}
