// The one place that reads a socket's descriptor out of Node's private `_handle`. Node has no public
// API for it, and the native broadcast and SO_PEERCRED (daemon, pid lock, client) all need it. If a
// Node upgrade renames the internals, this says so loudly once instead of silently turning
// notifications slow and peer credentials unverified.

import type net from 'node:net';
import type { Addon } from './addon.js';

interface PipeHandle {
  readonly fd?: unknown;
  readonly writeQueueSize?: unknown;
}

let warned = false;
let warn: (message: string) => void = (message) => process.emitWarning(message, 'SysgenidWarning');

/** Where the one warning about changed Node internals goes (the daemon's logger). */
export function onSocketInternalsChanged(sink: (message: string) => void): void {
  warn = sink;
}

function internalsChanged(what: string): void {
  if (warned) return;
  warned = true;
  warn(
    `Node ${process.version} no longer exposes ${what} on a socket's _handle: notifications fall back to ` +
      'stream writes and watcher credentials are not verified (report this as a sysgenid bug)',
  );
}

function handleOf(socket: net.Socket): PipeHandle | undefined {
  return (socket as unknown as { _handle?: PipeHandle | null })._handle ?? undefined;
}

/**
 * A number libuv keeps on the socket's handle, or -1 when there is no handle (closed, or not yet open).
 * A handle that exists but carries no such number means Node's internals changed: warned once.
 */
function handleNumber(socket: net.Socket, field: 'fd' | 'writeQueueSize'): number {
  const h = handleOf(socket);
  if (!h) return -1;
  const value = h[field];
  if (typeof value !== 'number') {
    internalsChanged(field);
    return -1;
  }
  return value;
}

/** The socket's descriptor, or -1 when it has none. */
export function socketFd(socket: net.Socket): number {
  return handleNumber(socket, 'fd');
}

/** Bytes libuv still holds for this socket (beyond the stream's own queue), or -1 if unknown. */
export function handleWriteQueue(socket: net.Socket): number {
  return handleNumber(socket, 'writeQueueSize');
}

/**
 * The pid and uid at the other end of a connected Unix socket (SO_PEERCRED), or undefined when the
 * addon is absent, the socket has no descriptor, or the peer is already gone.
 */
export function peerCredOf(native: Addon | undefined, socket: net.Socket): { pid: number; uid: number } | undefined {
  if (!native) return undefined;
  const fd = socketFd(socket);
  if (fd < 0) return undefined;
  try {
    return native.peerCred(fd);
  } catch {
    return undefined;
  }
}
