// The STATUS reply's JSON document (docs/PROTOCOL.md, "STATUS").

import type { CycleReportDocument, LifecycleState } from './cycle-report.js';

export interface BackendStatus {
  readonly name: string;
  readonly live: boolean;
  readonly detail: string;
}

export interface WatcherStatus {
  readonly id: number;
  readonly name: string | null;
  readonly pid: number | null;
  /** True when pid and uid come from SO_PEERCRED (native addon), false when the client declared them. */
  readonly pidVerified: boolean;
  readonly uid: number | null;
  /** The process's command name (/proc/PID/comm) when its pid is verified. */
  readonly command: string | null;
  readonly tracked: boolean;
  /** Excluded by an administrator (EXCLUDE): untracked, not a subscriber, and cannot become either again. */
  readonly excluded: boolean;
  readonly acked: number;
  readonly outdated: boolean;
  readonly outdatedMs: number | null;
  readonly connectedMs: number;
  /** Bytes this watcher has not read; a client that never reads grows it until it is disconnected. */
  readonly backlog: number;
  /**
   * Its lifecycle subscription, if any: priority, and whether it is quiesced now. The entry's `uid` is
   * the one its subscription counts under for the per-user cap.
   */
  readonly subscriber: { readonly priority: number; readonly quiesced: boolean } | null;
  /** What it last reported with PROBLEM (for example an after-restore hook that failed). */
  readonly problem: string | null;
}

export type LinkOutcome = 'created' | 'kept' | 'replaced' | 'refused';

/** What `--dev-link` did at start (src/daemon/dev-link.ts). */
export interface DevLinkStatus {
  readonly path: string;
  readonly page: string;
  readonly outcome: LinkOutcome;
  /** What the path held before, when it was not our link: its target, or null for a non-link. */
  readonly found: string | null;
  readonly detail: string;
  /** False when unprivileged processes cannot open the page through the link (AWS-LC then reports unsupported). */
  readonly readableByAll: boolean;
}

export interface LifecycleStatus {
  readonly state: LifecycleState;
  readonly sinceMs: number;
  /** Running with no outdated watcher: what `sysgenid ready` checks. */
  readonly ready: boolean;
  readonly subscribers: number;
  readonly autoResume: boolean;
  /** The quiesce or un-quiesce in progress, step by step. */
  readonly current: CycleReportDocument | null;
  /** While adjusting: whether subscribers are quiesced, the time left, and who has not acknowledged. */
  readonly adjusting: {
    readonly quiesced: boolean;
    readonly deadlineInMs: number | null;
    readonly outdated: ReadonlyArray<{ readonly id: number; readonly name: string | null }>;
  } | null;
  readonly lastQuiesce: CycleReportDocument | null;
  readonly lastUnquiesce: CycleReportDocument | null;
}

export interface DaemonStatus {
  readonly version: string;
  readonly protocol: number;
  readonly pid: number;
  readonly dir: string;
  readonly generation: number;
  readonly watchers: number;
  readonly tracked: number;
  readonly outdated: number;
  readonly connections: number;
  readonly maxConnections: number;
  readonly uptimeMs: number;
  readonly lastBump: {
    readonly generation: number;
    readonly source: string;
    readonly at: string;
    /** CLOCK_MONOTONIC (ms) when the page held the new value: comparable with other clocks of this machine. */
    readonly pageWrittenMonoMs: number;
  } | null;
  readonly backends: readonly BackendStatus[];
  readonly hooks: {
    readonly dir: string | null;
    readonly running: number;
    /** Whether the daemon is a child subreaper, so hooks that daemonize are still found and killed. */
    readonly subreaper: boolean;
  };
  /** Whether the native addon is in use, and why not. */
  readonly native: string;
  /** The daemon's memory in bytes: resident set and JS heap in use. */
  readonly memory: { readonly rss: number; readonly heapUsed: number };
  readonly lifecycle: LifecycleStatus;
  /** The outcome of `--dev-link`; null when it is off. */
  readonly devLink: DevLinkStatus | null;
  /** The counter's protections: the floor kept outside the runtime directory, and the largest BUMP minimum. */
  readonly counter: {
    /** The floor's file, or null when the daemon runs without one (floorProblem says why). */
    readonly floor: string | null;
    readonly floorProblem: string | null;
    readonly maxBumpMin: number;
  };
  /** Losses of the runtime directory while running, what is wrong now, and old pages still written. */
  readonly runtimeDir: { readonly lost: number; readonly problem: string | null; readonly orphanPages: number };
  readonly list?: readonly WatcherStatus[];
}
