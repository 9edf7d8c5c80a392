#!/usr/bin/env node
// sysgenid entry point: runs the command line (dispatch.ts, commands in commands/) and reports a failure
// with its exit code.

import { SysgenidError } from '../protocol/errors.js';
import { main } from './dispatch.js';
import { EXIT, exitCodeFor } from './exit.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: Error) => {
    const code = exitCodeFor(err);
    const prefix = err instanceof SysgenidError ? `${err.code}: ` : '';
    if (code === EXIT.NO_CHANGE) process.stderr.write('sysgenid: no new generation\n');
    else if (code !== EXIT.TIMEOUT) process.stderr.write(`sysgenid: ${prefix}${err.message}\n`);
    if (code === EXIT.USAGE) process.stderr.write('Run "sysgenid --help" for usage.\n');
    process.exitCode = code;
  },
);
