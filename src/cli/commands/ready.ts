// sysgenid ready: a readiness probe, exit 0 only when running with no outdated watcher.

import { status } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { formatMs } from '../format.js';
import { COMMON_HELP } from '../options.js';

export default defineCommand({
  name: 'ready',
  summary: 'exit 0 only when running with no outdated watcher (a readiness probe)',
  help: `Usage: sysgenid ready [--quiet]

Exit 0 when the daemon's lifecycle is running (not quiescing, quiesced or re-adjusting) and no tracked
watcher is outdated; else print why and exit 1 (7 when the daemon is not reachable). Works for any
user, so it serves as a Kubernetes exec readiness probe or a load balancer's health check: a restored
copy takes no traffic until it has re-adjusted.

  --quiet         print nothing
${COMMON_HELP}
`,
  options: { quiet: { type: 'boolean' } },
  positionals: false,
  async run({ values, dir }) {
    const quiet = values.quiet === true;
    const s = await status({ ...(dir ? { dir } : {}), list: true });
    if (s.lifecycle.ready) {
      if (!quiet) process.stdout.write(`ready: generation ${s.generation}, ${s.watchers} watcher(s), none outdated\n`);
      return EXIT.OK;
    }
    if (!quiet) {
      const why: string[] = [];
      if (s.lifecycle.state !== 'running') {
        why.push(`lifecycle ${s.lifecycle.state} for ${formatMs(s.lifecycle.sinceMs)}`);
      }
      const late = (s.list ?? []).filter((w) => w.tracked && w.outdated);
      if (late.length > 0) {
        const names = late.slice(0, 5).map((w) => `${w.name ?? `#${w.id}`}${w.problem ? ` (${w.problem})` : ''}`);
        why.push(`${late.length} watcher(s) outdated: ${names.join(', ')}${late.length > 5 ? ', ...' : ''}`);
      }
      process.stdout.write(`not ready: ${why.join('; ')}\n`);
    }
    return EXIT.FAILURE;
  },
});
