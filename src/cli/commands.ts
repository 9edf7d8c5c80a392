// The sysgenid command: status, read, watch, bump, wait. Exit codes are part of the contract
// (docs/CLI.md) so that shell scripts can tell a timeout from an interruption.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forceUpdate, quiesce, readNext, status, unquiesce, waitForWatchers } from '../client/admin.js';
import type { CycleReport } from '../core/lifecycle.js';
import { connect } from '../client/watcher.js';
import { SysgenidError } from '../protocol/errors.js';
import { parseU32 } from '../protocol/messages.js';
import type { DaemonStatus } from '../protocol/status.js';
import { VERSION } from '../version.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  /** read --nonblock: no new generation (EAGAIN). */
  NO_CHANGE: 3,
  /** wait: watchers still outdated at the timeout (ETIME). */
  TIMEOUT: 4,
  /** wait: a new generation arrived while waiting (EINTR). */
  INTERRUPTED: 5,
  /** bump: not allowed to force an update (EACCES). */
  DENIED: 6,
  /** the daemon is not running or not reachable. */
  UNREACHABLE: 7,
  /** quiesce: already quiesced, or a lifecycle step is in progress (EBUSY). */
  BUSY: 8,
} as const;

const COMMON = `  --dir DIR       runtime directory of the daemon (default: as sysgenidd resolves it)
  -h, --help      show this help`;

