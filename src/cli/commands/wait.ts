// sysgenid wait: block until every tracked watcher has acknowledged the current generation.

import { status, waitForWatchers } from '../../client/admin.js';
import type { SysgenidError } from '../../protocol/errors.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { formatMs } from '../format.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';

export default defineCommand({
  name: 'wait',
  summary: 'wait until every tracked watcher has acknowledged the current generation',
  help: `Usage: sysgenid wait [--timeout MS] [--json]

Wait until no tracked watcher is outdated. Exit 0 when none is, 4 on timeout (and list who is late),
5 when a new generation arrives while waiting (wait again).

  --timeout MS    give up after MS milliseconds (default 0: wait for ever)
${JSON_HELP}
${COMMON_HELP}
`,
  options: { timeout: { type: 'string' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const timeoutMs = u32Option('timeout', values.timeout, 0);
    const started = Date.now();
    try {
      await waitForWatchers({ ...client, timeoutMs });
    } catch (err) {
      if ((err as SysgenidError).code === 'ETIME') {
        const s = await status({ ...client, list: true }).catch(() => undefined);
        const late = s?.list?.filter((w) => w.tracked && w.outdated) ?? [];
        if (values.json) {
          printJson({
            ok: false,
            exitCode: EXIT.TIMEOUT,
            error: { code: 'ETIME', message: (err as Error).message },
            generation: s?.generation ?? null,
            waitedMs: Date.now() - started,
            outdated: late.map((w) => ({
              id: w.id,
              name: w.name,
              pid: w.pid,
              acked: w.acked,
              outdatedMs: w.outdatedMs,
              problem: w.problem,
            })),
          });
          return EXIT.TIMEOUT;
        }
        process.stderr.write(
          `sysgenid wait: ${late.length || 'some'} watcher(s) still outdated after ${timeoutMs} ms\n`,
        );
        for (const w of late) {
          const who =
            w.pid === null
              ? 'pid unknown'
              : `pid ${w.pid}${w.pidVerified ? '' : ' (declared)'}${w.command ? ` ${w.command}` : ''}` +
                `${w.uid === null ? '' : ` uid ${w.uid}`}`;
          process.stderr.write(
            `  watcher ${w.id} ${w.name ?? '-'}: ${who}, acknowledged ${w.acked}, ` +
              `outdated for ${formatMs(w.outdatedMs ?? 0)}\n`,
          );
        }
      }
      throw err;
    }
    if (values.json) printJson({ ok: true, waitedMs: Date.now() - started });
    return EXIT.OK;
  },
});
