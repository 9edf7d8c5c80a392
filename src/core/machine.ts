// The generation machine and the lifecycle machine composed into the one machine the daemon drives.
// Pure like its parts (no I/O, time passed in). It owns what ties them together: the lifecycle follows
// the generation's outdated count, a subscriber stays a watcher, only subscribers answer, and a
// QUIESCE/UNQUIESCE whose report is known at once gets it as the call's result. test/model.test.ts
// checks the composition against an independent reference.

import { SysgenidError } from './errors.js';
import { type Effect, GenerationMachine, type WaitResult, type WatcherId, type WatcherInfo } from './generation.js';
import {
  type CycleReport,
  type LifecycleEffect,
  LifecycleMachine,
  type LifecycleMachineOptions,
  type SubscriberOwner,
} from './lifecycle.js';

/** Everything the owner carries out: notify, read, wait (generation); ask, reply, timer, log (lifecycle). */
export type MachineEffect = Effect | LifecycleEffect;

/** What a subscriber says back: QUIESCED, UNQUIESCED or FAILED on the wire. */
export type SubscriberAnswer = 'quiesced' | 'unquiesced' | 'failed';

/** The lifecycle as the owner may read it (status); every change goes through the machine. */
export type LifecycleView = Pick<
  LifecycleMachine,
  | 'state'
  | 'since'
  | 'ready'
  | 'current'
  | 'last'
  | 'adjustDeadline'
  | 'adjustingQuiesced'
  | 'isSubscribed'
  | 'subscriber'
  | 'order'
  | 'subscribersOf'
>;

/** Who subscribes, and how many subscribers that uid may have (undefined: no cap, as for root). */
export interface SubscribeAs extends SubscriberOwner {
  readonly maxPerUid?: number | undefined;
}

export class CoreMachine {
  readonly #generation: GenerationMachine;
  readonly #lifecycle: LifecycleMachine;
  readonly #sink: (e: MachineEffect) => void;
  /** The outdated count the lifecycle last heard of. */
  #lifecycleOutdated = 0;
  /** The requester of the QUIESCE/UNQUIESCE being called, and its report if the call produced it. */
  #caller: { readonly id: number; report: CycleReport | undefined } | undefined;

  constructor(initial: number, opts: LifecycleMachineOptions, sink: (e: MachineEffect) => void, now: number) {
    this.#sink = sink;
    this.#generation = new GenerationMachine(initial, sink);
    this.#lifecycle = new LifecycleMachine(initial, opts, (e) => this.#fromLifecycle(e), now);
  }

  get generation(): number {
    return this.#generation.generation;
  }

  get outdated(): number {
    return this.#generation.outdated;
  }

  get watchers(): number {
    return this.#generation.watchers;
  }

  get tracked(): number {
    return this.#generation.tracked;
  }

  get lifecycle(): LifecycleView {
    return this.#lifecycle;
  }

  list(): IterableIterator<WatcherInfo> {
    return this.#generation.list();
  }

  isObserver(id: WatcherId): boolean {
    return this.#generation.isObserver(id);
  }

  isExcluded(id: WatcherId): boolean {
    return this.#generation.isExcluded(id);
  }

  /**
   * An administrator takes a watcher out of everything others wait on: it is no longer tracked (so WAIT
   * and readiness stop waiting for it), no longer a subscriber (a cycle waiting for its answer moves on),
   * and may not track or subscribe again; it stays connected and is still notified. ENOENT when `id` is
   * not a watcher (unknown, or a control connection).
   */
  exclude(id: WatcherId, now: number): void {
    if (!this.#generation.has(id) || this.#generation.isObserver(id)) {
      throw new SysgenidError('ENOENT', `no watcher with id ${id}`);
    }
    this.#generation.exclude(id);
    this.#lifecycle.exclude(id, now);
    this.#outdatedMayHaveChanged(now);
  }

  /** A new connection; a control connection connects as an observer (it is never a watcher). */
  connect(id: WatcherId, options: { observer?: boolean } = {}): void {
    this.#generation.connect(id, options);
  }

  /** The connection is gone: as a watcher, as a requester (no reply) and as a subscriber. */
  disconnect(id: WatcherId, now: number): void {
    this.#generation.disconnect(id);
    this.#names.delete(id);
    this.#lifecycle.dropRequester(id);
    this.#lifecycle.unsubscribe(id, now);
    this.#outdatedMayHaveChanged(now);
  }

  read(id: WatcherId, nonblock: boolean): number | undefined {
    return this.#generation.read(id, nonblock);
  }

  ack(id: WatcherId, value: number, now: number): void {
    this.#generation.ack(id, value);
    this.#outdatedMayHaveChanged(now);
  }

  resume(id: WatcherId, handled: number, now: number): void {
    this.#generation.resume(id, handled, now);
    this.#outdatedMayHaveChanged(now);
  }

  setTracking(id: WatcherId, on: boolean, now: number): void {
    this.#generation.setTracking(id, on);
    this.#outdatedMayHaveChanged(now);
  }

  /** Become an observer. A subscriber cannot: the lifecycle needs it to re-adjust as a watcher. */
  observe(id: WatcherId, now: number): void {
    if (this.#lifecycle.isSubscribed(id)) {
      throw new SysgenidError('EINVAL', 'a lifecycle subscriber must stay a watcher; UNSUBSCRIBE first');
    }
    this.#generation.observe(id);
    this.#outdatedMayHaveChanged(now);
  }