const HELP: Record<string, string> = {
  main: `Usage: sysgenid <command> [options]

Commands:
  status    the generation, the watchers and which of them are outdated
  read      print the next new generation (blocks until the generation changes)
  watch     stay connected; print or handle every new generation and acknowledge it
  bump      force a new generation (root or the daemon's control group)
  wait      wait until every tracked watcher has acknowledged the current generation
  quiesce   ask every lifecycle subscriber to quiesce (before a snapshot)
  resume    un-quiesce; after a restore, once every watcher has re-adjusted
  snapshot  quiesce, run CMD (which takes the snapshot), then resume
  ready     exit 0 only when running with no outdated watcher (a readiness probe)
  criu-action  a CRIU action script: quiesce before a dump, bump and resume after a restore

Run "sysgenid <command> --help" for a command's options. Exit codes:
  0 success, 1 failure, 2 usage error, 3 no new generation (read --nonblock),
  4 timed out (wait, quiesce), 5 interrupted by a new generation (wait, quiesce), 6 permission
  denied (bump, quiesce, resume, snapshot), 7 daemon not reachable, 8 busy (quiesce: already
  quiesced or a step in progress)
`,
  status: `Usage: sysgenid status [--json] [--brief]

Print the generation, the number of watchers and how many are outdated, and one line per watcher:
its id, name, pid, whether it is tracked, what it acknowledged last, and how long it has been outdated.

  --json          print the daemon's status document (see docs/PROTOCOL.md)
  --brief         leave out the watcher list
${COMMON}
`,
  read: `Usage: sysgenid read [--nonblock]

Print the generation a fresh watcher would be told about next: block until the generation changes,
then print it. With --nonblock, exit at once with code 3 (a fresh watcher is up to date).

  --nonblock      do not block
${COMMON}
`,
  watch: `Usage: sysgenid watch [--name NAME] [--count K] [--untracked] [-- CMD [ARG...]]

Stay connected as a watcher. On each new generation print it (and acknowledge it), or run CMD with
SYSGENID=<generation> in its environment and acknowledge only when CMD exits 0. A failing CMD leaves the
generation unacknowledged, so "sysgenid wait" and "sysgenid status" show this watcher as outdated.

  --name NAME     name shown by "sysgenid status"
  --count K       exit after handling K generations
  --untracked     be notified but never waited for
${COMMON}
`,
  bump: `Usage: sysgenid bump [--min N]

Force a new generation: max(N, generation + 1). Needs the control socket: root, or a member of the
daemon's control group. Prints the new generation.

  --min N         the lowest generation to move to (default 0)
${COMMON}
`,
  'criu-action': `Usage: sysgenid criu-action [--dir DIR] [--strict]

A CRIU action script: criu restore --action-script "sysgenid criu-action" (also for podman container
restore and runc, see docs/backends/criu.md). On "post-resume" it forces a new generation on the
sysgenid daemon that lives inside the restored tree: the one whose runtime directory is under
/proc/$CRTOOLS_INIT_PID/root. Every other action is accepted and ignored. If the restored tree has no
daemon it says so and exits 0 (a failing action script would abort the restore) unless --strict.

  --dir DIR       the daemon's runtime directory inside the restored tree (default: SYSGENID_DIR from
                  the restored init process's environment, else /run/sysgenid)
  --strict        exit non-zero when no daemon could be bumped
  -h, --help      show this help
`,
  quiesce: `Usage: sysgenid quiesce [--timeout MS]

Ask every lifecycle subscriber, one at a time (highest priority number first, latest registered first
among equals), to quiesce. Exit 0 when every one has. If one fails, each remaining one is still asked;
on a failure or at the timeout every subscriber asked is un-quiesced again before this exits, so the
machine is never left half-quiesced. The late and failing subscribers are named.
Exit 1 on a failure, 4 when one was late, 5 when a new generation arrived while quiescing, 8 when the
machine is already quiesced or a step is in progress.

  --timeout MS    the whole quiesce's budget (default 10000)
${COMMON}
`,
  resume: `Usage: sysgenid resume [--timeout MS]

Un-quiesce every quiesced subscriber, in order (lowest priority number first). After a restore it first
waits until every tracked watcher has acknowledged the new generation, up to MS, and names the late.
Every subscriber is told even when another fails. Exit 0 when all answered, 1 otherwise.

  --timeout MS    budget for re-adjusting and for the un-quiesce (default 10000)
${COMMON}
`,
  snapshot: `Usage: sysgenid snapshot [--quiesce-timeout MS] [--adjust-timeout MS] [--settle MS] -- CMD [ARG...]

Quiesce (as "sysgenid quiesce"), run CMD, which takes the snapshot (a hypervisor API call, criu dump
--leave-running, a QMP command), then resume. If the quiesce fails CMD is not run. In the original the
machine resumes as soon as CMD exits; in a copy restored from the snapshot (where this command is
restored too, still waiting for CMD) the daemon sees the new generation and resumes only when every
watcher has re-adjusted, up to the adjust timeout. Prints which of the two this is.
Exit: CMD's failure is 1 (the machine is resumed first); otherwise as quiesce and resume.

  --quiesce-timeout MS   budget of the quiesce (default 10000)
  --adjust-timeout MS    budget for re-adjusting and un-quiescing after (default 30000)
  --settle MS            after CMD, how long a restored copy may take to see its new generation
                         before this decides it is the original (default 1000; 0 when the restore
                         side forces the update itself, see docs/lifecycle.md)
${COMMON}
`,
  ready: `Usage: sysgenid ready [--quiet]

Exit 0 when the daemon's lifecycle is running (not quiescing, quiesced or re-adjusting) and no tracked
watcher is outdated; else print why and exit 1 (7 when the daemon is not reachable). Works for any
user, so it serves as a Kubernetes exec readiness probe or a load balancer's health check: a restored
copy takes no traffic until it has re-adjusted.

  --quiet         print nothing
${COMMON}
`,
  wait: `Usage: sysgenid wait [--timeout MS]

Wait until no tracked watcher is outdated. Exit 0 when none is, 4 on timeout (and list who is late),
5 when a new generation arrives while waiting (wait again).

  --timeout MS    give up after MS milliseconds (default 0: wait for ever)
${COMMON}
`,
};

class UsageError extends Error {}

function u32Option(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = parseU32(value);
  if (n === undefined) throw new UsageError(`--${name} needs a whole number from 0 to 4294967295, got ${JSON.stringify(value)}`);
  return n;
}

