// sysgenidd's command line: parsed with util.parseArgs, validated up front, with messages that say how
// to fix what is wrong.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import {
  DEFAULT_ADJUST_TIMEOUT_MS,
  DEFAULT_HOOK_TIMEOUT_MS,
  DEFAULT_MAX_BACKLOG,
  DEFAULT_MAX_SUBSCRIBERS_PER_USER,
  DEFAULT_METRICS_INTERVAL_MS,
  DEFAULT_RESUME_TIMEOUT_MS,
} from '../defaults.js';
import { DEFAULT_HOST_SERIAL_NAME, DEFAULT_HOST_VSOCK_PORT } from '../protocol/host.js';
import { MAX_TIMEOUT_MS, parseU32 } from '../protocol/messages.js';
import { U32_MAX, isU32 } from '../core/generation.js';
import { resolveRuntimeDir } from '../protocol/runtime-dir.js';
import type { BackendConfig } from './backends/backend.js';
import { BACKENDS, type BackendEntry, autoBackends, backendNames } from './backends/registry.js';
import { floorPath } from './floor.js';
import { type Level, isLevel } from './log.js';
import { parseListen } from './metrics-listen.js';
import { socketPathProblem } from './runtime-dir.js';

/** The help text; the --backends paragraph is written from the registry. */
export function usage(registry: readonly BackendEntry[]): string {
  return `Usage: sysgenidd [options]
       sysgenidd install-units [--dest DIR] [--node PATH] [--user NAME] [--now]

Runs the System Generation ID daemon in the foreground (logs go to stderr). install-units writes its
systemd units for this package (sysgenidd install-units --help, docs/deploy.md).

Options:
  --dir DIR              runtime directory (default: $SYSGENID_DIR, /run/sysgenid for root,
                         $XDG_RUNTIME_DIR/sysgenid, or <tmp>/sysgenid-<uid>)
  --group NAME|GID       group allowed to force updates through control.sock
                         (default: "sysgenid" if it exists, else root; your own group when not root)
  --hooks-dir DIR        run the executables in DIR after every bump (default: /etc/sysgenid/hooks.d
                         for root, ~/.config/sysgenid/hooks.d otherwise)
  --no-hooks             run no hooks
  --hook-timeout MS      terminate a hook still running after MS milliseconds (default: ${DEFAULT_HOOK_TIMEOUT_MS};
                         every timeout is at most 2147483647 ms)
  --dev-link             link /dev/sysgenid to the page when that path is free (for AWS-LC)
  --dev-link-path PATH   link PATH instead of /dev/sysgenid (implies --dev-link)
${backendsHelp(registry)}
  --uevent-synthetic     let the uevent backend accept synthetic SYNTH_ARG_NEWVMGENID=1 events
  --vmclock-path PATH    the vmclock device (default: /dev/vmclock0)
  --host-vsock-port N    the host backend's vsock port (default: ${DEFAULT_HOST_VSOCK_PORT}; 0: no vsock)
  --host-serial NAME     the host backend's virtio-serial port name or device path
                         (default: ${DEFAULT_HOST_SERIAL_NAME}; '': no virtio-serial)
  --adjust-timeout MS    after a restore while quiesced, how long every watcher may take to
                         acknowledge before the machine is un-quiesced anyway (default: ${DEFAULT_ADJUST_TIMEOUT_MS})
  --no-auto-resume       after a restore while quiesced, stay quiesced once every watcher has
                         re-adjusted, until "sysgenid resume" (default: un-quiesce by itself)
  --resume-timeout MS    how long the automatic un-quiesce waits for each answer (default: ${DEFAULT_RESUME_TIMEOUT_MS})
  --max-connections N    connections accepted at once (default: from the descriptor limit)
  --max-per-user N       watch connections one user other than root may hold (default: a quarter
                         of the watch pool, at most 1024; needs the native addon to know the user)
  --max-subscribers-per-user N
                         lifecycle subscribers one user other than root may have
                         (default: ${DEFAULT_MAX_SUBSCRIBERS_PER_USER}; needs the native addon to know the user)
  --max-backlog BYTES    unread output a client may leave before it is disconnected (default: ${DEFAULT_MAX_BACKLOG})
  --metrics-listen ADDR  serve Prometheus metrics, /readyz and /healthz over HTTP on ADDR:
                         PORT (loopback), HOST:PORT or [V6]:PORT (default: no listener)
  --metrics-file FILE    write the metrics to FILE for node_exporter's textfile collector,
                         atomically, after every bump and settle and every --metrics-interval MS
                         (default: ${DEFAULT_METRICS_INTERVAL_MS})
  --state-dir DIR        keep the counter floor (DIR/floor) outside the runtime directory, so that
                         losing that directory never takes the generation back within a boot
                         (default: /var/lib/sysgenid for root, else $XDG_STATE_HOME/sysgenid or
                         ~/.local/state/sysgenid; DIR.floor beside a --dir/SYSGENID_DIR directory)
  --reset-generation N   set the generation to N (page, state record, floor) and exit; refused
                         while a daemon serves the directory; every reader sees a change (the way
                         out of the u32 ceiling, docs/reliability.md)
  --log-level LEVEL      error, warn, info or debug (default: info)
  -h, --help             show this help
  -V, --version          print the version
`;
}

