// The GEN fan-out: one line to many watchers. With the addon's broadcast the hot loop is one native call,
// a send() per socket instead of a libuv stream write per socket; without it, or for a socket whose
// stream already has bytes queued, the line goes through the connection's stream (src/daemon/output.ts).

import os from 'node:os';
import type { Addon } from '../native/addon.js';
import type { Connection } from './connection.js';

const { EAGAIN } = os.constants.errno;

export class Broadcast {
  readonly #conns: ReadonlyMap<number, Connection>;
  readonly #send: Addon['broadcast'] | undefined;
  #fds = new Int32Array(0);
  #written = new Int32Array(0);

  constructor(conns: ReadonlyMap<number, Connection>, native: Addon | undefined) {
    this.#conns = conns;
    this.#send = native?.broadcast?.bind(native);
  }

  send(ids: readonly number[], line: Buffer): void {
    if (ids.length === 0) return;
    if (this.#send) this.#native(ids, line, this.#send);
    else for (const id of ids) this.#conns.get(id)?.write(line);
  }

  /**
   * A socket whose stream has bytes queued, or that does not take the whole line at once, goes through
   * its stream as before, so the order of bytes and the backlog bound still hold.
   */
  #native(ids: readonly number[], line: Buffer, send: NonNullable<Addon['broadcast']>): void {
    if (this.#fds.length < ids.length) {
      this.#fds = new Int32Array(ids.length * 2);
      this.#written = new Int32Array(ids.length * 2);
    }
    const fds = this.#fds;
    const direct: Connection[] = [];
    for (const id of ids) {
      const c = this.#conns.get(id);
      if (!c) continue;
      const fd = c.directFd();
      if (fd < 0) c.write(line);
      else {
        fds[direct.length] = fd;
        direct.push(c);
      }
    }
    if (direct.length === 0) return;
    const incomplete = send(fds.subarray(0, direct.length), line, this.#written);
    if (incomplete === 0) return;
    for (let i = 0; i < direct.length; i++) {
      const n = this.#written[i] as number;
      if (n === line.length) continue;
      // EAGAIN: the socket's buffer is full; queue it in the stream, where the backlog bound applies.
      // Another error (the peer went away): the stream's own close handling takes over.
      if (n >= 0) (direct[i] as Connection).write(line.subarray(n));
      else if (n === -EAGAIN) (direct[i] as Connection).write(line);
    }
  }
}
