// The package's version, shared by sysgenidd, the sysgenid command and their tests. Kept as a constant so
// the daemon does not read package.json at start; test/errors.test.ts pins it against package.json.
export const VERSION = '0.1.0';
