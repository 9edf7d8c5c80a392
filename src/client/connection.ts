// One connection to the daemon: connect (retrying a full accept queue), read the greeting, send
// requests and match replies in order, and hand unsolicited GEN lines to the owner.

import net from 'node:net';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_WAIT_FOR_DAEMON_MS } from '../defaults.js';
import { addon } from '../native/addon.js';
import { peerCredOf } from '../native/socket-fd.js';
import { SysgenidError } from '../protocol/errors.js';
import { LineSplitter } from '../protocol/framing.js';
import { type Request, encodeRequest, parseServerLine } from '../protocol/messages.js';
import { trustedUids, untrustedDaemonFile } from '../protocol/trust.js';

/** Status replies list every watcher, so the client accepts much longer lines than the daemon does. */
const MAX_REPLY_LINE = 64 * 1024 * 1024;

export type LifecycleRequest =
  | { readonly type: 'quiesce'; readonly cycle: number }
  | { readonly type: 'unquiesce'; readonly cycle: number; readonly generation: number };

export interface ConnectionEvents {
  generation(generation: number): void;
  /** QUIESCE / UNQUIESCE sent to a lifecycle subscriber. */
  lifecycle?(request: LifecycleRequest): void;
  close(error: SysgenidError | undefined): void;
}

interface Pending {
  resolve(value: string): void;
  reject(err: SysgenidError): void;
}

export interface ConnectOptions {
  /**
   * Give up retrying a full accept queue (EAGAIN), and waiting for the greeting (a daemon stopped with
   * SIGSTOP still accepts), after this long.
   */
  readonly timeoutMs?: number;
  /**
   * Believe only a daemon that runs as root or as this user, in a directory only they control (default
   * true): a socket someone else placed is refused with EPERM before anything is sent.
   */
  readonly verify?: boolean;
  /**
   * While no daemon listens yet (no socket, or a socket nobody accepts on: ENOENT, ECONNREFUSED), keep
   * trying for this long instead of failing at once, so a service started before the daemon at boot
   * waits for it. 0 (the default here) fails at once. The path is resolved again at every attempt.
   */
  readonly waitForDaemonMs?: number;
}

/** The wait option as milliseconds. */
export function waitForDaemonMs(option: boolean | number | undefined): number {
  if (option === true) return DEFAULT_WAIT_FOR_DAEMON_MS;
  if (option === false || option === undefined) return 0;
  if (!Number.isSafeInteger(option) || option < 0) {
    throw new SysgenidError('EINVAL', `waitForDaemon: true, false or a whole number of ms, got ${option}`);
  }
  return option;
}

/** Why a connect failed in a way that a daemon that is still starting would explain. */
function notUpYet(err: unknown): boolean {
  const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED';
}

/**
 * ProtocolConnection.open, retried while the daemon is not up yet (ENOENT, ECONNREFUSED) until
 * `waitForDaemonMs` has passed; `where` is called again at each attempt, so a client without an explicit
 * directory finds the system daemon whichever of the candidate directories it comes up in.
 */
export async function openWhenUp(
  where: () => string,
  events: ConnectionEvents,
  options: ConnectOptions = {},
): Promise<ProtocolConnection> {
  const waitMs = options.waitForDaemonMs ?? 0;
  const deadline = Date.now() + waitMs;
  let delay = 50;
  for (;;) {
    try {
      return await ProtocolConnection.open(where(), events, options);
    } catch (err) {
      if (!notUpYet(err) || Date.now() >= deadline) {
        if (waitMs > 0 && notUpYet(err)) {
          const e = err as SysgenidError;
          throw new SysgenidError(e.code, `${e.message}; waited ${waitMs} ms for it to start`);
        }
        throw err;
      }
    }
    await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
    delay = Math.min(delay * 2, 1000);
  }
}

function untrusted(path: string, why: string): SysgenidError {
  return new SysgenidError(
    'EPERM',
    `not using sysgenidd at ${path}: ${why} (a daemon of another user could answer ` +
      'anything; set SYSGENID_DIR to the directory of a daemon run by root or by you)',
  );
}

/** The uid at the other end of a connected Unix socket, when the addon can tell. */
function peerUid(socket: net.Socket): number | undefined {
  return peerCredOf(addon(), socket)?.uid;
}

function unreachable(path: string, err: NodeJS.ErrnoException): SysgenidError {
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return new SysgenidError(
      'EACCES',
      `permission denied on ${path}: the control socket is for root and its group (sysgenidd --group)`,
    );
  }
  const e = new SysgenidError(
    'ENOTCONN',
    `cannot reach sysgenidd at ${path}: ${err.code ?? err.message} ` +
      '(is the daemon running, and is SYSGENID_DIR the same as its own?)',
  );
  // The socket-level cause, for openWhenUp to tell "not started yet" from anything else.
  e.cause = err;
  return e;
}

