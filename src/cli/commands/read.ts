// sysgenid read: the next new generation, as a fresh watcher would be told about it.

import { readNext } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson } from '../options.js';

export default defineCommand({
  name: 'read',
  summary: 'print the next new generation (blocks until the generation changes; "get" for the current one)',
  help: `Usage: sysgenid read [--nonblock] [--json]

Print the generation a fresh watcher would be told about next: block until the generation changes,
then print it. With --nonblock, exit at once with code 3 (a fresh watcher is up to date). For the
current generation, at once, use "sysgenid get".

  --nonblock      do not block
${JSON_HELP}
${COMMON_HELP}
`,
  options: { nonblock: { type: 'boolean' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const generation = await readNext({ ...client, nonblock: values.nonblock === true });
    if (values.json) printJson({ generation });
    else process.stdout.write(`${generation}\n`);
    return EXIT.OK;
  },
});
