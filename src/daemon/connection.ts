// One client connection: framing, the request queue and the replies. Requests on a connection are
// answered strictly in order, so a blocking READ or WAIT holds back the replies behind it, the way a
// thread blocked in read() on the kernel device would. Every limit here protects the other clients.

import type net from 'node:net';
import type { Request } from '../protocol/messages.js';
import { LineSplitter } from '../protocol/framing.js';
import { MAX_REQUEST_LINE, encodeErr, encodeOk, parseRequest } from '../protocol/messages.js';
import { SysgenidError, type ErrorCode } from '../protocol/errors.js';
import type { Bucket } from './admission.js';
import { Output, type OutputOwner } from './output.js';

/** Requests queued behind a blocking one before the connection is closed as abusive. */
export const MAX_QUEUED_REQUESTS = 256;
/** How long a client may take to read a reply larger than its backlog bound before it is disconnected. */
export const LARGE_REPLY_DEADLINE_MS = 10_000;

export type ConnectionKind = 'watch' | 'control';

/** What a connection needs from the daemon; kept narrow so connections can be tested alone. */
export interface ConnectionHost {
  handle(conn: Connection, req: Request): Reply;
  closed(conn: Connection): void;
  /** The client's unread output passed the bound: it is disconnected, and the daemon says so. */
  tooSlow(conn: Connection, why: string): void;
  /** The connection's unread output changed by `delta` bytes; returns why it must go when its user's is too much. */
  chargeOutput(conn: Connection, delta: number): string | undefined;
  /** Run `start` when this connection's bucket may build and hold a large reply; returns a cancel. */
  largeReply(conn: Connection, start: () => void): () => void;
  /** The large reply started by largeReply() is out (or its connection closed). */
  largeReplyDone(conn: Connection): void;
}

/**
 * A reply now; `deferred` when the host will call complete() later; or a large reply, built only once
 * the host grants a slot for it (a STATUS listing every watcher), so unread ones cannot pile up.
 */
export type Reply = { readonly line: string; readonly close?: boolean } | { readonly large: () => string } | 'deferred';

type Queued = Request | SysgenidError;

export class Connection implements OutputOwner {
  readonly id: number;
  readonly kind: ConnectionKind;
  readonly socket: net.Socket;
  /** Whose limits this connection counts against (admission.ts). */
  readonly bucket: Bucket;
  readonly connectedAt = Date.now();
  name: string | undefined;
  /** Process id the client declared (PID request) or, with the addon, the verified one. */
  pid: number | undefined;
  /** From SO_PEERCRED (native addon): the kernel's word, not the client's. `command` is read on first use. */
  uid: number | undefined;
  command: string | undefined;
  pidVerified = false;
  /** What the client last reported with PROBLEM (a failed after-restore hook, say); shown by status. */
  problem: string | undefined;
  problemLoggedAt = 0;
  readonly #host: ConnectionHost;
  readonly #maxBacklog: number;
  readonly #out: Output;
  readonly #splitter: LineSplitter;
  #cancelLarge: (() => void) | undefined;
  readonly #queue: Queued[] = [];
  #deferred = false;
  #scheduled = false;
  #closed = false;
  #waitTimer: NodeJS.Timeout | undefined;

