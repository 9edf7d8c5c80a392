// Persisted daemon state next to the page. One fixed-size record rewritten in place with a single
// pwrite: a process killed at any instant leaves either the old or the new record (the runtime
// directory only has to survive the daemon, not a power cut), and a bump costs no file creation.

import fs from 'node:fs';
import { isU32 } from '../core/generation.js';
import { openOwnedFile } from './page.js';

export const RECORD_SIZE = 256;

export interface PersistedState {
  readonly generation: number;
  /** Kernel boot id when the record was written (a kernel log sequence number only means something within one boot). */
  readonly bootId?: string;
  /** Last /dev/kmsg sequence number the kernel backend has seen. */
  readonly kmsgSeq?: number;
  /** Last vmclock vm_generation_counter seen (a u64, as a decimal string). */
  readonly vmclockGen?: string;
}

export class StateStore {
  readonly path: string;
  readonly #fd: number;
  readonly #record = Buffer.alloc(RECORD_SIZE);
  #state: PersistedState = { generation: 0 };

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
      const parsed = JSON.parse(buf.toString('utf8', 0, n).trim()) as Partial<PersistedState>;
      if (!isU32(parsed.generation ?? -1)) throw new Error('no valid generation');
      const loaded: PersistedState = {
        generation: parsed.generation as number,
        ...(typeof parsed.bootId === 'string' ? { bootId: parsed.bootId } : {}),
        ...(Number.isSafeInteger(parsed.kmsgSeq) ? { kmsgSeq: parsed.kmsgSeq as number } : {}),
        ...(typeof parsed.vmclockGen === 'string' && /^[0-9]{1,20}$/.test(parsed.vmclockGen) ? { vmclockGen: parsed.vmclockGen } : {}),
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

  save(update: Partial<PersistedState>): void {
    const next = { ...this.#state, ...update };
    const json = JSON.stringify(next);
    if (json.length > RECORD_SIZE - 1) throw new Error('state record too large');
    this.#record.fill(0x20);
    this.#record.write(json, 0, 'utf8');
    this.#record[RECORD_SIZE - 1] = 0x0a;
    const n = fs.writeSync(this.#fd, this.#record, 0, RECORD_SIZE, 0);
    if (n !== RECORD_SIZE) throw new Error(`short write to the state file (${n} of ${RECORD_SIZE} bytes)`);
    this.#state = next;
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}
