// Who gets a connection and who gets to hold a large reply, per user. A local user who is not root is
// an attacker here: without these bounds one user could take every descriptor (root's `sysgenid bump`
// then failed with EMFILE) or leave thousands of STATUS replies unread (the daemon grew to 2.6 GB).
//
// Buckets: every control-socket connection shares one (the socket's mode already limits it to root and
// the control group), a watch-socket connection is counted under its uid from SO_PEERCRED, and without
// the addon (no SO_PEERCRED in Node) under one shared "unverified" bucket. Root and the daemon's own
// user are never capped per user; every bucket is capped by the pool it draws from.

export type Bucket = 'control' | 'unverified' | number;

export interface AdmissionLimits {
  /** Connections at once, both sockets (from the descriptor limit unless set). */
  readonly maxConnections: number;
  /** Of those, kept for control.sock: watch-socket clients can never take them. */
  readonly controlReserve: number;
  /** Watch-socket connections one user (uid) may hold; root and the daemon's user are exempt. */
  readonly perUser: number;
  /** Large replies (a STATUS with the watcher list) one bucket may have in flight at once. */
  readonly largeRepliesPerBucket: number;
  /**
   * Unread output (bytes waiting in the daemon) one bucket's connections may hold together: the per-user
   * cap times the per-connection bound. With the addon a uid cannot exceed it anyway; the "unverified"
   * bucket (no addon) can, since its connections are capped only by the watch pool.
   */
  readonly outputPerBucket: number;
}

/** The defaults for a descriptor-derived connection limit: see docs/reliability.md, "Threat model". */
export function defaultLimits(maxConnections: number, maxBacklog: number, perUser?: number): AdmissionLimits {
  const controlReserve = Math.min(64, Math.max(1, Math.floor(maxConnections / 16)));
  const pool = Math.max(1, maxConnections - controlReserve);
  const userCap = perUser ?? Math.min(1024, Math.max(1, Math.floor(pool / 4)));
  return {
    maxConnections,
    controlReserve,
    perUser: userCap,
    largeRepliesPerBucket: 2,
    outputPerBucket: userCap * maxBacklog,
  };
}

export type Refusal = { readonly code: 'EMFILE'; readonly message: string; readonly perUser: boolean };

export class Admission {
  readonly limits: AdmissionLimits;
  readonly #exempt: ReadonlySet<number>;
  readonly #open = new Map<Bucket, number>();
  #total = 0;
  #control = 0;
  readonly #slots = new Map<Bucket, number>();
  readonly #waiting = new Map<Bucket, Array<() => void>>();
  readonly #output = new Map<Bucket, number>();

  constructor(limits: AdmissionLimits, exemptUids: readonly number[]) {
    this.limits = limits;
    this.#exempt = new Set(exemptUids);
  }

  /** Connections open now, per bucket (for status). */
  openBy(bucket: Bucket): number {
    return this.#open.get(bucket) ?? 0;
  }

  /** Admit a connection into `bucket`, or say why not. Call release() when it closes. */
  admit(bucket: Bucket): Refusal | undefined {
    const { maxConnections, controlReserve, perUser } = this.limits;
    if (bucket === 'control') {
      if (this.#total >= maxConnections) return refusal(`the daemon is at its limit of ${maxConnections} connections`);
    } else {
      const watchPool = maxConnections - controlReserve;
      if (this.#total - this.#control >= watchPool || this.#total >= maxConnections) {
        return refusal(
          `the daemon is at its limit of ${watchPool} connections on watch.sock (${controlReserve} more are ` +
            `kept for control.sock)`,
        );
      }
      if (typeof bucket === 'number' && !this.#exempt.has(bucket) && this.openBy(bucket) >= perUser) {
        return { ...refusal(`uid ${bucket} already holds ${perUser} connections, the per-user limit`), perUser: true };
      }
    }
    this.#open.set(bucket, this.openBy(bucket) + 1);
    this.#total++;
    if (bucket === 'control') this.#control++;
    return undefined;
  }

  release(bucket: Bucket): void {
    const n = this.openBy(bucket) - 1;
    if (n > 0) this.#open.set(bucket, n);
    else this.#open.delete(bucket);
    this.#total--;
    if (bucket === 'control') this.#control--;
  }

  /** Unread output the bucket's connections hold in the daemon now, in bytes (for the log and tests). */
  outputBy(bucket: Bucket): number {
    return this.#output.get(bucket) ?? 0;
  }

  /**
   * A connection's unread output changed by `delta` bytes. True when it grew and the bucket is now past
   * its budget: the caller disconnects that connection. Root's, the daemon user's and the control
   * socket's buckets are never cut off for their total (each connection keeps its own bound).
   */
  chargeOutput(bucket: Bucket, delta: number): boolean {
    const total = this.outputBy(bucket) + delta;
    if (total > 0) this.#output.set(bucket, total);
    else this.#output.delete(bucket);
    if (delta <= 0 || total <= this.limits.outputPerBucket) return false;
    return bucket !== 'control' && !(typeof bucket === 'number' && this.#exempt.has(bucket));
  }

  /**
   * Ask for a large-reply slot: `start` runs now or, when the bucket's slots are taken, once one is
   * given back. Returns a cancel function for a connection that goes away while waiting.
   */
  largeReply(bucket: Bucket, start: () => void): () => void {
    const inUse = this.#slots.get(bucket) ?? 0;
    if (inUse < this.limits.largeRepliesPerBucket) {
      this.#slots.set(bucket, inUse + 1);
      start();
      return () => {};
    }
    const queue = this.#waiting.get(bucket) ?? [];
    queue.push(start);
    this.#waiting.set(bucket, queue);
    return () => {
      const q = this.#waiting.get(bucket);
      const i = q?.indexOf(start) ?? -1;
      if (q && i >= 0) q.splice(i, 1);
      if (q?.length === 0) this.#waiting.delete(bucket);
    };
  }

  /** A large reply finished (or its connection closed): the next one waiting in the bucket starts. */
  largeReplyDone(bucket: Bucket): void {
    const q = this.#waiting.get(bucket);
    const next = q?.shift();
    if (q?.length === 0) this.#waiting.delete(bucket);
    if (next) {
      next();
      return;
    }
    const n = (this.#slots.get(bucket) ?? 1) - 1;
    if (n > 0) this.#slots.set(bucket, n);
    else this.#slots.delete(bucket);
  }
}

/** How the log names a bucket. */
export function bucketName(bucket: Bucket): string {
  return typeof bucket === 'number' ? `uid ${bucket}` : `${bucket} connections`;
}

function refusal(message: string): Refusal {
  return { code: 'EMFILE', message: `${message}; try again later`, perUser: false };
}
