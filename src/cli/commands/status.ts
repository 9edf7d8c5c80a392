// sysgenid status: the generation, the watchers and which of them are outdated.

import { status } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { formatStatus } from '../format.js';
import { COMMON_HELP } from '../options.js';

export default defineCommand({
  name: 'status',
  summary: 'the generation, the watchers and which of them are outdated',
  help: `Usage: sysgenid status [--json] [--brief]

Print the generation, the number of watchers and how many are outdated, and one line per watcher:
its id, name, pid, whether it is tracked, what it acknowledged last, and how long it has been outdated.

  --json          print the daemon's status document (see docs/PROTOCOL.md)
  --brief         leave out the watcher list
${COMMON_HELP}
`,
  options: { json: { type: 'boolean' }, brief: { type: 'boolean' } },
  positionals: false,
  async run({ values, client }) {
    const s = await status({ ...client, list: !values.brief });
    process.stdout.write(values.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
    return EXIT.OK;
  },
});
