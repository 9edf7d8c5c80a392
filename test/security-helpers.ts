// Helpers for the attack tests (issue 12): the attacker is an ordinary local user (nobody), run with
// setpriv so that the process started is the attacker's own (no runuser parent to signal).

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { DAEMON, DIST, launch, tmpDir } from './helpers.js';

export const NOBODY = 65534;
export const isRoot = process.getuid?.() === 0;

/** The argv prefix that runs a command as nobody. */
export const AS_NOBODY = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--'];

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a command to its end (killed after `killAfterMs`), as nobody when `nobody` is set. */
export async function run(
  argv: string[],
  opts: { nobody?: boolean; env?: NodeJS.ProcessEnv; killAfterMs?: number } = {},
): Promise<Run> {
  const started = Date.now();
  const p = launch(opts.nobody ? [...AS_NOBODY, ...argv] : argv, { env: opts.env });
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.killAfterMs ?? 30_000);
  const code = await p.closed;
  clearTimeout(timer);
  return { code, signal: p.child.signalCode, stdout: p.stdout(), stderr: p.stderr(), ms: Date.now() - started };
}

/** A temporary directory nobody can read and search (for scripts the attacker runs). */
export function sharedTmp(t: TestContext): string {
  const dir = tmpDir(t, 'sysgenid-sec-');
  fs.chmodSync(dir, 0o755);
  return dir;
}

/** A directory owned by nobody, as an attacker would create it. */
export function attackerDir(t: TestContext, name = 'mine'): { base: string; dir: string } {
  const base = sharedTmp(t);
  const dir = `${base}/${name}`;
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chownSync(dir, NOBODY, NOBODY);
  return { base, dir };
}

export interface Spawned {
  child: ChildProcess;
  log(): string;
  exited: Promise<number | null>;
  waitFor(re: RegExp, ms?: number): Promise<void>;
}

/** sysgenidd in the foreground, as nobody when asked; killed when the test ends. */
export function spawnDaemon(
  t: TestContext,
  args: string[],
  opts: { nobody?: boolean; env?: NodeJS.ProcessEnv } = {},
): Spawned {
  const argv = [...(opts.nobody ? AS_NOBODY : []), process.execPath, DAEMON, '--backends', 'none', ...args];
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: '', ...opts.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (log += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
    }
  });
  return {
    child,
    log: () => log,
    exited,
    async waitFor(re: RegExp, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!re.test(log)) {
        if (Date.now() > deadline) throw new Error(`daemon log did not match ${re} within ${ms} ms:\n${log}`);
        if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}:\n${log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

/** The attacker's own daemon, run as nobody in `dir`; resolves once it is ready. */
export async function nobodysDaemon(t: TestContext, dir: string): Promise<Spawned> {
  const d = spawnDaemon(t, ['--dir', dir, '--no-hooks'], { nobody: true });
  await d.waitFor(/ready/);
  return d;
}

/** A runtime directory squatted by the attacker: `run` in a directory nobody owns, nobody's daemon in it. */
export async function squattedDir(t: TestContext): Promise<string> {
  const dir = path.join(attackerDir(t).dir, 'run');
  await nobodysDaemon(t, dir);
  return dir;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const ATTACKER = path.join(DIST, 'test', 'fixtures', 'attacker.js');

/**
 * Run test/fixtures/attacker.ts as nobody with `args`; resolves with the JSON line it prints once it
 * holds what it opened. It keeps everything open until the test ends.
 */
export function attackAsNobody<T = Record<string, unknown>>(
  t: TestContext,
  args: readonly string[],
): Promise<{ result: T; child: ChildProcess }> {
  const child = spawn('runuser', ['-u', 'nobody', '--', process.execPath, ATTACKER, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => {
    child.stdin?.end();
    child.kill('SIGKILL');
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => {
      out += s;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ result: JSON.parse(out.slice(0, nl)) as T, child });
    });
    child.on('exit', (code) => reject(new Error(`attacker exited ${code} before reporting: ${out}`)));
  });
}
