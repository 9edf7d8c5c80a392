// sysgenid bump: force a new generation through the control socket.

import { forceUpdate } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, JSON_HELP, JSON_OPTION, printJson, u32Option } from '../options.js';

export default defineCommand({
  name: 'bump',
  summary: "force a new generation (root or the daemon's control group)",
  help: `Usage: sysgenid bump [--min N] [--json]

Force a new generation: max(N, generation + 1). Needs the control socket: root, or a member of the
daemon's control group. Prints the new generation.

  --min N         the lowest generation to move to (default 0)
${JSON_HELP}
${COMMON_HELP}
`,
  options: { min: { type: 'string' }, ...JSON_OPTION },
  positionals: false,
  async run({ values, client }) {
    const generation = await forceUpdate({ ...client, min: u32Option('min', values.min, 0) });
    if (values.json) printJson({ generation });
    else process.stdout.write(`${generation}\n`);
    return EXIT.OK;
  },
});
