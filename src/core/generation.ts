// The SysGenID semantics as a pure state machine: no I/O, no clock, no timers. The daemon drives it
// from sockets and the tests drive it directly, so both share one reference behaviour
// (docs/PROTOCOL.md, "Semantics"; ../shared/reference/platform-facts.md §1).

import { SysgenidError } from './errors.js';

export const U32_MAX = 0xffff_ffff;

export type WatcherId = number;

export interface WatcherInfo {
  readonly id: WatcherId;
  /** Last generation this watcher acknowledged (or the one current when it connected). */
  readonly acked: number;
  /** Counted by wait-for-watchers when outdated. */
  readonly tracked: boolean;
  /** An observer is a connection that is not a watcher: never listed, counted, tracked or notified. */
  readonly observer: boolean;
  /** Time (caller's clock) when it became outdated, or undefined while up to date. */
  readonly outdatedSince: number | undefined;
}

export type WaitResult = 'OK' | 'EINTR' | 'ETIME';

/** What the owner of the state machine must carry out after a transition. */
export type Effect =
  /** Tell these watchers, once, that `generation` is new for them. */
  | { readonly kind: 'notify'; readonly ids: readonly WatcherId[]; readonly generation: number }
  /** A blocking read pending on this watcher completes with `generation`. */
  | { readonly kind: 'read'; readonly id: WatcherId; readonly generation: number }
  /** A wait pending on this watcher completes. */
  | { readonly kind: 'wait'; readonly id: WatcherId; readonly result: WaitResult };

export type EffectSink = (effect: Effect) => void;

/** The machine's own record of a connection (the client library's Watcher is another thing). */
interface WatcherRecord {
  id: WatcherId;
  acked: number;
  tracked: boolean;
  observer: boolean;
  outdatedSince: number | undefined;
  excluded: boolean;
  readPending: boolean;
  waitPending: boolean;
}

