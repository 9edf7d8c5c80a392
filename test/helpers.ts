// Test helpers: a real daemon in its own process and directory, and a raw line client.

import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { SysgenidError } from '../src/core/errors.js';
import type { DaemonOptions } from '../src/daemon/daemon.js';
import type { Logger } from '../src/daemon/log.js';
import { decodeU32, encodeU32 } from '../src/protocol/page-format.js';
import { runtimePaths, type RuntimePaths } from '../src/protocol/runtime-dir.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/ (tests run from the compiled tree). */
export const DIST = path.resolve(here, '..');
export const ROOT = path.resolve(DIST, '..');
// The programs as they ship: bundled by scripts/bundle.js.
export const DAEMON = path.join(DIST, 'sysgenidd.cjs');
export const CLI = path.join(DIST, 'sysgenid.cjs');

export function tmpDir(t: TestContext | undefined, prefix = 'sysgenid-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t?.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface DaemonHandle {
  readonly dir: string;
  readonly paths: RuntimePaths;
  readonly child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  log(): string;
  /** Resolves when the log matches. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface StartOptions {
  readonly dir?: string;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  /** Shell prefix such as "ulimit -n 64;". */
  readonly shellPrefix?: string;
  readonly expectFailure?: boolean;
}

/**
 * The command line that runs sysgenidd on `dir` with `extra`, without hooks or restore backends unless
 * `extra` names them: this machine may itself be restored from a snapshot mid-test (a real VM-fork
 * record), and tests that count generations must not see it.
 */
export function daemonArgv(dir: string, extra: readonly string[] = []): string[] {
  return [
    process.execPath,
    DAEMON,
    '--dir',
    dir,
    ...(extra.includes('--hooks-dir') ? [] : ['--no-hooks']),
    ...(extra.includes('--backends') ? [] : ['--backends', 'none']),
    ...extra,
  ];
}

export async function startDaemon(t: TestContext | undefined, opts: StartOptions = {}): Promise<DaemonHandle> {
  const dir = opts.dir ?? path.join(tmpDir(t), 'run');
  const argv = daemonArgv(dir, opts.args);
  const env = { ...process.env, SYSGENID_DIR: dir, NODE_EXTRA_CA_CERTS: '', ...opts.env };
  const child = opts.shellPrefix
    ? spawn('sh', ['-c', `${opts.shellPrefix} exec "$0" "$@"`, ...argv], {
        env,
        stdio: ['ignore', 'ignore', 'pipe'],
      })
    : spawn(argv[0] as string, argv.slice(1), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const listeners = new Set<() => void>();
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    log += s;
    for (const l of listeners) l();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitForLog = (re: RegExp, timeoutMs = 10_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(log);
        if (m) {
          listeners.delete(check);
          clearTimeout(timer);
          resolve(m[0]);
        }
      };
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`daemon log did not match ${re} within ${timeoutMs} ms:\n${log}`));
      }, timeoutMs);
      listeners.add(check);
      check();
    });
  const handle: DaemonHandle = {
    dir,
    paths: runtimePaths(dir),
    child,
    log: () => log,
    waitForLog,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      return exited;
    },
  };
  t?.after(() => handle.stop('SIGKILL'));
  if (!opts.expectFailure) {
    // Ready means the watch socket accepts (the "ready" log line is not there at --log-level warn).
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`daemon exited with ${child.exitCode} before it was ready:\n${log}`);
      if (Date.now() > deadline) throw new Error(`daemon not ready within 10 s:\n${log}`);
      const ok = await RawClient.open(runtimePaths(dir).watch).then(
        (r) => (r.c.close(), true),
        () => false,
      );
      if (ok && child.exitCode === null) break;
      await sleep(10);
    }
  }
  return handle;
}

