// The sysgenid command: status, read, watch, bump, wait. Exit codes are part of the contract
// (docs/CLI.md) so that shell scripts can tell a timeout from an interruption.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { forceUpdate, readNext, status, waitForWatchers } from '../client/admin.js';
import { connect } from '../client/watcher.js';
import { SysgenidError } from '../protocol/errors.js';
import { parseU32 } from '../protocol/messages.js';
import type { DaemonStatus } from '../protocol/status.js';
import { VERSION } from '../daemon/version.js';

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
  criu-action  a CRIU action script: bump the daemon inside a restored process tree

Run "sysgenid <command> --help" for a command's options. Exit codes:
  0 success, 1 failure, 2 usage error, 3 no new generation (read --nonblock),
  4 timed out (wait), 5 interrupted by a new generation (wait), 6 permission denied (bump),
  7 daemon not reachable
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

export function formatStatus(s: DaemonStatus): string {
  const lines = [
    `generation ${s.generation}`,
    `watchers   ${s.watchers} (${s.tracked} tracked, ${s.outdated} outdated)`,
    `daemon     pid ${s.pid}, version ${s.version}, up ${formatMs(s.uptimeMs)}, ${s.dir}`,
    `last bump  ${s.lastBump ? `${s.lastBump.generation} (${s.lastBump.source}) at ${s.lastBump.at}` : 'none since start'}`,
  ];
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
      w.backlog > 0 ? `${w.backlog} bytes unread` : '',
    ]);
    const head = ['ID', 'NAME', 'PID', 'TRACKED', 'ACKED', 'STATE', ''];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const fmt = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
    lines.push('', fmt(head), ...rows.map(fmt));
  }
  return lines.join('\n') + '\n';
}

function runCommand(argv: string[], generation: number): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: 'inherit', env: { ...process.env, SYSGENID: String(generation) } });
    child.on('error', (err) => {
      process.stderr.write(`sysgenid watch: cannot run ${cmd}: ${err.message}\n`);
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
      allowPositionals: command === 'watch',
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
    'criu-action': ['strict'],
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
      return criuAction(v.dir, v.strict === true, process.env);
    case 'watch':
      return watch(v.dir, v.name, u32Option('count', v.count, 0), v.untracked === true, parsed.positionals);
  }
  throw new UsageError(`unknown command ${JSON.stringify(command)}`);
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

export async function criuAction(dir: string | undefined, strict: boolean, env: NodeJS.ProcessEnv): Promise<number> {
  const action = env.CRTOOLS_SCRIPT_ACTION;
  if (action === undefined) throw new UsageError('criu-action is meant to be run by criu (CRTOOLS_SCRIPT_ACTION is not set)');
  // At post-restore the restored tasks are still stopped: their daemon could not answer. At post-resume it can.
  if (action !== 'post-resume') return EXIT.OK;
  const pid = env.CRTOOLS_INIT_PID;
  if (!pid || !/^[0-9]+$/.test(pid)) throw new UsageError('post-resume without a valid CRTOOLS_INIT_PID');
  const inside = restoredDir(pid, dir);
  const full = path.join(`/proc/${pid}/root`, inside);
  try {
    const gen = await forceUpdate({ dir: full, connectTimeoutMs: 2000 });
    process.stdout.write(`sysgenid: restored tree of pid ${pid}: generation ${gen} (${inside})\n`);
    return EXIT.OK;
  } catch (err) {
    const e = err as SysgenidError;
    process.stderr.write(`sysgenid: restored tree of pid ${pid}: no generation bump: ${e.code ?? ''} ${e.message}\n`);
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
    default: return EXIT.FAILURE;
  }
}
