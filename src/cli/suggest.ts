// Messages for a mistyped command line: "did you mean" for a command or option name, and the argument
// parser's own errors said in the words of this command's help ("--min needs a number", not the parser's
// "argument is ambiguous").

import type { OptionsConfig } from './command.js';

/** The edit distance between two short names (insertions, deletions, substitutions, transpositions). */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const up = d[i - 1] as number[];
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
      }
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

/** The closest of `known` to `word`, when it is close enough to be a typo. */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const dist = distance(word.toLowerCase(), k);
    if (dist < bestDistance) {
      best = k;
      bestDistance = dist;
    }
  }
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}

export function didYouMean(word: string, known: Iterable<string>, prefix = ''): string {
  const near = closest(word, known);
  return near === undefined ? '' : `; did you mean "${prefix}${near}"?`;
}

/**
 * The message for an argument util.parseArgs refused, or undefined to keep its own. `ownOptions` are
 * the options the command takes (for suggestions), `allOptions` how every option is declared.
 */
export function explainParseError(
  err: Error & { code?: string },
  args: readonly string[],
  command: string,
  ownOptions: readonly string[],
  allOptions: OptionsConfig,
): string | undefined {
  const quoted = /'(-{1,2}[^' ]+)/.exec(err.message)?.[1];
  switch (err.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      if (quoted === undefined) return undefined;
      const name = quoted.replace(/^-+/, '').replace(/=.*$/, '');
      return `${command} does not take ${quoted}${didYouMean(name, ownOptions, '--')}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // `--min -1` (a value that looks like an option) or a value missing at the end of the line.
      const flag = /'--([a-z-]+)/.exec(err.message)?.[1];
      if (flag === undefined || allOptions[flag]?.type !== 'string') return undefined;
      const at = args.findIndex((a) => a === `--${flag}`);
      const value = at >= 0 ? args[at + 1] : undefined;
      if (value === undefined) return `--${flag} needs a value`;
      if (/^-[0-9]/.test(value)) {
        return `--${flag} needs a whole number from 0 to 4294967295, got ${JSON.stringify(value)}`;
      }
      return (
        `--${flag} needs a value, got the option ${JSON.stringify(value)} (a value that starts with "-" ` +
        `is written --${flag}=VALUE)`
      );
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const word = /'([^']*)'/.exec(err.message)?.[1] ?? '';
      return `${command} takes no arguments, got ${JSON.stringify(word)}`;
    }
    default:
      return undefined;
  }
}
