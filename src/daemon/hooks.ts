// Hooks are the uevent of the kernel proposal: after every bump, each executable in the hooks
// directory runs once with SYSGENID=<n>. They run concurrently, each under a timeout, with their
// output logged up to a bound; nothing a hook does can block or crash the daemon.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
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

const OUTPUT_LIMIT = 4096;
const KILL_GRACE_MS = 1000;
const SKIP = /(^\.)|(~$)|(\.(dpkg|rpm|ucf)-[a-z]+$)|(\.(swp|bak|orig|disabled)$)/;

export class HookRunner {
  readonly dir: string | undefined;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  readonly #env: NodeJS.ProcessEnv;
  readonly #running = new Set<ReturnType<typeof spawn>>();

  constructor(dir: string | undefined, timeoutMs: number, log: Logger, env: NodeJS.ProcessEnv = {}) {
    this.dir = dir;
    this.#timeoutMs = timeoutMs;
    this.#log = log;
    this.#env = env;
  }

  get running(): number {
    return this.#running.size;
  }

  /** The hooks that would run now: read at every bump, so adding one needs no restart. */
  list(): string[] {
    if (!this.dir) return [];
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.#log.warn(`hooks: cannot read ${this.dir}: ${(err as Error).message}`);
      return [];
    }
    const uid = process.geteuid?.() ?? 0;
    const hooks: string[] = [];
    for (const name of names.sort()) {
      if (SKIP.test(name)) continue;
      const file = path.join(this.dir, name);
      let st: fs.Stats;
      try {
        st = fs.statSync(file);
      } catch {
        continue;
      }
      if (!st.isFile() || (st.mode & 0o111) === 0) continue;
      // Like run-parts under root: a hook someone else could rewrite would run with our rights.
      if ((st.uid !== 0 && st.uid !== uid) || (st.mode & 0o022) !== 0) {
        this.#log.warn(`hooks: skipping ${file}: it must belong to root or uid ${uid} and not be writable by group or others`);
        continue;
      }
      hooks.push(file);
    }
    return hooks;
  }

  /** Run every hook for one bump. Never rejects. */
  async run(event: HookEvent): Promise<HookResult[]> {
    const hooks = this.list();
    if (hooks.length === 0) return [];
    return Promise.all(hooks.map((h) => this.#runOne(h, event)));
  }

  #runOne(file: string, event: HookEvent): Promise<HookResult> {
    const name = path.basename(file);
    const started = performance.now();
    return new Promise((resolve) => {
      let child: ReturnType<typeof spawn>;
      try {
        child = spawn(file, [], {
          cwd: '/',
          detached: true,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            ...this.#env,
            SYSGENID: String(event.generation),
            SYSGENID_PREVIOUS: String(event.previous),
            SYSGENID_SOURCE: event.source,
          },
        });
      } catch (err) {
        this.#log.warn(`hook ${name}: cannot start: ${(err as Error).message}`);
        resolve({ hook: name, code: null, signal: null, timedOut: false, ms: 0, error: (err as Error).message });
        return;
      }
      this.#running.add(child);
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
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (killer) clearTimeout(killer);
        this.#running.delete(child);
        const ms = Math.round(performance.now() - started);
        if (spawnError) this.#log.warn(`hook ${name}: failed to run: ${spawnError}`);
        else if (code !== 0 && !timedOut) this.#log.warn(`hook ${name}: exited with ${signal ?? `status ${code}`} after ${ms} ms`);
        else if (!timedOut) this.#log.debug(`hook ${name}: done in ${ms} ms`);
        resolve({ hook: name, code, signal, timedOut, ms, ...(spawnError ? { error: spawnError } : {}) });
      });
    });
  }

  /** At shutdown: end whatever still runs. */
  killAll(): void {
    for (const child of this.#running) signalGroup(child, 'SIGKILL');
  }
}

function signalGroup(child: ReturnType<typeof spawn>, signal: NodeJS.Signals): void {
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
