// Defaults and limits that more than one part of sysgenid states: the daemon's options, the wire
// protocol, the client library and the sysgenid command, with the help texts that print them. One
// definition each, so that a budget documented in one place cannot differ from the one applied in
// another. This module imports nothing, so every layer (core, protocol, client, daemon, CLI) may use it.

/** Budget of a QUIESCE that names none: the protocol's default and `sysgenid quiesce --timeout`. */
export const DEFAULT_QUIESCE_TIMEOUT_MS = 10_000;
/** Budget of an UNQUIESCE that names none: the protocol's default and `sysgenid resume --timeout`. */
export const DEFAULT_UNQUIESCE_TIMEOUT_MS = 10_000;
/**
 * After a restore while quiesced, how long every watcher may take to acknowledge before the machine is
 * un-quiesced anyway (`sysgenidd --adjust-timeout`, `sysgenid snapshot --adjust-timeout`).
 */
export const DEFAULT_ADJUST_TIMEOUT_MS = 30_000;
/** How long the daemon's automatic un-quiesce waits for each answer (`sysgenidd --resume-timeout`). */
export const DEFAULT_RESUME_TIMEOUT_MS = 10_000;
/** A hook executable still running after this long is terminated (`sysgenidd --hook-timeout`). */
export const DEFAULT_HOOK_TIMEOUT_MS = 10_000;
/** A client's lifecycle hook (onQuiesce and the like) still running after this long counts as failed. */
export const DEFAULT_LIFECYCLE_HOOK_TIMEOUT_MS = 10_000;
/** How long a client library call or the sysgenid command waits for its first connection. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * How long a client told to wait for the daemon (`connect({ waitForDaemon: true })`, `Lifecycle.open`,
 * `sysgenid watch`) waits for one to start listening before it fails: long enough for a daemon started
 * later in the same boot, short enough that a machine without one says so within a minute.
 */
export const DEFAULT_WAIT_FOR_DAEMON_MS = 60_000;
/** A failed handler or watch command is tried again after this long, doubling up to the maximum. */
export const RETRY_MIN_MS = 1_000;
export const RETRY_MAX_MS = 60_000;
/** Unread output a client may leave before the daemon disconnects it (`sysgenidd --max-backlog`). */
export const DEFAULT_MAX_BACKLOG = 65_536;
/**
 * Lifecycle subscribers one user other than root and the daemon's own may have (--max-subscribers-per-user):
 * each can hold up a quiesce for its whole budget, so a small number (docs/reliability.md, "Threat model").
 */
export const DEFAULT_MAX_SUBSCRIBERS_PER_USER = 8;

/** A lifecycle subscriber's priority: from MIN_PRIORITY to MAX_PRIORITY, DEFAULT_PRIORITY when none is given. */
export const MIN_PRIORITY = -1000;
export const MAX_PRIORITY = 1000;
export const DEFAULT_PRIORITY = 0;

/**
 * The longest timeout anything accepts: Node's timers hold at most 2^31 - 1 ms (about 24.8 days) and
 * silently turn anything longer into 1 ms.
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** How often sysgenidd rewrites its --metrics-file besides after every bump and settle (docs/deploy.md). */
export const DEFAULT_METRICS_INTERVAL_MS = 15_000;

/**
 * The largest `BUMP --min` accepted: 2^20 below the u32 ceiling, so a forced jump always leaves room for
 * about a million more bumps. Beyond it only `sysgenidd --reset-generation` moves the counter.
 */
export const MAX_BUMP_MIN = 0xffff_ffff - 2 ** 20;
