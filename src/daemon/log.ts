// Readable log lines on stderr. Under systemd (JOURNAL_STREAM set) each line carries a <N> priority
// prefix instead of a timestamp, so the journal files it at the right level.

export type Level = 'error' | 'warn' | 'info' | 'debug';

const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7 };
const RANK: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export function isLevel(s: string): s is Level {
  return Object.hasOwn(RANK, s);
}

let stderrGone = false;

/**
 * A line to stderr that can never take the daemon down: when whoever read the log went away (a closed
 * pipe, `sysgenidd 2>&1 | head -1`), the write fails with EPIPE as an 'error' event, which unhandled
 * would end the process and leave its sockets behind. From then on log lines are dropped; the daemon
 * keeps serving.
 */
export function writeStderr(line: string): void {
  if (stderrGone) return;
  if (process.stderr.listenerCount('error') === 0) {
    process.stderr.on('error', () => {
      stderrGone = true;
    });
  }
  try {
    process.stderr.write(line);
  } catch {
    stderrGone = true;
  }
}

export function createLogger(
  level: Level = 'info',
  write: (line: string) => void = writeStderr,
  journal: boolean = Boolean(process.env.JOURNAL_STREAM),
): Logger {
  const emit = (l: Level, msg: string): void => {
    if (RANK[l] > RANK[level]) return;
    const text = msg.replace(/\n/g, '\n    ');
    write(journal ? `<${PRIORITY[l]}>${text}\n` : `${new Date().toISOString()} sysgenidd ${l}: ${text}\n`);
  };
  return {
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
  };
}

/**
 * Structured context at the end of a line, `[generation=2 source=kmsg watcher=3]`, for searching the
 * journal (journalctl -g 'watcher=3') and for log shippers that parse logfmt. Values with spaces,
 * quotes or brackets are JSON-quoted; undefined ones are left out.
 */
export function fields(record: Readonly<Record<string, string | number | null | undefined>>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(record)) {
    if (value === undefined || value === null) continue;
    const text = String(value);
    parts.push(`${key}=${/^[A-Za-z0-9_.:/@+-]+$/.test(text) ? text : JSON.stringify(text)}`);
  }
  return `[${parts.join(' ')}]`;
}
