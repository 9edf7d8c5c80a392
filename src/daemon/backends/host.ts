// The host backend (opt-in): the hypervisor host tells the guest it was restored, with fresh entropy, and
// drives its lifecycle. Two channels, either or both:
//  - AF_VSOCK on a port (Firecracker, cloud-hypervisor, QEMU with vhost-vsock); only connections from
//    the host (CID 2) are kept. Node has no vsock sockets: the addon listens, accepts and hands over
//    the descriptor (src/native/fd-stream.ts reads and writes it);
//  - a virtio-serial port (QEMU, libvirt): only the host's end of the port can write to it.
// RESTORED <min> <entropy hex> adds the host's bytes to the kernel's pool (RNDADDENTROPY), forces the
// CRNG to reseed (RNDRESEEDCRNG), then bumps; the lifecycle requests (QUIESCE, UNQUIESCE, WAIT, STATUS)
// are asked of the daemon's own control socket, so they mean exactly what they mean there. The wire
// format is src/protocol/host.ts and docs/PROTOCOL.md; docs/backends/host.md has the recipes.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { quiesce, status, unquiesce, waitForWatchers } from '../../client/admin.js';
import { SysgenidError, isErrorCode } from '../../core/errors.js';
import type { Addon, FdWatch } from '../../native/addon.js';
import { POLL_READABLE } from '../../native/addon.js';
import { FdStream } from '../../native/fd-stream.js';
import { LineSplitter } from '../../protocol/framing.js';
import {
  DEFAULT_HOST_SERIAL_NAME,
  DEFAULT_HOST_VSOCK_PORT,
  HOST_FORWARDED,
  type HostRequest,
  MAX_HOST_LINE,
  type RestoredReply,
  VSOCK_CID_HOST,
  parseHostRequest,
} from '../../protocol/host.js';
import { encodeErr, encodeOk } from '../../protocol/messages.js';
import type { BackendContext, BackendReport, RestoreBackend } from './backend.js';

/** Requests one channel may have waiting behind the one being served. */
export const MAX_PENDING = 16;
/** vsock connections kept at once; a new one from the host replaces the oldest. */
export const MAX_VSOCK_SESSIONS = 8;
/** How often a missing virtio-serial port is looked for again. */
const SERIAL_RETRY_MS = 2000;

/** What a channel's requests are served with: the backend's context and the kernel reseed. */
export interface HostService {
  restored(channel: string, min: number, entropy: Buffer): RestoredReply;
  /** A lifecycle request, answered by the daemon's control socket; resolves to the reply line. */
  forward(req: Exclude<HostRequest, { verb: 'RESTORED' }>): Promise<string>;
  /** A bad request (rate-limited by the caller). */
  problem(channel: string, message: string): void;
}

/**
 * One channel to the host: bytes in, one reply line per request out, in order. A malformed or oversized
 * line gets its ERR and the channel stays usable; empty lines are ignored (a host resynchronises with one).
 */
export class HostSession {
  readonly channel: string;
  readonly #service: HostService;
  readonly #write: (line: string) => void;
  #splitter: LineSplitter;
  #queue: Pending[] = [];
  /** Requests in the queue (refusals not counted). */
  #waiting = 0;
  #busy = false;
  #closed = false;
  requests = 0;

  constructor(channel: string, service: HostService, write: (line: string) => void) {
    this.channel = channel;
    this.#service = service;
    this.#write = write;
    this.#splitter = this.#newSplitter();
  }

