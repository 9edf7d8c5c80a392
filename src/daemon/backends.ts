// The restore-detection backends a daemon can run, besides the always-on forced update.
export const BACKEND_NAMES = ['kmsg', 'vmclock', 'uevent', 'timejump'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
/** What --backends auto turns on: every backend that reads a real signal. The heuristic stays opt-in. */
export const AUTO_BACKENDS: readonly BackendName[] = ['kmsg', 'vmclock'];
