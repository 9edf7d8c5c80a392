// One-shot requests for tools and orchestrators. Each opens its own connection and turns it into an
// observer at once (OBSERVE is pipelined with the request), so it never counts as a watcher.
// Every call has a deadline of its own: a daemon stopped with SIGSTOP accepts connections and never
// answers, and a timeout enforced only by the daemon would then never fire (issue 12, point 10).

import fs from 'node:fs';
import { SysgenidError } from '../protocol/errors.js';
import type { CycleReportDocument } from '../protocol/cycle-report.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_QUIESCE_TIMEOUT_MS, DEFAULT_UNQUIESCE_TIMEOUT_MS } from '../defaults.js';
import { MAX_TIMEOUT_MS, type Request } from '../protocol/messages.js';
import { clientPaths } from '../protocol/runtime-dir.js';
import type { DaemonStatus } from '../protocol/status.js';
import { openWhenUp, waitForDaemonMs } from './connection.js';

export interface ClientOptions {
  /** Runtime directory; default: resolved like the daemon does (SYSGENID_DIR, ...). */
  readonly dir?: string;
  /** Give up connecting after this long (a full accept queue is retried). Default 10 s. */
  readonly connectTimeoutMs?: number;
  /** Abandon the request (its connection is closed; the promise rejects with ECONNRESET). */
  readonly signal?: AbortSignal;
  /**
   * Give up on the whole call (connect, greeting, reply) after this long, with ENOTCONN. Default:
   * DEFAULT_CALL_DEADLINE_MS; for WAIT, QUIESCE and UNQUIESCE their own timeout plus a margin; none
   * for a WAIT or READ that blocks without a timeout, which waits as long as asked. 0 = none.
   */
  readonly deadlineMs?: number;
  /**
   * When no daemon listens yet, wait for one instead of failing with ENOTCONN (true: up to
   * DEFAULT_WAIT_FOR_DAEMON_MS, 60 s; or a number of ms). Default false. The deadline starts after.
   */
  readonly waitForDaemon?: boolean | number;
}

/** How long a call that should answer at once may take before the daemon is taken for frozen. */
export const DEFAULT_CALL_DEADLINE_MS = 10_000;
/** Added to a timeout the daemon enforces, for its answer to arrive. */
const DEADLINE_MARGIN_MS = 1_000;

function checkTimeout(what: string, ms: number): void {
  if (!Number.isSafeInteger(ms) || ms < 0 || ms > MAX_TIMEOUT_MS) {
    throw new SysgenidError(
      'EINVAL',
      `${what}: a timeout is a whole number of ms from 0 to ${MAX_TIMEOUT_MS}, ` + `got ${ms}`,
    );
  }
}

function defaultDeadline(req: Request): number {
  switch (req.verb) {
    case 'WAIT':
      return req.timeoutMs === 0 ? 0 : req.timeoutMs + DEADLINE_MARGIN_MS;
    case 'READ':
      return req.nonblock ? DEFAULT_CALL_DEADLINE_MS : 0;
    case 'QUIESCE':
    case 'UNQUIESCE':
      // A failed quiesce un-quiesces those it asked, under the same timeout again.
      return Math.min(MAX_TIMEOUT_MS, 2 * req.timeoutMs + DEFAULT_CALL_DEADLINE_MS);
    default:
      return DEFAULT_CALL_DEADLINE_MS;
  }
}

async function oneShot(socket: 'watch' | 'control', opts: ClientOptions, req: Request): Promise<string> {
  const paths = clientPaths(opts.dir);
  // Whoever may use control.sock asks there: its slots are kept free of watch-socket floods, so root's
  // `sysgenid status` and `ready` are answered while an ordinary user holds every watch connection.
  if (socket === 'watch' && req.verb === 'STATUS' && mayConnect(paths.control)) socket = 'control';
  const file = socket === 'watch' ? paths.watch : paths.control;
  const deadlineMs = opts.deadlineMs ?? defaultDeadline(req);
  checkTimeout('deadlineMs', deadlineMs);
  const connectMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const conn = await openWhenUp(
    () => file,
    {
      generation: () => {},
      close: () => {},
    },
    {
      timeoutMs: deadlineMs > 0 ? Math.min(connectMs, deadlineMs) : connectMs,
      waitForDaemonMs: waitForDaemonMs(opts.waitForDaemon),
    },
  );
  const abort = (): void => conn.close();
  if (opts.signal?.aborted) conn.close();
  opts.signal?.addEventListener('abort', abort, { once: true });
  let expired = false;
  const timer =
    deadlineMs > 0
      ? setTimeout(() => {
          expired = true;
          conn.close();
        }, deadlineMs)
      : undefined;
  try {
    const observe = socket === 'watch' ? conn.request({ verb: 'OBSERVE' }) : Promise.resolve('');
    const reply = conn.request(req);
    // If the connection goes while OBSERVE is pending, both reject: the reply's rejection is the one
    // reported (below), never left unhandled.
    reply.catch(() => undefined);
    await observe;
    return await reply;
  } catch (err) {
    if (expired) {
      throw new SysgenidError(
        'ENOTCONN',
        `sysgenidd at ${file} did not answer ${req.verb} within ${deadlineMs} ms (is it stopped or frozen?)`,
      );
    }
    throw err;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', abort);
    conn.close();
  }
}

