// Lifecycle hooks for Node applications, in the spirit of CRaC's Resource and Lambda SnapStart's
// runtime hooks, but for every process of the machine at once: the daemon quiesces the subscribers
// before a snapshot and un-quiesces them after, and in a restored copy only once everyone re-adjusted.
//
// One Lifecycle is one subscriber (one connection, one priority among the machine's processes); its
// resources are ordered among themselves the same way: beforeSnapshot in reverse order, afterRestore
// and onResume in order (priority ascending, then registration). Resources are held strongly: a
// registered resource lives until it is unregistered (CRaC's weak references lose them).

import { EventEmitter } from 'node:events';
import { DEFAULT_LIFECYCLE_HOOK_TIMEOUT_MS, DEFAULT_PRIORITY, RETRY_MAX_MS, RETRY_MIN_MS } from '../defaults.js';
import type { SysgenidError } from '../protocol/errors.js';
import type { LifecycleRequest } from './connection.js';
import { Watcher } from './watcher.js';

export interface ResumeInfo {
  /** The generation now. */
  readonly generation: number;
  /** True when the generation moved since this process quiesced: this is a restored copy (or a clone). */
  readonly restored: boolean;
}

export interface Resource {
  /** Shown in failure reports and `sysgenid status`. */
  readonly name: string;
  /** Order among this process's resources: lower un-quiesces earlier and quiesces later (default 0). */
  readonly priority?: number;
  /** Stop what must not be in flight during a snapshot: stop accepting, drain, close connections. */
  beforeSnapshot?(): unknown;
  /** A new generation: regenerate what a copy must not share (keys, ids). Runs before the acknowledgement. */
  afterRestore?(generation: number): unknown;
  /** The machine is un-quiesced (in the original after the snapshot, or in a copy once re-adjusted). */
  onResume?(info: ResumeInfo): unknown;
}

export interface LifecycleOptions {
  /** This process's name in `sysgenid status` (default: the process title). */
  readonly name?: string;
  /** This process's place among the machine's subscribers (-1000 to 1000, default 0). */
  readonly priority?: number;
  /** Runtime directory of the daemon (default: resolved like the daemon does). */
  readonly dir?: string;
  /** A hook still running after this long counts as failed, so one hung hook cannot stall the rest (default 10 s). */
  readonly hookTimeoutMs?: number;
  /** Give up the first connection after this long. Default 10 s. */
  readonly connectTimeoutMs?: number;
  /**
   * When no daemon listens yet, wait for one (default true: up to DEFAULT_WAIT_FOR_DAEMON_MS, 60 s; a
   * number of ms; false fails at once with ENOTCONN), so a service that starts before the daemon at
   * boot does not crash.
   */
  readonly waitForDaemon?: boolean | number;
  /**
   * A failed afterRestore is run again (every resource's, for the generation still current) after this
   * long, then twice as long each time up to 60 s. Default 1 s.
   */
  readonly retryMinMs?: number;
}

export interface LifecycleEvents {
  /** Every resource ran beforeSnapshot (failures listed). */
  quiesced: [failures: HookFailure[]];
  /** Every resource ran afterRestore for this generation, which is then acknowledged if none failed. */
  restored: [generation: number, failures: HookFailure[]];
  /** Every resource ran onResume. */
  resumed: [info: ResumeInfo, failures: HookFailure[]];
  error: [error: Error];
}

export interface HookFailure {
  readonly resource: string;
  readonly hook: 'beforeSnapshot' | 'afterRestore' | 'onResume';
  readonly error: Error;
}

interface Entry {
  readonly resource: Resource;
  readonly seq: number;
}

export class Lifecycle extends EventEmitter<LifecycleEvents> {
  readonly #watcher: Watcher;
  readonly #entries: Entry[] = [];
  readonly #hookTimeoutMs: number;
  readonly #retryMinMs: number;
  #retryTimer: NodeJS.Timeout | undefined;
  #seq = 0;
  #quiesced = false;
  #quiescedAt = 0;
  /** Lifecycle work runs one step at a time, in arrival order: a quiesce never overlaps a restore. */
  #chain: Promise<void> = Promise.resolve();

