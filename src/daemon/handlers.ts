// The daemon's request handlers: one per wire request, named after it, in the order of VERBS (the list
// HELP prints). Each turns a parsed request from one connection into a reply through the composed
// machine (src/core/machine.ts); docs/PROTOCOL.md is the description of each. A handler that throws a
// SysgenidError answers `ERR <code> <message>` (src/daemon/connection.ts).

import type { CoreMachine } from '../core/machine.js';
import type { WaitResult } from '../core/generation.js';
import { cycleReportDocument } from '../protocol/cycle-report.js';
import { VERBS, type Request, type Verb, encodeErr, encodeOk, sanitizeName } from '../protocol/messages.js';
import { SysgenidError } from '../protocol/errors.js';
import type { DaemonStatus } from '../protocol/status.js';
import { type Connection, type Reply, describeConnection, ok } from './connection.js';

/** What the handlers need from the daemon that owns them. */
export interface HandlerContext {
  readonly machine: CoreMachine;
  /** The control socket's path, named in EACCES replies. */
  readonly controlPath: string;
  status(withList: boolean): DaemonStatus;
  /** A forced update: the new generation (written to the page and the state first). */
  bump(min: number, source: string): number;
  /** A client reported a new problem: logged within the per-connection and per-user rate limits. */
  problemReported(conn: Connection, message: string): void;
  /** The lifecycle subscribers one uid may have, or undefined when it has no cap (root, the daemon's user). */
  subscriberCap(uid: number): number | undefined;
  /** The open connection with this id. */
  connection(id: number): Connection | undefined;
  /** Every open connection. */
  connections(): Iterable<Connection>;
  /** Close a connection at an administrator's request (logged with who asked). */
  disconnect(target: Connection, by: Connection): void;
  /** An administrator's action, for the log. */
  adminAction(message: string): void;
}

export type Handler<V extends Verb> = (conn: Connection, req: Extract<Request, { readonly verb: V }>) => Reply;
export type Handlers = { readonly [V in Verb]: Handler<V> };

const HELP = `OK requests: ${VERBS.join(' ')}; see docs/PROTOCOL.md\n`;

