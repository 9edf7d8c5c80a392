// sysgenidd's command line: parsed with util.parseArgs, validated up front, with messages that say how
// to fix what is wrong.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_TIMEOUT_MS } from '../protocol/messages.js';
import { resolveRuntimeDir } from '../protocol/runtime-dir.js';
import { AUTO_BACKENDS, BACKEND_NAMES, type BackendName } from './backends.js';
import { type Level, isLevel } from './log.js';
import { socketPathProblem } from './runtime-dir.js';

export const USAGE = `Usage: sysgenidd [options]

Runs the System Generation ID daemon in the foreground (logs go to stderr).

Options:
  --dir DIR              runtime directory (default: $SYSGENID_DIR, /run/sysgenid for root,
                         $XDG_RUNTIME_DIR/sysgenid, or <tmp>/sysgenid-<uid>)
  --group NAME|GID       group allowed to force updates through control.sock
                         (default: "sysgenid" if it exists, else root; your own group when not root)
  --hooks-dir DIR        run the executables in DIR after every bump (default: /etc/sysgenid/hooks.d
                         for root, ~/.config/sysgenid/hooks.d otherwise)
  --no-hooks             run no hooks
  --hook-timeout MS      terminate a hook still running after MS milliseconds (default: 10000;
                         every timeout is at most 2147483647 ms)
  --dev-link             link /dev/sysgenid to the page when that path is free (for AWS-LC)
  --dev-link-path PATH   link PATH instead of /dev/sysgenid (implies --dev-link)
  --backends LIST        restore detection besides forced updates: "auto" (every one this machine
                         supports), "none", or a comma list of: kmsg, vmclock, uevent, timejump
                         (uevent and the timejump heuristic are opt-in; auto = kmsg,vmclock)
  --uevent-synthetic     let the uevent backend accept synthetic SYNTH_ARG_NEWVMGENID=1 events
  --vmclock-path PATH    the vmclock device (default: /dev/vmclock0)
  --adjust-timeout MS    after a restore while quiesced, how long every watcher may take to
                         acknowledge before the machine is un-quiesced anyway (default: 30000)
  --no-auto-resume       after a restore while quiesced, stay quiesced once every watcher has
                         re-adjusted, until "sysgenid resume" (default: un-quiesce by itself)
  --resume-timeout MS    how long the automatic un-quiesce waits for each answer (default: 10000)
  --max-connections N    connections accepted at once (default: from the descriptor limit)
  --max-backlog BYTES    unread output a client may leave before it is disconnected (default: 65536)
  --log-level LEVEL      error, warn, info or debug (default: info)
  -h, --help             show this help
  -V, --version          print the version
`;

