// The shape of one sysgenid command (src/cli/commands/): what the registry needs to list it in the main
// help, print its own help, check its options and run it.

/** One option as util.parseArgs declares it (the subset sysgenid uses: no `multiple`, no `default`). */
export interface OptionConfig {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
}

/** A command's options for util.parseArgs, by long name. */
export type OptionsConfig = Readonly<Record<string, OptionConfig>>;

/** The parsed values of a command's own options, typed from its option config. */
export type OptionValues<O extends OptionsConfig> = {
  readonly [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? boolean
    : O[K]['type'] extends 'string'
      ? string
      : string | boolean;
};

export interface Invocation<O extends OptionsConfig> {
  /** The command's own options, as given. */
  readonly values: OptionValues<O>;
  /** --dir, when given. */
  readonly dir: string | undefined;
  /** The client options every call to the daemon takes: `{ dir }` when --dir was given, else `{}`. */
  readonly client: { readonly dir?: string };
  /** The arguments after the options (only for commands with `positionals`). */
  readonly positionals: string[];
}

export interface Command<O extends OptionsConfig = OptionsConfig> {
  readonly name: string;
  /** The command's line in `sysgenid --help`. */
  readonly summary: string;
  /** What `sysgenid NAME --help` prints. */
  readonly help: string;
  /** The command's own options for util.parseArgs, besides --dir and --help (src/cli/options.ts). */
  readonly options: O;
  /** Whether arguments may follow the options (`-- CMD [ARG...]`). */
  readonly positionals: boolean;
  /** Resolves to the exit code; throws a UsageError or SysgenidError for main.ts to report. */
  run(invocation: Invocation<O>): Promise<number>;
}

/** Declares a command with its option values typed from its own option config. */
export function defineCommand<const O extends OptionsConfig>(command: Command<O>): Command {
  return command;
}