  #newSplitter(): LineSplitter {
    return new LineSplitter(MAX_HOST_LINE, {
      line: (text) => this.#line(text),
      overflow: () => this.#refuse(encodeErr('E2BIG', `request line longer than ${MAX_HOST_LINE} bytes`)),
    });
  }

  push(chunk: Buffer): void {
    if (!this.#closed) this.#splitter.push(chunk);
  }

  /** The host went away (a virtio-serial port lost its host): forget a partial line. */
  reset(): void {
    this.#splitter = this.#newSplitter();
  }

  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  #line(text: string): void {
    if (text.trim() === '') return;
    if (this.#waiting >= MAX_PENDING) {
      this.#refuse(encodeErr('ENOBUFS', `more than ${MAX_PENDING} requests waiting on this channel`));
      return;
    }
    this.#waiting++;
    this.#queue.push({ text });
    this.#kick();
  }

  /**
   * A line refused without being served still gets its reply in its place among the others; repeats of
   * one refusal share an entry, so a flood costs no memory.
   */
  #refuse(line: string): void {
    this.#service.problem(this.channel, line.trim());
    const last = this.#queue.at(-1);
    if (last && 'refused' in last && last.refused === line) last.count++;
    else this.#queue.push({ refused: line, count: 1 });
    this.#kick();
  }

  #kick(): void {
    if (!this.#busy) void this.#serve();
  }

  async #serve(): Promise<void> {
    this.#busy = true;
    while (this.#queue.length > 0 && !this.#closed) {
      const next = this.#queue.shift() as Pending;
      if ('refused' in next) {
        for (let i = 0; i < next.count; i++) this.#write(next.refused);
        continue;
      }
      this.#waiting--;
      this.requests++;
      let line: string;
      try {
        const req = parseHostRequest(next.text);
        if (req.verb === 'RESTORED') {
          try {
            line = encodeOk(JSON.stringify(this.#service.restored(this.channel, req.min, req.entropy)));
          } finally {
            req.entropy.fill(0);
          }
        } else {
          line = await this.#service.forward(req);
        }
      } catch (err) {
        line = errLine(err);
        this.#service.problem(this.channel, line.trim());
      }
      if (!this.#closed) this.#write(line);
    }
    this.#busy = false;
  }
}

type Pending = { text: string } | { refused: string; count: number };

function errLine(err: unknown): string {
  if (err instanceof SysgenidError) return encodeErr(err.code, err.message);
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && isErrorCode(code)) return encodeErr(code, (err as Error).message);
  return encodeErr('EIO', (err as Error).message ?? String(err));
}

/** The words for a reseedKernel() result. */
export function reseedProblem(rc: number): string | undefined {
  if (rc === 0) return undefined;
  const step = rc <= -1000 ? 'RNDRESEEDCRNG' : 'RNDADDENTROPY';
  const errno = rc <= -1000 ? -rc - 1000 : -rc;
  const name = Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
  return `${step} failed: ${name}${errno === os.constants.errno.EPERM ? ' (needs CAP_SYS_ADMIN)' : ''}`;
}

/** The kernel's pool reseeded with `entropy`: undefined, or why not. */
export function reseedKernel(native: Addon | undefined, entropy: Buffer): string | undefined {
  if (!native?.reseedKernel) {
    return 'the kernel pool could not be reseeded: the native addon is not loaded (pure-JS fallback has no ioctls)';
  }
  return reseedProblem(native.reseedKernel(entropy));
}

/** /dev/virtio-ports/NAME (udev's link), else the vportNpM whose sysfs name is NAME (no udev). */
export function findSerialPort(
  nameOrPath: string,
  sysfs = '/sys/class/virtio-ports',
  dev = '/dev',
): string | undefined {
  if (nameOrPath.includes('/')) return fs.existsSync(nameOrPath) ? nameOrPath : undefined;
  const link = path.join(dev, 'virtio-ports', nameOrPath);
  if (fs.existsSync(link)) return link;
  let entries: string[];
  try {
    entries = fs.readdirSync(sysfs);
  } catch {
    return undefined;
  }
  for (const e of entries) {
    try {
      if (fs.readFileSync(path.join(sysfs, e, 'name'), 'utf8').trim() === nameOrPath) {
        const node = path.join(dev, e);
        if (fs.existsSync(node)) return node;
      }
    } catch {
      // A port without a name.
    }
  }
  return undefined;
}

/**
 * config.vsockPort: the vsock port (default 7744; 0 = no vsock); config.serial: the virtio-serial port's
 * name or a device path (default org.sysgenid.host.0; '' = no serial).
 */
export class HostBackend implements RestoreBackend {
  readonly name = 'host';
  #ctx: BackendContext | undefined;
  #vsockPort = DEFAULT_HOST_VSOCK_PORT;
  #serialName = DEFAULT_HOST_SERIAL_NAME;
  #vsockFd: number | undefined;
  #vsockWatch: FdWatch | undefined;
  #vsockDetail = 'off';
  readonly #vsock: Array<{ stream: FdStream; session: HostSession }> = [];
  #refused = 0;
  #serial: { stream: FdStream; session: HostSession; device: string } | undefined;
  #serialDetail = 'off';
  #serialTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  #problemAt = 0;
  #problemsSuppressed = 0;
  /** Notices served, valid or not, for status and tests. */
  notices = 0;

