// Runs the program a command was given after `--` (watch, snapshot) with the generation in SYSGENID.

import { spawn } from 'node:child_process';

/** Resolves to CMD's exit code: 127 when it cannot be started, 128 when a signal ended it. */
export function runCommand(argv: string[], generation: number, who = 'watch'): Promise<number> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: 'inherit', env: { ...process.env, SYSGENID: String(generation) } });
    child.on('error', (err) => {
      process.stderr.write(`sysgenid ${who}: cannot run ${cmd}: ${err.message}\n`);
      resolve(127);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