function openSocket(path: string, deadline: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let delay = 2;
    const attempt = (): void => {
      const socket = net.createConnection({ path });
      const onError = (err: NodeJS.ErrnoException): void => {
        socket.destroy();
        // A Unix socket's connect() fails at once with EAGAIN when the daemon's accept queue is full.
        if (err.code === 'EAGAIN' && Date.now() < deadline) {
          setTimeout(attempt, delay * (0.5 + Math.random()));
          delay = Math.min(delay * 2, 200);
          return;
        }
        reject(unreachable(path, err));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(socket);
      });
    };
    attempt();
  });
}

export class ProtocolConnection {
  readonly path: string;
  /** Generation announced in the greeting. */
  readonly helloGeneration: number;
  readonly id: number;
  readonly #socket: net.Socket;
  readonly #pending: Pending[] = [];
  readonly #events: ConnectionEvents;
  #closed = false;

  private constructor(
    path: string,
    socket: net.Socket,
    hello: { generation: number; id: number },
    events: ConnectionEvents,
  ) {
    this.path = path;
    this.#socket = socket;
    this.helloGeneration = hello.generation;
    this.id = hello.id;
    this.#events = events;
  }

  static async open(path: string, events: ConnectionEvents, options: ConnectOptions = {}): Promise<ProtocolConnection> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const verify = options.verify !== false;
    if (verify) {
      const why = untrustedDaemonFile(path);
      if (why) throw untrusted(path, why);
    }
    const socket = await openSocket(path, Date.now() + timeoutMs);
    if (verify) {
      const uid = peerUid(socket);
      if (uid !== undefined && !trustedUids().has(uid)) {
        socket.destroy();
        throw untrusted(path, `the daemon runs as uid ${uid}`);
      }
    }
    return new Promise((resolve, reject) => {
      let conn: ProtocolConnection | undefined;
      const greeting = setTimeout(() => {
        fail(
          new SysgenidError(
            'ENOTCONN',
            `sysgenidd at ${path} accepted the connection but did not greet within ` +
              `${timeoutMs} ms (is it stopped or frozen?)`,
          ),
        );
      }, timeoutMs);
      const fail = (err: SysgenidError): void => {
        clearTimeout(greeting);
        socket.destroy();
        reject(err);
      };
      const splitter = new LineSplitter(MAX_REPLY_LINE, {
        line: (text) => {
          if (conn) {
            conn.#line(text);
            return;
          }
          let parsed;
          try {
            parsed = parseServerLine(text);
          } catch (err) {
            fail(err as SysgenidError);
            return;
          }
          if (parsed.type === 'err') {
            fail(new SysgenidError(parsed.code, parsed.message));
          } else if (parsed.type !== 'hello') {
            fail(
              new SysgenidError(
                'EPROTO',
                `expected a greeting from the daemon, got ${JSON.stringify(text.slice(0, 80))}`,
              ),
            );
          } else {
            clearTimeout(greeting);
            conn = new ProtocolConnection(path, socket, parsed, events);
            resolve(conn);
          }
        },
        overflow: () => {
          const err = new SysgenidError('EPROTO', 'reply line from the daemon too long');
          if (conn) conn.#fail(err);
          else fail(err);
        },
      });
      socket.on('data', (chunk: Buffer) => splitter.push(chunk));
      socket.on('error', () => {
        // 'close' follows
      });
      socket.on('close', () => {
        if (conn) conn.#onClose();
        else fail(new SysgenidError('ECONNRESET', `sysgenidd at ${path} closed the connection before greeting`));
      });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Send a request; resolves with the text after OK, rejects with the daemon's error code. */
  request(req: Request): Promise<string> {
    if (this.#closed) return Promise.reject(new SysgenidError('ECONNRESET', 'the connection to sysgenidd is closed'));
    return new Promise((resolve, reject) => {
      this.#pending.push({ resolve, reject });
      this.#socket.write(encodeRequest(req));
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  /** Unref the socket so that an idle watcher does not keep the process alive. */
  unref(): void {
    this.#socket.unref();
  }

  ref(): void {
    this.#socket.ref();
  }

  #line(text: string): void {
    let parsed;
    try {
      parsed = parseServerLine(text);
    } catch (err) {
      this.#fail(err as SysgenidError);
      return;
    }
    switch (parsed.type) {
      case 'gen':
        this.#events.generation(parsed.generation);
        return;
      case 'quiesce':
      case 'unquiesce':
        this.#events.lifecycle?.(parsed);
        return;
      case 'ok':
      case 'err': {
        const p = this.#pending.shift();
        if (!p) {
          // The daemon closes a connection it refuses with one ERR line of its own.
          if (parsed.type === 'err') this.#fail(new SysgenidError(parsed.code, parsed.message));
          return;
        }
        if (parsed.type === 'ok') p.resolve(parsed.value);
        else p.reject(new SysgenidError(parsed.code, parsed.message));
        return;
      }
      default:
        this.#fail(new SysgenidError('EPROTO', 'unexpected greeting in the middle of a connection'));
    }
  }

  #closeError: SysgenidError | undefined;

  #fail(err: SysgenidError): void {
    this.#closeError ??= err;
    this.#socket.destroy();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = this.#closeError ?? new SysgenidError('ECONNRESET', 'the connection to sysgenidd was lost');
    for (const p of this.#pending.splice(0)) p.reject(err);
    this.#events.close(this.#closeError);
  }
}