  status(): BackendReport {
    const live = this.#vsockFd !== undefined || this.#serial !== undefined;
    return { live, detail: `vsock: ${this.#vsockDetail}; virtio-serial: ${this.#serialDetail}` };
  }

  start(ctx: BackendContext): void {
    this.#ctx = ctx;
    const port = ctx.config.vsockPort;
    if (typeof port === 'number') this.#vsockPort = port;
    if (typeof ctx.config.serial === 'string') this.#serialName = ctx.config.serial;
    if (this.#vsockPort > 0) this.#startVsock(ctx);
    else this.#vsockDetail = 'off (--host-vsock-port 0)';
    if (this.#serialName !== '') this.#openSerial();
    else this.#serialDetail = "off (--host-serial '')";
  }

  stop(): void {
    this.#stopped = true;
    this.#vsockWatch?.close();
    this.#vsockWatch = undefined;
    if (this.#vsockFd !== undefined) fs.closeSync(this.#vsockFd);
    this.#vsockFd = undefined;
    for (const s of this.#vsock.splice(0)) {
      s.session.close();
      s.stream.close();
    }
    clearTimeout(this.#serialTimer);
    this.#serial?.session.close();
    this.#serial?.stream.close();
    this.#serial = undefined;
  }

  readonly #service: HostService = {
    restored: (channel, min, entropy) => this.#restored(channel, min, entropy),
    forward: (req) => this.#forward(req),
    problem: (channel, message) => this.#problem(channel, message),
  };

  #restored(channel: string, min: number, entropy: Buffer): RestoredReply {
    const ctx = this.#ctx as BackendContext;
    this.notices++;
    // Reseed first: whatever re-adjusts to the new generation already draws from the new kernel state.
    const problem = reseedKernel(ctx.addon, entropy);
    const before = ctx.generation();
    let generation = before;
    let bumped = false;
    // A minimum the generation already reached: this restore was counted (e.g. by the VM Generation ID).
    if (min === 0 || before < min) {
      const next = ctx.restored(`host: restore notice over ${channel}`, undefined, min);
      if (next === undefined) {
        throw new SysgenidError(
          'EIO',
          `the generation could not move (see the daemon's log); kernel pool ` +
            (problem ? `not reseeded: ${problem}` : 'reseeded'),
        );
      }
      generation = next;
      bumped = true;
    }
    const what = problem
      ? `kernel CRNG NOT reseeded (${problem})`
      : `kernel CRNG reseeded with ${entropy.length} bytes`;
    ctx.log.info(
      `host: restore notice over ${channel}: ${what}; ` +
        (bumped ? `generation ${before} -> ${generation}` : `generation ${before} already at least ${min}, no bump`),
    );
    return {
      generation,
      bumped,
      reseeded: problem === undefined,
      ...(problem ? { reseedError: problem } : {}),
      entropyBytes: entropy.length,
    };
  }

  async #forward(req: Exclude<HostRequest, { verb: 'RESTORED' }>): Promise<string> {
    const dir = (this.#ctx as BackendContext).dir;
    switch (req.verb) {
      case 'PING':
        return encodeOk();
      case 'HELP':
        return encodeOk(`host requests: RESTORED <min> <hex> ${HOST_FORWARDED.join(' ')}; see docs/PROTOCOL.md`);
      case 'STATUS':
        return encodeOk(JSON.stringify(await status({ dir, list: !req.brief })));
      case 'WAIT':
        await waitForWatchers({ dir, timeoutMs: req.timeoutMs });
        return encodeOk();
      case 'QUIESCE':
        return encodeOk(JSON.stringify(await quiesce({ dir, timeoutMs: req.timeoutMs })));
      case 'UNQUIESCE':
        return encodeOk(JSON.stringify(await unquiesce({ dir, timeoutMs: req.timeoutMs })));
    }
  }

  #problem(channel: string, message: string): void {
    const now = Date.now();
    if (now - this.#problemAt < 1000) {
      this.#problemsSuppressed++;
      return;
    }
    const more = this.#problemsSuppressed ? ` (${this.#problemsSuppressed} more not logged)` : '';
    this.#problemAt = now;
    this.#problemsSuppressed = 0;
    this.#ctx?.log.warn(`host: ${channel}: ${message}${more}`);
  }

  // ------------------------------------------------------------------ vsock

  #startVsock(ctx: BackendContext): void {
    const native = ctx.addon;
    if (!native?.vsockListen || !native.vsockAccept) {
      this.#vsockDetail = `off: needs the native addon (Node has no AF_VSOCK sockets)`;
      return;
    }
    try {
      const fd = native.vsockListen(this.#vsockPort);
      this.#vsockFd = fd;
      this.#vsockWatch = native.watchFd(fd, POLL_READABLE, () => this.#acceptVsock(native, fd));
      this.#vsockDetail = `listening on port ${this.#vsockPort}, host (CID ${VSOCK_CID_HOST}) only`;
    } catch (err) {
      this.#vsockDetail = `off: cannot listen on port ${this.#vsockPort}: ${(err as Error).message}`;
    }
  }

  #acceptVsock(native: Addon, lfd: number): void {
    if (this.#stopped || this.#vsockFd !== lfd) return;
    for (;;) {
      let peer: { fd: number; cid: number; port: number } | null;
      try {
        peer = (native.vsockAccept as NonNullable<Addon['vsockAccept']>)(lfd);
      } catch (err) {
        this.#problem('vsock', `accept: ${(err as Error).message}`);
        return;
      }
      if (!peer) return;
      if (peer.cid !== VSOCK_CID_HOST) {
        fs.closeSync(peer.fd);
        this.#refused++;
        this.#problem(
          'vsock',
          `refused a connection from CID ${peer.cid} (only the host, CID ${VSOCK_CID_HOST}, ` +
            `is accepted; ${this.#refused} refused so far)`,
        );
        continue;
      }
      this.#hostConnection(native, peer.fd, `vsock (host port ${peer.port})`);
    }
  }

