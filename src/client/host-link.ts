// The hypervisor host's end of the host channel (src/protocol/host.ts): one connection to one guest's
// sysgenidd, through
//  - a Firecracker vsock Unix socket (`uds_path`): connect, send `CONNECT <port>\n`, Firecracker answers
//    `OK <host port>\n` and the stream is then the guest's vsock port (docs/vsock.md in Firecracker);
//  - a vsock CID (QEMU with vhost-vsock, cloud-hypervisor): AF_VSOCK through the native addon;
//  - a QEMU chardev socket bound to the guest's virtio-serial port (-chardev socket,...,server=on).
// Requests are answered in order, one line each; every request has a deadline.

import crypto from 'node:crypto';
import net from 'node:net';
import { SysgenidError, isErrorCode } from '../core/errors.js';
import { addon } from '../native/addon.js';
import { FdStream } from '../native/fd-stream.js';
import { DEFAULT_HOST_VSOCK_PORT, MIN_ENTROPY_BYTES, type RestoredReply, encodeRestored } from '../protocol/host.js';

export type HostTarget =
  | { readonly kind: 'firecracker'; readonly path: string; readonly port?: number }
  | { readonly kind: 'vsock'; readonly cid: number; readonly port?: number }
  | { readonly kind: 'serial'; readonly path: string };

export interface HostLinkOptions {
  /** Connecting (and Firecracker's handshake) may take this long; default 10 s. */
  readonly connectTimeoutMs?: number;
}

/** Added to a timeout the guest enforces, for its answer to arrive. */
const MARGIN_MS = 5_000;
const MAX_REPLY = 1 << 20;

export class HostLink {
  readonly #send: (data: string) => void;
  readonly #close: () => void;
  #buf = '';
  #waiters: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  #gone: Error | undefined;

  private constructor(send: (data: string) => void, close: () => void) {
    this.#send = send;
    this.#close = close;
  }

  static async open(target: HostTarget, opts: HostLinkOptions = {}): Promise<HostLink> {
    const timeoutMs = opts.connectTimeoutMs ?? 10_000;
    if (target.kind === 'vsock') return HostLink.#openVsock(target.cid, target.port ?? DEFAULT_HOST_VSOCK_PORT);
    const socket = await connectUnix(target.path, timeoutMs);
    if (target.kind === 'firecracker') {
      try {
        await firecrackerHandshake(socket, target.port ?? DEFAULT_HOST_VSOCK_PORT, timeoutMs);
      } catch (err) {
        socket.destroy();
        throw err;
      }
    }
    const link = new HostLink(
      (d) => socket.write(d),
      () => socket.destroy(),
    );
    socket.on('data', (d: Buffer) => link.received(d.toString('latin1')));
    socket.on('error', (err) => link.lost(err.message));
    socket.on('close', () => link.lost('the connection closed'));
    socket.resume();
    // A virtio-serial port is one stream for every host connection: end whatever partial line a previous
    // one left; the guest ignores the empty line.
    if (target.kind === 'serial') socket.write('\n');
    return link;
  }

