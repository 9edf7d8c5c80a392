// sysgenid get: the current generation, at once.

import { currentGeneration } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson } from '../options.js';

export default defineCommand({
  name: 'get',
  summary: 'print the current generation (never blocks)',
  help: `Usage: sysgenid get [--json]

Print the daemon's current generation and exit 0, at once, for any user. ("sysgenid read" is different:
it blocks until the generation changes.)

${JSON_HELP}
${COMMON_HELP}
`,
  options: { ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const generation = await currentGeneration(client);
    if (values.json) printJson({ generation });
    else process.stdout.write(`${generation}\n`);
    return EXIT.OK;
  },
});