export interface ParsedOptions {
  readonly help: boolean;
  readonly version: boolean;
  readonly dir: string;
  readonly controlGid: number;
  readonly hooksDir: string | undefined;
  readonly hookTimeoutMs: number;
  readonly devLink: string | undefined;
  readonly maxConnections: number | undefined;
  readonly maxBacklog: number;
  readonly logLevel: Level;
  readonly backends: readonly BackendName[];
  readonly vmclockPath: string | undefined;
  readonly ueventSynthetic: boolean;
  readonly autoResume: boolean;
  readonly adjustTimeoutMs: number;
  readonly resumeTimeoutMs: number;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function positiveInt(flag: string, value: string | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${flag} needs a positive whole number, got ${JSON.stringify(value)}`);
  return n;
}

/** A timeout in ms, bounded by what Node's timers hold (MAX_TIMEOUT_MS). */
function timeoutOption(flag: string, value: string | undefined, fallback: number): number {
  const n = positiveInt(flag, value, fallback) as number;
  if (n > MAX_TIMEOUT_MS) throw new UsageError(`${flag} is at most ${MAX_TIMEOUT_MS} ms (about 24.8 days), got ${n}`);
  return n;
}

/** gid of a group given by name or number, from /etc/group (Node has no getgrnam). */
export function resolveGroup(spec: string, groupFile = '/etc/group'): number | undefined {
  if (/^[0-9]+$/.test(spec)) return Number(spec);
  let text = '';
  try {
    text = fs.readFileSync(groupFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === spec && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

export function defaultHooksDir(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0) return '/etc/sysgenid/hooks.d';
  const config = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(config, 'sysgenid', 'hooks.d');
}

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        dir: { type: 'string' },
        group: { type: 'string' },
        'hooks-dir': { type: 'string' },
        'no-hooks': { type: 'boolean', default: false },
        'hook-timeout': { type: 'string' },
        'dev-link': { type: 'boolean', default: false },
        'dev-link-path': { type: 'string' },
        'max-connections': { type: 'string' },
        backends: { type: 'string' },
        'vmclock-path': { type: 'string' },
        'uevent-synthetic': { type: 'boolean', default: false },
        'max-backlog': { type: 'string' },
        'adjust-timeout': { type: 'string' },
        'no-auto-resume': { type: 'boolean', default: false },
        'resume-timeout': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'V', default: false },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const uid = process.geteuid?.() ?? 0;
  const logLevel = values['log-level'] ?? 'info';
  if (!isLevel(logLevel)) throw new UsageError(`--log-level must be error, warn, info or debug, got ${JSON.stringify(logLevel)}`);

  let controlGid: number;
  if (values.group !== undefined) {
    const gid = resolveGroup(values.group);
    if (gid === undefined) throw new UsageError(`--group: no group named ${JSON.stringify(values.group)} in /etc/group`);
    controlGid = gid;
  } else if (uid === 0) {
    controlGid = resolveGroup('sysgenid') ?? 0;
  } else {
    controlGid = process.getegid?.() ?? 0;
  }

  const dir = values.dir !== undefined ? path.resolve(values.dir) : resolveRuntimeDir(env, uid);
  const tooLong = socketPathProblem(dir);
  if (tooLong) throw new UsageError(tooLong);
  const devLinkPath = values['dev-link-path'];
  if (devLinkPath !== undefined && !path.isAbsolute(devLinkPath)) throw new UsageError('--dev-link-path must be an absolute path');

  const backendSpec = values.backends ?? 'auto';
  let backends: BackendName[];
  if (backendSpec === 'auto') backends = [...AUTO_BACKENDS];
  else if (backendSpec === 'none' || backendSpec === 'forced') backends = [];
  else {
    backends = [];
    for (const name of backendSpec.split(',').map((x) => x.trim()).filter(Boolean)) {
      if (name === 'forced') continue;
      if (!(BACKEND_NAMES as readonly string[]).includes(name)) {
        throw new UsageError(`--backends: unknown backend ${JSON.stringify(name)}; known: ${BACKEND_NAMES.join(', ')}, forced`);
      }
      backends.push(name as BackendName);
    }
  }

  return {
    backends,
    ueventSynthetic: values['uevent-synthetic'] === true,
    vmclockPath: values['vmclock-path'] === undefined ? undefined : path.resolve(values['vmclock-path']),
    help: values.help === true,
    version: values.version === true,
    dir,
    controlGid,
    hooksDir: values['no-hooks'] ? undefined : path.resolve(values['hooks-dir'] ?? defaultHooksDir(env, uid)),
    hookTimeoutMs: timeoutOption('--hook-timeout', values['hook-timeout'], 10_000),
    devLink: devLinkPath ?? (values['dev-link'] ? '/dev/sysgenid' : undefined),
    maxConnections: positiveInt('--max-connections', values['max-connections'], undefined),
    maxBacklog: positiveInt('--max-backlog', values['max-backlog'], 65_536) as number,
    autoResume: values['no-auto-resume'] !== true,
    adjustTimeoutMs: timeoutOption('--adjust-timeout', values['adjust-timeout'], 30_000),
    resumeTimeoutMs: timeoutOption('--resume-timeout', values['resume-timeout'], 10_000),
    logLevel,
  };
}