/** A raw protocol client: lines in, lines out, nothing hidden. */
export class RawClient {
  readonly socket: net.Socket;
  readonly lines: string[] = [];
  #buf = '';
  #waiters: Array<() => void> = [];
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (s: string) => {
      this.#buf += s;
      let nl: number;
      while ((nl = this.#buf.indexOf('\n')) !== -1) {
        this.lines.push(this.#buf.slice(0, nl));
        this.#buf = this.#buf.slice(nl + 1);
      }
      this.#wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
  }

  static connect(file: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path: file });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawClient(s));
      });
    });
  }

  /** Connect and consume the greeting; returns the client and the generation it announced. */
  static async open(file: string): Promise<{ c: RawClient; generation: number; id: number }> {
    const c = await RawClient.connect(file);
    const hello = await c.next();
    const m = /^HELLO sysgenid\/1 (\d+) (\d+)$/.exec(hello);
    if (!m) throw new Error(`bad greeting ${JSON.stringify(hello)}`);
    return { c, generation: Number(m[1]), id: Number(m[2]) };
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** The next line, in order. */
  async next(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no line within timeout');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.lines.shift() as string;
  }

  /** Send one request and return the next line that is not a GEN notification. */
  async request(line: string, timeoutMs = 5000): Promise<string> {
    this.send(`${line}\n`);
    for (;;) {
      const l = await this.next(timeoutMs);
      if (!l.startsWith('GEN ')) return l;
    }
  }

  /** True if nothing arrives within ms. */
  async silent(ms: number): Promise<boolean> {
    if (this.lines.length > 0) return false;
    await new Promise((r) => setTimeout(r, ms));
    return this.lines.length === 0;
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.closed) return resolve();
      const timer = setTimeout(() => reject(new Error('still open')), timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

export async function bump(dir: string, min?: number): Promise<number> {
  const { c } = await RawClient.open(runtimePaths(dir).control);
  try {
    const reply = await c.request(min === undefined ? 'BUMP' : `BUMP ${min}`);
    const m = /^OK (\d+)$/.exec(reply);
    if (!m) throw new Error(`bump failed: ${reply}`);
    return Number(m[1]);
  } finally {
    c.close();
  }
}

export async function statusOf(dir: string): Promise<
  Record<string, unknown> & {
    generation: number;
    watchers: number;
    outdated: number;
    tracked: number;
    list?: Array<Record<string, unknown>>;
  }
> {
  const { c } = await RawClient.open(runtimePaths(dir).control);
  try {
    const reply = await c.request('STATUS');
    if (!reply.startsWith('OK ')) throw new Error(reply);
    return JSON.parse(reply.slice(3));
  } finally {
    c.close();
  }
}

/** A process started by launch(), with what it has written so far. */
export interface Launched {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Its exit code, once it has ended and all its output is read. */
  readonly closed: Promise<number | null>;
}

/**
 * Start `argv` with its output collected and `input` (or nothing) on its stdin. Given a test, it is sent
 * `stop` if still running when the test ends, and the test waits until it is gone.
 */
export function launch(
  argv: readonly string[],
  opts: { t?: TestContext; env?: NodeJS.ProcessEnv; input?: string; stop?: NodeJS.Signals } = {},
): Launched {
  const child = spawn(argv[0] as string, argv.slice(1), {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: '', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.end(opts.input);
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  opts.t?.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(opts.stop ?? 'SIGKILL');
    await closed;
  });
  return { child, stdout: () => stdout, stderr: () => stderr, closed };
}

/** Run `argv` to its end with `input` on its stdin; its exit code and output. */
export async function runProgram(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = {},
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = launch(argv, { env, input });
  const code = await p.closed;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

export const runNode = (
  script: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  input?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> =>
  runProgram([process.execPath, script, ...args], env, input);

/** `sysgenid ARGS` running alongside the test (a watch, a blocking read), killed if still running at its end. */
export const startCli = (t: TestContext, args: readonly string[]): Launched =>
  launch([process.execPath, CLI, ...args], { t });

/** The runtime directory of a daemon that counted up to `generation` and then stopped cleanly. */
export async function stoppedAt(t: TestContext, generation: number): Promise<string> {
  const dir = path.join(tmpDir(t), 'run');
  const d = await startDaemon(t, { dir });
  await bump(dir, generation);
  await d.stop();
  return dir;
}

/** `sysgenidd --reset-generation VALUE` on `dir`, the deliberate way to set the counter of a stopped daemon. */
export const resetGeneration = (dir: string, value: number) =>
  runNode(DAEMON, ['--dir', dir, '--reset-generation', String(value)]);

/** The generation a page file holds. */
export const pageValue = (file: string): number => decodeU32(fs.readFileSync(file));

/** Overwrite the generation in a page file in place, as damage or a crash between two writes would. */
export function writePage(file: string, value: number): void {
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, encodeU32(value), 0, 4, 0);
  fs.closeSync(fd);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value. */
export async function eventually<T>(fn: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(10);
  }
  throw new Error(`${what} not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

/** The code of the SysgenidError `fn` throws (anything else fails the test), or undefined if it returns. */
export function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SysgenidError, `expected a SysgenidError, got ${String(err)}`);
    return err.code;
  }
  return undefined;
}

/**
 * Options for a daemon run inside the test process (Daemon.start), for what the command line cannot
 * reach (a test registry, a fake kernel log): no hooks, no backends, the command line's limits.
 */
export function inProcessOptions(dir: string, log: Logger, extra: Partial<DaemonOptions> = {}): DaemonOptions {
  return {
    dir,
    log,
    controlGid: process.getegid?.() ?? 0,
    hooksDir: undefined,
    hookTimeoutMs: 1000,
    devLink: undefined,
    maxConnections: undefined,
    maxBacklog: 65_536,
    backends: [],
    ...extra,
  };
}
