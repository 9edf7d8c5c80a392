// What only some runs of the daemon need, loaded at first use instead of at every start: the daemon
// starts at boot and after every restart, and the bundle's start-up is measured (docs/benchmarks.md).

import type * as ChildProcess from 'node:child_process';
import { createRequire } from 'node:module';

let childProcess: typeof ChildProcess | undefined;

/**
 * node:child_process, which costs about as much to load as a tenth of the daemon's own code; only a hook
 * run, and systemd-notify without the addon, use it.
 */
export function childProcesses(): typeof ChildProcess {
  // createRequire rather than the bundle's require, so the ES modules under dist/src load it the same way.
  childProcess ??= createRequire(import.meta.url)('node:child_process') as typeof ChildProcess;
  return childProcess;
}

/**
 * A module of src/daemon (metrics, install-units, an opt-in backend), loaded from the ES modules under
 * dist/src instead of being bundled: the bundle every daemon start parses stays as it is
 * (scripts/bundle.js). `name` is relative to src/daemon.
 */
export function lazyModule<T>(name: string): Promise<T> {
  const here = import.meta.url;
  const url = here.endsWith('.cjs') ? new URL(`./src/daemon/${name}`, here) : new URL(`./${name}`, here);
  return import(url.href) as Promise<T>;
}
