// One client's output, bounded in bytes and in the memory that holds them. Once the kernel's socket
// buffer is full, what comes is appended to one buffer and handed to the stream when it drains, so a
// client that never reads costs its unread bytes and not an object per notification (1000 such clients
// over 5000 bumps held 280 MB of heap for 42 MB of bytes when every line was its own stream write). A
// reply too large for the bound (a STATUS listing every watcher) is streamed in chunks as the client
// reads, with a deadline, and only while the daemon has granted it one of a few slots (admission.ts), so
// unread large replies cannot add up to memory that grows with the square of the connection count.

import type net from 'node:net';
import { handleWriteQueue, socketFd } from '../native/socket-fd.js';

/** Chunk of a large reply handed to the stream at once. */
export const LARGE_CHUNK = 64 * 1024;

export interface OutputOwner {
  /** The unread output passed the bound, or a large reply was not read in time. */
  tooSlow(why: string): void;
  /**
   * The bytes this output holds changed by `delta`: counted against the client's user (admission.ts).
   * Returns why the client must go when its user's clients together hold too much, else undefined.
   */
  charge(delta: number): string | undefined;
}

interface LargeReply {
  /** What was queued before the reply: it goes out first. */
  head: Buffer | undefined;
  readonly text: Buffer;
  offset: number;
  readonly done: () => void;
  readonly timer: NodeJS.Timeout;
}

export class Output {
  readonly #socket: net.Socket;
  readonly #maxBacklog: number;
  readonly #owner: OutputOwner;
  #inflight = 0;
  #buf: Buffer | undefined;
  #len = 0;
  #large: LargeReply | undefined;
  #dead = false;
  /** What the owner was last told this output holds (queued lines and the stream; not a large reply). */
  #charged = 0;
  readonly #written = (err?: Error | null): void => this.#onWritten(err);

  constructor(socket: net.Socket, maxBacklog: number, owner: OutputOwner) {
    this.#socket = socket;
    this.#maxBacklog = maxBacklog;
    this.#owner = owner;
  }

  /** Bytes written to this client that it has not read yet (beyond what the kernel buffers). */
  get backlog(): number {
    const l = this.#large;
    const large = l ? l.text.length - l.offset + (l.head?.length ?? 0) : 0;
    return this.#socket.writableLength + this.#len + large;
  }

  /**
   * The descriptor when bytes may be sent on it directly (the native broadcast): only while nothing at
   * all is queued, so that the order of bytes holds; -1 otherwise.
   */
  directFd(): number {
    // A write whose callback is still pending but which the kernel took whole does not affect the order.
    if (this.#dead || this.#len > 0 || this.#large) return -1;
    if (this.#socket.destroyed || this.#socket.writableLength > 0) return -1;
    if (handleWriteQueue(this.#socket) !== 0) return -1;
    return socketFd(this.#socket);
  }

  write(data: string | Buffer): void {
    if (this.#dead || this.#socket.destroyed) return;
    // Straight to the socket while nothing waits and the stream is empty (the kernel took every earlier
    // write at once; only their callbacks are pending): a burst to a reading client is never held back.
    if (this.#len === 0 && !this.#large && this.#socket.writableLength === 0) {
      this.#send(typeof data === 'string' ? Buffer.from(data) : data);
    } else {
      this.#append(data);
    }
    // A large reply in progress is bounded by its own deadline and holds at most one chunk in the stream.
    const pending = this.#len + (this.#large ? 0 : this.#socket.writableLength);
    if (pending > this.#maxBacklog) this.#fail(`it left ${this.backlog} bytes unread (limit ${this.#maxBacklog})`);
    else this.#account();
  }

  /**
   * Send a reply larger than the bound, chunk by chunk as the client reads. `done` runs once when it
   * has been handed to the kernel or the connection ended, whichever comes first.
   */
  writeLarge(text: string, deadlineMs: number, done: () => void): void {
    if (this.#dead || this.#socket.destroyed) {
      done();
      return;
    }
    const timer = setTimeout(
      () => this.#fail(`it did not read a ${text.length}-byte reply within ${deadlineMs} ms`),
      deadlineMs,
    );
    // Whatever was queued before this reply goes first; what comes after it waits in the buffer.
    const head = this.#len > 0 ? (this.#buf as Buffer).subarray(0, this.#len) : undefined;
    this.#buf = undefined;
    this.#len = 0;
    this.#large = { head, text: Buffer.from(text), offset: 0, done, timer };
    if (this.#inflight === 0) this.#pump();
  }

  /** The connection is gone: drop what is queued and give back a large reply's slot. */
  close(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#buf = undefined;
    this.#len = 0;
    if (this.#charged !== 0) {
      this.#owner.charge(-this.#charged);
      this.#charged = 0;
    }
    this.#endLarge();
  }

  /** Tell the owner what this output holds now; the client goes if its user's total is too much. */
  #account(): void {
    const held = this.#len + this.#socket.writableLength;
    const delta = held - this.#charged;
    if (delta === 0) return;
    this.#charged = held;
    const over = this.#owner.charge(delta);
    if (over) this.#fail(over);
  }

  #fail(why: string): void {
    if (this.#dead) return;
    this.#owner.tooSlow(why);
    this.close();
    this.#socket.destroy();
  }

  #send(data: Buffer): void {
    this.#inflight++;
    this.#socket.write(data, this.#written);
  }

  #append(data: string | Buffer): void {
    const n = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    let buf = this.#buf;
    if (!buf || buf.length - this.#len < n) {
      const grown = Buffer.allocUnsafe(Math.max(256, (this.#len + n) * 2));
      if (buf) buf.copy(grown, 0, 0, this.#len);
      buf = this.#buf = grown;
    }
    this.#len += typeof data === 'string' ? buf.write(data, this.#len) : data.copy(buf, this.#len);
  }

  #onWritten(err?: Error | null): void {
    this.#inflight--;
    if (err || this.#dead) return;
    if (this.#inflight === 0) this.#pump();
    this.#account();
  }

  /** The stream took everything: send what waited, in order (the large reply, then later lines). */
  #pump(): void {
    const large = this.#large;
    if (large) {
      if (large.head) {
        const head = large.head;
        large.head = undefined;
        this.#send(head);
        return;
      }
      if (large.offset < large.text.length) {
        const end = Math.min(large.text.length, large.offset + LARGE_CHUNK);
        const chunk = large.text.subarray(large.offset, end);
        large.offset = end;
        this.#send(chunk);
        return;
      }
      this.#endLarge();
      return;
    }
    if (this.#len > 0) {
      // The stream keeps a reference until the bytes are out, so the buffer is handed over, not reused.
      const out = (this.#buf as Buffer).subarray(0, this.#len);
      this.#buf = undefined;
      this.#len = 0;
      this.#send(out);
    }
  }

  #endLarge(): void {
    const large = this.#large;
    if (!large) return;
    this.#large = undefined;
    clearTimeout(large.timer);
    large.done();
    // Lines that arrived while the large reply was going out follow it.
    if (!this.#dead && this.#inflight === 0 && this.#len > 0) this.#pump();
  }
}