export function requestHandlers(ctx: HandlerContext): Handlers {
  const { machine } = ctx;
  const needsControl = (conn: Connection, what: string): Reply | undefined =>
    conn.kind === 'control'
      ? undefined
      : { line: encodeErr('EACCES', `${what} needs the control socket ${ctx.controlPath}`) };
  const report = (r: ReturnType<CoreMachine['quiesce']>): Reply =>
    r === undefined ? 'deferred' : ok(JSON.stringify(cycleReportDocument(r)));
  return {
    // NAME <name>: how status and lifecycle reports show this connection.
    NAME: (conn, req) => {
      conn.name = sanitizeName(req.name);
      machine.rename(conn.id, conn.name);
      return ok();
    },
    // PID <pid>: the client's own word for its process; a verified pid (SO_PEERCRED) is never replaced.
    PID: (conn, req) => {
      if (!conn.pidVerified) conn.pid = req.pid;
      return ok();
    },
    // READ [NONBLOCK]: the generation if this watcher is outdated; else EAGAIN, or block until the next one.
    READ: (conn, req) => {
      const gen = machine.read(conn.id, req.nonblock);
      return gen === undefined ? 'deferred' : ok(gen);
    },
    // ACK <generation>: this watcher has re-adjusted to exactly the current generation.
    ACK: (conn, req) => {
      machine.ack(conn.id, req.generation, Date.now());
      return ok(req.generation);
    },
    // TRACK ON|OFF: whether WAIT waits for this watcher.
    TRACK: (conn, req) => {
      machine.setTracking(conn.id, req.on, Date.now());
      return ok();
    },
    // WAIT [ms]: until no tracked watcher is outdated; EINTR when the caller itself is, ETIME after ms.
    WAIT: (conn, req) => {
      const result = machine.wait(conn.id);
      if (result !== undefined) return { line: waitLine(result, machine.outdated) };
      if (req.timeoutMs > 0) {
        conn.armWaitTimer(req.timeoutMs, () => {
          if (!machine.expireWait(conn.id)) return;
          conn.complete(encodeErr('ETIME', `${machine.outdated} watcher(s) still outdated after ${req.timeoutMs} ms`));
        });
      }
      return 'deferred';
    },
    // RESUME <generation>: a reconnecting client declares what it already handled.
    RESUME: (conn, req) => {
      machine.resume(conn.id, req.generation, Date.now());
      return ok(machine.generation);
    },
    // OBSERVE: this connection stops being a watcher (one-shot tools).
    OBSERVE: (conn) => {
      machine.observe(conn.id, Date.now());
      return ok();
    },
    // STATUS [BRIEF]: the status document as one line of JSON.
    // The list grows with the connection count, so it is built only when this user may hold one more
    // large reply (admission.ts); the brief document is small.
    STATUS: (_conn, req) =>
      req.brief ? ok(JSON.stringify(ctx.status(false))) : { large: () => encodeOk(JSON.stringify(ctx.status(true))) },
    // BUMP [min]: force a new generation (control socket).
    BUMP: (conn, req) =>
      needsControl(conn, 'forcing an update') ??
      ok(ctx.bump(req.min, `forced${conn.pid ? ` by pid ${conn.pid}` : ''}`)),
    // SUBSCRIBE [priority]: take part in the lifecycle; the reply is the lifecycle's state. A verified
    // uid counts against its cap; without the addon the uid is unknown and nothing is capped, as for
    // connections (admission.ts).
    SUBSCRIBE: (conn, req) => {
      const uid = conn.uid ?? null;
      const maxPerUid = uid === null ? undefined : ctx.subscriberCap(uid);
      return ok(machine.subscribe(conn.id, conn.name ?? null, req.priority, { uid, pid: conn.pid ?? null, maxPerUid }));
    },
    // UNSUBSCRIBE: leave the lifecycle; a step it was asked for counts as gone.
    UNSUBSCRIBE: (conn) => {
      machine.unsubscribe(conn.id, Date.now());
      return ok();
    },
    // QUIESCED <cycle>, UNQUIESCED <cycle>, FAILED <cycle> <message>: a subscriber's answer.
    QUIESCED: (conn, req) => {
      machine.answer(conn.id, 'quiesced', req.cycle, null, Date.now());
      return ok();
    },
    UNQUIESCED: (conn, req) => {
      machine.answer(conn.id, 'unquiesced', req.cycle, null, Date.now());
      return ok();
    },
    FAILED: (conn, req) => {
      machine.answer(conn.id, 'failed', req.cycle, req.message, Date.now());
      return ok();
    },
    // PROBLEM [message]: what the client reports as wrong (shown by status), or nothing any more.
    PROBLEM: (conn, req) => {
      const changed = (req.message || undefined) !== conn.problem;
      conn.problem = req.message || undefined;
      if (req.message && changed) ctx.problemReported(conn, req.message);
      return ok();
    },
    // QUIESCE [ms], UNQUIESCE [ms]: a lifecycle cycle (control socket); the reply is its report, at once
    // when nothing has to be asked, else when it ends.
    QUIESCE: (conn, req) => needsControl(conn, req.verb) ?? report(machine.quiesce(conn.id, req.timeoutMs, Date.now())),
    UNQUIESCE: (conn, req) =>
      needsControl(conn, req.verb) ?? report(machine.unquiesce(conn.id, req.timeoutMs, Date.now())),
    // EXCLUDE <id> | EXCLUDE UID <uid> (control socket): no longer tracked, waited for or asked by the
    // lifecycle; still connected and notified. OK <count of watchers excluded>.
    EXCLUDE: (conn, req) => {
      const denied = needsControl(conn, 'excluding a watcher');
      if (denied) return denied;
      const now = Date.now();
      const targets: Connection[] = [];
      if ('id' in req.target) {
        const target = ctx.connection(req.target.id);
        if (target === undefined || target.kind !== 'watch') {
          throw new SysgenidError('ENOENT', `no watcher with id ${req.target.id}`);
        }
        targets.push(target);
      } else {
        const { uid } = req.target;
        // A one-shot tool of that user (an observer, such as its `sysgenid status`) is not a watcher.
        for (const c of ctx.connections()) {
          if (c.kind === 'watch' && c.uid === uid && !machine.isObserver(c.id)) targets.push(c);
        }
      }
      for (const target of targets) {
        const already = machine.isExcluded(target.id);
        machine.exclude(target.id, now);
        if (!already) ctx.adminAction(`excluded ${describeWho(target)} (asked by ${describeWho(conn)})`);
      }
      return ok(targets.length);
    },
    // DISCONNECT <id> (control socket): close that connection; the log names who asked.
    DISCONNECT: (conn, req) => {
      const denied = needsControl(conn, 'disconnecting a client');
      if (denied) return denied;
      const target = ctx.connection(req.id);
      if (target === undefined) throw new SysgenidError('ENOENT', `no connection with id ${req.id}`);
      if (target === conn) throw new SysgenidError('EINVAL', 'DISCONNECT names this very connection; send QUIT');
      ctx.disconnect(target, conn);
      return ok();
    },
    // PING: liveness.
    PING: () => ok(),
    // HELP: the list of requests.
    HELP: () => ({ line: HELP }),
    // QUIT: OK, then the daemon closes the connection.
    QUIT: () => ({ line: encodeOk(), close: true }),
  };
}

/** A connection as an administrator's log line names it: id, name, uid and pid as far as known. */
export function describeWho(conn: Connection): string {
  const base =
    conn.kind === 'control'
      ? `control connection ${conn.id}${conn.pid ? ` pid ${conn.pid}` : ''}`
      : describeConnection(conn);
  return conn.uid === undefined ? base : `${base} uid ${conn.uid}`;
}

/** Hand a request to its handler. */
export function dispatch(handlers: Handlers, conn: Connection, req: Request): Reply {
  // TypeScript cannot correlate the verb with its handler's parameter; the table's type guarantees it.
  return (handlers[req.verb] as (conn: Connection, req: Request) => Reply)(conn, req);
}

/** The line that ends a WAIT. */
export function waitLine(result: WaitResult, outdated: number): string {
  if (result === 'OK') return encodeOk();
  if (result === 'EINTR') return encodeErr('EINTR', 'a new generation arrived; acknowledge it and wait again');
  return encodeErr('ETIME', `${outdated} watcher(s) still outdated`);
}