  /** A connection from the host: served until it ends; past the limit the oldest one goes. */
  #hostConnection(native: Addon | undefined, fd: number, channel: string): void {
    if (this.#vsock.length >= MAX_VSOCK_SESSIONS) {
      const oldest = this.#vsock.shift();
      oldest?.session.close();
      oldest?.stream.close();
    }
    let entry: { stream: FdStream; session: HostSession } | undefined;
    const stream = new FdStream(fd, native, {
      data: (chunk) => entry?.session.push(chunk),
      end: () => {
        entry?.session.close();
        const i = entry ? this.#vsock.indexOf(entry) : -1;
        if (i >= 0) this.#vsock.splice(i, 1);
      },
    });
    const session = new HostSession(channel, this.#service, (line) => stream.write(line));
    entry = { stream, session };
    this.#vsock.push(entry);
  }

  // ------------------------------------------------------------------ virtio-serial

  #openSerial(): void {
    if (this.#stopped) return;
    const ctx = this.#ctx as BackendContext;
    const device = findSerialPort(this.#serialName);
    if (!device) {
      this.#serialDetail = `waiting for the port ${this.#serialName} (no such device yet)`;
      this.#serialTimer = setTimeout(() => this.#openSerial(), SERIAL_RETRY_MS);
      this.#serialTimer.unref();
      return;
    }
    let fd: number;
    try {
      fd = fs.openSync(device, fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
    } catch (err) {
      this.#serialDetail = `cannot open ${device}: ${(err as Error).message}`;
      this.#serialTimer = setTimeout(() => this.#openSerial(), SERIAL_RETRY_MS);
      this.#serialTimer.unref();
      return;
    }
    const channel = `virtio-serial ${device}`;
    let session: HostSession | undefined;
    const stream = new FdStream(
      fd,
      ctx.addon,
      {
        data: (chunk) => {
          this.#setSerialHost(true, device);
          session?.push(chunk);
        },
        idle: (idle) => {
          if (idle) session?.reset();
          this.#setSerialHost(!idle, device);
        },
        end: (why) => {
          session?.close();
          this.#serial = undefined;
          this.#problem(channel, `closed (${why}); opening it again`);
          this.#serialTimer = setTimeout(() => this.#openSerial(), SERIAL_RETRY_MS);
          this.#serialTimer.unref();
        },
      },
      { port: true },
    );
    session = new HostSession(channel, this.#service, (line) => stream.write(line));
    this.#serial = { stream, session, device };
    this.#setSerialHost(false, device);
    ctx.log.info(`host: listening on ${channel}`);
  }

  #setSerialHost(host: boolean, device: string): void {
    const other = host ? 'host connected' : 'no host on the other end now';
    this.#serialDetail = `${this.#serialName} (${device}) open, ${other}`;
  }
}