  private constructor(watcher: Watcher, hookTimeoutMs: number, retryMinMs: number) {
    super();
    this.#watcher = watcher;
    this.#hookTimeoutMs = hookTimeoutMs;
    this.#retryMinMs = retryMinMs;
    watcher.on('lifecycle', (req) => this.#enqueue(() => this.#onRequest(req)));
    watcher.on('generation', (g) => this.#enqueue(() => this.#onGeneration(g)));
    watcher.on('subscribed', (state) => this.#enqueue(() => this.#onSubscribed(state)));
    watcher.on('error', (err) => this.#error(err));
  }

  /** Connect and subscribe. Register resources before or after: every registered one takes part. */
  static async open(opts: LifecycleOptions = {}): Promise<Lifecycle> {
    const watcher = await Watcher.connect({
      name: opts.name ?? process.title,
      subscribe: { priority: opts.priority ?? DEFAULT_PRIORITY },
      ...(opts.dir ? { dir: opts.dir } : {}),
      ...(opts.connectTimeoutMs ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
      waitForDaemon: opts.waitForDaemon ?? true,
    });
    return new Lifecycle(
      watcher,
      opts.hookTimeoutMs ?? DEFAULT_LIFECYCLE_HOOK_TIMEOUT_MS,
      opts.retryMinMs ?? RETRY_MIN_MS,
    );
  }

  /** The underlying watcher (its generation, status name, and so on). */
  get watcher(): Watcher {
    return this.#watcher;
  }

  get generation(): number {
    return this.#watcher.generation;
  }

  /** Between the daemon's quiesce and its un-quiesce. */
  get quiesced(): boolean {
    return this.#quiesced;
  }

  /** Register a resource; returns the function that unregisters it. */
  register(resource: Resource): () => void {
    const entry = { resource, seq: this.#seq++ };
    this.#entries.push(entry);
    return () => {
      const i = this.#entries.indexOf(entry);
      if (i >= 0) this.#entries.splice(i, 1);
    };
  }

  close(): void {
    clearTimeout(this.#retryTimer);
    this.#watcher.close();
  }

  /** Resources in un-quiesce order; quiesce runs the reverse. */
  #ordered(): Resource[] {
    return [...this.#entries]
      .sort((a, b) => (a.resource.priority ?? 0) - (b.resource.priority ?? 0) || a.seq - b.seq)
      .map((e) => e.resource);
  }

  #enqueue(step: () => Promise<void>): void {
    this.#chain = this.#chain.then(step).catch((err: Error) => this.#error(err));
  }

  #error(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(`sysgenid lifecycle: ${err.message}`, 'SysgenidWarning');
  }

  /** Every resource's hook, in the given order; each is always called, failures are collected. */
  async #runAll(
    hook: HookFailure['hook'],
    resources: Resource[],
    call: (r: Resource) => unknown,
  ): Promise<HookFailure[]> {
    const failures: HookFailure[] = [];
    for (const r of resources) {
      if (typeof r[hook] !== 'function') continue;
      try {
        await this.#withTimeout(
          Promise.resolve().then(() => call(r)),
          `${r.name}.${hook}`,
        );
      } catch (err) {
        failures.push({ resource: r.name, hook, error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
    return failures;
  }

  #withTimeout(p: Promise<unknown>, what: string): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} did not finish within ${this.#hookTimeoutMs} ms`)),
        this.#hookTimeoutMs,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  async #onRequest(req: LifecycleRequest): Promise<void> {
    if (req.type === 'quiesce') {
      let failures: HookFailure[] = [];
      if (!this.#quiesced) {
        this.#quiesced = true;
        this.#quiescedAt = this.#watcher.generation;
        failures = await this.#runAll('beforeSnapshot', this.#ordered().reverse(), (r) => r.beforeSnapshot?.());
        this.emit('quiesced', failures);
      }
      await this.#answer(req, failures);
      return;
    }
    const failures = await this.#resume(req.generation);
    await this.#answer(req, failures);
  }

  async #resume(generation: number): Promise<HookFailure[]> {
    if (!this.#quiesced) return [];
    this.#quiesced = false;
    const info: ResumeInfo = { generation, restored: generation !== this.#quiescedAt };
    const failures = await this.#runAll('onResume', this.#ordered(), (r) => r.onResume?.(info));
    this.emit('resumed', info, failures);
    return failures;
  }

  async #answer(req: LifecycleRequest, failures: HookFailure[]): Promise<void> {
    try {
      await this.#watcher.answerLifecycle(req, failures.length > 0 ? describe(failures) : undefined);
    } catch (err) {
      // A lost connection: the daemon treats this subscriber as gone; the reconnect subscribes again.
      if ((err as SysgenidError).code !== 'ECONNRESET' && (err as SysgenidError).code !== 'ENOTCONN') throw err;
    }
  }

  async #onGeneration(generation: number, attempt = 1): Promise<void> {
    // A newer generation may have arrived while earlier work ran; only the current one matters.
    if (generation !== this.#watcher.generation) return;
    clearTimeout(this.#retryTimer);
    const failures = await this.#runAll('afterRestore', this.#ordered(), (r) => r.afterRestore?.(generation));
    this.emit('restored', generation, failures);
    if (failures.length > 0) {
      // Left unacknowledged, so the daemon keeps the machine from resuming and names this process; tried
      // again with backoff, and at once for a newer generation (its own step).
      await this.#watcher.reportProblem(describe(failures)).catch(() => undefined);
      this.#error(new Error(`generation ${generation} not acknowledged: ${describe(failures)}`));
      const delay = Math.min(this.#retryMinMs * 2 ** (attempt - 1), RETRY_MAX_MS);
      this.#retryTimer = setTimeout(() => this.#enqueue(() => this.#onGeneration(generation, attempt + 1)), delay);
      this.#retryTimer.unref();
      return;
    }
    await this.#watcher.reportProblem('').catch(() => undefined);
    try {
      await this.#watcher.ack(generation);
    } catch (err) {
      // EINVAL: a newer generation arrived meanwhile; its own step follows.
      if ((err as SysgenidError).code !== 'EINVAL' && (err as SysgenidError).code !== 'ECLOSED') throw err;
    }
  }

  async #onSubscribed(state: string): Promise<void> {
    // A daemon that restarted does not remember a quiesce: nobody will un-quiesce this process, so it
    // resumes by itself rather than stay stopped for ever.
    if (state === 'running' && this.#quiesced) await this.#resume(this.#watcher.generation);
  }
}

function describe(failures: HookFailure[]): string {
  return failures
    .map((f) => `${f.resource}.${f.hook}: ${f.error.message}`)
    .join('; ')
    .slice(0, 200);
}
