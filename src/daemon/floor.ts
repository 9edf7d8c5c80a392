// The counter floor: the last generation of this boot, kept OUTSIDE the runtime directory, so that losing
// that directory (removed, or its page and state record both damaged) never takes the counter back while
// readers of this boot may still hold an older value. Written in place before the page on every bump,
// so the floor is never below what any reader saw; a floor written in another boot is ignored (the
// runtime directory normally starts empty with each boot, and so does the counter).
//
// Where: `--state-dir DIR` (DIR/floor); else for the default runtime directory /var/lib/sysgenid/floor
// (root) or $XDG_STATE_HOME/sysgenid/floor, ~/.local/state/sysgenid/floor (others); else, for a runtime
// directory given with --dir or SYSGENID_DIR, the file `DIR.floor` beside it (its parent is checked like
// the runtime directory's, and two daemons on different directories must not share one floor).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MAX_BUMP_MIN } from '../defaults.js';
import { isU32 } from '../core/generation.js';
import { resolveRuntimeDir } from '../protocol/runtime-dir.js';
import { openOwnedFile } from './page.js';
import { ensureRuntimeDir } from './runtime-dir.js';

const RECORD_SIZE = 256;

export function defaultStateDir(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0) return '/var/lib/sysgenid';
  const state = env.XDG_STATE_HOME || path.join(env.HOME || os.homedir(), '.local', 'state');
  return path.join(state, 'sysgenid');
}

/** The floor file for the runtime directory `dir`, and whether it lives in a state directory. */
export function floorPath(
  dir: string,
  stateDir: string | undefined,
  env: NodeJS.ProcessEnv,
  uid: number,
): { file: string; inStateDir: boolean } {
  if (stateDir !== undefined) return { file: path.join(path.resolve(stateDir), 'floor'), inStateDir: true };
  const withoutOverride = { ...env, SYSGENID_DIR: undefined };
  if (path.resolve(dir) === path.resolve(resolveRuntimeDir(withoutOverride, uid))) {
    return { file: path.join(defaultStateDir(env, uid), 'floor'), inStateDir: true };
  }
  return { file: `${path.resolve(dir)}.floor`, inStateDir: false };
}

export interface FloorRecord {
  readonly generation: number;
  readonly bootId: string | undefined;
}

export class CounterFloor {
  readonly path: string;
  readonly #fd: number;
  readonly #bootId: string | undefined;
  readonly #record = Buffer.alloc(RECORD_SIZE);

  private constructor(file: string, fd: number, bootId: string | undefined) {
    this.path = file;
    this.#fd = fd;
    this.#bootId = bootId;
  }

  /**
   * Open (or create) the floor. `loaded` is the record when it was written in this boot; `note` says
   * why there is none (another boot, unreadable). Throws when the file cannot be used safely (a link,
   * another owner, a directory it cannot create): the daemon then runs without a floor, loudly.
   */
  static open(
    file: string,
    bootId: string | undefined,
    inStateDir: boolean,
  ): { floor: CounterFloor; loaded?: FloorRecord; note?: string } {
    // A state directory is created like the runtime directory: every directory above checked, no link
    // followed. Beside the runtime directory, its parent was checked already (and may be a sticky /tmp).
    if (inStateDir) ensureRuntimeDir(path.dirname(file), 0o755);
    const { fd, st } = openOwnedFile(file, 0o644, 'counter floor');
    const floor = new CounterFloor(file, fd, bootId);
    if (st.size === 0) return { floor, note: `no counter floor yet in ${file}` };
    const buf = Buffer.alloc(RECORD_SIZE);
    const n = fs.readSync(fd, buf, 0, RECORD_SIZE, 0);
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(buf.toString('utf8', 0, n).trim()) as Record<string, unknown>;
      if (!isU32((parsed.generation ?? -1) as number)) throw new Error('no valid generation');
    } catch (err) {
      return { floor, note: `the counter floor ${file} is unreadable (${(err as Error).message})` };
    }
    const recordBoot = typeof parsed.bootId === 'string' ? parsed.bootId : undefined;
    if (recordBoot !== bootId) return { floor, note: `the counter floor in ${file} is from another boot` };
    return { floor, loaded: { generation: parsed.generation as number, bootId } };
  }

  save(generation: number): void {
    const json = JSON.stringify({ generation, bootId: this.#bootId });
    this.#record.fill(0x20);
    this.#record.write(json, 0, 'utf8');
    this.#record[RECORD_SIZE - 1] = 0x0a;
    const n = fs.writeSync(this.#fd, this.#record, 0, RECORD_SIZE, 0);
    if (n !== RECORD_SIZE) throw new Error(`short write to the counter floor (${n} of ${RECORD_SIZE} bytes)`);
  }

  close(): void {
    fs.closeSync(this.#fd);
  }
}

export interface RecoveryInput {
  /** The page's value, or undefined when there was no page (it was created now). */
  readonly page: number | undefined;
  /** The state record's generation, or undefined when it was missing or unreadable. */
  readonly state: number | undefined;
  /** This boot's floor, or undefined. */
  readonly floor: number | undefined;
  readonly floorPath: string;
}

export interface Recovery {
  readonly initial: number;
  readonly notes: ReadonlyArray<{ readonly level: 'info' | 'warn' | 'error'; readonly message: string }>;
}

/**
 * The generation to start from. The page is written after the floor and before the state record on
 * every bump, so after a crash it may be one bump ahead of the state, never ahead of the floor. A page
 * that is ahead of the floor (and not confirmed by the state), or without a floor ahead of the state
 * beyond the largest forced jump, was damaged: taking it could put the counter near the ceiling.
 */
export function recoverGeneration(input: RecoveryInput): Recovery {
  const { page, state, floor } = input;
  const notes: Array<Recovery['notes'][number]> = [];
  let fromPage = page;
  if (page !== undefined && page > (state ?? 0) && page !== state) {
    const beyondFloor = floor !== undefined && page > floor;
    const implausible = floor === undefined && page > MAX_BUMP_MIN && page !== (state ?? -1) + 1;
    if (beyondFloor || implausible) {
      const against = [
        state === undefined ? 'no state record' : `the state record's ${state}`,
        floor === undefined ? 'no floor' : `the floor ${floor}`,
      ].join(' and ');
      notes.push({
        level: 'error',
        message:
          `the page holds ${page}, implausible against ${against}: taken as ` +
          'damaged and not used (it would move the counter towards its ceiling)',
      });
      fromPage = undefined;
    }
  }
  const initial = Math.max(state ?? 0, fromPage ?? 0, floor ?? 0);
  if (floor !== undefined && floor === initial && floor > Math.max(state ?? 0, fromPage ?? 0)) {
    notes.push({
      level: 'error',
      message:
        `the runtime directory lost the counter (page ${page ?? 'missing'}, ` +
        `state ${state ?? 'missing'}): starting from the counter floor ${floor} in ${input.floorPath}, so the ` +
        'generation does not go back within this boot (readers that mapped the old page stay at its last value)',
    });
  } else if (page === undefined && state === undefined && floor === undefined) {
    notes.push({
      level: 'info',
      message:
        `starting at generation 0: no page, no state record and no counter floor ` +
        `of this boot in ${input.floorPath} (a first start in this boot; otherwise all three were lost)`,
    });
  }
  return { initial, notes };
}
