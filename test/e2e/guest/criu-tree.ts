// The process tree CRIU dumps in the container scenario: this process (the tree's init, pid 1 of its
// own pid namespace), a sysgenid daemon of its own in SYSGENID_DIR, the secret app as its watcher, and
// node-crypto-app twice (with `-r sysgenid/register` and without).
// The restored tree's daemon hears of the restore only from CRIU's action script, so it runs with
// no kernel backend.

import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { status } from '../../../src/client/index.js';

const here = new URL('.', import.meta.url).pathname;
const daemon = spawn('/usr/bin/node', [`${here}../../../sysgenidd.cjs`, '--backends', 'none', '--no-hooks'], {
  stdio: 'inherit',
});
const env = { ...process.env, APP_NAME: 'criu-app', LIFECYCLE: '1' };
for (;;) {
  try {
    await status();
    break;
  } catch {
    await sleep(50);
  }
}
const app = spawn('/usr/bin/node', [`${here}secret-app.js`], { stdio: 'inherit', env });
// Issue 13: an unmodified program with `-r sysgenid/register` (the CommonJS entry) and without it.
const cryptoApp = `${here}node-crypto-app.js`;
const cryptoEnv = (variant: string): NodeJS.ProcessEnv => ({
  ...process.env,
  CRYPTO_OUT: `/run/e2e/criu-crypto-${variant}`,
});
const flagged = spawn('/usr/bin/node', ['-r', 'sysgenid/register', cryptoApp], {
  stdio: 'inherit',
  env: cryptoEnv('flag'),
});
const plain = spawn('/usr/bin/node', [cryptoApp], { stdio: 'inherit', env: cryptoEnv('plain') });
const stop = (): void => {
  app.kill();
  flagged.kill();
  plain.kill();
  daemon.kill();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Keeps the tree's init alive (and reaping) for as long as the test wants it.
setInterval(() => undefined, 1 << 30);
