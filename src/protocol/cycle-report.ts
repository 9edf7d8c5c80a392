// The report of a quiesce or un-quiesce cycle as it goes on the wire: the QUIESCE and UNQUIESCE replies
// and the lifecycle part of STATUS (docs/PROTOCOL.md, docs/lifecycle.md). Read-only, with the wire's own
// enumerations, and copied field by field from the core's record: a field the core adds never reaches the
// wire by itself, and one it renames or a value it adds to an enumeration fails to compile here instead
// of silently changing the protocol.

import type { CycleReport, Step } from '../core/lifecycle.js';

export type LifecycleState = 'running' | 'quiescing' | 'quiesced' | 'adjusting' | 'unquiescing';
export type StepKind = 'quiesce' | 'unquiesce';
/** How a cycle ended (docs/lifecycle.md). */
export type CycleOutcome = 'ok' | 'failed' | 'late' | 'interrupted' | 'aborted';
/**
 * asked: waiting for its answer; late: the deadline passed first; skipped: the cycle ended before its turn;
 * excluded: an administrator excluded it (EXCLUDE) before it answered, which does not fail the cycle.
 */
export type StepOutcome = 'asked' | 'done' | 'failed' | 'late' | 'gone' | 'skipped' | 'excluded';

/**
 * One subscriber's part in a cycle. The fields are the core's (with its comments); the enumerations are
 * the wire's own lists above, so a value the core adds fails to compile in cycleReportDocument().
 */
export interface CycleStepDocument extends Readonly<
  Pick<Step, 'id' | 'name' | 'priority' | 'error' | 'askedAt' | 'answeredAt' | 'uid' | 'pid'>
> {
  readonly outcome: StepOutcome;
}

/** A quiesce or un-quiesce cycle, built the same way as CycleStepDocument. */
export interface CycleReportDocument extends Readonly<
  Pick<CycleReport, 'cycle' | 'ok' | 'reason' | 'startedAt' | 'endedAt' | 'generationAtStart' | 'generationAtEnd'>
> {
  readonly kind: StepKind;
  /** ok, failed, late, interrupted or aborted; null while the cycle runs (what to match on, not reason). */
  readonly outcome: CycleOutcome | null;
  readonly steps: readonly CycleStepDocument[];
}

/** The wire document of a core report: the same fields in the same order, so the same JSON bytes. */
export function cycleReportDocument(report: CycleReport): CycleReportDocument {
  return {
    cycle: report.cycle,
    kind: report.kind,
    ok: report.ok,
    reason: report.reason,
    outcome: report.outcome,
    startedAt: report.startedAt,
    endedAt: report.endedAt,
    generationAtStart: report.generationAtStart,
    generationAtEnd: report.generationAtEnd,
    steps: report.steps.map((s) => ({
      id: s.id,
      name: s.name,
      priority: s.priority,
      outcome: s.outcome,
      error: s.error,
      askedAt: s.askedAt,
      answeredAt: s.answeredAt,
      uid: s.uid,
      pid: s.pid,
    })),
  };
}
