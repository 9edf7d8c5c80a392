// sysgenid exclude: stop a watcher or subscriber that never acknowledges or vetoes every snapshot from
// holding anyone up, without closing it (issue 12, point 6).

import { exclude } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT, UsageError } from '../exit.js';
import { COMMON_HELP, u32Option } from '../options.js';

export default defineCommand({
  name: 'exclude',
  summary: 'take a watcher or subscriber out of waits and the lifecycle (root or the control group)',
  help: `Usage: sysgenid exclude [--json] ID
       sysgenid exclude [--json] --uid UID

Exclude the watcher with connection id ID (the ID column of "sysgenid status", or the #ID a failed
quiesce names), or every watcher user UID has connected now: it is no longer tracked, so "sysgenid
wait" and "sysgenid ready" stop waiting for it; it is no longer a lifecycle subscriber, so a quiesce
stops asking it (one it is holding up moves on); and it cannot track or subscribe again. It stays
connected and is still told of new generations. Needs the control socket. Prints how many watchers
were excluded. Exit 1 when ID names no watcher, 6 without access to the control socket.

  --uid UID       exclude every watcher of this uid connected now (not those it connects later)
  --json          print {"excluded": N}
${COMMON_HELP}
`,
  options: { uid: { type: 'string' }, json: { type: 'boolean' } },
  positionals: true,
  async run({ values, client, positionals }) {
    let n: number;
    if (values.uid !== undefined) {
      if (positionals.length > 0) throw new UsageError('give either an ID or --uid UID, not both');
      n = await exclude({ ...client, uid: u32Option('uid', values.uid, 0) });
    } else {
      if (positionals.length !== 1) throw new UsageError('exclude needs one connection ID (or --uid UID)');
      n = await exclude({ ...client, id: idArgument(positionals[0] as string) });
    }
    process.stdout.write(values.json ? `${JSON.stringify({ excluded: n })}\n` : `excluded ${n} watcher(s)\n`);
    return EXIT.OK;
  },
});

/** A connection id as "sysgenid status" prints it (a leading # as in a quiesce report is accepted). */
export function idArgument(text: string): number {
  const id = Number(/^#?[0-9]{1,10}$/.test(text) ? text.replace('#', '') : NaN);
  if (!Number.isSafeInteger(id) || id > 0xffff_ffff) {
    const got = JSON.stringify(text);
    throw new UsageError(`a connection id is a whole number (the ID column of "sysgenid status"), got ${got}`);
  }
  return id;
}
