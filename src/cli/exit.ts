// How the sysgenid command ends: its exit codes, which are part of the contract (docs/CLI.md) so that
// shell scripts can tell a timeout from an interruption, and how a failure maps to one of them.

import { SysgenidError, type ErrorCode } from '../protocol/errors.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  /** read --nonblock: no new generation (EAGAIN). */
  NO_CHANGE: 3,
  /** wait: watchers still outdated at the timeout (ETIME). */
  TIMEOUT: 4,
  /** wait: a new generation arrived while waiting (EINTR). */
  INTERRUPTED: 5,
  /** bump: not allowed to force an update (EACCES). */
  DENIED: 6,
  /** the daemon is not running or not reachable. */
  UNREACHABLE: 7,
  /** quiesce: already quiesced, or a lifecycle step is in progress (EBUSY). */
  BUSY: 8,
} as const;

/** The command line itself is wrong: exit 2 and point at --help. */
export class UsageError extends Error {}

/** The daemon's error codes that have an exit code of their own; every other one is a FAILURE. */
const EXIT_FOR_ERROR: Partial<Record<ErrorCode, number>> = {
  EAGAIN: EXIT.NO_CHANGE,
  ETIME: EXIT.TIMEOUT,
  EINTR: EXIT.INTERRUPTED,
  EACCES: EXIT.DENIED,
  ENOTCONN: EXIT.UNREACHABLE,
  EBUSY: EXIT.BUSY,
};

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.USAGE;
  if (!(err instanceof SysgenidError)) return EXIT.FAILURE;
  return EXIT_FOR_ERROR[err.code] ?? EXIT.FAILURE;
}