export function isU32(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

export class GenerationMachine {
  #counter: number;
  #outdated = 0;
  #tracked = 0;
  #watcherCount = 0;
  readonly #watchers = new Map<WatcherId, WatcherRecord>();
  readonly #readers = new Set<WatcherRecord>();
  readonly #waiters = new Set<WatcherRecord>();
  readonly #sink: EffectSink;

  constructor(initial: number, sink: EffectSink) {
    if (!isU32(initial)) throw new RangeError(`initial generation ${initial} is not a u32`);
    this.#counter = initial;
    this.#sink = sink;
  }

  get generation(): number {
    return this.#counter;
  }

  /** Tracked watchers whose acknowledged generation differs from the counter. */
  get outdated(): number {
    return this.#outdated;
  }

  /** Connections that are watchers (observers excluded). */
  get watchers(): number {
    return this.#watcherCount;
  }

  get tracked(): number {
    return this.#tracked;
  }

  has(id: WatcherId): boolean {
    return this.#watchers.has(id);
  }

  info(id: WatcherId): WatcherInfo {
    const w = this.#get(id);
    return { id: w.id, acked: w.acked, tracked: w.tracked, observer: w.observer, outdatedSince: w.outdatedSince };
  }

  /** Excluded by an administrator (exclude()): untracked, and it may not track itself again. */
  isExcluded(id: WatcherId): boolean {
    return this.#watchers.get(id)?.excluded === true;
  }

  *list(): IterableIterator<WatcherInfo> {
    for (const w of this.#watchers.values()) {
      if (!w.observer) {
        yield { id: w.id, acked: w.acked, tracked: w.tracked, observer: false, outdatedSince: w.outdatedSince };
      }
    }
  }

  isOutdated(id: WatcherId): boolean {
    return this.#get(id).acked !== this.#counter;
  }

  /** open(): a new tracked watcher that has seen the current generation. */
  connect(id: WatcherId, options: { observer?: boolean } = {}): void {
    if (this.#watchers.has(id)) throw new Error(`watcher ${id} already connected`);
    const observer = options.observer === true;
    const w: WatcherRecord = {
      id,
      acked: this.#counter,
      tracked: !observer,
      observer,
      outdatedSince: undefined,
      excluded: false,
      readPending: false,
      waitPending: false,
    };
    this.#watchers.set(id, w);
    if (!observer) {
      this.#watcherCount++;
      this.#tracked++;
    }
  }

  /** close(): an outdated watcher leaves the outdated count, which may release waiters. */
  disconnect(id: WatcherId): void {
    const w = this.#watchers.get(id);
    if (!w) return;
    this.#watchers.delete(id);
    this.#readers.delete(w);
    this.#waiters.delete(w);
    if (!w.observer) this.#watcherCount--;
    if (w.tracked) {
      this.#tracked--;
      if (w.acked !== this.#counter) this.#outdated--;
    }
    this.#settleWaiters();
  }

  isObserver(id: WatcherId): boolean {
    return this.#get(id).observer;
  }

  /** Turn a connection into an observer: it stops being a watcher for good. */
  observe(id: WatcherId): void {
    const w = this.#get(id);
    if (w.observer) return;
    this.#setTracked(w, false);
    w.observer = true;
    // As documented (docs/PROTOCOL.md, Semantics): an observer's acked is the counter when it observed.
    w.acked = this.#counter;
    w.outdatedSince = undefined;
    this.#watcherCount--;
    this.#settleWaiters();
  }

  /**
   * read(): the generation if this watcher is outdated. Otherwise EAGAIN when non-blocking, or
   * `undefined` and a pending read that completes through a 'read' effect at the next bump.
   */
  read(id: WatcherId, nonblock: boolean): number | undefined {
    const w = this.#get(id);
    if (w.acked !== this.#counter) return this.#counter;
    if (nonblock) throw new SysgenidError('EAGAIN');
    if (w.readPending) throw new SysgenidError('EINVAL', 'a read is already pending on this watcher');
    w.readPending = true;
    this.#readers.add(w);
    return undefined;
  }

  /** write(): acknowledge exactly the current generation. Anything else is EINVAL and changes nothing. */
  ack(id: WatcherId, value: number): void {
    const w = this.#get(id);
    if (value !== this.#counter) {
      throw new SysgenidError('EINVAL', `acknowledged ${value} but the generation is ${this.#counter}`);
    }
    if (w.acked === this.#counter) return;
    w.acked = value;
    w.outdatedSince = undefined;
    if (w.tracked) {
      this.#outdated--;
      this.#settleWaiters();
    }
  }

  /**
   * Declare the generation this connection has already handled (a client reconnecting after a daemon
   * restart). Only the caller's own state changes; if it differs from the counter the caller is
   * outdated and is notified at once, so a change that happened while it was away is never lost.
   */
  resume(id: WatcherId, handled: number, now: number): void {
    const w = this.#get(id);
    if (!isU32(handled)) throw new SysgenidError('EINVAL', 'generation must be a u32');
    const wasOutdated = w.acked !== this.#counter;
    w.acked = handled;
    const isOutdated = handled !== this.#counter;
    if (wasOutdated === isOutdated) return;
    if (isOutdated) {
      w.outdatedSince = now;
      if (w.tracked) this.#outdated++;
      if (!w.observer) this.#sink({ kind: 'notify', ids: [w.id], generation: this.#counter });
      this.#completeRead(w);
      if (w.waitPending) this.#completeWait(w, 'EINTR');
    } else {
      w.outdatedSince = undefined;
      if (w.tracked) this.#outdated--;
    }
    this.#settleWaiters();
  }

  /** The tracking knob: untracked watchers are still notified but never waited for. */
  setTracking(id: WatcherId, on: boolean): void {
    const w = this.#get(id);
    if (w.observer) throw new SysgenidError('EINVAL', 'an observer is not a watcher and cannot be tracked');
    if (on && w.excluded) {
      throw new SysgenidError('EACCES', 'this watcher was excluded by an administrator and cannot be tracked again');
    }
    this.#setTracked(w, on);
    this.#settleWaiters();
  }

  /**
   * An administrator excludes a watcher that never acknowledges: it stays connected and notified, but
   * no wait (and so no readiness) depends on it any more, and it cannot turn tracking back on.
   */
  exclude(id: WatcherId): void {
    const w = this.#get(id);
    if (w.observer) throw new SysgenidError('EINVAL', 'an observer is not a watcher and cannot be excluded');
    w.excluded = true;
    this.#setTracked(w, false);
    this.#settleWaiters();
  }

  /**
   * WAIT_WATCHERS. Returns the result at once when it is known, else `undefined` and the wait stays
   * pending until a 'wait' effect or expireWait() (the owner's timer) ends it.
   */
  wait(id: WatcherId): WaitResult | undefined {
    const w = this.#get(id);
    if (w.acked !== this.#counter) return 'EINTR';
    if (this.#outdated === 0) return 'OK';
    if (w.waitPending) throw new SysgenidError('EINVAL', 'a wait is already pending on this watcher');
    w.waitPending = true;
    this.#waiters.add(w);
    return undefined;
  }

  /** The owner's timer fired: true if the wait was still pending (it ends with ETIME). */
  expireWait(id: WatcherId): boolean {
    const w = this.#watchers.get(id);
    if (!w || !w.waitPending) return false;
    w.waitPending = false;
    this.#waiters.delete(w);
    return true;
  }

  /**
   * The generation a bump with this minimum would produce: max(min, counter + 1). Throws EOVERFLOW at
   * the u32 ceiling (the counter never wraps) and EINVAL for a minimum that is not a u32.
   */
  nextGeneration(min = 0): number {
    if (!isU32(min)) throw new SysgenidError('EINVAL', `minimum ${min} is not a u32`);
    if (this.#counter === U32_MAX) {
      throw new SysgenidError('EOVERFLOW', `the generation is ${U32_MAX}, the u32 ceiling; it cannot be raised`);
    }
    return Math.max(min, this.#counter + 1);
  }

  /**
   * Commit a generation computed by nextGeneration() once the owner has made it durable. Every watcher
   * becomes outdated (the caller of a forced update included), every watcher is notified, pending
   * reads complete and pending waits are interrupted.
   */
  advance(generation: number, now: number): void {
    if (!isU32(generation) || generation <= this.#counter) {
      throw new RangeError(`generation ${generation} does not move the counter up from ${this.#counter}`);
    }
    this.#counter = generation;
    const notified: WatcherId[] = [];
    let outdated = 0;
    for (const w of this.#watchers.values()) {
      if (w.acked === generation) {
        // Only reachable through resume() with a future value; such a watcher is now current.
        if (w.outdatedSince !== undefined) w.outdatedSince = undefined;
        continue;
      }
      if (w.outdatedSince === undefined) w.outdatedSince = now;
      if (w.tracked) outdated++;
      if (!w.observer) notified.push(w.id);
    }
    this.#outdated = outdated;
    this.#sink({ kind: 'notify', ids: notified, generation });
    for (const r of [...this.#readers]) if (r.acked !== generation) this.#completeRead(r);
    this.#settleWaiters();
  }

  #get(id: WatcherId): WatcherRecord {
    const w = this.#watchers.get(id);
    if (!w) throw new Error(`no watcher ${id}`);
    return w;
  }

  #setTracked(w: WatcherRecord, on: boolean): void {
    if (w.tracked === on) return;
    w.tracked = on;
    const delta = on ? 1 : -1;
    this.#tracked += delta;
    if (w.acked !== this.#counter) this.#outdated += delta;
  }

  #completeRead(w: WatcherRecord): void {
    if (!w.readPending) return;
    w.readPending = false;
    this.#readers.delete(w);
    this.#sink({ kind: 'read', id: w.id, generation: this.#counter });
  }

  #completeWait(w: WatcherRecord, result: WaitResult): void {
    w.waitPending = false;
    this.#waiters.delete(w);
    this.#sink({ kind: 'wait', id: w.id, result });
  }

  #settleWaiters(): void {
    if (this.#waiters.size === 0) return;
    for (const w of [...this.#waiters]) {
      if (w.acked !== this.#counter) this.#completeWait(w, 'EINTR');
      else if (this.#outdated === 0) this.#completeWait(w, 'OK');
    }
  }
}

/** @deprecated Renamed GenerationMachine; kept because `sysgenid/core` exports it. */
export const GenerationState = GenerationMachine;
/** @deprecated Renamed GenerationMachine; kept because `sysgenid/core` exports it. */
export type GenerationState = GenerationMachine;
