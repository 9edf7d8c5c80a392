// sysgenid disconnect: close a client's connection to the daemon at an administrator's request.

import { disconnect } from '../../client/admin.js';
import { defineCommand } from '../command.js';
import { EXIT, UsageError } from '../exit.js';
import { COMMON_HELP } from '../options.js';
import { idArgument } from './exclude.js';

export default defineCommand({
  name: 'disconnect',
  summary: "close a client's connection by its id (root or the control group)",
  help: `Usage: sysgenid disconnect [--json] ID

Close the connection with id ID (the ID column of "sysgenid status", or the #ID a failed quiesce
names). The daemon logs whom it closed and who asked. A client that reconnects is a new watcher with a
new id; "sysgenid exclude" keeps one connected but out of every wait and cycle instead. Needs the
control socket. Exit 1 when ID names no connection, 6 without access to the control socket.

  --json          print {"disconnected": ID}
${COMMON_HELP}
`,
  options: { json: { type: 'boolean' } },
  positionals: true,
  async run({ values, client, positionals }) {
    if (positionals.length !== 1) throw new UsageError('disconnect needs one connection ID');
    const id = idArgument(positionals[0] as string);
    await disconnect({ ...client, id });
    process.stdout.write(values.json ? `${JSON.stringify({ disconnected: id })}\n` : `disconnected ${id}\n`);
    return EXIT.OK;
  },
});
