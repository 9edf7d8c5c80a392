// sysgenid criu-action: a CRIU action script mapping CRIU's dump and restore to the lifecycle of the
// sysgenid daemon inside the dumped or restored tree (docs/backends/criu.md).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { forceUpdate, quiesce, unquiesce } from '../../client/admin.js';
import { DEFAULT_QUIESCE_TIMEOUT_MS } from '../../defaults.js';
import type { SysgenidError } from '../../protocol/errors.js';
import { defineCommand } from '../command.js';
import { describeReport, quiesceExit, resumeSummary } from '../cycle-report.js';
import { EXIT, UsageError } from '../exit.js';
import { u32Option } from '../options.js';

/** Shorter than the library's default: CRIU waits for this script, and a tree may have no daemon at all. */
const CONNECT_TIMEOUT_MS = 2000;

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
export async function criuAction(
  dir: string | undefined,
  strict: boolean,
  env: NodeJS.ProcessEnv,
  timeoutMs = DEFAULT_QUIESCE_TIMEOUT_MS,
): Promise<number> {
  const action = env.CRTOOLS_SCRIPT_ACTION;
  if (action === undefined) {
    throw new UsageError('criu-action is meant to be run by criu (CRTOOLS_SCRIPT_ACTION is not set)');
  }
  if (action !== 'pre-dump' && action !== 'post-dump' && action !== 'post-resume') return EXIT.OK;
  const pid = env.CRTOOLS_INIT_PID;
  if (!pid || !/^[0-9]+$/.test(pid)) throw new UsageError(`${action} without a valid CRTOOLS_INIT_PID`);
  const inside = restoredDir(pid, dir);
  const full = path.join(`/proc/${pid}/root`, inside);
  const tree = `${action === 'post-resume' ? 'restored ' : ''}tree of pid ${pid}`;
  try {
    if (action === 'pre-dump') {
      const report = await quiesce({ dir: full, connectTimeoutMs: CONNECT_TIMEOUT_MS, timeoutMs });
      if (!report.ok) {
        process.stderr.write(`sysgenid: ${tree}: quiesce failed, the dump must not go on: ${report.reason}\n`);
        return quiesceExit(report);
      }
      process.stdout.write(`sysgenid: ${tree}: ${describeReport(report)} (${inside})\n`);
      return EXIT.OK;
    }
    if (action === 'post-dump') {
      const resumeArgs = ['resume', '--dir', full, '--timeout', String(timeoutMs)];
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1] as string, ...resumeArgs], {
        detached: true,
        stdio: 'ignore',
      });
      child.unref();
      process.stdout.write(`sysgenid: ${tree}: will resume it when CRIU lets it run again (${inside})\n`);
      return EXIT.OK;
    }
    const gen = await forceUpdate({ dir: full, connectTimeoutMs: CONNECT_TIMEOUT_MS });
    const summary = await resumeSummary({ dir: full }, await unquiesce({ dir: full, timeoutMs }));
    process.stdout.write(`sysgenid: ${tree}: generation ${gen}; ${summary.text} (${inside})\n`);
    if (!summary.ok) process.stderr.write(`sysgenid: ${tree}: ${summary.reason}\n`);
    return EXIT.OK;
  } catch (err) {
    const e = err as SysgenidError;
    if (action === 'pre-dump' && (e.code === 'EBUSY' || e.code === 'EACCES')) throw err;
    const skipped =
      action === 'post-resume' ? 'no generation bump' : `no ${action === 'pre-dump' ? 'quiesce' : 'resume'}`;
    process.stderr.write(`sysgenid: ${tree}: ${skipped}: ${e.code ?? ''} ${e.message}\n`);
    if (strict) throw err;
    return EXIT.OK;
  }
}

export default defineCommand({
  name: 'criu-action',
  summary: 'a CRIU action script: quiesce before a dump, bump and resume after a restore',
  // Its own --dir line: here it names the directory inside the restored tree.
  help: `Usage: sysgenid criu-action [--dir DIR] [--strict] [--timeout MS]

A CRIU action script: criu dump/restore --action-script "sysgenid criu-action" (also for podman container
checkpoint/restore and runc, see docs/backends/criu.md). It acts on the sysgenid daemon that lives inside
the dumped or restored tree (the one whose runtime directory is under /proc/$CRTOOLS_INIT_PID/root):
  pre-dump     quiesce the tree; a failure fails this script, so CRIU aborts the dump
  post-dump    resume the tree once CRIU lets it run again (detached: the tree is still frozen)
  post-resume  force a new generation in the restored tree, then resume it once every watcher has
               re-adjusted
Every other action is accepted and ignored. If the tree has no daemon it says so and exits 0 (a failing
action script would abort the dump or restore) unless --strict.

  --dir DIR       the daemon's runtime directory inside the tree (default: SYSGENID_DIR from the tree's
                  init process's environment, else /run/sysgenid)
  --strict        exit non-zero when no daemon could be reached
  --timeout MS    the budget of each quiesce and resume it asks for (default ${DEFAULT_QUIESCE_TIMEOUT_MS})
  -h, --help      show this help
`,
  options: { strict: { type: 'boolean' }, timeout: { type: 'string' } },
  positionals: false,
  async run({ values, dir }) {
    const timeoutMs = u32Option('timeout', values.timeout, DEFAULT_QUIESCE_TIMEOUT_MS);
    return criuAction(dir, values.strict === true, process.env, timeoutMs);
  },
});
