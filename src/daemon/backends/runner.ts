// Starts the registry's enabled backends with their context, answers what STATUS lists under `backends`
// (forced first, then the started ones, then the ones left off), and stops them.

import type { Addon } from '../../native/addon.js';
import type { BackendStatus } from '../../protocol/status.js';
import type { Logger } from '../log.js';
import type { StateStore, StateUpdate } from '../state-store.js';
import { type BackendConfig, type BackendContext, type RestoreBackend, currentBootId } from './backend.js';
import type { BackendEntry } from './registry.js';

export interface RunnerOptions {
  readonly log: Logger;
  readonly addon: Addon | undefined;
  readonly store: StateStore;
  readonly registry: readonly BackendEntry[];
  /** The names given with --backends. */
  readonly enabled: readonly string[];
  readonly config: Readonly<Record<string, BackendConfig>> | undefined;
  /** Where a privileged BUMP comes from, for the `forced` entry. */
  readonly controlPath: string;
  /** The runtime directory (the host backend answers requests through its control socket). */
  readonly dir: string;
  /** The generation now. */
  readonly generation: () => number;
  /** A new generation, at least `min`, with this record; may throw (the runner's restored() catches). */
  readonly bump: (source: string, record: StateUpdate, min: number) => number;
}

export class BackendRunner {
  readonly #o: RunnerOptions;
  readonly #reports: Array<() => BackendStatus> = [];
  readonly #started: RestoreBackend[] = [];
  readonly #created = new Map<string, RestoreBackend | Error>();

  constructor(opts: RunnerOptions) {
    this.#o = opts;
    const forced: BackendStatus = { name: 'forced', live: true, detail: `privileged BUMP on ${opts.controlPath}` };
    this.#reports.push(() => forced);
  }

  /**
   * Create the enabled backends, loading the modules of those loaded at first use (registry.ts). Before
   * the daemon listens, so that start() and the STATUS list it fills stay synchronous: no request can
   * arrive while a backend is missing from the list.
   */
  async load(): Promise<void> {
    for (const entry of this.#o.registry) {
      if (!this.#o.enabled.includes(entry.name)) continue;
      try {
        this.#created.set(entry.name, await entry.create());
      } catch (err) {
        // A damaged installation: that backend is off and says why; the daemon and the others go on.
        this.#created.set(entry.name, new Error(`cannot be loaded: ${(err as Error).message}`));
      }
    }
  }

  start(): void {
    const { log, registry, store } = this.#o;
    const enabled = (name: string): boolean => this.#o.enabled.includes(name);
    const bootId = currentBootId();
    const memos = store.memosOf(bootId);
    for (const entry of registry) {
      if (!enabled(entry.name)) continue;
      const { name } = entry;
      const backend = this.#created.get(name) ?? new Error('not created: load() must come first');
      if (backend instanceof Error) {
        const off: BackendStatus = { name, live: false, detail: backend.message };
        this.#reports.push(() => off);
        continue;
      }
      const ctx: BackendContext = {
        log,
        addon: this.#o.addon,
        memo: memos[name],
        config: this.#o.config?.[name] ?? {},
        restored: (source, memo, min) =>
          this.#restored(source, memo === undefined ? {} : { memos: { bootId, byName: { [name]: memo } } }, min),
        generation: this.#o.generation,
        dir: this.#o.dir,
        remember: (memo) => {
          try {
            store.save({ memos: { bootId, byName: { [name]: memo } } });
          } catch (err) {
            log.error(`backend ${name}: cannot write the state file: ${(err as Error).message}`);
          }
        },
      };
      this.#started.push(backend);
      this.#reports.push(() => ({ name, ...backend.status() }));
      backend.start(ctx);
    }
    for (const { name, auto } of registry) {
      if (enabled(name)) continue;
      const why = auto ? 'not enabled (--backends)' : `opt-in: not enabled (--backends ...,${name})`;
      const off: BackendStatus = { name, live: false, detail: why };
      this.#reports.push(() => off);
    }
    for (const s of this.statuses()) {
      if (s.live) log.info(`backend ${s.name}: live: ${s.detail}`);
      // Asked for and not working deserves a warning; left off on purpose is just information.
      else if (enabled(s.name)) log.warn(`backend ${s.name}: off: ${s.detail}`);
      else log.info(`backend ${s.name}: off: ${s.detail}`);
    }
  }

  statuses(): BackendStatus[] {
    return this.#reports.map((b) => b());
  }

  stop(): void {
    for (const b of this.#started) b.stop();
  }

  /** A backend saw a restore: bump, and keep its bookkeeping in the same state record. Never throws. */
  #restored(source: string, record: StateUpdate, min = 0): number | undefined {
    try {
      return this.#o.bump(source, record, min);
    } catch (err) {
      this.#o.log.error(`${source}: a restore was seen but the generation could not move: ${(err as Error).message}`);
      return undefined;
    }
  }
}