const HELP_INDENT = ' '.repeat(25);
const HELP_WIDTH = 100;

function backendsHelp(registry: readonly BackendEntry[]): string {
  const optIn = registry.filter((b) => !b.auto).map((b) => b.label ?? b.name);
  const optInText =
    optIn.length === 0
      ? ''
      : `${optIn.length === 1 ? optIn[0] : `${optIn.slice(0, -1).join(', ')} and ${optIn.at(-1)}`} ` +
        `${optIn.length === 1 ? 'is' : 'are'} opt-in; `;
  const text =
    'restore detection besides forced updates: "auto" (every one this machine supports), "none", ' +
    `or a comma list of: ${backendNames(registry).join(', ')} (${optInText}auto = ${autoBackends(registry).join(',')})`;
  const lines: string[] = [];
  let line = '  --backends LIST       ';
  for (const word of text.split(' ')) {
    if (line.length + 1 + word.length > HELP_WIDTH && line.trim() !== '') {
      lines.push(line);
      line = HELP_INDENT.slice(0, -1);
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines.join('\n');
}

/** `sysgenidd --help`, built when asked for rather than at every start. */
export function usageText(): string {
  return usage(BACKENDS);
}

/** --backends: "auto", "none" (or "forced", the one always on), or a comma list of names. */
export function parseBackends(spec: string, registry: readonly BackendEntry[] = BACKENDS): string[] {
  if (spec === 'auto') return autoBackends(registry);
  if (spec === 'none' || spec === 'forced') return [];
  const known = backendNames(registry);
  const backends: string[] = [];
  for (const name of spec
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    if (name === 'forced') continue;
    if (!known.includes(name)) {
      throw new UsageError(`--backends: unknown backend ${JSON.stringify(name)}; known: ${known.join(', ')}, forced`);
    }
    backends.push(name);
  }
  return backends;
}

export interface ParsedOptions {
  readonly help: boolean;
  readonly version: boolean;
  readonly dir: string;
  readonly controlGid: number;
  readonly hooksDir: string | undefined;
  readonly hookTimeoutMs: number;
  readonly devLink: string | undefined;
  readonly maxConnections: number | undefined;
  readonly maxPerUser: number | undefined;
  readonly maxSubscribersPerUser: number;
  readonly maxBacklog: number;
  readonly logLevel: Level;
  readonly backends: readonly string[];
  /** Settings for individual backends, by backend name (src/daemon/backends/). */
  readonly backendConfig: Readonly<Record<string, BackendConfig>>;
  readonly autoResume: boolean;
  readonly adjustTimeoutMs: number;
  readonly resumeTimeoutMs: number;
  /** --metrics-listen, parsed; undefined: no HTTP listener. */
  readonly metricsListen: { readonly host: string; readonly port: number } | undefined;
  /** --metrics-file, absolute; undefined: no textfile. */
  readonly metricsFile: string | undefined;
  readonly metricsIntervalMs: number;
  /** Where the counter floor lives (src/daemon/floor.ts). */
  readonly floor: { readonly file: string; readonly inStateDir: boolean };
  /** --reset-generation: set the counter and exit instead of serving. */
  readonly resetGeneration: number | undefined;
}

type Options = NonNullable<ParseArgsConfig['options']>;
type StrictFlags<O extends Options> = { args: string[]; options: O; strict: true; allowPositionals: false };

/** Flags of one of sysgenidd's command lines (strict, no positionals); a mistake is a UsageError. */
export function parseFlags<const O extends Options>(
  args: string[],
  options: O,
): ReturnType<typeof parseArgs<StrictFlags<O>>>['values'] {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

function positiveInt(flag: string, value: string | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${flag} needs a positive whole number, got ${JSON.stringify(value)}`);
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
  const values = parseFlags(argv, {
    dir: { type: 'string' },
    group: { type: 'string' },
    'hooks-dir': { type: 'string' },
    'no-hooks': { type: 'boolean', default: false },
    'hook-timeout': { type: 'string' },
    'dev-link': { type: 'boolean', default: false },
    'dev-link-path': { type: 'string' },
    'max-connections': { type: 'string' },
    'max-per-user': { type: 'string' },
    'max-subscribers-per-user': { type: 'string' },
    backends: { type: 'string' },
    'vmclock-path': { type: 'string' },
    'host-vsock-port': { type: 'string' },
    'host-serial': { type: 'string' },
    'uevent-synthetic': { type: 'boolean', default: false },
    'max-backlog': { type: 'string' },
    'adjust-timeout': { type: 'string' },
    'no-auto-resume': { type: 'boolean', default: false },
    'resume-timeout': { type: 'string' },
    'metrics-listen': { type: 'string' },
    'metrics-file': { type: 'string' },
    'metrics-interval': { type: 'string' },
    'state-dir': { type: 'string' },
    'reset-generation': { type: 'string' },
    'log-level': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
    version: { type: 'boolean', short: 'V', default: false },
  });
  const uid = process.geteuid?.() ?? 0;
  const logLevel = values['log-level'] ?? 'info';
  if (!isLevel(logLevel))
    throw new UsageError(`--log-level must be error, warn, info or debug, got ${JSON.stringify(logLevel)}`);

  let controlGid: number;
  if (values.group !== undefined) {
    const gid = resolveGroup(values.group);
    if (gid === undefined)
      throw new UsageError(`--group: no group named ${JSON.stringify(values.group)} in /etc/group`);
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
  if (devLinkPath !== undefined && !path.isAbsolute(devLinkPath))
    throw new UsageError('--dev-link-path must be an absolute path');

  const listenSpec = values['metrics-listen'];
  const metricsListen = listenSpec === undefined ? undefined : parseListen(listenSpec);
  if (listenSpec !== undefined && metricsListen === undefined) {
    throw new UsageError(`--metrics-listen needs PORT, HOST:PORT or [V6]:PORT, got ${JSON.stringify(listenSpec)}`);
  }
  const metricsFile = values['metrics-file'];
  const reset = values['reset-generation'];
  if (reset !== undefined && !(/^[0-9]+$/.test(reset) && isU32(Number(reset)))) {
    throw new UsageError(`--reset-generation needs a whole number from 0 to ${U32_MAX}, got ${JSON.stringify(reset)}`);
  }

  const backends = parseBackends(values.backends ?? 'auto');
  const vmclockPath = values['vmclock-path'];
  const hostPortText = values['host-vsock-port'];
  const hostVsockPort = hostPortText === undefined ? undefined : parseU32(hostPortText);
  if (hostPortText !== undefined && hostVsockPort === undefined) {
    throw new UsageError(`--host-vsock-port must be a port number (0 for none), got ${JSON.stringify(hostPortText)}`);
  }

  return {
    backends,
    backendConfig: {
      uevent: { synthetic: values['uevent-synthetic'] === true },
      vmclock: { path: vmclockPath === undefined ? undefined : path.resolve(vmclockPath) },
      host: { vsockPort: hostVsockPort, serial: values['host-serial'] },
    },
    help: values.help === true,
    version: values.version === true,
    dir,
    controlGid,
    hooksDir: values['no-hooks'] ? undefined : path.resolve(values['hooks-dir'] ?? defaultHooksDir(env, uid)),
    hookTimeoutMs: timeoutOption('--hook-timeout', values['hook-timeout'], DEFAULT_HOOK_TIMEOUT_MS),
    devLink: devLinkPath ?? (values['dev-link'] ? '/dev/sysgenid' : undefined),
    maxConnections: positiveInt('--max-connections', values['max-connections'], undefined),
    maxPerUser: positiveInt('--max-per-user', values['max-per-user'], undefined),
    maxSubscribersPerUser: positiveInt(
      '--max-subscribers-per-user',
      values['max-subscribers-per-user'],
      DEFAULT_MAX_SUBSCRIBERS_PER_USER,
    ) as number,
    maxBacklog: positiveInt('--max-backlog', values['max-backlog'], DEFAULT_MAX_BACKLOG) as number,
    autoResume: values['no-auto-resume'] !== true,
    adjustTimeoutMs: timeoutOption('--adjust-timeout', values['adjust-timeout'], DEFAULT_ADJUST_TIMEOUT_MS),
    resumeTimeoutMs: timeoutOption('--resume-timeout', values['resume-timeout'], DEFAULT_RESUME_TIMEOUT_MS),
    metricsListen,
    metricsFile: metricsFile === undefined ? undefined : path.resolve(metricsFile),
    metricsIntervalMs: timeoutOption('--metrics-interval', values['metrics-interval'], DEFAULT_METRICS_INTERVAL_MS),
    logLevel,
    floor: floorPath(dir, values['state-dir'], env, uid),
    resetGeneration: reset === undefined ? undefined : Number(reset),
  };
}
