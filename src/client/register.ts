// `node --import sysgenid/register app.js` (or `node -r sysgenid/register`, or either in NODE_OPTIONS):
// makes an unmodified program's own crypto clone-safe (docs/clone-safe-node.md). Importing this module
// installs the guard of register-guard.ts on node:crypto, webcrypto and tls at once, then connects a
// tracked watcher in the background (unref'd: it never keeps the program alive). On every new generation
// the watcher reseeds first and acknowledges after, so `sysgenid wait` and the lifecycle's re-adjust
// step also mean "every registered process has fresh randomness". A program's own sysgenid handlers
// see the reseed done as well: the daemon writes the page before it notifies anyone, and the first
// crypto call of any handler goes through the guard's check of that page.
// One guard per process, shared by the ES module and the CommonJS entry (dist/register.cjs).

import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { CryptoGuard, type GuardOptions, type GuardState, type ReseedRecord } from './register-guard.js';
import { type Watcher, connect } from './watcher.js';

export type { GuardState, ReseedRecord, GuardMode } from './register-guard.js';

export interface RegisterOptions extends GuardOptions {
  /** Connect a watcher that reseeds and then acknowledges each generation (default true). */
  readonly watcher?: boolean;
  /** The watcher's name in `sysgenid status` (default: "register <script> <pid>"). */
  readonly name?: string;
}

export interface RegisterState extends GuardState {
  /** The watcher is connected to the daemon. */
  readonly connected: boolean;
  /** The last generation the watcher acknowledged, or null before it connected. */
  readonly acknowledged: number | null;
}

interface Registration {
  readonly guard: CryptoGuard;
  watcher: Watcher | undefined;
}

const KEY = Symbol.for('sysgenid.register');
const RETRY_MS = 1000;
// The protocol's PROBLEM carries at most 200 characters.
const problemLine = (guard: CryptoGuard): string =>
  (
    `OpenSSL not reseeded (${guard.problem}): TLS, key generation, (EC)DH not clone-safe; ` +
    'JS random APIs use the kernel RNG'
  ).slice(0, 200);

function registration(): Registration | undefined {
  return (globalThis as Record<symbol, Registration | undefined>)[KEY];
}

/** Install the guard and connect the watcher, once per process; later calls return the first one. */
export function register(opts: RegisterOptions = {}): RegisterState {
  const existing = registration();
  if (existing) return stateOf(existing);
  const guard = new CryptoGuard(opts);
  const reg: Registration = { guard, watcher: undefined };
  (globalThis as Record<symbol, Registration>)[KEY] = reg;
  guard.install();
  // A worker thread (loaded there by -r, which workers inherit) guards its own entry points and caches;
  // OpenSSL is the process's, and the main thread's watcher acknowledges for the process.
  if (opts.watcher !== false && isMainThread) void watch(reg, opts);
  return stateOf(reg);
}

async function watch(reg: Registration, opts: RegisterOptions): Promise<void> {
  const script = process.argv[1] ? path.basename(process.argv[1]) : 'node';
  const name = opts.name ?? `register ${script} ${process.pid}`;
  let announced = false;
  for (;;) {
    reg.guard.openPage();
    try {
      const dir = opts.dir ? { dir: opts.dir } : {};
      const watcher = await connect({ name, unref: true, connectTimeoutMs: 5000, ...dir });
      reg.watcher = watcher;
      // Errors of the background watcher are the daemon's business, never the program's.
      watcher.on('error', (err) => process.stderr.write(`sysgenid/register: ${err.message}\n`));
      if (reg.guard.problem) await watcher.reportProblem(problemLine(reg.guard));
      reg.guard.onReseed(() => {
        if (reg.guard.problem) void watcher.reportProblem(problemLine(reg.guard)).catch(() => undefined);
      });
      // A generation missed while connecting is reported by the watcher as outdated and handled first.
      watcher.handle((generation) => {
        reg.guard.onGeneration(generation);
      });
      return;
    } catch (err) {
      if (!announced) {
        announced = true;
        const page = reg.guard.state().pagePath ? 'checks the page' : 'has no page yet';
        process.stderr.write(
          `sysgenid/register: cannot reach sysgenidd (${(err as Error).message}); ` +
            `the guard ${page}, retrying every ${RETRY_MS / 1000} s\n`,
        );
      }
      await new Promise((r) => setTimeout(r, RETRY_MS).unref());
    }
  }
}

function stateOf(reg: Registration): RegisterState {
  return {
    ...reg.guard.state(),
    connected: reg.watcher?.connected ?? false,
    acknowledged: reg.watcher ? reg.watcher.handled : null,
  };
}

/** What the guard has done in this process (undefined if register() never ran). */
export function registerState(): RegisterState | undefined {
  const reg = registration();
  return reg ? stateOf(reg) : undefined;
}

/** Reseed now (for example after restoring a process by means sysgenid does not see). */
export function reseedNow(): ReseedRecord | undefined {
  return registration()?.guard.reseed('manual');
}

/** Run `fn` after every reseed, before the acknowledgement (the record says what was reseeded). */
export function onReseed(fn: (record: ReseedRecord) => void): () => void {
  const reg = registration();
  if (!reg) throw new Error('sysgenid/register is not loaded: node --import sysgenid/register');
  return reg.guard.onReseed(fn);
}

// Loading the module is registering: that is what --import and -r do. SYSGENID_VMCLOCK names another
// vmclock device, or 'off'. SYSGENID_PAGE names the page itself (a container given only the page, or a
// test): it is then checked for its owner only, not for a live daemon beside it.
const vmclock = process.env.SYSGENID_VMCLOCK;
const page = process.env.SYSGENID_PAGE;
register({
  ...(vmclock ? { vmclockPath: vmclock === 'off' ? null : vmclock } : {}),
  ...(page ? { pagePath: page } : {}),
});
