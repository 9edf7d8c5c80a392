#!/usr/bin/env node
// sysgenidd entry point: parse options, start, stop cleanly on SIGTERM/SIGINT.

import { Daemon, type DaemonOptions } from './daemon.js';
import { type Logger, createLogger } from './log.js';
import type * as InstallUnitsModule from './install-units.js';
import type * as MetricsModule from './metrics.js';
import type { Metrics } from './metrics.js';
import { type ParsedOptions, UsageError, parseOptions, usageText } from './options.js';
import { StartupError } from './runtime-dir.js';
import { statusLine } from './observers.js';
import { SystemdNotifier } from './sd-notify.js';
import { addon } from '../native/addon.js';
import { lazyModule } from './lazy.js';
import { VERSION } from '../version.js';

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  let opts;
  try {
    if (argv[0] === 'install-units') {
      const { installUnits } = await lazyModule<typeof InstallUnitsModule>('install-units.js');
      try {
        return installUnits(argv.slice(1));
      } catch (err) {
        // By name: install-units.js comes from dist/src, with its own copy of the UsageError class.
        const usage = (err as Error).name === 'UsageError';
        process.stderr.write(
          `sysgenidd install-units: ${(err as Error).message}\n` +
            (usage ? 'Run "sysgenidd install-units --help" for usage.\n' : ''),
        );
        return usage ? 2 : 1;
      }
    }
    opts = parseOptions(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      // One line and a pointer, as the sysgenid command does: the whole help would bury the error.
      process.stderr.write(`sysgenidd: ${err.message}\nRun "sysgenidd --help" for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (opts.help) {
    process.stdout.write(usageText());
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
  const notifier = new SystemdNotifier(addon(), log);
  let metrics: Metrics | undefined;
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
    notifier.stopping(`stopping (${signal}) at generation ${daemon.generation}`);
    Promise.all([daemon.close(), metrics?.close()]).then(
      () => finish(0),
      (err: Error) => {
        log.error(`shutdown failed: ${err.message}`);
        finish(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', () => log.info('SIGHUP ignored (hooks are re-read at every bump; nothing else to reload)'));
  try {
    daemon = await Daemon.start(daemonOptions(opts, log));
    if (opts.metricsListen || opts.metricsFile) {
      // Only now, and only when asked: a daemon without metrics never loads prom-client nor node:http.
      const { Metrics } = await lazyModule<typeof MetricsModule>('metrics.js');
      metrics = await Metrics.start(daemon, log, {
        listen: opts.metricsListen,
        file: opts.metricsFile,
        fileIntervalMs: opts.metricsIntervalMs,
      });
      daemon.observe(metrics);
      const http = metrics.address ? `http://${metrics.address.host}:${metrics.address.port}` : '';
      const where = [http, opts.metricsFile ?? ''].filter(Boolean).join(' and ');
      log.info(`metrics: ${where} (/metrics, /readyz, /healthz)`);
    }
  } catch (err) {
    await daemon?.close().catch(() => undefined);
    // Any failure here, not only a StartupError, ends the process: a half-started daemon may hold a
    // listening socket that would keep it alive, deaf to the signals handled above.
    const e = err as Error;
    log.error(err instanceof StartupError ? e.message : `cannot start: ${e.stack ?? e.message}`);
    return 1;
  }
  // Page, state and sockets are in place (Daemon.start), and the metrics listener when asked for.
  const running = daemon;
  if (notifier.enabled) notifier.ready(statusLine(running.status(false)));
  // STATUS= on every change but at most every 100 ms: a bump with thousands of acknowledgements is one line.
  let statusTimer: NodeJS.Timeout | undefined;
  if (notifier.enabled)
    running.observe({
      changed: () => {
        statusTimer ??= setTimeout(() => {
          statusTimer = undefined;
          notifier.status(statusLine(running.status(false)));
        }, 100);
      },
    });
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
    // Exit explicitly once shut down, rather than when the event loop happens to drain.
    process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`sysgenidd: fatal: ${err.stack ?? err.message}\n`);
    process.exit(1);
  },
);
