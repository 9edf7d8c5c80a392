// sysgenid snapshot: quiesce, run the command that takes the snapshot, then resume; in a copy restored
// from that snapshot, resume only once every watcher has re-adjusted.

import { quiesce, readNext, status, unquiesce } from '../../client/admin.js';
import { DEFAULT_ADJUST_TIMEOUT_MS, DEFAULT_QUIESCE_TIMEOUT_MS } from '../../defaults.js';
import { defineCommand } from '../command.js';
import { describeReport, quiesceExit, resumeSummary } from '../cycle-report.js';
import { EXIT, UsageError } from '../exit.js';
import { COMMON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';
import { runCommand } from '../run-command.js';

/**
 * After CMD, how long a restored copy may take by default to see its new generation (the kernel's
 * notice is asynchronous).
 */
const SETTLE_MS = 1000;

export default defineCommand({
  name: 'snapshot',
  summary: 'quiesce, run CMD (which takes the snapshot), then resume',
  help: `Usage: sysgenid snapshot [--quiesce-timeout MS] [--adjust-timeout MS] [--settle MS] [--json] -- CMD [ARG...]

Quiesce (as "sysgenid quiesce"), run CMD, which takes the snapshot (a hypervisor API call, criu dump
--leave-running, a QMP command), then resume. If the quiesce fails CMD is not run. In the original the
machine resumes as soon as CMD exits; in a copy restored from the snapshot (where this command is
restored too, still waiting for CMD) the daemon sees the new generation and resumes only when every
watcher has re-adjusted, up to the adjust timeout. Prints which of the two this is. When CMD fails no
snapshot was taken: the machine is resumed at once, without the settle time.
Exit: CMD's failure is 1 (the machine is resumed first); otherwise as quiesce and resume.

  --quiesce-timeout MS   budget of the quiesce (default ${DEFAULT_QUIESCE_TIMEOUT_MS})
  --adjust-timeout MS    budget for re-adjusting and un-quiescing after (default ${DEFAULT_ADJUST_TIMEOUT_MS})
  --settle MS            after CMD, how long a restored copy may take to see its new generation
                         before this decides it is the original (default ${SETTLE_MS}; 0 when the restore
                         side forces the update itself, see docs/lifecycle.md)
  --json                 print one JSON document at the end (its fields: docs/CLI.md)
${COMMON_HELP}
`,
  options: {
    'quiesce-timeout': { type: 'string' },
    'adjust-timeout': { type: 'string' },
    settle: { type: 'string' },
    ...JSON_OPTION,
  },
  positionals: true,
  async run({ values, client, positionals: cmd }) {
    const quiesceTimeoutMs = u32Option('quiesce-timeout', values['quiesce-timeout'], DEFAULT_QUIESCE_TIMEOUT_MS);
    const adjustTimeoutMs = u32Option('adjust-timeout', values['adjust-timeout'], DEFAULT_ADJUST_TIMEOUT_MS);
    const settleMs = u32Option('settle', values.settle, SETTLE_MS);
    if (cmd.length === 0) {
      throw new UsageError('snapshot needs the command that takes the snapshot: sysgenid snapshot -- CMD [ARG...]');
    }
    const before = (await status(client)).generation;
    const report = await quiesce({ ...client, timeoutMs: quiesceTimeoutMs });
    if (!report.ok) {
      process.stderr.write(
        `sysgenid snapshot: quiesce failed, ${cmd[0]} not run: ${report.reason}\n${describeReport(report)}\n`,
      );
      if (values.json) {
        printJson({
          ok: false,
          copy: false,
          generationBefore: before,
          generationAfter: before,
          commandExit: null,
          quiesce: report,
          resume: null,
        });
      }
      return quiesceExit(report);
    }
    process.stderr.write(`sysgenid snapshot: ${describeReport(report)}; running ${cmd.join(' ')}\n`);
    // Opened before CMD, so a restore that happens during it is reported at once, whenever it is read.
    const stopReading = new AbortController();
    const next = readNext({ ...client, signal: stopReading.signal }).then(
      (g) => g,
      () => undefined,
    );
    const code = await runCommand(cmd, before, 'snapshot');
    let after = before;
    if (code !== 0) {
      // No snapshot was taken, so there is no copy to wait for: resume now and say why first.
      stopReading.abort();
      process.stderr.write(`sysgenid snapshot: ${cmd[0]} exited with ${code}, no snapshot taken; resuming\n`);
    } else {
      // In a copy restored from the snapshot, this process is restored too, right here. The kernel tells
      // the daemon of the restore a little after the copy resumes, so give it that long before deciding.
      const settled = new Promise<undefined>((r) => setTimeout(() => r(undefined), settleMs).unref());
      const moved = await Promise.race([next, settled]);
      stopReading.abort();
      after = moved ?? (await status(client)).generation;
      process.stderr.write(
        after !== before
          ? `sysgenid snapshot: generation ${before} -> ${after}: this is a restored copy; ` +
              'resuming once every watcher has re-adjusted\n'
          : `sysgenid snapshot: generation still ${before}: this is the original; resuming\n`,
      );
    }
    const resumed = await resumeSummary(client, await unquiesce({ ...client, timeoutMs: adjustTimeoutMs }));
    process.stderr.write(`sysgenid snapshot: ${resumed.text}\n`);
    if (!resumed.ok) process.stderr.write(`sysgenid snapshot: ${resumed.reason}\n`);
    const ok = code === 0 && resumed.ok;
    if (values.json) {
      printJson({
        ok,
        copy: after !== before,
        generationBefore: before,
        generationAfter: after,
        commandExit: code,
        quiesce: report,
        resume: { ok: resumed.ok, reason: resumed.reason, resumedBy: resumed.resumedBy, report: resumed.report },
      });
    }
    if (code !== 0) {
      process.stderr.write(`sysgenid snapshot: ${cmd[0]} exited with ${code}\n`);
      return EXIT.FAILURE;
    }
    return ok ? EXIT.OK : EXIT.FAILURE;
  },
});
