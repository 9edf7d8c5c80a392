// The STATUS document (src/protocol/status.ts, docs/PROTOCOL.md "STATUS"): a read-only projection of the
// composed machine, the connections and the daemon's resources, built only when a client asks.

import fs from 'node:fs';
import type { CoreMachine } from '../core/machine.js';
import { addonState } from '../native/addon.js';
import { cycleReportDocument } from '../protocol/cycle-report.js';
import { PROTOCOL_VERSION } from '../protocol/messages.js';
import type { BackendStatus, DaemonStatus, DevLinkStatus, WatcherStatus } from '../protocol/status.js';
import { VERSION } from '../version.js';
import type { Connection } from './connection.js';
import type { HookRunner } from './hooks.js';

/** What the projection reads; the daemon hands in its own fields, nothing here is kept. */
export interface StatusSource {
  readonly dir: string;
  readonly core: CoreMachine;
  readonly conns: ReadonlyMap<number, Connection>;
  readonly maxConnections: number;
  readonly startedAt: number;
  readonly lastBump: DaemonStatus['lastBump'];
  readonly backends: readonly BackendStatus[];
  readonly hooks: HookRunner;
  readonly autoResume: boolean;
  readonly devLink: DevLinkStatus | null;
  readonly counter: DaemonStatus['counter'];
  readonly runtimeDir: DaemonStatus['runtimeDir'];
}

export function statusDocument(src: StatusSource, withList: boolean): DaemonStatus {
  const now = Date.now();
  const { core, conns } = src;
  const base: DaemonStatus = {
    version: VERSION,
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    dir: src.dir,
    generation: core.generation,
    watchers: core.watchers,
    tracked: core.tracked,
    outdated: core.outdated,
    connections: conns.size,
    maxConnections: src.maxConnections,
    uptimeMs: now - src.startedAt,
    lastBump: src.lastBump,
    backends: src.backends,
    hooks: { dir: src.hooks.dir ?? null, running: src.hooks.running, subreaper: src.hooks.subreaper },
    native: addonState(),
    memory: { rss: process.memoryUsage.rss(), heapUsed: process.memoryUsage().heapUsed },
    lifecycle: lifecycleStatus(src, now),
    devLink: src.devLink,
    counter: src.counter,
    runtimeDir: src.runtimeDir,
  };
  if (!withList) return base;
  const list: WatcherStatus[] = [];
  for (const w of core.list()) {
    const c = conns.get(w.id);
    list.push({
      id: w.id,
      name: c?.name ?? null,
      pid: c?.pid ?? null,
      pidVerified: c?.pidVerified ?? false,
      uid: c?.uid ?? null,
      command: c ? commandOf(c) : null,
      tracked: w.tracked,
      excluded: core.isExcluded(w.id),
      acked: w.acked,
      outdated: w.acked !== core.generation,
      outdatedMs: w.outdatedSince === undefined ? null : now - w.outdatedSince,
      connectedMs: c ? now - c.connectedAt : 0,
      backlog: c?.backlog ?? 0,
      subscriber: core.lifecycle.subscriber(w.id) ?? null,
      problem: c?.problem ?? null,
    });
  }
  return { ...base, list };
}

function lifecycleStatus(src: StatusSource, now: number): DaemonStatus['lifecycle'] {
  const { core, conns } = src;
  const lc = core.lifecycle;
  const current = lc.current && lc.current.endedAt === null ? cycleReportDocument(lc.current) : null;
  let late: Array<{ id: number; name: string | null }> = [];
  if (lc.state === 'adjusting') {
    late = [...core.list()]
      .filter((w) => w.tracked && w.acked !== core.generation)
      .map((w) => ({ id: w.id, name: conns.get(w.id)?.name ?? null }));
  }
  return {
    state: lc.state,
    sinceMs: now - lc.since,
    ready: lc.ready,
    subscribers: lc.order().length,
    autoResume: src.autoResume,
    current,
    adjusting:
      lc.state === 'adjusting'
        ? {
            quiesced: lc.adjustingQuiesced,
            deadlineInMs: lc.adjustDeadline === null ? null : lc.adjustDeadline - now,
            outdated: late,
          }
        : null,
    lastQuiesce: lc.last.quiesce ? cycleReportDocument(lc.last.quiesce) : null,
    lastUnquiesce: lc.last.unquiesce ? cycleReportDocument(lc.last.unquiesce) : null,
  };
}

// Read when a status first asks, not at accept: a connect storm should not cost a file read each.
function commandOf(conn: Connection): string | null {
  if (!conn.pidVerified) return null;
  if (conn.command === undefined) {
    try {
      conn.command = fs.readFileSync(`/proc/${conn.pid}/comm`, 'utf8').trim();
    } catch {
      conn.command = '';
    }
  }
  return conn.command || null;
}
