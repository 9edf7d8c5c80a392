// sysgenid ready: a readiness probe, exit 0 only when running with no outdated watcher; with --name,
// only this service's watchers count, so one broken watcher elsewhere does not fail every probe.

import { status } from '../../client/admin.js';
import type { DaemonStatus, WatcherStatus } from '../../protocol/status.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { formatMs } from '../format.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson } from '../options.js';

interface Verdict {
  readonly ready: boolean;
  readonly reasons: string[];
  readonly outdated: WatcherStatus[];
  /** With --name: how many watchers carry it. */
  readonly matched: number | null;
}

/**
 * Machine-wide: ready as the daemon says (running, nobody outdated). For one service: the machine is
 * not being quiesced or re-adjusting from a restore while quiesced (that holds every service back), at
 * least one watcher has the name, and none of those is outdated; other services' watchers do not count.
 */
export function readiness(s: DaemonStatus, name: string | undefined): Verdict {
  const lc = s.lifecycle;
  const reasons: string[] = [];
  const list = s.list ?? [];
  const mine = name === undefined ? list : list.filter((w) => w.name === name);
  const outdated = mine.filter((w) => w.tracked && w.outdated);
  const held =
    name === undefined
      ? lc.state !== 'running'
      : lc.state === 'quiescing' ||
        lc.state === 'quiesced' ||
        lc.state === 'unquiescing' ||
        (lc.state === 'adjusting' && lc.adjusting?.quiesced === true);
  if (held) reasons.push(`lifecycle ${lc.state} for ${formatMs(lc.sinceMs)}`);
  if (name !== undefined && mine.length === 0) reasons.push(`no watcher named ${JSON.stringify(name)} is connected`);
  if (outdated.length > 0) {
    const names = outdated.slice(0, 5).map((w) => `${w.name ?? `#${w.id}`}${w.problem ? ` (${w.problem})` : ''}`);
    reasons.push(`${outdated.length} watcher(s) outdated: ${names.join(', ')}${outdated.length > 5 ? ', ...' : ''}`);
  }
  const ready = name === undefined ? lc.ready && reasons.length === 0 : reasons.length === 0;
  if (!ready && reasons.length === 0) reasons.push(`lifecycle ${lc.state}`);
  return { ready, reasons, outdated, matched: name === undefined ? null : mine.length };
}

export default defineCommand({
  name: 'ready',
  summary: 'exit 0 only when running with no outdated watcher (a readiness probe; --name for one service)',
  help: `Usage: sysgenid ready [--name NAME] [--quiet] [--json]

Exit 0 when the daemon's lifecycle is running (not quiescing, quiesced or re-adjusting) and no tracked
watcher is outdated; else print why and exit 1 (7 when the daemon is not reachable). Works for any
user, so it serves as a Kubernetes exec readiness probe or a load balancer's health check: a restored
copy takes no traffic until it has re-adjusted. A watcher's reported problem (a failing handler or
watch command) is shown next to it.

  --name NAME     only the watchers named NAME count (a service's probe): exit 0 when at least one is
                  connected, none of them is outdated, and the machine is not quiesced; another
                  service's outdated watcher does not fail it
  --quiet         print nothing
${JSON_HELP}
${COMMON_HELP}
`,
  options: { name: { type: 'string' }, quiet: { type: 'boolean' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const quiet = values.quiet === true;
    const s = await status({ ...client, list: true });
    const v = readiness(s, values.name);
    if (values.json) {
      printJson({
        ready: v.ready,
        name: values.name ?? null,
        generation: s.generation,
        state: s.lifecycle.state,
        watchers: v.matched ?? s.watchers,
        reasons: v.ready ? [] : v.reasons,
        outdated: v.outdated.map((w) => ({ id: w.id, name: w.name, acked: w.acked, problem: w.problem })),
      });
    } else if (!quiet) {
      const who = values.name === undefined ? '' : ` ${values.name}`;
      process.stdout.write(
        v.ready
          ? `ready${who}: generation ${s.generation}, ${v.matched ?? s.watchers} watcher(s), none outdated\n`
          : `not ready${who}: ${v.reasons.join('; ')}\n`,
      );
    }
    return v.ready ? EXIT.OK : EXIT.FAILURE;
  },
});