  static #openVsock(cid: number, port: number): HostLink {
    const native = addon();
    if (!native?.vsockConnect) {
      throw new SysgenidError('ENOTCONN', 'vsock needs the native addon on the host (Node has no AF_VSOCK sockets)');
    }
    let fd: number;
    try {
      fd = native.vsockConnect(cid, port);
    } catch (err) {
      throw new SysgenidError('ENOTCONN', `cannot connect to vsock CID ${cid} port ${port}: ${(err as Error).message}`);
    }
    let link: HostLink | undefined;
    const stream = new FdStream(fd, native, {
      data: (d) => link?.received(d.toString('latin1')),
      end: (why) => link?.lost(why),
    });
    link = new HostLink(
      (d) => stream.write(d),
      () => stream.close(),
    );
    return link;
  }

  /** Send one request line; resolves to the reply's text after OK, rejects with the guest's ERR. */
  async request(line: string, deadlineMs: number): Promise<string> {
    if (this.#gone) throw this.#gone;
    const reply = new Promise<string>((resolve, reject) => this.#waiters.push({ resolve, reject }));
    this.#send(line.endsWith('\n') ? line : `${line}\n`);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new SysgenidError('ENOTCONN', `the guest did not answer ${line.split(' ')[0]} within ${deadlineMs} ms`),
          ),
        deadlineMs,
      );
    });
    try {
      const text = await Promise.race([reply, expired]);
      if (text === 'OK') return '';
      if (text.startsWith('OK ')) return text.slice(3);
      const m = /^ERR (\S+) ?(.*)$/.exec(text);
      if (m) {
        const code = isErrorCode(m[1] as string) ? (m[1] as never) : 'EPROTO';
        throw new SysgenidError(code, m[2] || m[1]);
      }
      throw new SysgenidError('EPROTO', `unexpected reply: ${text.slice(0, 200)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * RESTORED with `bytes` fresh bytes from this host's RNG. Resolves to the guest's answer (new
   * generation, whether its kernel CRNG was reseeded).
   */
  async restored(min: number, bytes = MIN_ENTROPY_BYTES * 2, deadlineMs = 30_000): Promise<RestoredReply> {
    const entropy = crypto.randomBytes(bytes);
    try {
      return JSON.parse(await this.request(encodeRestored(min, entropy), deadlineMs)) as RestoredReply;
    } finally {
      entropy.fill(0);
    }
  }

  /** WAIT: resolves once no tracked watcher in the guest is outdated; ETIME after timeoutMs. */
  async wait(timeoutMs: number): Promise<void> {
    await this.request(`WAIT ${timeoutMs}`, timeoutMs + MARGIN_MS);
  }

  close(): void {
    this.lost('closed');
    this.#close();
  }

  /** Bytes from the guest (the transport's callback). */
  received(text: string): void {
    this.#buf += text;
    if (this.#buf.length > MAX_REPLY) {
      this.lost('a reply longer than 1 MiB');
      this.#close();
      return;
    }
    let nl: number;
    while ((nl = this.#buf.indexOf('\n')) >= 0) {
      const line = this.#buf.slice(0, nl).replace(/\r$/, '');
      this.#buf = this.#buf.slice(nl + 1);
      this.#waiters.shift()?.resolve(line);
    }
  }

  /** The transport is gone (its callback): every pending request fails. */
  lost(why: string): void {
    if (this.#gone) return;
    this.#gone = new SysgenidError('ECONNRESET', `the connection to the guest was lost: ${why}`);
    for (const w of this.#waiters.splice(0)) w.reject(this.#gone);
  }
}

/** The deadline of a request the guest bounds by `timeoutMs` (twice: a failed quiesce un-quiesces too). */
export function lifecycleDeadline(timeoutMs: number): number {
  return 2 * timeoutMs + MARGIN_MS;
}

function connectUnix(path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new SysgenidError('ENOTCONN', `cannot connect to ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(new SysgenidError('ENOTCONN', `cannot connect to ${path}: ${err.message}`));
    });
  });
}

/**
 * Firecracker's host-initiated vsock connection: `CONNECT <port>\n`, answered `OK <host port>\n`; on
 * failure Firecracker closes the connection without a word.
 */
export function firecrackerHandshake(socket: net.Socket, port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let got = '';
    const done = (err: Error | undefined, hostPort?: number): void => {
      clearTimeout(timer);
      // Paused until the link listens, so that nothing the guest sends is emitted to nobody.
      socket.pause();
      socket.off('data', onData);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(hostPort as number);
    };
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      const nl = got.indexOf('\n');
      if (nl < 0) {
        if (got.length > 64) done(new SysgenidError('EPROTO', 'Firecracker handshake: no answer line'));
        return;
      }
      const m = /^OK (\d+)$/.exec(got.slice(0, nl));
      if (!m) {
        const answer = JSON.stringify(got.slice(0, nl));
        done(new SysgenidError('EPROTO', `Firecracker handshake: unexpected answer ${answer}`));
        return;
      }
      // Whatever came after the answer line is the guest's: give it back to the stream.
      const rest = got.slice(nl + 1);
      if (rest) socket.unshift(Buffer.from(rest, 'latin1'));
      done(undefined, Number(m[1]));
    };
    const onClose = (): void =>
      done(
        new SysgenidError(
          'ENOTCONN',
          `Firecracker closed the connection after CONNECT ${port}: nothing listens on that port in the guest`,
        ),
      );
    const timer = setTimeout(
      () => done(new SysgenidError('ENOTCONN', `Firecracker did not answer CONNECT ${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.write(`CONNECT ${port}\n`);
  });
}
