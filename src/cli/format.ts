// How the sysgenid command prints durations and the daemon's status document (status, ready, wait).

import type { DaemonStatus } from '../protocol/status.js';

export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function formatLifecycle(s: DaemonStatus): string {
  const lc = s.lifecycle;
  const since = lc.state === 'running' ? '' : ` for ${formatMs(lc.sinceMs)}`;
  const head = `${lc.state}${since}, ${lc.subscribers} subscriber(s), ${lc.ready ? 'ready' : 'not ready'}`;
  const cur = lc.current;
  if (cur) {
    const now = cur.startedAt + lc.sinceMs;
    const waiting = cur.steps
      .filter((st) => st.outcome === 'asked')
      .map((st) => `${st.name ?? `#${st.id}`} (asked ${formatMs(Math.max(0, now - (st.askedAt ?? now)))} ago)`);
    const done = cur.steps.filter((st) => st.outcome === 'done').map((st) => st.name ?? `#${st.id}`);
    const bad = cur.steps
      .filter((st) => st.outcome !== 'done' && st.outcome !== 'asked')
      .map((st) => `${st.name ?? `#${st.id}`} ${st.outcome}`);
    return (
      `${head}; cycle ${cur.cycle}: waiting for ${waiting.join(', ') || 'nobody'}; ` +
      `done: ${done.join(', ') || 'none'}${bad.length ? `; ${bad.join(', ')}` : ''}`
    );
  }
  if (lc.adjusting) {
    const who = lc.adjusting.outdated.map((w) => w.name ?? `#${w.id}`);
    const until =
      lc.adjusting.deadlineInMs === null
        ? ''
        : `, resumes in ${formatMs(Math.max(0, lc.adjusting.deadlineInMs))} at the latest`;
    return (
      `${head}; ${lc.adjusting.quiesced ? 'quiesced, ' : ''}waiting for ${who.length} outdated watcher(s)` +
      `${who.length ? `: ${who.slice(0, 8).join(', ')}` : ''}${until}`
    );
  }
  return head;
}

export function formatStatus(s: DaemonStatus): string {
  const lines = [
    `generation ${s.generation}`,
    `watchers   ${s.watchers} (${s.tracked} tracked, ${s.outdated} outdated)`,
    `daemon     pid ${s.pid}, version ${s.version}, up ${formatMs(s.uptimeMs)}, ${s.dir}`,
    `last bump  ${
      s.lastBump ? `${s.lastBump.generation} (${s.lastBump.source}) at ${s.lastBump.at}` : 'none since start'
    }`,
  ];
  lines.push(`lifecycle  ${formatLifecycle(s)}`);
  for (const b of s.backends) lines.push(`backend    ${b.name}: ${b.live ? 'live' : 'off'} (${b.detail})`);
  lines.push(`native     ${s.native}`);
  if (s.list && s.list.length > 0) {
    const rows = s.list.map((w) => [
      String(w.id),
      w.name ?? '-',
      w.pid === null ? '-' : `${w.pid}${w.pidVerified ? '' : '?'}${w.command ? ` (${w.command})` : ''}`,
      w.tracked ? 'yes' : w.excluded ? 'excluded' : 'no',
      String(w.acked),
      w.outdated ? `outdated for ${formatMs(w.outdatedMs ?? 0)}` : 'up to date',
      w.subscriber ? `prio ${w.subscriber.priority}${w.subscriber.quiesced ? ', quiesced' : ''}` : '-',
      [w.backlog > 0 ? `${w.backlog} bytes unread` : '', w.problem ? `problem: ${w.problem}` : '']
        .filter(Boolean)
        .join('; '),
    ]);
    const head = ['ID', 'NAME', 'PID', 'TRACKED', 'ACKED', 'STATE', 'LIFECYCLE', ''];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const fmt = (r: string[]): string =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd();
    lines.push('', fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}
