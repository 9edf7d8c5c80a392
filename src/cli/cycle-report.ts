// How the commands that quiesce or un-quiesce (quiesce, resume, snapshot, criu-action) describe the
// daemon's cycle report and turn it into an exit code.

import { status } from '../client/admin.js';
import type { CycleReportDocument as CycleReport } from '../protocol/cycle-report.js';
import { EXIT } from './exit.js';

export function describeReport(report: CycleReport): string {
  const took = (report.endedAt ?? report.startedAt) - report.startedAt;
  const who = (st: CycleReport['steps'][number]): string => `${st.name ?? `#${st.id}`}`;
  const done = report.steps.filter((st) => st.outcome === 'done');
  const verb = report.kind === 'quiesce' ? 'quiesced' : 'resumed';
  const answered = done.map((st) => `${who(st)} (${(st.answeredAt ?? 0) - (st.askedAt ?? 0)} ms)`);
  const parts = [
    `${done.length} of ${report.steps.length} subscriber(s) ${verb} in ${took} ms` +
      (done.length > 0 ? `: ${answered.join(', ')}` : ''),
  ];
  for (const st of report.steps.filter((x) => x.outcome !== 'done')) {
    parts.push(`  ${who(st)}: ${st.outcome}${st.error ? `: ${st.error}` : ''}`);
  }
  return parts.join('\n');
}

export interface ResumeSummary {
  readonly text: string;
  readonly ok: boolean;
  readonly reason: string | null;
  /** Who un-quiesced: this request, the daemon by itself after a restore, or nobody (nothing was quiesced). */
  readonly resumedBy: 'request' | 'daemon' | 'nothing';
  /** The report of that un-quiesce (this request's own when nothing was quiesced). */
  readonly report: CycleReport;
}

/**
 * What an un-quiesce did. An empty report means nothing was quiesced when it arrived, which after a
 * restore usually means the daemon had already resumed by itself: say so, with that report.
 */
export async function resumeSummary(base: { dir?: string }, report: CycleReport): Promise<ResumeSummary> {
  if (report.steps.length > 0 || !report.ok) {
    return { text: describeReport(report), ok: report.ok, reason: report.reason, resumedBy: 'request', report };
  }
  const lc = (await status({ ...base, list: false }).catch(() => undefined))?.lifecycle;
  const last = lc?.lastUnquiesce;
  // Quiesced at an older generation and un-quiesced at this one: the daemon's own resume after a restore.
  if (
    last &&
    last.generationAtEnd === report.generationAtStart &&
    lc?.lastQuiesce &&
    lc.lastQuiesce.generationAtStart !== last.generationAtEnd
  ) {
    const text = `already resumed by the daemon after the restore: ${describeReport(last)}`;
    return { text, ok: last.ok, reason: last.reason, resumedBy: 'daemon', report: last };
  }
  return { text: 'nothing was quiesced', ok: true, reason: null, resumedBy: 'nothing', report };
}

export function quiesceExit(report: CycleReport): number {
  if (report.ok) return EXIT.OK;
  if (report.outcome === 'interrupted') return EXIT.INTERRUPTED;
  if (report.outcome === 'late' || report.steps.some((st) => st.outcome === 'late')) return EXIT.TIMEOUT;
  return EXIT.FAILURE;
}
