// sysgenid resume: un-quiesce; after a restore, once every watcher has re-adjusted.

import { unquiesce } from '../../client/admin.js';
import { DEFAULT_UNQUIESCE_TIMEOUT_MS } from '../../defaults.js';
import { defineCommand } from '../command.js';
import { resumeSummary } from '../cycle-report.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';

export default defineCommand({
  name: 'resume',
  summary: 'un-quiesce; after a restore, once every watcher has re-adjusted',
  help: `Usage: sysgenid resume [--timeout MS] [--json]

Un-quiesce every quiesced subscriber, in order (lowest priority number first). After a restore it first
waits until every tracked watcher has acknowledged the new generation, up to MS, and names the late.
Every subscriber is told even when another fails. Exit 0 when all answered, 1 otherwise.

  --timeout MS    budget for re-adjusting and for the un-quiesce (default ${DEFAULT_UNQUIESCE_TIMEOUT_MS})
${JSON_HELP}
${COMMON_HELP}
`,
  options: { timeout: { type: 'string' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const timeoutMs = u32Option('timeout', values.timeout, DEFAULT_UNQUIESCE_TIMEOUT_MS);
    const summary = await resumeSummary(client, await unquiesce({ ...client, timeoutMs }));
    if (values.json) {
      const { ok, reason, resumedBy, report } = summary;
      printJson({ ok, reason, resumedBy, report });
      if (!ok) process.stderr.write(`sysgenid resume: ${reason}\n`);
      return ok ? EXIT.OK : EXIT.FAILURE;
    }
    const out = summary.ok ? process.stdout : process.stderr;
    out.write(`sysgenid resume: ${summary.text}\n`);
    if (!summary.ok) out.write(`sysgenid resume: ${summary.reason}\n`);
    return summary.ok ? EXIT.OK : EXIT.FAILURE;
  },
});
