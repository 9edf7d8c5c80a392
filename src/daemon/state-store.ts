// Persisted daemon state next to the page. One fixed-size record rewritten in place with a single
// pwrite: a process killed at any instant leaves either the old or the new record (the runtime
// directory only has to survive the daemon, not a power cut), and a bump costs no file creation.

import fs from 'node:fs';
import { isU32 } from '../core/generation.js';
import { openOwnedFile } from './page.js';

export const RECORD_SIZE = 256;

export interface PersistedState {
  readonly generation: number;
  /** Kernel boot id when the memos were written; memos of another boot are not handed to backends. */
  readonly bootId?: string;
  /** Each restore backend's own bookkeeping, by backend name; never read here (src/daemon/backends/). */
  readonly memos: Readonly<Record<string, unknown>>;
}

export interface StateUpdate {
  readonly generation?: number;
  /**
   * Memos to keep, by backend name, written in the boot `bootId`. Memos of an earlier boot are dropped
   * then: they cannot mean anything any more, and must not come back should the boot id be read again.
   */
  readonly memos?: { readonly bootId: string | undefined; readonly byName: Readonly<Record<string, unknown>> };
}

/** Where the record of the daemons before backends had memos kept their bookkeeping. */
const LEGACY_MEMOS: ReadonlyArray<readonly [key: string, backend: string]> = [
  ['kmsgSeq', 'kmsg'],
  ['vmclockGen', 'vmclock'],
];

export class StateStore {
  readonly path: string;
  #fd: number;
  readonly #record = Buffer.alloc(RECORD_SIZE);
  #state: PersistedState = { generation: 0, memos: {} };

  private constructor(file: string, fd: number) {
    this.path = file;
    this.#fd = fd;
  }

  /** Open the record; `problem` explains a record that was present but unreadable. */
  static open(file: string): { store: StateStore; loaded: PersistedState | undefined; problem?: string } {
    const { fd, st } = openOwnedFile(file, 0o644, 'state file');
    const store = new StateStore(file, fd);
    if (st.size === 0) return { store, loaded: undefined };
    const buf = Buffer.alloc(RECORD_SIZE);
    const n = fs.readSync(fd, buf, 0, RECORD_SIZE, 0);
    try {
      const parsed = JSON.parse(buf.toString('utf8', 0, n).trim()) as Record<string, unknown>;
      if (!isU32((parsed.generation ?? -1) as number)) throw new Error('no valid generation');
      const memos: Record<string, unknown> = {};
      for (const [key, backend] of LEGACY_MEMOS) if (parsed[key] !== undefined) memos[backend] = parsed[key];
      if (isObject(parsed.memos)) Object.assign(memos, parsed.memos);
      const loaded: PersistedState = {
        generation: parsed.generation as number,
        ...(typeof parsed.bootId === 'string' ? { bootId: parsed.bootId } : {}),
        memos,
      };
      store.#state = loaded;
      return { store, loaded };
    } catch (err) {
      return { store, loaded: undefined, problem: `the state file ${file} is unreadable (${(err as Error).message})` };
    }
  }

  get state(): PersistedState {
    return this.#state;
  }

  /** The memos written in the boot `bootId`; none when that is unknown or another boot wrote them. */
  memosOf(bootId: string | undefined): Readonly<Record<string, unknown>> {
    return bootId !== undefined && this.#state.bootId === bootId ? this.#state.memos : {};
  }

  save(update: StateUpdate): void {
    const state = this.#state;
    let next: PersistedState = update.generation === undefined ? state : { ...state, generation: update.generation };
    if (update.memos) {
      const { bootId, byName } = update.memos;
      const kept = bootId === state.bootId ? state.memos : {};
      const boot = bootId === undefined ? {} : { bootId };
      next = { generation: next.generation, ...boot, memos: { ...kept, ...byName } };
    }
    const json = JSON.stringify(next);
    if (Buffer.byteLength(json) > RECORD_SIZE - 1) throw new Error('state record too large');
    this.#record.fill(0x20);
    this.#record.write(json, 0, 'utf8');
    this.#record[RECORD_SIZE - 1] = 0x0a;
    const n = fs.writeSync(this.#fd, this.#record, 0, RECORD_SIZE, 0);
    if (n !== RECORD_SIZE) throw new Error(`short write to the state file (${n} of ${RECORD_SIZE} bytes)`);
    this.#state = next;
  }

  /** The file at `path` was lost (its directory removed): write the record there afresh. */
  reopen(): void {
    const { fd } = openOwnedFile(this.path, 0o644, 'state file');
    fs.closeSync(this.#fd);
    this.#fd = fd;
    this.save({});
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
