// Hooks are the uevent of the kernel proposal: after every bump, each executable in the hooks
// directory runs once with SYSGENID=<n>. They run concurrently, each under a timeout, with their
// output logged up to a bound; nothing a hook does can block or crash the daemon.
//
// What the daemon runs is exactly what it checked (issue 12, point 3): the hooks directory is trusted
// only like the runtime directory (every directory on its path owned by root or the daemon's user and
// writable by nobody else), each hook is opened once with O_NOFOLLOW (a symbolic link is refused and
// logged), checked through its descriptor, and executed as /proc/<daemon pid>/fd/<n>, that very open
// file; a script's interpreter opens the same path, which stays valid until the hook ends.
//
// Hooks cannot pile up (point 16): one bump's hooks run at a time, at most MAX_CONCURRENT_HOOKS at
// once; bumps that arrive meanwhile are coalesced into one run for the latest generation (with
// SYSGENID_PREVIOUS the generation the last run reported). Each hook is a process-group leader, killed
// as a group at its timeout, and nothing it leaves behind outlives it: every process a hook starts
// carries SYSGENID_HOOK=<token> in its environment, and when the hook exits whatever still carries its
// token is killed. With the native addon the daemon is also a child subreaper, so a hook's daemonized
// descendants (double fork + setsid) become the daemon's children, are found even if they cleared their
// environment, are killed, and reaped. Without the addon a descendant that both daemonizes and clears
// its environment escapes (docs/reliability.md).

import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { addon } from '../native/addon.js';
import { untrustedPath } from '../protocol/trust.js';
import { childProcesses } from './lazy.js';
import type { Logger } from './log.js';

export interface HookResult {
  readonly hook: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly ms: number;
  readonly error?: string;
}

export interface HookEvent {
  readonly generation: number;
  readonly previous: number;
  readonly source: string;
}

export interface HookRunnerOptions {
  /** Hook processes running at once (default MAX_CONCURRENT_HOOKS). */
  readonly maxConcurrent?: number;
}

const OUTPUT_LIMIT = 4096;
const KILL_GRACE_MS = 1000;
export const MAX_CONCURRENT_HOOKS = 16;
const SKIP = /(^\.)|(~$)|(\.(dpkg|rpm|ucf)-[a-z]+$)|(\.(swp|bak|orig|disabled)$)/;
const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = fs.constants;

interface OpenHook {
  readonly file: string;
  readonly fd: number;
}

interface Pending {
  event: HookEvent;
  readonly promise: Promise<HookResult[]>;
  resolve(results: HookResult[]): void;
}

