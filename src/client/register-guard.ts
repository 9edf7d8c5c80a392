// Clone-safe Node.js crypto for an unmodified program (issue 13; docs/clone-safe-node.md). A VM clone or
// a CRIU copy of this process continues OpenSSL's DRBG stream and Node's entropy caches exactly where
// the original left them, because OpenSSL notices a fork only through getpid(). This module:
//  - wraps every entry point of node:crypto, webcrypto and tls that draws randomness with a check of the
//    mapped generation page (one load) and of /dev/vmclock0's vm_generation_counter where it exists, so a
//    caller reseeds synchronously the moment the generation moved, before the daemon has told anyone;
//  - reseeds through the native addon (every copy of OpenSSL in the process) and throws away what Node
//    cached (randomUUID's batch of 128, randomInt's 6 KiB) by draining it through the reseeded DRBG;
//  - without the addon it cannot reseed OpenSSL: after a change the JavaScript entry points return the
//    kernel's randomness instead, and it says loudly (stderr, the watcher's PROBLEM) that TLS, key
//    generation and (EC)DH in this process are not clone-safe.
// The watcher that acknowledges each generation after the reseed lives in register.ts.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import tls from 'node:tls';
import { type OpensslReseed, addon, addonState } from '../native/addon.js';
import { type Probe, openProbe } from './probe.js';
import { SafeRandom } from './snapshot-safe.js';
import { PAGE_SIZE } from '../protocol/runtime-dir.js';

export const VMCLOCK_DEVICE = '/dev/vmclock0';
// include/uapi/linux/vmclock-abi.h: flags (u64) at 24, vm_generation_counter (u64) at 0x68.
const VMCLOCK_MAGIC = 0x4b4c4356;
const VMCLOCK_FLAGS_WORD = 6;
const VMCLOCK_GEN_WORD = 26;
const VMCLOCK_FLAG_GEN_PRESENT = 1 << 8;
// Node's randomUUID() refills its batch of 128 when its index wraps; randomInt() takes 6 bytes of its
// 6 KiB cache per call. This many calls from any position pass through one refill, and whatever is
// left afterwards was drawn from the reseeded DRBG.
const UUID_BATCH = 128;
const RANDOM_INT_CACHE_ENTRIES = (6 * 1024) / 6;

export interface GuardOptions {
  /** Runtime directory of the daemon (default: resolved like the daemon does). */
  readonly dir?: string;
  /** The page to check instead of <dir>/generation. */
  readonly pagePath?: string;
  /** The vmclock device (default /dev/vmclock0); null: do not read one. */
  readonly vmclockPath?: string | null;
  /** Where the loud lines go (default: stderr). */
  readonly log?: (line: string) => void;
}

export type GuardMode = 'openssl' | 'kernel';

export interface ReseedRecord {
  /** The page's generation the reseed was for (-1 without a page). */
  readonly generation: number;
  /** The vmclock counter seen then, as a decimal string, or null. */
  readonly vmclock: string | null;
  /** What noticed it: a guarded entry point by name, 'watcher', 'vmclock', 'page-opened' or 'manual'. */
  readonly trigger: string;
  /** 'openssl': OpenSSL reseeded and Node's caches drained; 'kernel': the JS entry points use the kernel. */
  readonly mode: GuardMode;
  readonly openssl: readonly OpensslReseed[];
  readonly durationUs: number;
}

export interface GuardState {
  readonly installed: boolean;
  readonly mode: GuardMode;
  /** Why OpenSSL cannot be reseeded here ('' when it can). */
  readonly problem: string;
  readonly pagePath: string | null;
  readonly mapped: boolean;
  readonly vmclock: boolean;
  readonly generation: number;
  readonly reseeds: number;
  /** Calls answered from the kernel's RNG after a change, without the addon. */
  readonly kernelCalls: number;
  readonly last: ReseedRecord | null;
  /** The entry points wrapped, by name. */
  readonly guarded: readonly string[];
}

