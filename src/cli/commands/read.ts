// sysgenid read: the next new generation, as a fresh watcher would be told about it.

import { readNext } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP } from '../options.js';

export default defineCommand({
  name: 'read',
  summary: 'print the next new generation (blocks until the generation changes)',
  help: `Usage: sysgenid read [--nonblock]

Print the generation a fresh watcher would be told about next: block until the generation changes,
then print it. With --nonblock, exit at once with code 3 (a fresh watcher is up to date).

  --nonblock      do not block
${COMMON_HELP}
`,
  options: { nonblock: { type: 'boolean' } },
  positionals: false,
  async run({ values, dir }) {
    process.stdout.write(`${await readNext({ ...(dir ? { dir } : {}), nonblock: values.nonblock === true })}\n`);
    return EXIT.OK;
  },
});
