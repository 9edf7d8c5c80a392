// A byte stream over a raw non-blocking descriptor that Node cannot wrap in a net.Socket: an AF_VSOCK
// socket (libuv does not know the family) or a virtio-serial port (a character device). Readiness comes
// from the addon's watchFd; without the addon, or while a virtio-serial port has no host on the other
// end (it then reports hang-up without end), the descriptor is polled on a timer instead.

import fs from 'node:fs';
import os from 'node:os';
import { type Addon, type FdWatch, POLL_READABLE } from './addon.js';

const { EAGAIN, EINTR } = os.constants.errno;
const POLL_DISCONNECT = 4;

export interface FdStreamEvents {
  data(chunk: Buffer): void;
  /** The peer is gone (a socket's end of stream, or an error). Not called after close(). */
  end(why: string): void;
  /** A virtio-serial port lost (true) or found (false) its host; the stream stays open. */
  idle?(idle: boolean): void;
}

export interface FdStreamOptions {
  /** A port, not a socket: a read of 0 bytes means "no host connected now", not the end. */
  readonly port?: boolean;
  /** How often to look again while polling on a timer. */
  readonly pollMs?: number;
  /** Queued output beyond this is dropped (the host is not reading); default 64 KiB. */
  readonly maxQueued?: number;
}

export class FdStream {
  readonly fd: number;
  readonly #native: Addon | undefined;
  readonly #events: FdStreamEvents;
  readonly #port: boolean;
  readonly #pollMs: number;
  readonly #maxQueued: number;
  readonly #buf = Buffer.alloc(65536);
  #watch: FdWatch | undefined;
  #timer: NodeJS.Timeout | undefined;
  #queue: Buffer[] = [];
  #queued = 0;
  #idle = false;
  #closed = false;
  /** Bytes of output dropped because the peer did not read them. */
  dropped = 0;

  constructor(fd: number, native: Addon | undefined, events: FdStreamEvents, opts: FdStreamOptions = {}) {
    this.fd = fd;
    this.#native = native;
    this.#events = events;
    this.#port = opts.port === true;
    this.#pollMs = opts.pollMs ?? 100;
    this.#maxQueued = opts.maxQueued ?? 65536;
    this.#arm();
  }

  get closed(): boolean {
    return this.#closed;
  }

  write(data: string | Buffer): void {
    if (this.#closed) return;
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    if (this.#queued + buf.length > this.#maxQueued) {
      this.dropped += buf.length;
      return;
    }
    this.#queue.push(buf);
    this.#queued += buf.length;
    this.#flush();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#watch?.close();
    this.#watch = undefined;
    clearTimeout(this.#timer);
    try {
      fs.closeSync(this.fd);
    } catch {
      // Already gone.
    }
  }

  #arm(): void {
    if (this.#closed) return;
    if (this.#native && !this.#idle) {
      this.#watch = this.#native.watchFd(this.fd, POLL_READABLE | POLL_DISCONNECT, (status, events) => {
        this.#readable(status < 0 || (events & POLL_DISCONNECT) !== 0);
      });
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#readable(false);
    }, this.#pollMs);
  }

  /** Read everything there is; `hangup`: the poll said the other end is not there. */
  #readable(hangup: boolean): void {
    if (this.#closed) return;
    let got = false;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, this.#buf, 0, this.#buf.length, null);
      } catch (err) {
        const errno = -((err as NodeJS.ErrnoException).errno ?? 0);
        if (errno === EAGAIN) break;
        if (errno === EINTR) continue;
        this.#gone(`read: ${(err as Error).message}`);
        return;
      }
      if (n === 0) {
        if (!this.#port) {
          this.#gone('end of stream');
          return;
        }
        hangup = true;
        break;
      }
      got = true;
      this.#events.data(Buffer.from(this.#buf.subarray(0, n)));
      if (this.#closed) return;
    }
    this.#flush();
    if (this.#closed) return;
    // A port without its host reports readiness (hang-up) all the time: poll it on a timer until the
    // host is back, rather than spin.
    const idle = this.#port && hangup && !got;
    if (idle !== this.#idle) {
      this.#idle = idle;
      this.#events.idle?.(idle);
      this.#watch?.close();
      this.#watch = undefined;
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#arm();
    } else if (!this.#watch && !this.#timer) {
      this.#arm();
    }
  }

  #flush(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const head = this.#queue[0] as Buffer;
      let n: number;
      try {
        n = fs.writeSync(this.fd, head);
      } catch (err) {
        const errno = -((err as NodeJS.ErrnoException).errno ?? 0);
        if (errno === EINTR) continue;
        if (errno === EAGAIN) {
          // Retried on the next readiness or poll: replies are small, the bound keeps them so.
          if (!this.#timer && !this.#watch) this.#arm();
          else if (!this.#timer)
            this.#timer = setTimeout(() => {
              this.#timer = undefined;
              this.#flush();
            }, this.#pollMs);
          return;
        }
        if (this.#port) {
          // No host on the port: what it was told is lost, as on a closed connection.
          this.dropped += this.#queued;
          this.#queue = [];
          this.#queued = 0;
          return;
        }
        this.#gone(`write: ${(err as Error).message}`);
        return;
      }
      this.#queued -= n;
      if (n === head.length) this.#queue.shift();
      else this.#queue[0] = head.subarray(n);
    }
  }

  #gone(why: string): void {
    if (this.#closed) return;
    this.close();
    this.#events.end(why);
  }
}
