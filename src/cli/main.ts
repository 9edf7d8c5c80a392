#!/usr/bin/env node
// sysgenid entry point: runs the command line (dispatch.ts, commands in commands/) and reports a failure
// with its exit code: on stderr in words, and with --json also on stdout as a JSON document.

import { SysgenidError } from '../protocol/errors.js';
import { main } from './dispatch.js';
import { EXIT, exitCodeFor } from './exit.js';

/** The daemon's words name wire requests; a user of this command needs the command to run instead. */
function forCliUser(err: Error): string {
  if (err instanceof SysgenidError && err.code === 'EBUSY' && /already quiesced/.test(err.message)) {
    return 'the machine is already quiesced; run "sysgenid resume" first';
  }
  return err.message;
}

const argv = process.argv.slice(2);
const end = argv.indexOf('--');
const json = (end === -1 ? argv : argv.slice(0, end)).includes('--json');

// A closed stdout (`sysgenid watch | head -1`) ends the command quietly instead of with an EPIPE trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
  throw err;
});

main(argv).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    const code = exitCodeFor(err);
    const prefix = err instanceof SysgenidError ? `${err.code}: ` : '';
    const message = code === EXIT.NO_CHANGE ? 'no new generation' : forCliUser(err);
    // A timeout was already reported by the command that waited (wait names the late watchers).
    if (code === EXIT.NO_CHANGE) process.stderr.write('sysgenid: no new generation\n');
    else if (code !== EXIT.TIMEOUT) process.stderr.write(`sysgenid: ${prefix}${message}\n`);
    if (code === EXIT.USAGE) process.stderr.write('Run "sysgenid --help" for usage.\n');
    if (json) {
      const kind = err instanceof SysgenidError ? err.code : code === EXIT.USAGE ? 'USAGE' : 'ERROR';
      const error = { code: kind, message };
      process.stdout.write(`${JSON.stringify({ ok: false, exitCode: code, error })}\n`);
    }
    process.exitCode = code;
  },
);
