// The overlord's lifecycle, pure: quiesce every subscriber, keep the machine quiesced while a snapshot
// is taken, and un-quiesce it, in a restored copy only once every tracked watcher has re-adjusted. No
// I/O and no clock: the daemon feeds in requests, answers, time and generation changes, and carries out
// the effects (ask a subscriber, reply to a requester, arm the one timer). docs/lifecycle.md is the
// description of the states, the order and the guarantees.

import { MAX_PRIORITY, MIN_PRIORITY } from '../defaults.js';
import { SysgenidError } from './errors.js';

export type LifecycleState = 'running' | 'quiescing' | 'quiesced' | 'adjusting' | 'unquiescing';
export type StepKind = 'quiesce' | 'unquiesce';
/**
 * asked: waiting for its answer; late: the deadline passed first; skipped: the cycle ended before its turn;
 * excluded: an administrator excluded it before it answered (not a failure of the cycle).
 */
export type StepOutcome = 'asked' | 'done' | 'failed' | 'late' | 'gone' | 'skipped' | 'excluded';

/** Who a subscriber is, as far as the daemon knows (SO_PEERCRED, or the client's word for the pid). */
export interface SubscriberOwner {
  readonly uid: number | null;
  readonly pid: number | null;
}

const NO_OWNER: SubscriberOwner = { uid: null, pid: null };

export { MIN_PRIORITY, MAX_PRIORITY };

/** One subscriber's part in a cycle, as the machine shows it. */
export interface Step {
  readonly id: number;
  readonly name: string | null;
  readonly priority: number;
  readonly outcome: StepOutcome;
  readonly error: string | null;
  readonly askedAt: number | null;
  readonly answeredAt: number | null;
  /** Its uid and pid as the daemon knows them (null: unknown), so that a failure names whom to exclude. */
  readonly uid: number | null;
  readonly pid: number | null;
}

export type CycleOutcome = 'ok' | 'failed' | 'late' | 'interrupted' | 'aborted';

/** A cycle as the machine shows it (read-only); src/protocol/cycle-report.ts is its wire document. */
export interface CycleReport {
  readonly cycle: number;
  readonly kind: StepKind;
  /** Every subscriber answered in time and none failed (an un-quiesce with late ones is not ok). */
  readonly ok: boolean;
  /** Why it is not ok, in one line; null when ok. */
  readonly reason: string | null;
  /**
   * How the cycle ended, for programs (never parse `reason`): null while it runs; else ok, failed (a
   * subscriber failed or went away), late (none failed but one missed the deadline), interrupted (a new
   * generation arrived while quiescing) or aborted (an un-quiesce was requested while quiescing).
   */
  readonly outcome: CycleOutcome | null;
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly generationAtStart: number;
  readonly generationAtEnd: number | null;
  readonly steps: readonly Step[];
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
/** The machine's working record of a cycle, filled in as the cycle goes on. */
type CycleRecord = Mutable<Omit<CycleReport, 'steps'>> & { readonly steps: Array<Mutable<Step>> };

export type LifecycleEffect =
  | {
      readonly kind: 'ask';
      readonly id: number;
      readonly step: StepKind;
      readonly cycle: number;
      readonly generation: number;
    }
  /** Finish the requests (QUIESCE/UNQUIESCE) waiting on this report. */
  | { readonly kind: 'reply'; readonly requesters: readonly number[]; readonly report: CycleReport }
  /** Arm the single timer for `at` (replacing any other), or cancel it (null). */
  | { readonly kind: 'timer'; readonly at: number | null }
  /** `late`: the composed machine appends the names of the tracked watchers still outdated. */
  | { readonly kind: 'log'; readonly level: 'info' | 'warn'; readonly message: string; readonly late?: true };

export interface LifecycleMachineOptions {
  /** After a new generation while quiesced, un-quiesce by itself once every watcher has re-adjusted. */
  readonly autoResume: boolean;
  /** How long re-adjusting may take before the machine is un-quiesced anyway (naming who is late). */
  readonly adjustTimeoutMs: number;
  /** The budget of an un-quiesce that nobody requested (the automatic one). */
  readonly resumeTimeoutMs: number;
}

interface Subscriber {
  readonly id: number;
  readonly seq: number;
  name: string | null;
  readonly priority: number;
  readonly owner: SubscriberOwner;
  /** Told to quiesce in the current quiesced period and not yet un-quiesced. */
  quiesced: boolean;
}

export class LifecycleMachine {
  readonly #emit: (e: LifecycleEffect) => void;
  readonly #opts: LifecycleMachineOptions;
  readonly #subs = new Map<number, Subscriber>();
  #seq = 0;
  #state: LifecycleState = 'running';
  #since: number;
  #cycle = 0;
  /** The cycle in progress (quiescing or unquiescing), or the last one. */
  #current: CycleRecord | undefined;
  #last: { quiesce?: CycleRecord; unquiesce?: CycleRecord } = {};
  #queue: number[] = [];
  #waitingFor: number | undefined;
  #deadline: number | null = null;
  #requesters: number[] = [];
  /** Requests to un-quiesce that wait for re-adjusting to end, with the budget they asked for. */
  #deferredResume: { requesters: number[]; timeoutMs: number } | undefined;
  /** True while adjusting after a quiesce (subscribers are quiesced); false after a bump while running. */
  #adjustingQuiesced = false;
  #adjustDeadline: number | null = null;
  #generation: number;
  #outdated = 0;

