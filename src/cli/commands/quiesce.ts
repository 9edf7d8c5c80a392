// sysgenid quiesce: ask every lifecycle subscriber to quiesce, before a snapshot.

import { quiesce } from '../../client/admin.js';
import { DEFAULT_QUIESCE_TIMEOUT_MS } from '../../defaults.js';
import { defineCommand } from '../command.js';
import { describeReport, quiesceExit } from '../cycle-report.js';
import { COMMON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';

export default defineCommand({
  name: 'quiesce',
  summary: 'ask every lifecycle subscriber to quiesce (before a snapshot)',
  help: `Usage: sysgenid quiesce [--timeout MS] [--json]

Ask every lifecycle subscriber, one at a time (highest priority number first, latest registered first
among equals), to quiesce. Exit 0 when every one has. If one fails, each remaining one is still asked;
on a failure or at the timeout every subscriber asked is un-quiesced again before this exits, so the
machine is never left half-quiesced. The late and failing subscribers are named.
Exit 1 on a failure, 4 when one was late, 5 when a new generation arrived while quiescing, 8 when the
machine is already quiesced or a step is in progress.

  --timeout MS    the whole quiesce's budget (default ${DEFAULT_QUIESCE_TIMEOUT_MS})
  --json          print the daemon's cycle report (its "outcome": ok, failed, late, interrupted, aborted)
${COMMON_HELP}
`,
  options: { timeout: { type: 'string' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const report = await quiesce({
      ...client,
      timeoutMs: u32Option('timeout', values.timeout, DEFAULT_QUIESCE_TIMEOUT_MS),
    });
    if (values.json) {
      printJson(report);
      if (!report.ok) process.stderr.write(`sysgenid quiesce: failed: ${report.reason}\n`);
    } else if (report.ok) {
      process.stdout.write(`sysgenid quiesce: ${describeReport(report)}\n`);
    } else {
      process.stderr.write(`sysgenid quiesce: failed: ${report.reason}\n${describeReport(report)}\n`);
    }
    return quiesceExit(report);
  },
});