function mayConnect(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The daemon's status; with `list`, one entry per watcher. */
export async function status(opts: ClientOptions & { readonly list?: boolean } = {}): Promise<DaemonStatus> {
  const text = await oneShot('watch', opts, { verb: 'STATUS', brief: opts.list === false });
  try {
    return JSON.parse(text) as DaemonStatus;
  } catch {
    throw new SysgenidError('EPROTO', 'STATUS reply is not JSON');
  }
}

/** The current generation (what `sysgenid get` prints): never blocks, for any user. */
export async function currentGeneration(opts: ClientOptions = {}): Promise<number> {
  return (await status({ ...opts, list: false })).generation;
}

/**
 * Force a new generation: max(min, generation + 1). Needs access to the control socket (root or the
 * daemon's control group): EACCES otherwise; EOVERFLOW at the u32 ceiling.
 */
export async function forceUpdate(opts: ClientOptions & { readonly min?: number } = {}): Promise<number> {
  return Number(await oneShot('control', opts, { verb: 'BUMP', min: opts.min ?? 0 }));
}

/**
 * Wait until no tracked watcher is outdated. 0 = no timeout. Rejects with ETIME on timeout, and with
 * EINTR if a new generation arrives meanwhile (the watchers have more to do: wait again).
 */
export async function waitForWatchers(opts: ClientOptions & { readonly timeoutMs?: number } = {}): Promise<void> {
  checkTimeout('waitForWatchers', opts.timeoutMs ?? 0);
  await oneShot('watch', opts, { verb: 'WAIT', timeoutMs: opts.timeoutMs ?? 0 });
}

/**
 * What a fresh watcher would be told next: blocks until the generation changes and returns it; with
 * `nonblock`, rejects with EAGAIN at once (a fresh connection is up to date by definition).
 */
export async function readNext(opts: ClientOptions & { readonly nonblock?: boolean } = {}): Promise<number> {
  return Number(await oneShot('watch', opts, { verb: 'READ', nonblock: opts.nonblock === true }));
}

/**
 * Quiesce every lifecycle subscriber (control socket). Resolves with the cycle's report whether or not
 * it succeeded: on failure every subscriber asked has already been un-quiesced. EBUSY if the machine is
 * already quiesced or a step is in progress.
 */
export function quiesce(opts: ClientOptions & { readonly timeoutMs?: number } = {}): Promise<CycleReportDocument> {
  return lifecycleCycle('QUIESCE', opts.timeoutMs ?? DEFAULT_QUIESCE_TIMEOUT_MS, opts);
}

/**
 * Un-quiesce (control socket). After a restore it first waits, up to `timeoutMs`, for every tracked
 * watcher to acknowledge the new generation. Resolves with the un-quiesce's report.
 */
export function unquiesce(opts: ClientOptions & { readonly timeoutMs?: number } = {}): Promise<CycleReportDocument> {
  return lifecycleCycle('UNQUIESCE', opts.timeoutMs ?? DEFAULT_UNQUIESCE_TIMEOUT_MS, opts);
}

async function lifecycleCycle(
  verb: 'QUIESCE' | 'UNQUIESCE',
  timeoutMs: number,
  opts: ClientOptions,
): Promise<CycleReportDocument> {
  checkTimeout(verb.toLowerCase(), timeoutMs);
  return JSON.parse(await oneShot('control', opts, { verb, timeoutMs })) as CycleReportDocument;
}

/**
 * Exclude a watcher by its connection id, or every watcher of a uid connected now (control socket): it
 * is no longer tracked, waited for, or asked by the lifecycle, and cannot track or subscribe again; it
 * stays connected and notified. Resolves with how many were excluded. ENOENT for an unknown id.
 */
export async function exclude(
  opts: ClientOptions & ({ readonly id: number } | { readonly uid: number }),
): Promise<number> {
  const target = 'uid' in opts ? { uid: opts.uid } : { id: opts.id };
  return Number(await oneShot('control', opts, { verb: 'EXCLUDE', target }));
}

/** Close the connection with this id (control socket); the daemon logs who asked. ENOENT for an unknown id. */
export async function disconnect(opts: ClientOptions & { readonly id: number }): Promise<void> {
  await oneShot('control', opts, { verb: 'DISCONNECT', id: opts.id });
}