  constructor(generation: number, opts: LifecycleMachineOptions, emit: (e: LifecycleEffect) => void, now = 0) {
    this.#generation = generation;
    this.#opts = opts;
    this.#emit = emit;
    this.#since = now;
  }

  get state(): LifecycleState {
    return this.#state;
  }

  get since(): number {
    return this.#since;
  }

  /** Ready for traffic: running, and nobody outdated. */
  get ready(): boolean {
    return this.#state === 'running' && this.#outdated === 0;
  }

  get current(): CycleReport | undefined {
    return this.#current;
  }

  get last(): { quiesce?: CycleReport; unquiesce?: CycleReport } {
    return this.#last;
  }

  get adjustDeadline(): number | null {
    return this.#adjustDeadline;
  }

  get adjustingQuiesced(): boolean {
    return this.#state === 'adjusting' && this.#adjustingQuiesced;
  }

  isSubscribed(id: number): boolean {
    return this.#subs.has(id);
  }

  subscriber(id: number): { priority: number; quiesced: boolean } | undefined {
    const s = this.#subs.get(id);
    return s ? { priority: s.priority, quiesced: s.quiesced } : undefined;
  }

  /** How many subscribers this uid has (null: those whose uid is unknown, counted together). */
  subscribersOf(uid: number | null): number {
    let n = 0;
    for (const s of this.#subs.values()) if (s.owner.uid === uid) n++;
    return n;
  }

  /** The order of un-quiescing: priority ascending, then registration order. Quiescing is its reverse. */
  order(): number[] {
    return [...this.#subs.values()].sort((a, b) => a.priority - b.priority || a.seq - b.seq).map((s) => s.id);
  }

  subscribe(id: number, name: string | null, priority: number, owner: SubscriberOwner = NO_OWNER): LifecycleState {
    if (!Number.isInteger(priority) || priority < MIN_PRIORITY || priority > MAX_PRIORITY) {
      throw new SysgenidError('EINVAL', `priority must be an integer from ${MIN_PRIORITY} to ${MAX_PRIORITY}`);
    }
    const existing = this.#subs.get(id);
    if (existing) {
      if (existing.priority === priority) return this.#state;
      throw new SysgenidError('EINVAL', 'already subscribed with another priority; UNSUBSCRIBE first');
    }
    const sub: Subscriber = { id, seq: this.#seq++, name, priority, owner, quiesced: false };
    this.#subs.set(id, sub);
    // A subscriber that arrives while the machine is (being) quiesced is quiesced too, so that it is
    // un-quiesced with the others; its answer does not decide the cycle that was already running.
    if (
      this.#state !== 'running' &&
      !(this.#state === 'adjusting' && !this.#adjustingQuiesced) &&
      this.#state !== 'unquiescing'
    ) {
      sub.quiesced = true;
      this.#emit({ kind: 'ask', id, step: 'quiesce', cycle: this.#cycle, generation: this.#generation });
    }
    return this.#state;
  }

  rename(id: number, name: string | null): void {
    const s = this.#subs.get(id);
    if (s) s.name = name;
  }

  /** A subscriber left (UNSUBSCRIBE or disconnect). If it was being waited for, the cycle moves on. */
  unsubscribe(id: number, now: number): void {
    this.#leave(id, now, 'gone', 'disconnected before answering');
  }

  /**
   * An administrator excluded this subscriber: it leaves the lifecycle like UNSUBSCRIBE, and a step it
   * was asked for and has not answered is recorded as excluded, which does not fail the cycle, so a
   * quiesce it was holding up moves on to the next subscriber.
   */
  exclude(id: number, now: number): void {
    this.#leave(id, now, 'excluded', 'excluded by an administrator before answering');
  }

  /** The subscriber leaves; a step of the running cycle it has not answered ends with `outcome`. */
  #leave(id: number, now: number, outcome: 'gone' | 'excluded', error: string): void {
    if (!this.#subs.delete(id)) return;
    this.#queue = this.#queue.filter((q) => q !== id);
    const step =
      this.#current?.endedAt === null
        ? this.#current.steps.find((s) => s.id === id && s.outcome === 'asked')
        : undefined;
    if (step) {
      step.outcome = outcome;
      step.error = error;
      step.answeredAt = now;
    }
    if (this.#waitingFor === id) {
      this.#waitingFor = undefined;
      this.#advance(now);
    }
  }

  /** A requester (the QUIESCE or UNQUIESCE caller) went away: the cycle goes on, without a reply. */
  dropRequester(id: number): void {
    this.#requesters = this.#requesters.filter((r) => r !== id);
    if (this.#deferredResume) this.#deferredResume.requesters = this.#deferredResume.requesters.filter((r) => r !== id);
    if (this.#pendingFailure) this.#pendingFailure.requesters = this.#pendingFailure.requesters.filter((r) => r !== id);
  }

  quiesce(requester: number, timeoutMs: number, now: number): void {
    if (this.#state === 'quiesced' || (this.#state === 'adjusting' && this.#adjustingQuiesced)) {
      throw new SysgenidError('EBUSY', 'the machine is already quiesced; UNQUIESCE first');
    }
    if (this.#state === 'quiescing' || this.#state === 'unquiescing') {
      throw new SysgenidError('EBUSY', `a ${this.#state === 'quiescing' ? 'quiesce' : 'un-quiesce'} is in progress`);
    }
    // From running, or adjusting after a bump while running: the watchers re-adjust whatever happens.
    this.#startCycle('quiesce', [requester], timeoutMs, now);
  }

  /**
   * Un-quiesce. While re-adjusting after a restore it waits until every watcher has acknowledged (or
   * `timeoutMs`), then un-quiesces. While quiescing it aborts the quiesce. While running it is a no-op.
   */
  unquiesce(requester: number, timeoutMs: number, now: number): void {
    switch (this.#state) {
      case 'running':
      case 'adjusting':
        if (this.#state === 'adjusting' && this.#adjustingQuiesced) break;
        this.#emit({ kind: 'reply', requesters: [requester], report: this.#emptyReport('unquiesce', now) });
        return;
      case 'unquiescing':
        this.#requesters.push(requester);
        return;
      case 'quiescing':
        this.#finishQuiesce(now, 'aborted: un-quiesce requested while quiescing', 'aborted');
        this.#startCycle('unquiesce', [requester], timeoutMs, now);
        return;
      case 'quiesced':
        this.#startCycle('unquiesce', [requester], timeoutMs, now);
        return;
    }
    // adjusting after a quiesce: wait for the watchers, bounded by this request's budget.
    if (this.#deferredResume) this.#deferredResume.requesters.push(requester);
    else this.#deferredResume = { requesters: [requester], timeoutMs };
    const at = now + timeoutMs;
    if (this.#adjustDeadline === null || at < this.#adjustDeadline) this.#adjustDeadline = at;
    this.#armTimer();
  }

  /** A subscriber's answer to the step of `cycle`. Answers to other cycles are ignored. */
  answer(id: number, cycle: number, ok: boolean, error: string | null, now: number): void {
    const report = this.#current;
    if (!report || report.cycle !== cycle) return;
    const step = report.steps.find((s) => s.id === id);
    if (!step || (step.outcome !== 'asked' && step.outcome !== 'late')) return;
    const wasLate = step.outcome === 'late';
    step.answeredAt = now;
    if (wasLate) {
      // Too late to count; the record keeps that it did answer.
      step.error = `${step.error ?? 'late'}; answered ${ok ? 'done' : `failed: ${error ?? ''}`} after the deadline`;
      return;
    }
    step.outcome = ok ? 'done' : 'failed';
    step.error = ok ? null : error || 'failed';
    if (this.#waitingFor === id) {
      this.#waitingFor = undefined;
      this.#advance(now);
    }
  }

  /** The daemon's generation moved; `outdated` is the number of tracked watchers not yet acknowledged. */
  generationChanged(generation: number, outdated: number, now: number): void {
    this.#generation = generation;
    this.#outdated = outdated;
    switch (this.#state) {
      case 'quiescing':
        // A snapshot was taken (and this is a copy) while quiescing: whoever quiesced re-adjusts and is
        // un-quiesced after; nobody else is asked.
        this.#finishQuiesce(now, `interrupted: generation ${generation} arrived while quiescing`, 'interrupted');
        this.#enterAdjusting(true, now);
        return;
      case 'quiesced':
        this.#enterAdjusting(true, now);
        return;
      case 'running':
        if (outdated > 0) this.#enterAdjusting(false, now);
        return;
      case 'adjusting':
        // Still adjusting (the deadline does not move), unless nobody is outdated any more: every
        // watcher that was had already declared this generation (RESUME), and no acknowledgement will come.
        if (outdated === 0) this.#endAdjusting(now, null);
        return;
      case 'unquiescing':
        // It ends in adjusting if anyone is still outdated then.
        return;
    }
  }

  /** The outdated count changed (an acknowledgement, a disconnect, tracking turned off). */
  outdatedChanged(outdated: number, now: number): void {
    this.#outdated = outdated;
    if (this.#state === 'adjusting' && outdated === 0) this.#endAdjusting(now, null);
  }

  /** The timer fired. Whatever deadline has passed takes effect. */
  tick(now: number): void {
    if (
      this.#deadline !== null &&
      now >= this.#deadline &&
      (this.#state === 'quiescing' || this.#state === 'unquiescing')
    ) {
      this.#deadline = null;
      this.#expireCycle(now);
    }
    if (this.#state === 'adjusting' && this.#adjustDeadline !== null && now >= this.#adjustDeadline) {
      this.#endAdjusting(now, `${this.#outdated} watcher(s) still outdated after the adjust timeout`);
    }
    this.#armTimer();
  }

  // ------------------------------------------------------------------ internals

  #setState(state: LifecycleState, now: number): void {
    if (this.#state === state) return;
    this.#emit({ kind: 'log', level: 'info', message: `lifecycle: ${this.#state} -> ${state}` });
    this.#state = state;
    this.#since = now;
  }

  #emptyReport(kind: StepKind, now: number): CycleRecord {
    return {
      cycle: this.#cycle,
      kind,
      ok: true,
      reason: null,
      outcome: 'ok',
      startedAt: now,
      endedAt: now,
      generationAtStart: this.#generation,
      generationAtEnd: this.#generation,
      steps: [],
    };
  }

  #startCycle(kind: StepKind, requesters: number[], timeoutMs: number, now: number): void {
    this.#cycle++;
    const order = this.order();
    const ids = kind === 'quiesce' ? order.reverse() : order.filter((id) => this.#subs.get(id)?.quiesced);
    this.#current = {
      cycle: this.#cycle,
      kind,
      ok: true,
      reason: null,
      outcome: null,
      startedAt: now,
      endedAt: null,
      generationAtStart: this.#generation,
      generationAtEnd: null,
      steps: [],
    };
    this.#queue = ids;
    this.#requesters = requesters;
    this.#deadline = now + timeoutMs;
    this.#setState(kind === 'quiesce' ? 'quiescing' : 'unquiescing', now);
    this.#advance(now);
  }

  /** Ask the next subscriber in the queue, or finish the cycle when none is left. */
  #advance(now: number): void {
    const report = this.#current;
    if (!report || report.endedAt !== null || this.#waitingFor !== undefined) return;
    for (;;) {
      const id = this.#queue.shift();
      if (id === undefined) {
        if (report.kind === 'quiesce') this.#quiesceDone(now);
        else this.#unquiesceDone(now);
        return;
      }
      const sub = this.#subs.get(id);
      if (!sub) continue;
      report.steps.push(stepOf(sub, { outcome: 'asked', error: null, askedAt: now, answeredAt: null }));
      sub.quiesced = report.kind === 'quiesce';
      this.#waitingFor = id;
      // One at a time, so that the order holds: the next is asked when this one answers.
      this.#emit({ kind: 'ask', id, step: report.kind, cycle: report.cycle, generation: this.#generation });
      break;
    }
    if (this.#current === report && report.endedAt === null) this.#armTimer();
  }

  /** The cycle's deadline passed with a subscriber still to answer. */
  #expireCycle(now: number): void {
    const report = this.#current;
    if (!report || report.endedAt !== null) return;
    for (const s of report.steps) {
      if (s.outcome === 'asked') {
        s.outcome = 'late';
        s.error = `no answer within ${now - report.startedAt} ms`;
      }
    }
    this.#waitingFor = undefined;
    if (report.kind === 'quiesce') {
      for (const id of this.#queue) this.#skip(report, id);
      this.#queue = [];
      this.#quiesceDone(now);
    } else {
      // Everyone is told to continue, late or not; nobody is waited for any more.
      for (const id of this.#queue) {
        const sub = this.#subs.get(id);
        if (!sub) continue;
        sub.quiesced = false;
        report.steps.push(
          stepOf(sub, {
            outcome: 'late',
            error: 'told after the deadline; not waited for',
            askedAt: now,
            answeredAt: null,
          }),
        );
        this.#emit({ kind: 'ask', id, step: 'unquiesce', cycle: report.cycle, generation: this.#generation });
      }
      this.#queue = [];
      this.#unquiesceDone(now);
    }
  }

  #skip(report: CycleRecord, id: number): void {
    const sub = this.#subs.get(id);
    if (!sub) return;
    report.steps.push(
      stepOf(sub, {
        outcome: 'skipped',
        error: 'not asked: the quiesce had already failed',
        askedAt: null,
        answeredAt: null,
      }),
    );
  }

  #close(report: CycleRecord, now: number, reason: string | null, outcome?: CycleOutcome): void {
    report.endedAt = now;
    report.generationAtEnd = this.#generation;
    const bad = report.steps.filter((s) => s.outcome === 'failed' || s.outcome === 'late' || s.outcome === 'gone');
    report.ok = reason === null && bad.length === 0;
    report.outcome = outcome ?? (report.ok ? 'ok' : bad.some((s) => s.outcome !== 'late') ? 'failed' : 'late');
    report.reason =
      reason ??
      (bad.length > 0
        ? bad
            .map((s) => `${s.name ?? `#${s.id}`} ${s.outcome}${s.error ? ` (${s.error})` : ''}${whoSuffix(s)}`)
            .join('; ')
        : null);
    this.#last = { ...this.#last, [report.kind]: report };
  }

  /** End a quiesce that will not complete (interrupted or aborted); its requesters get the report. */
  #finishQuiesce(now: number, reason: string, outcome: CycleOutcome): void {
    const report = this.#current;
    if (!report || report.kind !== 'quiesce' || report.endedAt !== null) return;
    this.#waitingFor = undefined;
    for (const id of this.#queue) this.#skip(report, id);
    this.#queue = [];
    this.#deadline = null;
    this.#close(report, now, reason, outcome);
    this.#emit({ kind: 'reply', requesters: this.#requesters, report });
    this.#requesters = [];
  }

  #quiesceDone(now: number): void {
    const report = this.#current as CycleRecord;
    this.#deadline = null;
    this.#close(report, now, null);
    if (report.ok) {
      this.#setState('quiesced', now);
      this.#emit({ kind: 'reply', requesters: this.#requesters, report });
      this.#requesters = [];
      this.#armTimer();
      return;
    }
    // Never left half-quiesced: everyone asked is told to continue before the caller hears of the failure.
    this.#emit({ kind: 'log', level: 'warn', message: `lifecycle: quiesce failed (${report.reason}); un-quiescing` });
    const requesters = this.#requesters;
    this.#requesters = [];
    this.#pendingFailure = { report, requesters };
    this.#startCycle('unquiesce', [], this.#opts.resumeTimeoutMs, now);
  }

  /** A failed quiesce whose callers are answered once the un-quiesce that follows it has finished. */
  #pendingFailure: { report: CycleRecord; requesters: number[] } | undefined;

  #unquiesceDone(now: number): void {
    const report = this.#current as CycleRecord;
    this.#deadline = null;
    this.#close(report, now, null);
    this.#emit({ kind: 'reply', requesters: this.#requesters, report });
    this.#requesters = [];
    const failure = this.#pendingFailure;
    this.#pendingFailure = undefined;
    if (failure)
      this.#emit({
        kind: 'reply',
        requesters: failure.requesters,
        report: {
          ...failure.report,
          reason:
            `${failure.report.reason}; every subscriber asked was un-quiesced ` +
            `(${report.ok ? 'ok' : report.reason})`,
        },
      });
    if (this.#outdated > 0) this.#enterAdjusting(false, now);
    else this.#setState('running', now);
    this.#armTimer();
  }

  #enterAdjusting(quiesced: boolean, now: number): void {
    this.#adjustingQuiesced = quiesced;
    this.#adjustDeadline = quiesced ? now + this.#opts.adjustTimeoutMs : null;
    this.#setState('adjusting', now);
    if (this.#outdated === 0) {
      this.#endAdjusting(now, null);
      return;
    }
    this.#armTimer();
  }

  #endAdjusting(now: number, late: string | null): void {
    const quiesced = this.#adjustingQuiesced;
    this.#adjustDeadline = null;
    this.#adjustingQuiesced = false;
    if (!quiesced) {
      if (late === null) this.#setState('running', now);
      this.#armTimer();
      return;
    }
    if (late !== null) {
      this.#emit({
        kind: 'log',
        level: 'warn',
        late: true,
        message:
          `lifecycle: ${late}; un-quiescing anyway ` +
          '(the late watchers stay outdated, so "sysgenid ready" keeps failing)',
      });
    }
    const deferred = this.#deferredResume;
    this.#deferredResume = undefined;
    if (deferred || this.#opts.autoResume) {
      this.#startCycle('unquiesce', deferred?.requesters ?? [], deferred?.timeoutMs ?? this.#opts.resumeTimeoutMs, now);
    } else {
      this.#setState('quiesced', now);
      this.#armTimer();
    }
  }

  #armTimer(): void {
    const times = [this.#deadline, this.#state === 'adjusting' ? this.#adjustDeadline : null].filter(
      (t): t is number => t !== null,
    );
    this.#emit({ kind: 'timer', at: times.length > 0 ? Math.min(...times) : null });
  }
}

type StepFields = Pick<Step, 'outcome' | 'error' | 'askedAt' | 'answeredAt'>;

/** A step of `sub`, its fields in the wire document's order (uid and pid were added last). */
function stepOf(sub: Subscriber, f: StepFields): Mutable<Step> {
  const { id, name, priority } = sub;
  return { id, name, priority, ...f, uid: sub.owner.uid, pid: sub.owner.pid };
}

/** Who a failed step was, for an administrator to exclude it: ` [#id uid U pid P]`, as far as known. */
function whoSuffix(s: Step): string {
  const who = s.name === null ? [] : [`#${s.id}`];
  if (s.uid !== null) who.push(`uid ${s.uid}`);
  if (s.pid !== null) who.push(`pid ${s.pid}`);
  return who.length === 0 ? '' : ` [${who.join(' ')}]`;
}
