// A watcher: the library's view of one connection to the watch socket. It keeps what the application
// has handled, so that when the daemon restarts it reconnects (one loop, backoff with jitter), tells
// the daemon what it had handled (RESUME), and reports a generation that moved while it was away.

import { EventEmitter } from 'node:events';
import { isU32 } from '../core/generation.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, RETRY_MAX_MS, RETRY_MIN_MS } from '../defaults.js';
import { SysgenidError } from '../protocol/errors.js';
import { clientPaths } from '../protocol/runtime-dir.js';
import { type LifecycleRequest, type ProtocolConnection, openWhenUp, waitForDaemonMs } from './connection.js';

export interface WatcherOptions {
  /** Shown by `sysgenid status`. */
  readonly name?: string;
  /** Runtime directory; default: resolved like the daemon does (SYSGENID_DIR, ...). */
  readonly dir?: string;
  /** Counted by wait-for-watchers (default true). Probe-style users that adjust lazily turn it off. */
  readonly tracked?: boolean;
  /** Reconnect when the daemon goes away (default true). */
  readonly reconnect?: boolean;
  /** Give up the first connection after this long (a full accept queue is retried). Default 10 s. */
  readonly connectTimeoutMs?: number;
  /**
   * When no daemon listens yet, wait for one instead of failing with ENOTCONN: true waits up to
   * DEFAULT_WAIT_FOR_DAEMON_MS (60 s), a number up to that many ms. Default false for connect(), true
   * for Lifecycle.open() and `sysgenid watch`.
   */
  readonly waitForDaemon?: boolean | number;
  /** Let the process exit while the watcher is idle (default false). */
  readonly unref?: boolean;
  /**
   * Subscribe to the lifecycle (quiesce / un-quiesce) with this priority (-1000 to 1000; lower is
   * un-quiesced earlier and quiesced later). Usually through Lifecycle (src/client/lifecycle.ts).
   */
  readonly subscribe?: { readonly priority: number };
}

export interface WatcherEvents {
  /** A generation this watcher has not handled yet (emitted once per value). */
  generation: [generation: number];
  /** A lifecycle request (only with `subscribe`): answer it with answerLifecycle(). */
  lifecycle: [request: LifecycleRequest];
  /** Subscribed (again, after a reconnect); the daemon's lifecycle state at that moment. */
  subscribed: [state: string];
  /** Lost the daemon; reconnecting unless closed. */
  disconnect: [error: SysgenidError];
  /** Connected again; `generation` is the daemon's current generation. */
  reconnect: [generation: number];
  /** A handler passed to handle() failed; the generation stays unacknowledged. */
  error: [error: Error];
  /** handle() acknowledged this generation after its handler succeeded (after `attempts` tries). */
  handled: [generation: number, attempts: number];
  /** handle()'s handler failed for this generation; it runs again after `retryInMs` or at a newer one. */
  retry: [generation: number, error: Error, attempt: number, retryInMs: number];
}

export interface HandleOptions {
  /** The first retry of a failed handler comes after this long, then twice as long each time. Default 1 s. */
  readonly retryMinMs?: number;
  /** The longest wait between retries. Default 60 s. */
  readonly retryMaxMs?: number;
}

type Handler = (generation: number) => unknown;

interface GenerationWaiter {
  accepts(generation: number): boolean;
  resolve(generation: number): void;
  reject(err: SysgenidError): void;
}

const BACKOFF_MIN_MS = 25;
const BACKOFF_MAX_MS = 2000;

export class Watcher extends EventEmitter<WatcherEvents> {
  #path: string;
  readonly name: string | undefined;
  #conn: ProtocolConnection | undefined;
  #generation = 0;
  #handled = 0;
  #emitted = 0;
  #tracked: boolean;
  #closed = false;
  #reconnecting = false;
  readonly #opts: WatcherOptions;
  readonly #waiters = new Set<GenerationWaiter>();
  #problem = '';
  readonly #heldLifecycle: LifecycleRequest[] = [];

  private constructor(opts: WatcherOptions) {
    super();
    this.#path = clientPaths(opts.dir).watch;
    this.name = opts.name;
    this.#opts = opts;
    this.#tracked = opts.tracked ?? true;
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (event !== 'lifecycle' || this.#heldLifecycle.length === 0) return;
      setImmediate(() => {
        for (const req of this.#heldLifecycle.splice(0)) this.emit('lifecycle', req);
      });
    });
  }

