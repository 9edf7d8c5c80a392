// What every sysgenid command shares on its command line: --dir and --help, their help lines, and the
// check of a numeric option.

import { parseU32 } from '../protocol/messages.js';
import type { OptionsConfig } from './command.js';
import { UsageError } from './exit.js';

/** Accepted by every command, besides the command's own options. */
export const COMMON_OPTIONS = {
  dir: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionsConfig;

/** The help lines of COMMON_OPTIONS, which end most commands' help. */
export const COMMON_HELP = `  --dir DIR       runtime directory of the daemon (default: as sysgenidd resolves it)
  -h, --help      show this help`;

/** Every command's --json: declared by each command (so its help lists it) with this line. */
export const JSON_OPTION = { json: { type: 'boolean' } } as const satisfies OptionsConfig;
export const JSON_HELP = `  --json          print one JSON document instead (its fields: docs/CLI.md)`;

/** One JSON document on one line: what --json prints, and what a script parses. */
export function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc)}\n`);
}

export function u32Option(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = parseU32(value);
  if (n === undefined) {
    throw new UsageError(`--${name} needs a whole number from 0 to 4294967295, got ${JSON.stringify(value)}`);
  }
  return n;
}
