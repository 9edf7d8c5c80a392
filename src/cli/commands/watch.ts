// sysgenid watch: stay connected as a watcher; print or handle the latest new generation, then
// acknowledge it; a failing CMD is reported to the daemon and run again with backoff.

import { connect } from '../../client/watcher.js';
import { DEFAULT_WAIT_FOR_DAEMON_MS, RETRY_MAX_MS, RETRY_MIN_MS } from '../../defaults.js';
import { MAX_NAME } from '../../protocol/messages.js';
import { defineCommand } from '../command.js';
import { EXIT, UsageError } from '../exit.js';
import { formatMs } from '../format.js';
import { COMMON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';
import { runCommand } from '../run-command.js';

export default defineCommand({
  name: 'watch',
  summary: 'stay connected; print or handle every new generation and acknowledge it',
  help: `Usage: sysgenid watch [--name NAME] [--count K] [--untracked] [--retry MS] [--wait-for-daemon MS] [--json]
                      [-- CMD [ARG...]]

Stay connected as a watcher. On each new generation print it (and acknowledge it), or run CMD with
SYSGENID=<generation> in its environment and acknowledge only when CMD exits 0. Generations that arrive
while CMD runs are not run one by one: CMD runs once more, for the latest. A failing CMD leaves the
generation unacknowledged, so "sysgenid wait", "sysgenid status" and "sysgenid ready" show this watcher
as outdated with the failure as its problem; CMD is run again after MS, then twice as long each time
up to ${RETRY_MAX_MS / 1000} s, or at once when a newer generation arrives. When no daemon is running yet (at boot),
this waits for one.

  --name NAME           name shown by "sysgenid status" and matched by "sysgenid ready --name"
  --count K             exit after handling K generations (at least 1; default: for ever)
  --untracked           be notified but never waited for
  --retry MS            first retry of a failing CMD after MS (default ${RETRY_MIN_MS})
  --wait-for-daemon MS  how long to wait for a daemon to start (default ${DEFAULT_WAIT_FOR_DAEMON_MS}; 0: fail at once)
  --json                one JSON line per generation handled or failed (fields: docs/CLI.md)
${COMMON_HELP}
`,
  options: {
    name: { type: 'string' },
    count: { type: 'string' },
    untracked: { type: 'boolean' },
    retry: { type: 'string' },
    'wait-for-daemon': { type: 'string' },
    ...JSON_OPTION,
  },
  positionals: true,
  async run({ values, client, positionals: cmd }) {
    const count = u32Option('count', values.count, 0);
    if (values.count !== undefined && count === 0) {
      throw new UsageError('--count needs at least 1 (leave it out to watch for ever)');
    }
    const retryMinMs = Math.max(1, u32Option('retry', values.retry, RETRY_MIN_MS));
    const waitMs = u32Option('wait-for-daemon', values['wait-for-daemon'], DEFAULT_WAIT_FOR_DAEMON_MS);
    const json = values.json === true;
    const watcher = await connect({
      ...client,
      name: values.name ?? (cmd.length > 0 ? `watch ${cmd.join(' ')}`.slice(0, MAX_NAME) : 'sysgenid watch'),
      tracked: values.untracked !== true,
      waitForDaemon: waitMs,
    });
    watcher.on('disconnect', (err) =>
      process.stderr.write(`sysgenid watch: lost the daemon (${err.code}); reconnecting\n`),
    );
    watcher.on('reconnect', (g) => process.stderr.write(`sysgenid watch: reconnected at generation ${g}\n`));
    let handled = 0;
    const done = new Promise<void>((resolve) => {
      const stop = (): void => {
        watcher.close();
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      watcher.on('handled', (generation, attempts) => {
        if (json) printJson({ generation, handled: true, attempts });
        handled++;
        if (count > 0 && handled >= count) stop();
      });
    });
    const reported = new WeakSet<Error>();
    watcher.on('retry', (generation, err, attempt, retryInMs) => {
      reported.add(err);
      process.stderr.write(
        `sysgenid watch: ${err.message}; generation ${generation} stays unacknowledged; ` +
          `trying again in ${formatMs(retryInMs)} (attempt ${attempt})\n`,
      );
      if (json) printJson({ generation, handled: false, attempts: attempt, error: err.message, retryInMs });
    });
    watcher.on('error', (err) => {
      if (!reported.has(err)) process.stderr.write(`sysgenid watch: ${err.message}\n`);
    });
    watcher.handle(
      async (generation) => {
        if (cmd.length === 0) {
          if (!json) process.stdout.write(`${generation}\n`);
          return;
        }
        const code = await runCommand(cmd, generation);
        if (code !== 0) throw new Error(`${cmd[0]} exited with ${code}`);
      },
      { retryMinMs, retryMaxMs: Math.max(retryMinMs, RETRY_MAX_MS) },
    );
    await done;
    return EXIT.OK;
  },
});