  /** Connect a watcher. It is up to date with the generation current at connect. */
  static async connect(opts: WatcherOptions = {}): Promise<Watcher> {
    const waitMs = waitForDaemonMs(opts.waitForDaemon);
    const watcher = new Watcher(opts);
    try {
      await watcher.#open(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, true, waitMs);
    } catch (err) {
      watcher.close();
      throw err;
    }
    return watcher;
  }

  /** The watch socket this watcher uses (found again at each connect when no `dir` was given). */
  get path(): string {
    return this.#path;
  }

  /** The daemon's generation, as last heard. */
  get generation(): number {
    return this.#generation;
  }

  /** The last generation this watcher acknowledged (or found current when it connected). */
  get handled(): number {
    return this.#handled;
  }

  get outdated(): boolean {
    return this.#generation !== this.#handled;
  }

  get tracked(): boolean {
    return this.#tracked;
  }

  get connected(): boolean {
    return this.#conn !== undefined && !this.#conn.closed;
  }

  /** The next generation this watcher has not handled: at once if it is outdated, else at the next bump. */
  read(): Promise<number> {
    if (this.#closed) return Promise.reject(new SysgenidError('ECLOSED'));
    if (this.outdated) return Promise.resolve(this.#generation);
    return this.#waitFor((g) => g !== this.#handled);
  }

  /** Ask the daemon (not the local copy) whether there is a new generation; EAGAIN if not. */
  async readNonBlock(): Promise<number> {
    const value = await this.#live().request({ verb: 'READ', nonblock: true });
    return Number(value);
  }

  /**
   * Acknowledge a generation: it must be exactly the current one (EINVAL otherwise, and nothing
   * changes). If the daemon is unreachable the acknowledgement is kept and replayed on reconnect.
   */
  async ack(generation: number): Promise<void> {
    if (this.#closed) throw new SysgenidError('ECLOSED');
    if (!isU32(generation)) throw new SysgenidError('EINVAL', `${generation} is not a u32 generation`);
    const conn = this.#conn;
    if (!conn || conn.closed) {
      if (generation !== this.#generation)
        throw new SysgenidError('EINVAL', `acknowledged ${generation} but the generation is ${this.#generation}`);
      this.#handled = generation;
      return;
    }
    try {
      await conn.request({ verb: 'ACK', generation });
      this.#handled = generation;
    } catch (err) {
      if ((err as SysgenidError).code === 'ECONNRESET' && generation === this.#generation) {
        this.#handled = generation;
        return;
      }
      throw err;
    }
  }

  /** Answer the lifecycle request of `cycle`: done, or failed with a message the daemon reports. */
  async answerLifecycle(request: LifecycleRequest, error?: string): Promise<void> {
    const conn = this.#live();
    if (error !== undefined) await conn.request({ verb: 'FAILED', cycle: request.cycle, message: error || 'failed' });
    else await conn.request({ verb: request.type === 'quiesce' ? 'QUIESCED' : 'UNQUIESCED', cycle: request.cycle });
  }

  /** Tell the daemon what is wrong here (status shows it next to this watcher); '' clears it. */
  async reportProblem(message: string): Promise<void> {
    this.#problem = message;
    if (this.connected) await this.#live().request({ verb: 'PROBLEM', message });
  }

  /** Turn this watcher's tracking on or off; untracked watchers are notified but never waited for. */
  async setTracking(on: boolean): Promise<void> {
    if (this.#closed) throw new SysgenidError('ECLOSED');
    this.#tracked = on;
    if (this.connected) await this.#live().request({ verb: 'TRACK', on });
  }

  /**
   * Wait until no tracked watcher is outdated. 0 = no timeout. Rejects with ETIME on timeout and EINTR
   * when this watcher is, or becomes, outdated (handle the generation, acknowledge, wait again).
   */
  async waitForWatchers(timeoutMs = 0): Promise<void> {
    await this.#live().request({ verb: 'WAIT', timeoutMs });
  }

  /** Every new generation, once, in order. Acknowledge each with ack() when you have adjusted. */
  async *generations(): AsyncGenerator<number, void, undefined> {
    let last: number | undefined;
    while (!this.#closed) {
      let gen: number;
      try {
        gen =
          this.outdated && this.#generation !== last
            ? this.#generation
            : await this.#waitFor((g) => g !== this.#handled && g !== last);
      } catch (err) {
        if ((err as SysgenidError).code === 'ECLOSED') return;
        throw err;
      }
      last = gen;
      yield gen;
    }
  }

  [Symbol.asyncIterator](): AsyncGenerator<number, void, undefined> {
    return this.generations();
  }

  /**
   * Run `handler` for the latest new generation and acknowledge it when the handler resolves. Bursts
   * coalesce: generations that arrive while the handler runs are not run one by one, only the latest.
   * A failing handler leaves the generation unacknowledged (so wait-for-watchers names this watcher),
   * is reported through the 'error' and 'retry' events and to the daemon as this watcher's problem
   * (shown by `sysgenid status` and `sysgenid ready`), and is run again with backoff, or at once for a
   * newer generation. Success clears that problem (not one the application reported itself). Returns a
   * function that stops handling.
   */
  handle(handler: Handler, options: HandleOptions = {}): () => void {
    let stopped = false;
    const minMs = options.retryMinMs ?? RETRY_MIN_MS;
    const maxMs = options.retryMaxMs ?? RETRY_MAX_MS;
    const loop = async (): Promise<void> => {
      let failing: { generation: number; attempts: number; delay: number } | undefined;
      let reported: string | undefined;
      while (!this.#closed && !stopped) {
        let gen: number;
        if (failing && failing.generation === this.#generation) {
          // Retry after the backoff, or at once when a newer generation arrives.
          const newer = await this.#nextAfter(failing.generation, failing.delay);
          if (this.#closed || stopped) return;
          gen = newer ?? this.#generation;
        } else if (this.outdated) {
          gen = this.#generation;
        } else {
          try {
            await this.#waitFor((g) => g !== this.#handled);
          } catch {
            return;
          }
          continue;
        }
        if (failing && failing.generation !== gen) failing = undefined;
        const attempts = (failing?.attempts ?? 0) + 1;
        try {
          await handler(gen);
        } catch (err) {
          if (this.#closed || stopped) return;
          const error = err instanceof Error ? err : new Error(String(err));
          const delay = failing ? Math.min(failing.delay * 2, maxMs) : minMs;
          failing = { generation: gen, attempts, delay };
          reported = `generation ${gen}: ${error.message} (attempt ${attempts}, next in ${delay} ms)`.slice(0, 200);
          this.reportProblem(reported).catch(() => undefined);
          this.emit('retry', gen, error, attempts, delay);
          this.#emitError(error);
          continue;
        }
        // Only the problem this loop reported is cleared: one the application (or sysgenid/register)
        // reported itself stands until it clears it.
        if (reported !== undefined && this.#problem === reported) await this.reportProblem('').catch(() => undefined);
        reported = undefined;
        failing = undefined;
        try {
          await this.ack(gen);
        } catch (err) {
          // EINVAL: a newer generation arrived while the handler ran; it is handled next.
          const code = (err as SysgenidError).code;
          if (code !== 'EINVAL' && code !== 'ECLOSED') this.#emitError(err as Error);
          continue;
        }
        this.emit('handled', gen, attempts);
      }
    };
    loop().catch((err: Error) => this.#emitError(err));
    return () => {
      stopped = true;
    };
  }

  /** A generation other than `generation` within `ms`, or undefined at the end of that time. */
  #nextAfter(generation: number, ms: number): Promise<number | undefined> {
    if (this.#generation !== generation) return Promise.resolve(this.#generation);
    return new Promise((resolve) => {
      const waiter: GenerationWaiter = {
        accepts: (g) => g !== generation,
        resolve: (g) => {
          clearTimeout(timer);
          this.#waiters.delete(waiter);
          resolve(g);
        },
        reject: () => {
          clearTimeout(timer);
          resolve(undefined);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        resolve(undefined);
      }, ms);
      if (this.#opts.unref) timer.unref();
      this.#waiters.add(waiter);
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#conn?.close();
    const err = new SysgenidError('ECLOSED');
    for (const w of [...this.#waiters]) w.reject(err);
    this.#waiters.clear();
  }

  #waitFor(accepts: (generation: number) => boolean): Promise<number> {
    return new Promise((resolve, reject) => {
      const waiter: GenerationWaiter = {
        accepts,
        resolve: (g) => {
          this.#waiters.delete(waiter);
          resolve(g);
        },
        reject,
      };
      this.#waiters.add(waiter);
    });
  }

  #emitError(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else process.emitWarning(`sysgenid watcher: ${err.message}`, 'SysgenidWarning');
  }

  #live(): ProtocolConnection {
    if (this.#closed) throw new SysgenidError('ECLOSED');
    const conn = this.#conn;
    if (!conn || conn.closed) throw new SysgenidError('ENOTCONN', 'not connected to sysgenidd (reconnecting)');
    return conn;
  }

  /**
   * Open a connection bound to this watcher. GEN lines can arrive in the same read as the greeting,
   * before open() has returned; they are held and replayed so that none is lost.
   */
  async #open(timeoutMs: number, first: boolean, waitMs = 0): Promise<void> {
    // Read by the callbacks below before openWhenUp() has returned it.
    let conn: ProtocolConnection | undefined;
    const early: number[] = [];
    let closedEarly: { err: SysgenidError | undefined } | undefined;
    const where = (): string => (this.#path = clientPaths(this.#opts.dir).watch);
    // eslint-disable-next-line prefer-const -- the callbacks read it before openWhenUp() returns
    conn = await openWhenUp(
      where,
      {
        generation: (g) => {
          if (!conn) early.push(g);
          else if (this.#conn === conn) this.#onGeneration(g);
        },
        close: (err) => {
          if (!conn) closedEarly = { err };
          else if (this.#conn === conn) this.#onClose(err);
        },
        // Only sent after SUBSCRIBE, which is sent once the connection is this watcher's.
        lifecycle: (request) => {
          if (this.#conn !== conn) return;
          // Connect resolves after SUBSCRIBE, so a QUIESCE pushed at once would find nobody listening yet.
          if (this.listenerCount('lifecycle') > 0) this.emit('lifecycle', request);
          else this.#heldLifecycle.push(request);
        },
      },
      { timeoutMs, waitForDaemonMs: waitMs },
    );
    if (this.#closed) {
      conn.close();
      return;
    }
    this.#conn = conn;
    if (this.#opts.unref) conn.unref();
    if (first) {
      this.#generation = this.#handled = this.#emitted = conn.helloGeneration;
    } else {
      // What the daemon says now wins; a change that happened while away is reported here.
      this.#onGeneration(conn.helloGeneration);
    }
    for (const g of early) this.#onGeneration(g);
    if (closedEarly) {
      this.#conn = undefined;
      throw closedEarly.err ?? new SysgenidError('ECONNRESET', 'sysgenidd closed the connection at once');
    }
    const steps: Array<Promise<string>> = [conn.request({ verb: 'PID', pid: process.pid })];
    if (this.name) steps.push(conn.request({ verb: 'NAME', name: this.name }));
    if (!this.#tracked) steps.push(conn.request({ verb: 'TRACK', on: false }));
    if (this.#handled !== conn.helloGeneration) steps.push(conn.request({ verb: 'RESUME', generation: this.#handled }));
    if (this.#problem) steps.push(conn.request({ verb: 'PROBLEM', message: this.#problem }));
    const subscribe = this.#opts.subscribe;
    const subscribed = subscribe ? conn.request({ verb: 'SUBSCRIBE', priority: subscribe.priority }) : undefined;
    await Promise.all(steps);
    if (subscribed) this.emit('subscribed', await subscribed);
  }

  #onGeneration(gen: number): void {
    this.#generation = gen;
    if (gen === this.#handled) return;
    for (const w of [...this.#waiters]) if (w.accepts(gen)) w.resolve(gen);
    if (gen !== this.#emitted) {
      this.#emitted = gen;
      this.emit('generation', gen);
    }
  }

  #onClose(err: SysgenidError | undefined): void {
    this.#conn = undefined;
    if (this.#closed) return;
    this.emit('disconnect', err ?? new SysgenidError('ECONNRESET'));
    if (this.#opts.reconnect === false) {
      this.close();
      return;
    }
    if (!this.#reconnecting) void this.#reconnectLoop();
  }

  // One loop at a time; it ends only when connected (or closed), so a loss while it runs is retried.
  async #reconnectLoop(): Promise<void> {
    this.#reconnecting = true;
    let delay = BACKOFF_MIN_MS;
    try {
      while (!this.#closed) {
        await new Promise((r) => setTimeout(r, delay * (0.5 + Math.random())));
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
        if (this.#closed) return;
        try {
          await this.#open(1000, false);
        } catch {
          continue;
        }
        if (this.connected) {
          this.#reconnecting = false;
          this.emit('reconnect', this.#generation);
          return;
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }
}

export function connect(opts: WatcherOptions = {}): Promise<Watcher> {
  return Watcher.connect(opts);
}
