#!/usr/bin/env node
// sysgenidd entry point: parse options, start, stop cleanly on SIGTERM/SIGINT.

import { Daemon, type DaemonOptions } from './daemon.js';
import { type Logger, createLogger } from './log.js';
import { type ParsedOptions, USAGE, UsageError, parseOptions } from './options.js';
import { StartupError } from './runtime-dir.js';
import { VERSION } from '../version.js';

async function main(): Promise<number> {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      // One line and a pointer, as the sysgenid command does: the whole help would bury the error.
      process.stderr.write(`sysgenidd: ${err.message}\nRun "sysgenidd --help" for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (opts.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (opts.version) {
    process.stdout.write(`sysgenidd ${VERSION}\n`);
    return 0;
  }
  const log = createLogger(opts.logLevel);
  if (opts.resetGeneration !== undefined) {
    try {
      await Daemon.resetGeneration(daemonOptions(opts, log), opts.resetGeneration);
      return 0;
    } catch (err) {
      const e = err as Error;
      log.error(err instanceof StartupError ? e.message : `cannot reset: ${e.stack ?? e.message}`);
      return 1;
    }
  }
  // Handlers go in before the daemon says "ready", so a signal sent on that word is never fatal.
  let daemon: Daemon | undefined;
  let stopRequested: NodeJS.Signals | undefined;
  let finish: (code: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    finish = resolve;
  });
  const stop = (signal: NodeJS.Signals): void => {
    if (stopRequested) return;
    stopRequested = signal;
    if (!daemon) return;
    log.info(`${signal}: shutting down`);
    daemon.close().then(() => finish(0), (err: Error) => {
      log.error(`shutdown failed: ${err.message}`);
      finish(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => log.info('SIGHUP ignored (hooks are re-read at every bump; nothing else to reload)'));
  try {
    daemon = await Daemon.start(daemonOptions(opts, log));
  } catch (err) {
    // Any failure here, not only a StartupError, ends the process: a half-started daemon may hold a
    // listening socket that would keep it alive, deaf to the signals handled above.
    const e = err as Error;
    log.error(err instanceof StartupError ? e.message : `cannot start: ${e.stack ?? e.message}`);
    return 1;
  }
  if (stopRequested) {
    const signal = stopRequested;
    stopRequested = undefined;
    stop(signal);
  }
  return done;
}

function daemonOptions(opts: ParsedOptions, log: Logger): DaemonOptions {
  return {
    dir: opts.dir,
    log,
    controlGid: opts.controlGid,
    hooksDir: opts.hooksDir,
    hookTimeoutMs: opts.hookTimeoutMs,
    devLink: opts.devLink,
    maxConnections: opts.maxConnections,
    maxPerUser: opts.maxPerUser,
    maxSubscribersPerUser: opts.maxSubscribersPerUser,
    maxBacklog: opts.maxBacklog,
    backends: opts.backends,
    backendConfig: opts.backendConfig,
    autoResume: opts.autoResume,
    adjustTimeoutMs: opts.adjustTimeoutMs,
    resumeTimeoutMs: opts.resumeTimeoutMs,
    floor: opts.floor,
  };
}

main().then(
  (code) => {
    // Exit explicitly: the kernel-log backend may hold a read in the thread pool until the next record.
    process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`sysgenidd: fatal: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