  constructor(
    id: number,
    kind: ConnectionKind,
    socket: net.Socket,
    host: ConnectionHost,
    maxBacklog: number,
    bucket: Bucket,
  ) {
    this.id = id;
    this.kind = kind;
    this.socket = socket;
    this.bucket = bucket;
    this.#host = host;
    this.#maxBacklog = maxBacklog;
    // The connection itself is its output's owner: no object and closure more per watcher.
    this.#out = new Output(socket, maxBacklog, this);
    this.#splitter = new LineSplitter(MAX_REQUEST_LINE, {
      line: (text) => this.#enqueue(this.#parse(text)),
      overflow: () =>
        this.#enqueue(new SysgenidError('E2BIG', `request line longer than ${MAX_REQUEST_LINE} bytes; skipped`)),
    });
    socket.on('data', (chunk: Buffer) => this.#splitter.push(chunk));
    socket.on('error', () => {
      // 'close' follows; a reset by the peer is not the daemon's problem.
    });
    socket.on('close', () => this.#onClose());
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** From this connection's Output: the client left too much unread, and is disconnected. */
  tooSlow(why: string): void {
    this.#host.tooSlow(this, why);
  }

  /** From this connection's Output: its held bytes changed, counted against its user. */
  charge(delta: number): string | undefined {
    return this.#host.chargeOutput(this, delta);
  }

  /** Bytes written to this client that it has not read yet (beyond what the kernel buffers). */
  get backlog(): number {
    return this.#out.backlog;
  }

  /**
   * The socket's descriptor when bytes may be sent on it directly (the native broadcast), that is when
   * nothing is queued for it; -1 otherwise, and then write() must be used to keep the order.
   */
  directFd(): number {
    if (this.#closed) return -1;
    return this.#out.directFd();
  }

  write(data: string | Buffer): void {
    if (this.#closed) return;
    this.#out.write(data);
  }

  /** Complete the blocking request in progress and carry on with the queue. */
  complete(line: string): void {
    if (!this.#deferred) return;
    if (this.#waitTimer) {
      clearTimeout(this.#waitTimer);
      this.#waitTimer = undefined;
    }
    this.#deferred = false;
    this.write(line);
    this.#schedule();
  }

  /** Arm the timeout of a pending WAIT. */
  armWaitTimer(ms: number, onExpire: () => void): void {
    this.#waitTimer = setTimeout(onExpire, ms);
  }

  destroy(): void {
    this.socket.destroy();
  }

  #parse(text: string): Queued {
    try {
      return parseRequest(text);
    } catch (err) {
      return err instanceof SysgenidError ? err : new SysgenidError('EPROTO', String(err));
    }
  }

  #enqueue(item: Queued): void {
    if (this.#closed) return;
    if (this.#queue.length >= MAX_QUEUED_REQUESTS) {
      this.#queue.length = 0;
      this.socket.end(encodeErr('ENOBUFS', `more than ${MAX_QUEUED_REQUESTS} requests queued; closing`));
      this.socket.destroySoon();
      return;
    }
    this.#queue.push(item);
    if (!this.#deferred) this.#drain();
  }

  // A completion may come from inside another connection's request (an ACK that releases a waiter);
  // running this queue later keeps the state machine free of re-entrant calls.
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    while (!this.#deferred && !this.#closed && this.#queue.length > 0) {
      const item = this.#queue.shift() as Queued;
      if (item instanceof SysgenidError) {
        this.write(encodeErr(item.code, item.message));
        continue;
      }
      let reply: Reply;
      try {
        reply = this.#host.handle(this, item);
      } catch (err) {
        const code: ErrorCode = err instanceof SysgenidError ? err.code : 'EIO';
        reply = { line: encodeErr(code, (err as Error).message) };
      }
      if (reply === 'deferred') {
        this.#deferred = true;
        return;
      }
      if ('large' in reply) {
        this.#deferred = true;
        this.#cancelLarge = this.#host.largeReply(this, () => this.#sendLarge(reply.large));
        return;
      }
      this.write(reply.line);
      if (reply.close) {
        this.socket.end();
        this.#queue.length = 0;
        return;
      }
    }
  }

  /** The host granted a large-reply slot: build the reply now and carry on with the queue. */
  #sendLarge(build: () => string): void {
    this.#cancelLarge = undefined;
    if (this.#closed) {
      this.#host.largeReplyDone(this);
      return;
    }
    let text: string;
    try {
      text = build();
    } catch (err) {
      const code: ErrorCode = err instanceof SysgenidError ? err.code : 'EIO';
      text = encodeErr(code, (err as Error).message);
    }
    if (text.length <= this.#maxBacklog) {
      this.write(text);
      this.#host.largeReplyDone(this);
      this.#deferred = false;
      this.#schedule();
      return;
    }
    // The next request waits until this reply is out: a second large reply pipelined behind it would
    // otherwise start streaming over it and never give its slot back.
    this.#out.writeLarge(text, LARGE_REPLY_DEADLINE_MS, () => {
      this.#host.largeReplyDone(this);
      this.#deferred = false;
      this.#schedule();
    });
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.length = 0;
    this.#cancelLarge?.();
    this.#cancelLarge = undefined;
    this.#out.close();
    if (this.#waitTimer) clearTimeout(this.#waitTimer);
    this.#host.closed(this);
  }
}

export const ok = (value?: string | number): Reply => ({ line: encodeOk(value) });

/** How the log names a connection. */
export function describeConnection(conn: Connection): string {
  return `watcher ${conn.id}${conn.name ? ` (${conn.name})` : ''}${conn.pid ? ` pid ${conn.pid}` : ''}`;
}
