// The restore-detection backends a daemon can run, besides the always-on forced update.
export const BACKEND_NAMES = ['kmsg', 'vmclock'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