type AnyFn = (this: unknown, ...args: unknown[]) => unknown;

/**
 * What every wrapper reads before it calls through: the page mapped by this module (one load), and the
 * generation last reseeded for. Without a mapping (no addon, or no page yet), or with a vmclock device
 * to compare as well, the wrappers take CryptoGuard.check() instead.
 */
interface Hot {
  page: Uint32Array | undefined;
  seen: number;
  /** No mapping of the page: every call takes CryptoGuard.check(). */
  slow: boolean;
  vm: Uint32Array | undefined;
  vmLo: number;
  vmHi: number;
  /** OpenSSL could not be reseeded after a change: the JavaScript entry points answer from the kernel. */
  kernel: boolean;
}

// Entry points whose every parameter Node checks against undefined (never arguments.length).
const FIXED_ARITY: Record<string, number> = { randomBytes: 2, randomUUID: 1, randomInt: 3, randomFillSync: 3 };

const vmMoved = (hot: Hot): boolean =>
  hot.vm !== undefined && (hot.vm[VMCLOCK_GEN_WORD] !== hot.vmLo || hot.vm[VMCLOCK_GEN_WORD + 1] !== hot.vmHi);

const VIEW_BYTES = (v: ArrayBufferView | ArrayBuffer): Uint8Array =>
  v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

