// From a command line to a command's exit code: the main help, the unknown-command and unknown-option
// checks and the dispatch, all derived from the registry in src/cli/commands/index.ts.

import { parseArgs } from 'node:util';
import { status } from '../client/admin.js';
import { PROTOCOL_NAME } from '../protocol/messages.js';
import { VERSION } from '../version.js';
import type { Command, OptionConfig, OptionsConfig } from './command.js';
import { COMMANDS } from './commands/index.js';
import { EXIT, UsageError } from './exit.js';
import { COMMON_OPTIONS } from './options.js';
import { didYouMean, explainParseError } from './suggest.js';

const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

/** The summaries start in one column; a longer name pushes its summary right. */
const SUMMARY_COLUMN = 8;

export const MAIN_HELP = `Usage: sysgenid <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(SUMMARY_COLUMN)}  ${c.summary}\n`).join('')}
Run "sysgenid <command> --help" for a command's options. Exit codes:
  0 success, 1 failure, 2 usage error, 3 no new generation (read --nonblock),
  4 timed out (wait, quiesce), 5 interrupted by a new generation (wait, quiesce), 6 permission
  denied (bump, quiesce, resume, snapshot, exclude, disconnect), 7 daemon not reachable, 8 busy
  (quiesce: already quiesced or a step in progress)
`;

/**
 * Every command's options together. The command line is parsed against all of them, so that an
 * option of another command is refused by name ("status does not take --timeout") rather than as
 * unknown; an option no command knows is refused by util.parseArgs itself.
 */
export function allOptions(commands: readonly Command[]): OptionsConfig {
  const all: Record<string, OptionConfig> = { ...COMMON_OPTIONS };
  for (const c of commands) {
    for (const [key, config] of Object.entries(c.options)) {
      const known = all[key];
      if (known && (known.type !== config.type || known.short !== config.short)) {
        throw new Error(`sysgenid ${c.name}: option --${key} is declared differently by another command`);
      }
      all[key] = config;
    }
  }
  return all;
}

const ALL_OPTIONS = allOptions(COMMANDS);

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(MAIN_HELP);
    return name === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (name === '-V' || name === '--version') return version(rest);
  const command = BY_NAME.get(name);
  if (command === undefined) {
    throw new UsageError(`unknown command ${JSON.stringify(name)}${didYouMean(name, BY_NAME.keys())}`);
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, allowPositionals: command.positionals, strict: true, options: ALL_OPTIONS });
  } catch (err) {
    const own = [...Object.keys(command.options), ...Object.keys(COMMON_OPTIONS)];
    throw new UsageError(explainParseError(err as Error, rest, name, own, ALL_OPTIONS) ?? (err as Error).message);
  }
  const values = parsed.values;
  if (values.help) {
    process.stdout.write(command.help);
    return EXIT.OK;
  }
  for (const key of Object.keys(values)) {
    if (key !== 'dir' && !Object.hasOwn(command.options, key)) {
      throw new UsageError(`${name} does not take --${key}${didYouMean(key, Object.keys(command.options), '--')}`);
    }
  }
  const dir = typeof values.dir === 'string' ? values.dir : undefined;
  // No option is declared `multiple`, so no value is an array.
  return command.run({ values: values, dir, client: dir ? { dir } : {}, positionals: parsed.positionals });
}

/**
 * `sysgenid --version [--json] [--dir DIR]`: this client's version and protocol, and the daemon's
 * version when one answers (as `docker version` shows client and server), so a mismatch is visible.
 */
async function version(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args, strict: true, options: { json: { type: 'boolean' }, dir: { type: 'string' } } }));
  } catch (err) {
    throw new UsageError(`--version takes only --json and --dir: ${(err as Error).message}`);
  }
  const daemon = await status({ ...(values.dir ? { dir: values.dir } : {}), list: false, deadlineMs: 2000 }).then(
    (s) => ({ version: s.version, dir: s.dir, error: null }),
    (err: Error) => ({ version: null, dir: null, error: err.message }),
  );
  if (values.json) {
    const doc = { client: VERSION, protocol: PROTOCOL_NAME, daemon };
    process.stdout.write(`${JSON.stringify(doc)}\n`);
  } else {
    const found = daemon.version === null ? `not reachable (${daemon.error})` : `${daemon.version} at ${daemon.dir}`;
    process.stdout.write(`sysgenid ${VERSION}\nprotocol ${PROTOCOL_NAME}\nsysgenidd ${found}\n`);
  }
  return EXIT.OK;
}
