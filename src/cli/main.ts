#!/usr/bin/env node
// sysgenid entry point; the commands live in commands.ts.

import { SysgenidError } from '../protocol/errors.js';
import { EXIT, exitCodeFor, main } from './commands.js';

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