export class CryptoGuard {
  #probe: Probe | undefined;
  #pagePath: string | null = null;
  #seen = -1;
  readonly #hot: Hot = { page: undefined, seen: -1, slow: true, vm: undefined, vmLo: 0, vmHi: 0, kernel: false };
  #mode: GuardMode = 'openssl';
  #problem = '';
  #reseeds = 0;
  #kernelCalls = 0;
  #last: ReseedRecord | null = null;
  #installed = false;
  #random: SafeRandom | undefined;
  readonly #guarded: string[] = [];
  readonly #opts: GuardOptions;
  readonly #log: (line: string) => void;
  readonly #listeners = new Set<(r: ReseedRecord) => void>();
  readonly #servers = new Set<WeakRef<tls.Server>>();
  // The originals, for draining caches and for answering from the kernel without recursing.
  readonly #orig = {
    randomBytes: crypto.randomBytes,
    randomUUID: crypto.randomUUID,
    randomInt: crypto.randomInt,
  };

  constructor(opts: GuardOptions = {}) {
    this.#opts = opts;
    this.#log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
    const native = addon();
    if (!native?.opensslReseed) {
      this.#problem = native
        ? 'the native addon predates opensslReseed (run npm rebuild)'
        : `the native addon is not in use (${addonState()})`;
    }
    this.openPage();
    this.#openVmclock();
  }

  /** Open the page if it is not open yet; true once it is. A page found late is a reason to reseed. */
  openPage(): boolean {
    if (this.#probe) return true;
    try {
      const { pagePath, dir } = this.#opts;
      this.#probe = pagePath ? openProbe({ path: pagePath }) : openProbe(dir ? { dir } : {});
    } catch {
      return false;
    }
    this.#pagePath = this.#probe.path;
    this.#mapHot();
    const wasRunning = this.#seen !== -1 || this.#installed;
    this.#setSeen(this.#probe.generation());
    // Nobody knows what happened to this process while there was no page: reseed once to be sure.
    if (wasRunning) this.reseed('page-opened');
    return true;
  }

  // The probe (src/client/probe.ts) opens and checks the page but keeps its mapping private; the hot
  // path maps the same file once more so that a wrapper reads it without a call.
  #mapHot(): void {
    const native = addon();
    this.#hot.page = undefined;
    if (native && this.#probe?.mapped) {
      try {
        this.#hot.page = new Uint32Array(native.mapFile(this.#probe.path, PAGE_SIZE), 0, 1);
      } catch {
        // The probe's own read (a call) serves then.
      }
    }
    this.#hot.slow = this.#hot.page === undefined;
  }

  #setSeen(generation: number): void {
    this.#seen = generation;
    this.#hot.seen = generation;
  }

  #openVmclock(): void {
    const file = this.#opts.vmclockPath === undefined ? VMCLOCK_DEVICE : this.#opts.vmclockPath;
    const native = addon();
    if (file === null || !native?.mapDevice || !fs.existsSync(file)) return;
    try {
      const words = new Uint32Array(native.mapDevice(file, 4096));
      const flags = words[VMCLOCK_FLAGS_WORD] as number;
      if (words[0] !== VMCLOCK_MAGIC || (flags & VMCLOCK_FLAG_GEN_PRESENT) === 0) return;
      this.#hot.vm = words;
      this.#hot.vmLo = words[VMCLOCK_GEN_WORD] as number;
      this.#hot.vmHi = words[VMCLOCK_GEN_WORD + 1] as number;
    } catch {
      // Not readable by this user, or not mappable: the page alone then.
    }
  }

  get mode(): GuardMode {
    return this.#mode;
  }

  /** Why OpenSSL cannot be reseeded in this process, or ''. */
  get problem(): string {
    return this.#problem;
  }

  get generation(): number {
    return this.#seen;
  }

  /** The hot path: one load from the page (and two from vmclock). Reseeds synchronously on a change. */
  check(trigger: string): void {
    const probe = this.#probe;
    if (probe !== undefined && probe.generation() !== this.#seen) this.reseed(trigger);
    else if (vmMoved(this.#hot)) this.reseed(`vmclock:${trigger}`);
  }

  /** The daemon said `generation` is current: reseed unless a guarded call already did for it. */
  onGeneration(generation: number): ReseedRecord | null {
    if (this.#probe === undefined) this.openPage();
    else if (this.#probe.generation() !== generation && this.#probe.refresh()) this.#mapHot();
    if (generation === this.#seen && this.#last?.generation === generation) return null;
    return this.reseed('watcher');
  }

  onReseed(fn: (r: ReseedRecord) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Reseed now, whatever the page says. */
  reseed(trigger: string): ReseedRecord {
    const t0 = performance.now();
    if (this.#probe) this.#setSeen(this.#probe.generation());
    const hot = this.#hot;
    if (hot.vm) {
      hot.vmLo = hot.vm[VMCLOCK_GEN_WORD] as number;
      hot.vmHi = hot.vm[VMCLOCK_GEN_WORD + 1] as number;
    }
    let openssl: OpensslReseed[] = [];
    const native = addon();
    if (native?.opensslReseed) {
      openssl = native.opensslReseed();
      const failed = openssl.filter((c) => !c.ok);
      if (openssl.length === 0) this.#setProblem('no copy of OpenSSL found in this process (RAND_poll not exported)');
      else if (failed.length) {
        this.#setProblem(`OpenSSL in ${failed.map((c) => c.library).join(', ')} refused the reseed`);
      }
      this.#drainNodeCaches();
    }
    if (this.#problem && this.#mode !== 'kernel') {
      this.#mode = 'kernel';
      this.#hot.kernel = true;
    }
    const record: ReseedRecord = {
      generation: this.#seen,
      vmclock: hot.vm ? String((BigInt(hot.vmHi) << 32n) | BigInt(hot.vmLo)) : null,
      trigger,
      mode: this.#mode,
      openssl,
      durationUs: Math.round((performance.now() - t0) * 1000),
    };
    this.#reseeds++;
    this.#last = record;
    if (this.#mode === 'kernel') {
      this.#log(`sysgenid/register: generation ${record.generation} (${trigger}): ${this.loudProblem()}`);
    }
    this.#rotateTicketKeys();
    for (const fn of this.#listeners) fn(record);
    return record;
  }

  /** The line said at start, at every change, and sent to the daemon as this watcher's PROBLEM. */
  loudProblem(): string {
    return (
      `cannot reseed OpenSSL in this process: ${this.#problem}; after a clone crypto.randomBytes, randomFill, ` +
      'randomUUID, randomInt and getRandomValues answer from the kernel RNG, but TLS, key generation and (EC)DH ' +
      "keep OpenSSL's cloned state: this process is NOT clone-safe for them"
    );
  }

  #setProblem(problem: string): void {
    if (!this.#problem) this.#problem = problem;
  }

  #drainNodeCaches(): void {
    const { randomUUID, randomInt } = this.#orig;
    for (let i = 0; i < UUID_BATCH; i++) randomUUID();
    for (let i = 0; i < RANDOM_INT_CACHE_ENTRIES; i++) randomInt(0, 1);
  }

  // TLS session tickets of a cloned server would be readable by every sibling: new keys per generation.
  #rotateTicketKeys(): void {
    for (const ref of this.#servers) {
      const server = ref.deref();
      if (!server) {
        this.#servers.delete(ref);
        continue;
      }
      try {
        server.setTicketKeys(this.#mode === 'kernel' ? this.#kernel().randomBytes(48) : this.#orig.randomBytes(48));
      } catch {
        // A server without ticket support (or closed): nothing to rotate.
      }
    }
  }

  state(): GuardState {
    return {
      installed: this.#installed,
      mode: this.#mode,
      problem: this.#problem,
      pagePath: this.#pagePath,
      mapped: this.#probe?.mapped ?? false,
      vmclock: this.#hot.vm !== undefined,
      generation: this.#seen,
      reseeds: this.#reseeds,
      kernelCalls: this.#kernelCalls,
      last: this.#last,
      guarded: [...this.#guarded],
    };
  }

  // ------------------------------------------------------------------ installing the wrappers

  /** Wrap every entry point. Idempotent per guard; the caller keeps one guard per process. */
  install(): void {
    if (this.#installed) return;
    this.#installed = true;
    const c = crypto as unknown as Record<string, AnyFn>;
    for (const name of ['randomBytes', 'randomFill', 'randomFillSync', 'randomUUID', 'randomInt']) {
      this.#wrap(c, name, name, this.#kernelVariant(name));
    }
    for (const name of [
      'generateKey',
      'generateKeySync',
      'generateKeyPair',
      'generateKeyPairSync',
      'generatePrime',
      'generatePrimeSync',
      'createECDH',
      'createDiffieHellman',
      'createDiffieHellmanGroup',
      'getDiffieHellman',
      'publicEncrypt',
      'sign',
    ]) {
      this.#wrap(c, name, name);
    }
    const proto = (cls: unknown): Record<string, AnyFn> | undefined =>
      typeof cls === 'function' ? (cls as { prototype: Record<string, AnyFn> }).prototype : undefined;
    for (const [cls, label] of [
      [crypto.ECDH, 'ECDH'],
      [crypto.DiffieHellman, 'DiffieHellman'],
      [crypto.DiffieHellmanGroup, 'DiffieHellmanGroup'],
    ] as const) {
      const p = proto(cls);
      if (p) this.#wrap(p, 'generateKeys', `${label}.generateKeys`);
    }
    const signProto = proto(crypto.Sign);
    if (signProto) this.#wrap(signProto, 'sign', 'Sign.sign');
    // Web Crypto: crypto.getRandomValues and webcrypto.getRandomValues both end in Crypto.prototype's.
    const webProto = Object.getPrototypeOf(crypto.webcrypto) as Record<string, AnyFn>;
    this.#wrap(webProto, 'getRandomValues', 'getRandomValues', this.#kernelVariant('getRandomValues'));
    this.#wrap(webProto, 'randomUUID', 'webcrypto.randomUUID', this.#kernelVariant('webcrypto.randomUUID'));
    const subtleProto = Object.getPrototypeOf(crypto.webcrypto.subtle) as Record<string, AnyFn>;
    for (const name of ['generateKey', 'sign', 'encrypt', 'wrapKey']) this.#wrap(subtleProto, name, `subtle.${name}`);
    // Every TLS socket, client or server, tls or https or http2, is initialised here before its handshake.
    const tlsProto = tls.TLSSocket.prototype as unknown as Record<string, AnyFn>;
    if (typeof tlsProto._init === 'function') this.#wrap(tlsProto, '_init', 'tls');
    const t = tls as unknown as Record<string, AnyFn>;
    this.#wrap(t, 'createSecureContext', 'tls.createSecureContext');
    const serverProto = tls.Server.prototype as unknown as Record<string, AnyFn>;
    // The wrappers run with the caller's `this` and must reach the guard as well.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const guard = this;
    const setSecureContext = serverProto.setSecureContext;
    if (typeof setSecureContext === 'function') {
      serverProto.setSecureContext = function (this: unknown, ...args: unknown[]): unknown {
        guard.check('tls.Server');
        const r = Reflect.apply(setSecureContext, this, args);
        guard.#servers.add(new WeakRef(this as tls.Server));
        return r;
      };
    }
    // ES module named imports of node:crypto are a snapshot of the CommonJS exports: refresh them.
    syncBuiltinESMExports();
    if (this.#problem) this.#log(`sysgenid/register: ${this.loudProblem()}`);
  }

  #wrap(target: Record<string, AnyFn>, key: string, label: string, kernel?: (orig: AnyFn) => AnyFn): void {
    const orig = target[key];
    if (typeof orig !== 'function') return;
    // The wrappers run with the caller's `this` and must reach the guard as well.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const guard = this;
    const hot = this.#hot;
    const alt = kernel?.(orig);
    // Once OpenSSL is known not to be reseedable (hot.kernel), every later call takes the kernel variant.
    const call = alt ?? orig;
    // The common calls get a fixed-arity wrapper (no rest array, no Reflect.apply): Node's own functions
    // treat an undefined trailing argument as an absent one.
    const wrapped =
      FIXED_ARITY[label] === 1
        ? function (this: unknown, a: unknown): unknown {
            if (hot.slow || hot.page![0] !== hot.seen || (hot.vm !== undefined && vmMoved(hot))) guard.check(label);
            return hot.kernel ? call.call(this, a) : orig.call(this, a);
          }
        : FIXED_ARITY[label] === 2
          ? function (this: unknown, a: unknown, b: unknown): unknown {
              if (hot.slow || hot.page![0] !== hot.seen || (hot.vm !== undefined && vmMoved(hot))) guard.check(label);
              return hot.kernel ? call.call(this, a, b) : orig.call(this, a, b);
            }
          : FIXED_ARITY[label] === 3
            ? function (this: unknown, a: unknown, b: unknown, c: unknown): unknown {
                if (hot.slow || hot.page![0] !== hot.seen || (hot.vm !== undefined && vmMoved(hot))) guard.check(label);
                return hot.kernel ? call.call(this, a, b, c) : orig.call(this, a, b, c);
              }
            : function (this: unknown, ...args: unknown[]): unknown {
                if (hot.slow || hot.page![0] !== hot.seen || (hot.vm !== undefined && vmMoved(hot))) guard.check(label);
                return Reflect.apply(hot.kernel ? call : orig, this, args);
              };
    Object.defineProperty(wrapped, 'name', { value: orig.name });
    Object.defineProperty(wrapped, 'length', { value: orig.length });
    const desc = Object.getOwnPropertyDescriptor(target, key);
    Object.defineProperty(target, key, {
      value: wrapped,
      writable: desc?.writable ?? true,
      enumerable: desc?.enumerable ?? false,
      configurable: true,
    });
    this.#guarded.push(label);
  }

  // ------------------------------------------------------------------ without the addon: the kernel's RNG

  #kernel(): SafeRandom {
    // Its own probe: SafeRandom wipes its pool on a change too, so no kernel bytes outlive a clone either.
    const dir = this.#opts.dir;
    this.#random ??= this.#probe ? new SafeRandom({ probe: this.#probe }) : new SafeRandom(dir ? { dir } : {});
    this.#kernelCalls++;
    return this.#random;
  }

  #overwrite(view: ArrayBufferView | ArrayBuffer, start = 0, length?: number): void {
    const bytes = VIEW_BYTES(view);
    const n = length ?? bytes.length - start;
    if (n > 0) this.#kernel().randomBytes(n).copy(bytes, start);
  }

  // The original runs first in each variant: it validates its arguments exactly as Node does (and draws
  // from the stale DRBG, whose output is then overwritten or ignored).
  #kernelVariant(name: string): ((orig: AnyFn) => AnyFn) | undefined {
    // The wrappers run with the caller's `this` and must reach the guard as well.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const guard = this;
    const region = (buf: ArrayBufferView | ArrayBuffer, offset: unknown, size: unknown): [number, number] => {
      const unit = (buf as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
      const start = typeof offset === 'number' ? offset * unit : 0;
      const len = typeof size === 'number' ? size * unit : VIEW_BYTES(buf).length - start;
      return [start, len];
    };
    switch (name) {
      case 'randomBytes':
        return (orig) =>
          function (this: unknown, size: unknown, cb?: unknown): unknown {
            if (typeof cb === 'function') {
              return Reflect.apply(orig, this, [
                size,
                (err: Error | null, buf: Buffer) => {
                  if (!err) guard.#overwrite(buf);
                  (cb as (e: Error | null, b: Buffer) => void)(err, buf);
                },
              ]);
            }
            const buf = Reflect.apply(orig, this, cb === undefined ? [size] : [size, cb]) as Buffer;
            guard.#overwrite(buf);
            return buf;
          };
      case 'randomFillSync':
        return (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            const buf = Reflect.apply(orig, this, args) as ArrayBufferView;
            guard.#overwrite(buf, ...region(buf, args[1], args[2]));
            return buf;
          };
      case 'randomFill':
        return (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            const cb = args.at(-1);
            if (typeof cb !== 'function') return Reflect.apply(orig, this, args);
            const buf = args[0] as ArrayBufferView;
            const offset = args.length > 2 ? args[1] : undefined;
            const [start, len] = region(buf, offset, args.length > 3 ? args[2] : undefined);
            const inner = [
              ...args.slice(0, -1),
              (err: Error | null, out: ArrayBufferView) => {
                if (!err) guard.#overwrite(out, start, len);
                (cb as (e: Error | null, b: ArrayBufferView) => void)(err, out);
              },
            ];
            return Reflect.apply(orig, this, inner);
          };
      case 'getRandomValues':
        return (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            const out = Reflect.apply(orig, this, args) as ArrayBufferView;
            guard.#overwrite(out);
            return out;
          };
      case 'randomUUID':
      case 'webcrypto.randomUUID':
        return (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            Reflect.apply(orig, this, args);
            return guard.#kernel().randomUUID();
          };
      case 'randomInt':
        return (orig) =>
          function (this: unknown, ...args: unknown[]): unknown {
            let [min, max, cb] = args;
            if (max === undefined || typeof max === 'function') {
              cb = max;
              max = min;
              min = 0;
            }
            if (cb !== undefined && typeof cb !== 'function') return Reflect.apply(orig, this, args);
            Reflect.apply(orig, this, [min, max]);
            const n = guard.#kernelInt(min as number, max as number);
            if (typeof cb === 'function') {
              process.nextTick(cb, null, n);
              return undefined;
            }
            return n;
          };
      default:
        return undefined;
    }
  }

  /** An integer in [min, max) from the kernel, by rejection like Node's own (48-bit draws). */
  #kernelInt(min: number, max: number): number {
    const range = max - min;
    const limit = 0xffff_ffff_ffff - (0xffff_ffff_ffff % range);
    for (;;) {
      const x = this.#kernel().randomBytes(6).readUIntBE(0, 6);
      if (x < limit) return min + (x % range);
    }
  }
}