  wait(id: WatcherId): WaitResult | undefined {
    return this.#generation.wait(id);
  }

  expireWait(id: WatcherId): boolean {
    return this.#generation.expireWait(id);
  }

  nextGeneration(min = 0): number {
    return this.#generation.nextGeneration(min);
  }

  /** Commit a generation from nextGeneration() once it is durable; the lifecycle re-adjusts with it. */
  advance(generation: number, now: number): void {
    this.#generation.advance(generation, now);
    this.#lifecycleOutdated = this.#generation.outdated;
    this.#lifecycle.generationChanged(generation, this.#lifecycleOutdated, now);
  }

  /**
   * Only a watcher subscribes: observers (control connections included) are never asked anything, an
   * excluded watcher is refused, and so is a new subscriber past its uid's cap (one user's subscribers
   * can each hold up a quiesce for its whole budget).
   */
  subscribe(
    id: WatcherId,
    name: string | null,
    priority: number,
    as: SubscribeAs = { uid: null, pid: null },
  ): ReturnType<LifecycleMachine['subscribe']> {
    if (!this.#generation.has(id) || this.#generation.isObserver(id)) {
      throw new SysgenidError('EINVAL', 'only a watcher on the watch socket can subscribe to the lifecycle');
    }
    if (this.#generation.isExcluded(id)) {
      throw new SysgenidError('EACCES', 'this watcher was excluded by an administrator and cannot subscribe');
    }
    const { maxPerUid } = as;
    const full = maxPerUid !== undefined && this.#lifecycle.subscribersOf(as.uid) >= maxPerUid;
    if (full && !this.#lifecycle.isSubscribed(id)) {
      const who = as.uid === null ? 'clients of unknown uid' : `uid ${as.uid}`;
      const why = `${who} already has ${maxPerUid} lifecycle subscriber(s), the most one user may have`;
      throw new SysgenidError('EDQUOT', why);
    }
    return this.#lifecycle.subscribe(id, name, priority, { uid: as.uid, pid: as.pid });
  }

  unsubscribe(id: WatcherId, now: number): void {
    this.#lifecycle.unsubscribe(id, now);
  }

  rename(id: WatcherId, name: string | null): void {
    if (name === null) this.#names.delete(id);
    else this.#names.set(id, name);
    this.#lifecycle.rename(id, name);
  }

  /** Every connection's name (NAME), for the log line that names the watchers late at the adjust timeout. */
  readonly #names = new Map<WatcherId, string>();

  #lateWatchers(): string {
    const late = [...this.#generation.list()].filter((w) => w.tracked && w.acked !== this.#generation.generation);
    const named = late.slice(0, 20).map((w) => `${this.#names.get(w.id) ?? 'unnamed'} (#${w.id})`);
    return `${named.join(', ')}${late.length > 20 ? `, and ${late.length - 20} more` : ''}`;
  }

  answer(id: WatcherId, answer: SubscriberAnswer, cycle: number, error: string | null, now: number): void {
    if (!this.#lifecycle.isSubscribed(id)) {
      throw new SysgenidError('EINVAL', `${answer.toUpperCase()}: this connection is not subscribed`);
    }
    const ok = answer !== 'failed';
    this.#lifecycle.answer(id, cycle, ok, ok ? null : error, now);
  }

  /** Quiesce; the report when the cycle ended within the call (nobody to ask), else undefined and a reply later. */
  quiesce(requester: number, timeoutMs: number, now: number): CycleReport | undefined {
    return this.#calling(requester, () => this.#lifecycle.quiesce(requester, timeoutMs, now));
  }

  /** Un-quiesce; the report at once when it is known, else undefined and a reply effect later. */
  unquiesce(requester: number, timeoutMs: number, now: number): CycleReport | undefined {
    return this.#calling(requester, () => this.#lifecycle.unquiesce(requester, timeoutMs, now));
  }

  /** The lifecycle's timer fired. */
  tick(now: number): void {
    this.#lifecycle.tick(now);
  }

  #calling(requester: number, call: () => void): CycleReport | undefined {
    const caller = { id: requester, report: undefined as CycleReport | undefined };
    this.#caller = caller;
    try {
      call();
      return caller.report;
    } finally {
      this.#caller = undefined;
    }
  }

  #fromLifecycle(e: LifecycleEffect): void {
    if (e.kind === 'log' && e.late) {
      this.#sink({ kind: 'log', level: e.level, message: `${e.message}; late: ${this.#lateWatchers()}` });
      return;
    }
    const caller = this.#caller;
    if (e.kind === 'reply' && caller !== undefined && e.requesters.includes(caller.id)) {
      caller.report = e.report;
      // Still emitted, without the caller, so that the owner sees (and logs) every finished cycle once.
      this.#sink({ ...e, requesters: e.requesters.filter((r) => r !== caller.id) });
      return;
    }
    this.#sink(e);
  }

  /** Acknowledgements, disconnects, tracking and RESUME change the outdated count; the lifecycle follows it. */
  #outdatedMayHaveChanged(now: number): void {
    const outdated = this.#generation.outdated;
    if (outdated === this.#lifecycleOutdated) return;
    this.#lifecycleOutdated = outdated;
    this.#lifecycle.outdatedChanged(outdated, now);
  }
}