function formatMs(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function formatLifecycle(s: DaemonStatus): string {
  const lc = s.lifecycle;
  const head = `${lc.state}${lc.state === 'running' ? '' : ` for ${formatMs(lc.sinceMs)}`}, ${lc.subscribers} subscriber(s), ${lc.ready ? 'ready' : 'not ready'}`;
  const cur = lc.current;
  if (cur) {
    const now = cur.startedAt + lc.sinceMs;
    const waiting = cur.steps.filter((st) => st.outcome === 'asked').map((st) => `${st.name ?? `#${st.id}`} (asked ${formatMs(Math.max(0, now - (st.askedAt ?? now)))} ago)`);
    const done = cur.steps.filter((st) => st.outcome === 'done').map((st) => st.name ?? `#${st.id}`);
    const bad = cur.steps.filter((st) => st.outcome !== 'done' && st.outcome !== 'asked').map((st) => `${st.name ?? `#${st.id}`} ${st.outcome}`);
    return `${head}; cycle ${cur.cycle}: waiting for ${waiting.join(', ') || 'nobody'}; done: ${done.join(', ') || 'none'}${bad.length ? `; ${bad.join(', ')}` : ''}`;
  }
  if (lc.adjusting) {
    const who = lc.adjusting.outdated.map((w) => w.name ?? `#${w.id}`);
    const until = lc.adjusting.deadlineInMs === null ? '' : `, resumes in ${formatMs(Math.max(0, lc.adjusting.deadlineInMs))} at the latest`;
    return `${head}; ${lc.adjusting.quiesced ? 'quiesced, ' : ''}waiting for ${who.length} outdated watcher(s)${who.length ? `: ${who.slice(0, 8).join(', ')}` : ''}${until}`;
  }
  return head;
}

export function formatStatus(s: DaemonStatus): string {
  const lines = [
    `generation ${s.generation}`,
    `watchers   ${s.watchers} (${s.tracked} tracked, ${s.outdated} outdated)`,
    `daemon     pid ${s.pid}, version ${s.version}, up ${formatMs(s.uptimeMs)}, ${s.dir}`,
    `last bump  ${s.lastBump ? `${s.lastBump.generation} (${s.lastBump.source}) at ${s.lastBump.at}` : 'none since start'}`,
  ];
  lines.push(`lifecycle  ${formatLifecycle(s)}`);
  for (const b of s.backends) lines.push(`backend    ${b.name}: ${b.live ? 'live' : 'off'} (${b.detail})`);
  lines.push(`native     ${s.native}`);
  if (s.list && s.list.length > 0) {
    const rows = s.list.map((w) => [
      String(w.id),
      w.name ?? '-',
      w.pid === null ? '-' : `${w.pid}${w.pidVerified ? '' : '?'}${w.command ? ` (${w.command})` : ''}`,
      w.tracked ? 'yes' : 'no',
      String(w.acked),
      w.outdated ? `outdated for ${formatMs(w.outdatedMs ?? 0)}` : 'up to date',
      w.subscriber ? `prio ${w.subscriber.priority}${w.subscriber.quiesced ? ', quiesced' : ''}` : '-',
      [w.backlog > 0 ? `${w.backlog} bytes unread` : '', w.problem ? `problem: ${w.problem}` : ''].filter(Boolean).join('; '),
    ]);
    const head = ['ID', 'NAME', 'PID', 'TRACKED', 'ACKED', 'STATE', 'LIFECYCLE', ''];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
    lines.push('', fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}

function runCommand(argv: string[], generation: number, who = 'watch'): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: 'inherit', env: { ...process.env, SYSGENID: String(generation) } });
    child.on('error', (err) => {
      process.stderr.write(`sysgenid ${who}: cannot run ${cmd}: ${err.message}\n`);
      resolve(127);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function watch(dir: string | undefined, name: string | undefined, count: number, untracked: boolean, cmd: string[]): Promise<number> {
  const watcher = await connect({
    ...(dir ? { dir } : {}),
    name: name ?? (cmd.length > 0 ? `watch ${cmd.join(' ')}`.slice(0, 64) : 'sysgenid watch'),
    tracked: !untracked,
  });
  watcher.on('disconnect', (err) => process.stderr.write(`sysgenid watch: lost the daemon (${err.code}); reconnecting\n`));
  watcher.on('reconnect', (g) => process.stderr.write(`sysgenid watch: reconnected at generation ${g}\n`));
  const stop = (): void => watcher.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let handled = 0;
  for await (const gen of watcher) {
    if (cmd.length === 0) {
      process.stdout.write(`${gen}\n`);
    } else {
      const code = await runCommand(cmd, gen);
      if (code !== 0) {
        process.stderr.write(`sysgenid watch: ${cmd[0]} exited with ${code}; generation ${gen} stays unacknowledged\n`);
        continue;
      }
    }
    try {
      await watcher.ack(gen);
    } catch (err) {
      if ((err as SysgenidError).code !== 'EINVAL') throw err;
      // A newer generation arrived meanwhile; the loop handles it next.
    }
    handled++;
    if (count > 0 && handled >= count) break;
  }
  watcher.close();
  return EXIT.OK;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(HELP.main ?? '');
    return command === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (command === '-V' || command === '--version') {
    process.stdout.write(`sysgenid ${VERSION}\n`);
    return EXIT.OK;
  }
  const help = HELP[command];
  if (help === undefined || command === 'main') throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: command === 'watch' || command === 'snapshot',
      strict: true,
      options: {
        dir: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        json: { type: 'boolean' },
        brief: { type: 'boolean' },
        nonblock: { type: 'boolean' },
        name: { type: 'string' },
        count: { type: 'string' },
        untracked: { type: 'boolean' },
        min: { type: 'string' },
        timeout: { type: 'string' },
        strict: { type: 'boolean' },
        quiet: { type: 'boolean' },
        'quiesce-timeout': { type: 'string' },
        'adjust-timeout': { type: 'string' },
        settle: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(help);
    return EXIT.OK;
  }
  const allowed: Record<string, string[]> = {
    status: ['json', 'brief'], read: ['nonblock'], watch: ['name', 'count', 'untracked'], bump: ['min'], wait: ['timeout'],
    'criu-action': ['strict', 'timeout'], quiesce: ['timeout'], resume: ['timeout'], ready: ['quiet'],
    snapshot: ['quiesce-timeout', 'adjust-timeout', 'settle'],
  };
  for (const key of Object.keys(v)) {
    if (key !== 'dir' && !(allowed[command] ?? []).includes(key)) throw new UsageError(`${command} does not take --${key}`);
  }
  const base = v.dir ? { dir: v.dir } : {};
  switch (command) {
    case 'status': {
      const s = await status({ ...base, list: !v.brief });
      process.stdout.write(v.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
      return EXIT.OK;
    }
    case 'read':
      process.stdout.write(`${await readNext({ ...base, nonblock: v.nonblock === true })}\n`);
      return EXIT.OK;
    case 'bump':
      process.stdout.write(`${await forceUpdate({ ...base, min: u32Option('min', v.min, 0) })}\n`);
      return EXIT.OK;
    case 'wait': {
      const timeoutMs = u32Option('timeout', v.timeout, 0);
      try {
        await waitForWatchers({ ...base, timeoutMs });
      } catch (err) {
        if ((err as SysgenidError).code === 'ETIME') {
          const s = await status({ ...base, list: true }).catch(() => undefined);
          const late = s?.list?.filter((w) => w.tracked && w.outdated) ?? [];
          process.stderr.write(`sysgenid wait: ${late.length || 'some'} watcher(s) still outdated after ${timeoutMs} ms\n`);
          for (const w of late) {
            const who = w.pid === null ? 'pid unknown' : `pid ${w.pid}${w.pidVerified ? '' : ' (declared)'}${w.command ? ` ${w.command}` : ''}${w.uid === null ? '' : ` uid ${w.uid}`}`;
            process.stderr.write(`  watcher ${w.id} ${w.name ?? '-'}: ${who}, acknowledged ${w.acked}, outdated for ${formatMs(w.outdatedMs ?? 0)}\n`);
          }
        }
        throw err;
      }
      return EXIT.OK;
    }
    case 'criu-action':
      return criuAction(v.dir, v.strict === true, process.env, u32Option('timeout', v.timeout, 10_000));
    case 'quiesce':
      return quiesceCommand(base, u32Option('timeout', v.timeout, 10_000));
    case 'resume':
      return resumeCommand(base, u32Option('timeout', v.timeout, 10_000));
    case 'ready':
      return readyCommand(base, v.quiet === true);
    case 'snapshot':
      return snapshotCommand(base, u32Option('quiesce-timeout', v['quiesce-timeout'], 10_000), u32Option('adjust-timeout', v['adjust-timeout'], 30_000),
        u32Option('settle', v.settle, SETTLE_MS), parsed.positionals);
    case 'watch':
      return watch(v.dir, v.name, u32Option('count', v.count, 0), v.untracked === true, parsed.positionals);
  }
  throw new UsageError(`unknown command ${JSON.stringify(command)}`);
}

function describeReport(report: CycleReport): string {
  const took = (report.endedAt ?? report.startedAt) - report.startedAt;
  const who = (st: CycleReport['steps'][number]): string => `${st.name ?? `#${st.id}`}`;
  const done = report.steps.filter((st) => st.outcome === 'done');
  const parts = [`${done.length} of ${report.steps.length} subscriber(s) ${report.kind === 'quiesce' ? 'quiesced' : 'resumed'} in ${took} ms` +
    (done.length > 0 ? `: ${done.map((st) => `${who(st)} (${(st.answeredAt ?? 0) - (st.askedAt ?? 0)} ms)`).join(', ')}` : '')];
  for (const st of report.steps.filter((x) => x.outcome !== 'done')) {
    parts.push(`  ${who(st)}: ${st.outcome}${st.error ? `: ${st.error}` : ''}`);
  }
  return parts.join('\n');
}

/**
 * What an un-quiesce did. An empty report means nothing was quiesced when it arrived, which after a
 * restore usually means the daemon had already resumed by itself: say so, with that report.
 */
async function resumeSummary(base: { dir?: string }, report: CycleReport): Promise<{ text: string; ok: boolean; reason: string | null }> {
  if (report.steps.length > 0 || !report.ok) return { text: describeReport(report), ok: report.ok, reason: report.reason };
  const lc = (await status({ ...base, list: false }).catch(() => undefined))?.lifecycle;
  const last = lc?.lastUnquiesce;
  // Quiesced at an older generation and un-quiesced at this one: the daemon's own resume after a restore.
  if (last && last.generationAtEnd === report.generationAtStart && lc?.lastQuiesce && lc.lastQuiesce.generationAtStart !== last.generationAtEnd) {
    return { text: `already resumed by the daemon after the restore: ${describeReport(last)}`, ok: last.ok, reason: last.reason };
  }
  return { text: 'nothing was quiesced', ok: true, reason: null };
}

function quiesceExit(report: CycleReport): number {
  if (report.ok) return EXIT.OK;
  if (report.reason?.startsWith('interrupted')) return EXIT.INTERRUPTED;
  if (report.steps.some((st) => st.outcome === 'late')) return EXIT.TIMEOUT;
  return EXIT.FAILURE;
}

async function quiesceCommand(base: { dir?: string }, timeoutMs: number): Promise<number> {
  const report = await quiesce({ ...base, timeoutMs });
  if (report.ok) {
    process.stdout.write(`sysgenid quiesce: ${describeReport(report)}\n`);
  } else {
    process.stderr.write(`sysgenid quiesce: failed: ${report.reason}\n${describeReport(report)}\n`);
  }
  return quiesceExit(report);
}

async function resumeCommand(base: { dir?: string }, timeoutMs: number): Promise<number> {
  const summary = await resumeSummary(base, await unquiesce({ ...base, timeoutMs }));
  const out = summary.ok ? process.stdout : process.stderr;
  out.write(`sysgenid resume: ${summary.text}\n`);
  if (!summary.ok) out.write(`sysgenid resume: ${summary.reason}\n`);
  return summary.ok ? EXIT.OK : EXIT.FAILURE;
}

async function readyCommand(base: { dir?: string }, quiet: boolean): Promise<number> {
  const s = await status({ ...base, list: true });
  if (s.lifecycle.ready) {
    if (!quiet) process.stdout.write(`ready: generation ${s.generation}, ${s.watchers} watcher(s), none outdated\n`);
    return EXIT.OK;
  }
  if (!quiet) {
    const why: string[] = [];
    if (s.lifecycle.state !== 'running') why.push(`lifecycle ${s.lifecycle.state} for ${formatMs(s.lifecycle.sinceMs)}`);
    const late = (s.list ?? []).filter((w) => w.tracked && w.outdated);
    if (late.length > 0) why.push(`${late.length} watcher(s) outdated: ${late.slice(0, 5).map((w) => `${w.name ?? `#${w.id}`}${w.problem ? ` (${w.problem})` : ''}`).join(', ')}${late.length > 5 ? ', ...' : ''}`);
    process.stdout.write(`not ready: ${why.join('; ')}\n`);
  }
  return EXIT.FAILURE;
}

/** After CMD, how long a restored copy may take by default to see its new generation (the kernel's notice is asynchronous). */
const SETTLE_MS = 1000;

async function snapshotCommand(base: { dir?: string }, quiesceTimeoutMs: number, adjustTimeoutMs: number, settleMs: number, cmd: string[]): Promise<number> {
  if (cmd.length === 0) throw new UsageError('snapshot needs the command that takes the snapshot: sysgenid snapshot -- CMD [ARG...]');
  const before = (await status(base)).generation;
  const report = await quiesce({ ...base, timeoutMs: quiesceTimeoutMs });
  if (!report.ok) {
    process.stderr.write(`sysgenid snapshot: quiesce failed, ${cmd[0]} not run: ${report.reason}\n${describeReport(report)}\n`);
    return quiesceExit(report);
  }
  process.stderr.write(`sysgenid snapshot: ${describeReport(report)}; running ${cmd.join(' ')}\n`);
  // Opened before CMD, so a restore that happens during it is reported at once, whenever it is read.
  const stopReading = new AbortController();
  const next = readNext({ ...base, signal: stopReading.signal }).then((g) => g, () => undefined);
  const code = await runCommand(cmd, before, 'snapshot');
  // In a copy restored from the snapshot, this process is restored too, right here. The kernel tells
  // the daemon of the restore a little after the copy resumes, so give it that long before deciding.
  const moved = await Promise.race([next, new Promise<undefined>((r) => setTimeout(() => r(undefined), settleMs).unref())]);
  stopReading.abort();
  const after = moved ?? (await status(base)).generation;
  const copy = after !== before;
  process.stderr.write(copy
    ? `sysgenid snapshot: generation ${before} -> ${after}: this is a restored copy; resuming once every watcher has re-adjusted\n`
    : `sysgenid snapshot: generation still ${before}: this is the original; resuming\n`);
  const resumed = await resumeSummary(base, await unquiesce({ ...base, timeoutMs: adjustTimeoutMs }));
  process.stderr.write(`sysgenid snapshot: ${resumed.text}\n`);
  if (!resumed.ok) process.stderr.write(`sysgenid snapshot: ${resumed.reason}\n`);
  if (code !== 0) {
    process.stderr.write(`sysgenid snapshot: ${cmd[0]} exited with ${code}\n`);
    return EXIT.FAILURE;
  }
  return resumed.ok ? EXIT.OK : EXIT.FAILURE;
}

/** The restored tree's own view of SYSGENID_DIR, from its init process's environment. */
function restoredDir(pid: string, explicit: string | undefined): string {
  if (explicit) return explicit;
  try {
    const vars = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const found = vars.find((v) => v.startsWith('SYSGENID_DIR='));
    if (found) return found.slice('SYSGENID_DIR='.length);
  } catch {
    // fall through to the default
  }
  return '/run/sysgenid';
}

/**
 * CRIU's actions mapped to the lifecycle. pre-dump runs before CRIU freezes the tree: quiesce it (a
 * failure makes this script fail, and CRIU then aborts the dump with the tree un-quiesced). post-dump
 * runs while the tree is still frozen, so its daemon cannot answer yet: a detached `sysgenid resume`
 * waits for the thaw (criu dump --leave-running) or for the tree's end. post-resume runs once the
 * restored tree runs: a new generation, then un-quiesce once every watcher has re-adjusted.
 */
export async function criuAction(dir: string | undefined, strict: boolean, env: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<number> {
  const action = env.CRTOOLS_SCRIPT_ACTION;
  if (action === undefined) throw new UsageError('criu-action is meant to be run by criu (CRTOOLS_SCRIPT_ACTION is not set)');
  if (action !== 'pre-dump' && action !== 'post-dump' && action !== 'post-resume') return EXIT.OK;
  const pid = env.CRTOOLS_INIT_PID;
  if (!pid || !/^[0-9]+$/.test(pid)) throw new UsageError(`${action} without a valid CRTOOLS_INIT_PID`);
  const inside = restoredDir(pid, dir);
  const full = path.join(`/proc/${pid}/root`, inside);
  const tree = `${action === 'post-resume' ? 'restored ' : ''}tree of pid ${pid}`;
  try {
    if (action === 'pre-dump') {
      const report = await quiesce({ dir: full, connectTimeoutMs: 2000, timeoutMs });
      if (!report.ok) {
        process.stderr.write(`sysgenid: ${tree}: quiesce failed, the dump must not go on: ${report.reason}\n`);
        return quiesceExit(report);
      }
      process.stdout.write(`sysgenid: ${tree}: ${describeReport(report)} (${inside})\n`);
      return EXIT.OK;
    }
    if (action === 'post-dump') {
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, 'resume', '--dir', full, '--timeout', String(timeoutMs)], {
        detached: true, stdio: 'ignore',
      });
      child.unref();
      process.stdout.write(`sysgenid: ${tree}: will resume it when CRIU lets it run again (${inside})\n`);
      return EXIT.OK;
    }
    const gen = await forceUpdate({ dir: full, connectTimeoutMs: 2000 });
    const summary = await resumeSummary({ dir: full }, await unquiesce({ dir: full, timeoutMs }));
    process.stdout.write(`sysgenid: ${tree}: generation ${gen}; ${summary.text} (${inside})\n`);
    if (!summary.ok) process.stderr.write(`sysgenid: ${tree}: ${summary.reason}\n`);
    return EXIT.OK;
  } catch (err) {
    const e = err as SysgenidError;
    if (action === 'pre-dump' && (e.code === 'EBUSY' || e.code === 'EACCES')) throw err;
    process.stderr.write(`sysgenid: ${tree}: ${action === 'post-resume' ? 'no generation bump' : `no ${action === 'pre-dump' ? 'quiesce' : 'resume'}`}: ${e.code ?? ''} ${e.message}\n`);
    if (strict) throw err;
    return EXIT.OK;
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.USAGE;
  if (!(err instanceof SysgenidError)) return EXIT.FAILURE;
  switch (err.code) {
    case 'EAGAIN': return EXIT.NO_CHANGE;
    case 'ETIME': return EXIT.TIMEOUT;
    case 'EINTR': return EXIT.INTERRUPTED;
    case 'EACCES': return EXIT.DENIED;
    case 'ENOTCONN': return EXIT.UNREACHABLE;
    case 'EBUSY': return EXIT.BUSY;
    default: return EXIT.FAILURE;
  }
}
