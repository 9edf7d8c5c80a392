// Tells systemd (Type=notify) how the daemon is doing: READY=1 once page, state and sockets are in place,
// STATUS= lines, WATCHDOG=1 pings when the unit sets WatchdogSec=, STOPPING=1 at shutdown. A notify
// message is one datagram on the Unix socket NOTIFY_SOCKET names, which Node cannot send: the native
// addon does (sdNotify). Without the addon the fallback is the systemd-notify program with
// --pid=<daemon pid>, which systemd credits to the daemon only when it runs as root (only root may
// claim another pid in its credentials); a non-root daemon without the addon needs Type=exec
// (docs/deploy.md).

import type { Addon } from '../native/addon.js';
import { childProcesses } from './lazy.js';
import type { Logger } from './log.js';

export class SystemdNotifier {
  readonly #socket: string | undefined;
  readonly #native: Addon | undefined;
  readonly #log: Logger;
  readonly #watchdogUs: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #warned = false;

  constructor(native: Addon | undefined, log: Logger, env: NodeJS.ProcessEnv = process.env, pid: number = process.pid) {
    this.#socket = env.NOTIFY_SOCKET || undefined;
    this.#native = native;
    this.#log = log;
    const usec = env.WATCHDOG_USEC;
    const forPid = env.WATCHDOG_PID;
    this.#watchdogUs =
      usec !== undefined &&
      /^[0-9]+$/.test(usec) &&
      Number(usec) > 0 &&
      (forPid === undefined || forPid === String(pid))
        ? Number(usec)
        : undefined;
  }

  /** Whether a service manager listens at all. */
  get enabled(): boolean {
    return this.#socket !== undefined;
  }

  /** The watchdog interval systemd asked for, in ms (undefined: no WatchdogSec=). */
  get watchdogMs(): number | undefined {
    return this.#watchdogUs === undefined ? undefined : this.#watchdogUs / 1000;
  }

  ready(status: string): void {
    this.#send(`READY=1\nSTATUS=${oneLine(status)}\nMAINPID=${process.pid}`);
    this.#startWatchdog();
  }

  status(status: string): void {
    this.#send(`STATUS=${oneLine(status)}`);
  }

  stopping(status: string): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#send(`STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  // Pinged from the event loop at half the interval, as sd_watchdog_enabled(3) advises: a loop stuck
  // for longer than WatchdogSec= misses its pings and systemd restarts the daemon.
  #startWatchdog(): void {
    if (this.#watchdogUs === undefined || this.#timer !== undefined) return;
    this.#send('WATCHDOG=1');
    this.#timer = setInterval(() => this.#send('WATCHDOG=1'), Math.max(1, this.#watchdogUs / 2000));
    this.#timer.unref();
  }

  #send(message: string): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    if (this.#native?.sdNotify) {
      const rc = this.#native.sdNotify(socket, message);
      if (rc < 0) this.#warnOnce(`cannot notify systemd at ${socket}: errno ${-rc}`);
      return;
    }
    const args = [`--pid=${process.pid}`, ...message.split('\n').filter((l) => !l.startsWith('MAINPID='))];
    // READY and STOPPING are waited for (systemd must see them in order); the watchdog is not.
    if (message.startsWith('WATCHDOG=1')) {
      const child = childProcesses().spawn('systemd-notify', args, { stdio: 'ignore' });
      child.on('error', (err) => this.#warnOnce(`cannot run systemd-notify: ${err.message}`));
      child.unref();
      return;
    }
    const r = childProcesses().spawnSync('systemd-notify', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
      timeout: 5000,
    });
    if (r.error || r.status !== 0) {
      const why = r.error?.message ?? `exit ${r.status}${r.stderr ? `: ${r.stderr.trim()}` : ''}`;
      this.#warnOnce(
        `systemd-notify ${args.join(' ')} failed (${why}); ` +
          'without the native addon a Type=notify unit needs the daemon to run as root (docs/deploy.md)',
      );
    }
  }

  #warnOnce(message: string): void {
    if (this.#warned) return;
    this.#warned = true;
    this.#log.warn(message);
  }
}

function oneLine(s: string): string {
  return s.replace(/\n/g, ' ');
}
