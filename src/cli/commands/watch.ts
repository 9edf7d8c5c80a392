// sysgenid watch: stay connected as a watcher; print or handle each new generation, then acknowledge it.

import { connect } from '../../client/watcher.js';
import type { SysgenidError } from '../../protocol/errors.js';
import { MAX_NAME } from '../../protocol/messages.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, u32Option } from '../options.js';
import { runCommand } from '../run-command.js';

export default defineCommand({
  name: 'watch',
  summary: 'stay connected; print or handle every new generation and acknowledge it',
  help: `Usage: sysgenid watch [--name NAME] [--count K] [--untracked] [-- CMD [ARG...]]

Stay connected as a watcher. On each new generation print it (and acknowledge it), or run CMD with
SYSGENID=<generation> in its environment and acknowledge only when CMD exits 0. A failing CMD leaves the
generation unacknowledged, so "sysgenid wait" and "sysgenid status" show this watcher as outdated.

  --name NAME     name shown by "sysgenid status"
  --count K       exit after handling K generations
  --untracked     be notified but never waited for
${COMMON_HELP}
`,
  options: { name: { type: 'string' }, count: { type: 'string' }, untracked: { type: 'boolean' } },
  positionals: true,
  async run({ values, dir, positionals: cmd }) {
    const count = u32Option('count', values.count, 0);
    const watcher = await connect({
      ...(dir ? { dir } : {}),
      name: values.name ?? (cmd.length > 0 ? `watch ${cmd.join(' ')}`.slice(0, MAX_NAME) : 'sysgenid watch'),
      tracked: values.untracked !== true,
    });
    watcher.on('disconnect',
      (err) => process.stderr.write(`sysgenid watch: lost the daemon (${err.code}); reconnecting\n`));
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
          process.stderr.write(
            `sysgenid watch: ${cmd[0]} exited with ${code}; generation ${gen} stays unacknowledged\n`);
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
  },
});
