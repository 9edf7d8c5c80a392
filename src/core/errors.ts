// Every error the daemon or the library can report, by stable code. Match on `code`, never on the
// message text. docs/PROTOCOL.md lists the same table; test/errors.test.ts pins the two together.
// It lives in the core, the lowest floor, because the state machines throw it; src/protocol/errors.ts
// re-exports it for everything that speaks the wire.

export const ERROR_CODES = {
  EAGAIN: 'no new generation: this watcher is up to date',
  EINVAL: 'invalid argument',
  ETIME: 'timed out while watchers were still outdated',
  EINTR: 'interrupted: the caller is outdated; handle the new generation and retry',
  EACCES: 'permission denied: forcing an update needs the control socket',
  EOVERFLOW: 'the generation counter is at its u32 ceiling and cannot move',
  EPROTO: 'malformed request: not a line of printable ASCII',
  ENOSYS: 'unknown request',
  E2BIG: 'request line too long',
  ENOBUFS: 'too many requests queued on this connection',
  EMFILE: 'the daemon is at its connection limit',
  EIO: 'the daemon could not write its page or state',
  EBUSY: 'a lifecycle step is in progress or the machine is already quiesced',
  ECONNRESET: 'the connection to the daemon was lost',
  ENOTCONN: 'the daemon is not running or its socket is unreachable',
  EPERM: 'the daemon or its directory belongs to another user: not trusted',
  ECLOSED: 'the watcher was closed',
  ENOENT: 'no such connection: the id names no watcher (or no connection) of this daemon',
  EDQUOT: 'this user already has as many lifecycle subscribers as the daemon allows one user',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(s: string): s is ErrorCode {
  return Object.hasOwn(ERROR_CODES, s);
}

export class SysgenidError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message?: string) {
    super(message ?? ERROR_CODES[code]);
    this.name = 'SysgenidError';
    this.code = code;
  }
}
