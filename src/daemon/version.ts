// Kept as a constant so the daemon does not read package.json at start; test/version.test.ts pins it.
export const VERSION = '0.1.0';
