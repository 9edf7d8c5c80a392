// The STATUS reply's JSON document (docs/PROTOCOL.md, "STATUS").

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
  readonly acked: number;
  readonly outdated: boolean;
  readonly outdatedMs: number | null;
  readonly connectedMs: number;
  /** Bytes this watcher has not read; a client that never reads grows it until it is disconnected. */
  readonly backlog: number;
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
  readonly hooks: { readonly dir: string | null; readonly running: number };
  /** Whether the native addon is in use, and why not. */
  readonly native: string;
  /** The daemon's memory in bytes: resident set and JS heap in use. */
  readonly memory: { readonly rss: number; readonly heapUsed: number };
  readonly list?: readonly WatcherStatus[];
}
