// Who follows the daemon from outside its core: the metrics (src/daemon/metrics.ts) and systemd's STATUS=
// line (src/daemon/sd-notify.ts). The daemon calls these after it acted; an observer that throws is
// logged and never stops a bump or an acknowledgement.

import type { DaemonStatus } from '../protocol/status.js';
import type { Logger } from './log.js';

export interface DaemonObserver {
  /** A new generation is on the page. */
  bumped?(source: string, generation: number): void;
  /** A watcher acknowledged or went away: how many tracked watchers are still outdated. */
  acknowledged?(outdated: number, generation: number): void;
  /** Anything a status line shows may have changed (after the two above). */
  changed?(): void;
}

export class Observers {
  readonly #list: DaemonObserver[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  add(observer: DaemonObserver): void {
    this.#list.push(observer);
  }

  bumped(source: string, generation: number): void {
    for (const o of this.#list) this.#call(() => o.bumped?.(source, generation));
    this.changed();
  }

  acknowledged(outdated: number, generation: number): void {
    for (const o of this.#list) this.#call(() => o.acknowledged?.(outdated, generation));
    this.changed();
  }

  changed(): void {
    for (const o of this.#list) this.#call(() => o.changed?.());
  }

  #call(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.#log.error(`observer failed: ${(err as Error).stack ?? (err as Error).message}`);
    }
  }
}

/** systemd's STATUS= line: what `systemctl status sysgenidd` shows under the unit's name. */
export function statusLine(s: DaemonStatus): string {
  return `generation ${s.generation}; ${s.watchers} watcher(s), ${s.outdated} outdated; lifecycle ${s.lifecycle.state}`;
}