export class HookRunner {
  readonly dir: string | undefined;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #env: NodeJS.ProcessEnv;
  readonly #maxConcurrent: number;
  readonly #running = new Set<ChildProcess>();
  readonly #liveTokens = new Set<string>();
  #seq = 0;
  #active = false;
  #pending: Pending | undefined;
  #lastDirProblem: string | undefined;
  #subreaper = false;
  #sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    dir: string | undefined,
    timeoutMs: number,
    log: Logger,
    env: NodeJS.ProcessEnv = {},
    opts: HookRunnerOptions = {},
  ) {
    this.dir = dir;
    this.#timeoutMs = timeoutMs;
    this.#log = log;
    this.#env = env;
    this.#maxConcurrent = Math.max(1, opts.maxConcurrent ?? MAX_CONCURRENT_HOOKS);
    const native = addon();
    if (dir && native?.setChildSubreaper) {
      const rc = native.setChildSubreaper(true);
      this.#subreaper = rc === 0;
      if (rc !== 0) {
        log.warn(
          `hooks: cannot become a child subreaper (errno ${-rc}); ` +
            "a hook's daemonized descendants are found by environment only",
        );
      }
    }
  }

  get running(): number {
    return this.#running.size;
  }

  /** True when the daemon adopts a hook's orphans (the addon's PR_SET_CHILD_SUBREAPER). */
  get subreaper(): boolean {
    return this.#subreaper;
  }

  /** The hooks that would run now: read at every bump, so adding one needs no restart. */
  list(): string[] {
    const hooks = this.#open();
    for (const h of hooks) fs.closeSync(h.fd);
    return hooks.map((h) => h.file);
  }

  #dirProblem(problem: string | undefined): void {
    if (problem && problem !== this.#lastDirProblem) {
      this.#log.warn(`hooks: running none from ${this.dir}: ${problem}`);
    }
    this.#lastDirProblem = problem;
  }

  #open(): OpenHook[] {
    if (!this.dir) return [];
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.#log.warn(`hooks: cannot read ${this.dir}: ${(err as Error).message}`);
      return [];
    }
    const uid = process.geteuid?.() ?? 0;
    const dirProblem = untrustedPath(this.dir);
    this.#dirProblem(dirProblem && `${dirProblem} (hooks run as uid ${uid}: nobody else may be able to change them)`);
    if (dirProblem) return [];
    const hooks: OpenHook[] = [];
    for (const name of names.sort()) {
      if (SKIP.test(name)) continue;
      const file = path.join(this.dir, name);
      let fd: number;
      try {
        // O_NONBLOCK: a FIFO planted here must not block the daemon in open().
        fd = fs.openSync(file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
          this.#log.warn(
            `hooks: skipping ${file}: a symbolic link; a hook must be a regular file in ${this.dir} ` +
              '(copy the program, or call it from a script)',
          );
        }
        continue;
      }
      const st = fs.fstatSync(fd);
      if (!st.isFile() || (st.mode & 0o111) === 0) {
        fs.closeSync(fd);
        continue;
      }
      // Like run-parts under root: a hook someone else could rewrite would run with our rights.
      if ((st.uid !== 0 && st.uid !== uid) || (st.mode & 0o022) !== 0) {
        fs.closeSync(fd);
        this.#log.warn(
          `hooks: skipping ${file}: it must belong to root or uid ${uid} and not be writable by group or others`,
        );
        continue;
      }
      hooks.push({ file, fd });
    }
    return hooks;
  }

  /**
   * Run every hook for one bump. Never rejects. While a run is in progress the next bumps are
   * coalesced into one run for the latest generation, whose promise they all share.
   */
  run(event: HookEvent): Promise<HookResult[]> {
    if (!this.dir) return Promise.resolve([]);
    if (!this.#active) return this.#start(event);
    if (this.#pending) {
      const { previous } = this.#pending.event;
      this.#pending.event = { generation: event.generation, previous, source: event.source };
      return this.#pending.promise;
    }
    let resolve: (r: HookResult[]) => void = () => {};
    const promise = new Promise<HookResult[]>((r) => {
      resolve = r;
    });
    this.#pending = { event, promise, resolve };
    return promise;
  }

  #start(event: HookEvent): Promise<HookResult[]> {
    this.#active = true;
    const done = this.#runAll(event);
    void done.then(() => {
      this.#active = false;
      const next = this.#pending;
      this.#pending = undefined;
      if (next) void this.#start(next.event).then((results) => next.resolve(results));
    });
    return done;
  }

  async #runAll(event: HookEvent): Promise<HookResult[]> {
    const hooks = this.#open();
    const results = new Array<HookResult>(hooks.length);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < hooks.length) {
        const i = next++;
        results[i] = await this.#runOne(hooks[i] as OpenHook, event);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#maxConcurrent, hooks.length) }, worker));
    return results;
  }

  #runOne(hook: OpenHook, event: HookEvent): Promise<HookResult> {
    const name = path.basename(hook.file);
    const started = performance.now();
    const token = `${process.pid}.${++this.#seq}`;
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = childProcesses().spawn(`/proc/${process.pid}/fd/${hook.fd}`, [], {
          argv0: hook.file,
          cwd: '/',
          detached: true,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            ...this.#env,
            SYSGENID: String(event.generation),
            SYSGENID_PREVIOUS: String(event.previous),
            SYSGENID_SOURCE: event.source,
            SYSGENID_HOOK: token,
          },
        });
      } catch (err) {
        fs.closeSync(hook.fd);
        this.#log.warn(`hook ${name}: cannot start: ${(err as Error).message}`);
        resolve({ hook: name, code: null, signal: null, timedOut: false, ms: 0, error: (err as Error).message });
        return;
      }
      this.#running.add(child);
      this.#liveTokens.add(token);
      let logged = 0;
      let dropped = false;
      const onData = (chunk: Buffer): void => {
        if (logged >= OUTPUT_LIMIT) return;
        const room = OUTPUT_LIMIT - logged;
        const text = chunk.subarray(0, room).toString('utf8');
        logged += Math.min(chunk.length, room);
        for (const line of text.split('\n')) if (line.trim() !== '') this.#log.info(`hook ${name}: ${line}`);
        if (logged >= OUTPUT_LIMIT && !dropped) {
          dropped = true;
          this.#log.warn(`hook ${name}: output beyond ${OUTPUT_LIMIT} bytes discarded; its output pipes are closed`);
          child.stdout?.destroy();
          child.stderr?.destroy();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.stdout?.on('error', () => {});
      child.stderr?.on('error', () => {});
      let timedOut = false;
      let killer: NodeJS.Timeout | undefined;
      const timer = setTimeout(() => {
        timedOut = true;
        this.#log.warn(`hook ${name}: still running after ${this.#timeoutMs} ms; terminating it`);
        signalGroup(child, 'SIGTERM');
        killer = setTimeout(() => signalGroup(child, 'SIGKILL'), KILL_GRACE_MS);
        killer.unref();
      }, this.#timeoutMs);
      timer.unref();
      let spawnError: string | undefined;
      child.on('error', (err) => {
        spawnError = err.message;
      });
      // A descendant that kept the output pipes open would hold 'close' back for ever: on exit its
      // leftovers are killed, and the pipes are let go shortly after.
      child.on('exit', () => {
        this.#liveTokens.delete(token);
        signalGroup(child, 'SIGKILL');
        const killed = this.#sweep();
        if (killed > 0) this.#log.warn(`hook ${name}: killed ${killed} process(es) it left running`);
        setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
        }, 200).unref();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (killer) clearTimeout(killer);
        this.#running.delete(child);
        this.#liveTokens.delete(token);
        fs.closeSync(hook.fd);
        const ms = Math.round(performance.now() - started);
        if (spawnError) this.#log.warn(`hook ${name}: failed to run: ${spawnError}`);
        else if (code !== 0 && !timedOut)
          this.#log.warn(`hook ${name}: exited with ${signal ?? `status ${code}`} after ${ms} ms`);
        else if (!timedOut) this.#log.debug(`hook ${name}: done in ${ms} ms`);
        resolve({ hook: name, code, signal, timedOut, ms, ...(spawnError ? { error: spawnError } : {}) });
      });
    });
  }

  /**
   * Kill what hooks that have ended left behind, and reap the daemon's orphans. Returns how many
   * processes were signalled. Re-arms itself while anything is left to reap.
   */
  #sweep(): number {
    const me = process.pid;
    const childPids = new Set([...this.#running].map((c) => c.pid));
    let killed = 0;
    let waiting = false;
    let entries: string[];
    try {
      entries = fs.readdirSync('/proc');
    } catch {
      return 0;
    }
    for (const entry of entries) {
      if (!/^[0-9]+$/.test(entry)) continue;
      const pid = Number(entry);
      if (pid === me) continue;
      const stat = readStat(pid);
      if (!stat) continue;
      const orphan = this.#subreaper && stat.ppid === me && !childPids.has(pid);
      if (orphan && stat.state === 'Z') {
        if (addon()?.reapPid?.(pid) === 0) waiting = true;
        continue;
      }
      const token = hookToken(pid);
      const ours = token?.startsWith(`${me}.`) === true;
      const ended = ours && !this.#liveTokens.has(token);
      // An orphan whose environment was cleared cannot be attributed: it dies once no hook is running.
      if (ended || (orphan && token === undefined && this.#liveTokens.size === 0)) {
        try {
          process.kill(pid, 'SIGKILL');
          killed++;
        } catch {
          // gone already
        }
        if (orphan) waiting = true;
      } else if (orphan) {
        waiting = true;
      }
    }
    if (waiting && !this.#sweepTimer) {
      this.#sweepTimer = setTimeout(() => {
        this.#sweepTimer = undefined;
        this.#sweep();
      }, 250);
      this.#sweepTimer.unref();
    }
    return killed;
  }

  /** At shutdown: end whatever still runs, and whatever hooks left behind. */
  killAll(): void {
    for (const child of this.#running) signalGroup(child, 'SIGKILL');
    this.#liveTokens.clear();
    this.#sweep();
    clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }
}

function readStat(pid: number): { ppid: number; state: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name is in parentheses and may itself hold spaces or parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', ppid: Number(fields[1]) };
}

function hookToken(pid: number): string | undefined {
  let env: string;
  try {
    env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return undefined;
  }
  for (const kv of env.split('\0')) if (kv.startsWith('SYSGENID_HOOK=')) return kv.slice('SYSGENID_HOOK='.length);
  return undefined;
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}
