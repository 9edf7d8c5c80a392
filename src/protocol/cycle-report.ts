// The report of a quiesce or un-quiesce cycle as it goes on the wire: the QUIESCE and UNQUIESCE replies
// and the lifecycle part of STATUS (docs/PROTOCOL.md, docs/lifecycle.md). Declared here, read-only, and
// copied field by field from the core's working record, so that a change inside the core fails to
// compile here instead of silently changing the protocol.

import type { CycleOutcome, CycleReport } from '../core/lifecycle.js';

export type { CycleOutcome };

export type LifecycleState = 'running' | 'quiescing' | 'quiesced' | 'adjusting' | 'unquiescing';
export type StepKind = 'quiesce' | 'unquiesce';
/**
 * asked: waiting for its answer; late: the deadline passed first; skipped: the cycle ended before its turn;
 * excluded: an administrator excluded it (EXCLUDE) before it answered, which does not fail the cycle.
 */
export type StepOutcome = 'asked' | 'done' | 'failed' | 'late' | 'gone' | 'skipped' | 'excluded';

/** One subscriber's part in a cycle. */
export interface CycleStepDocument {
  readonly id: number;
  readonly name: string | null;
  readonly priority: number;
  readonly outcome: StepOutcome;
  readonly error: string | null;
  readonly askedAt: number | null;
  readonly answeredAt: number | null;
  /** Its uid (SO_PEERCRED) and pid (verified, or its own word), or null when unknown: whom EXCLUDE would hit. */
  readonly uid: number | null;
  readonly pid: number | null;
}

export interface CycleReportDocument {
  readonly cycle: number;
  readonly kind: StepKind;
  /** Every subscriber answered in time and none failed (an un-quiesce with late ones is not ok). */
  readonly ok: boolean;
  /** Why it is not ok, in one line; null when ok. */
  readonly reason: string | null;
  /** ok, failed, late, interrupted or aborted; null while the cycle runs (what to match on, not reason). */
  readonly outcome: CycleOutcome | null;
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly generationAtStart: number;
  readonly generationAtEnd: number | null;
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
