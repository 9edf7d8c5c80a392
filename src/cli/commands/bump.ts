// sysgenid bump: force a new generation through the control socket.

import { forceUpdate } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT } from '../exit.js';
import { COMMON_HELP, u32Option } from '../options.js';

export default defineCommand({
  name: 'bump',
  summary: "force a new generation (root or the daemon's control group)",
  help: `Usage: sysgenid bump [--min N]

Force a new generation: max(N, generation + 1). Needs the control socket: root, or a member of the
daemon's control group. Prints the new generation.

  --min N         the lowest generation to move to (default 0)
${COMMON_HELP}
`,
  options: { min: { type: 'string' } },
  positionals: false,
  async run({ values, dir }) {
    process.stdout.write(`${await forceUpdate({ ...(dir ? { dir } : {}), min: u32Option('min', values.min, 0) })}\n`);
    return EXIT.OK;
  },
});
