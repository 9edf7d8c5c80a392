// An opt-in heuristic for a restore of the daemon itself (CRIU, or a VM whose restore no device
// announces): a restored process gets a new time namespace, and its CLOCK_REALTIME jumps while
// CLOCK_MONOTONIC hides the downtime. It can be fooled (an administrator stepping the clock, NTP's first
// step, a suspended laptop), so it is never on by default: see docs/backends/timejump.md.

import fs from 'node:fs';
import type { BackendContext, BackendReport, RestoreBackend } from './backend.js';

export interface TimeSample {
  /** Target of /proc/self/ns/time ("time:[4026531834]"), or undefined where unsupported. */
  readonly ns: string | undefined;
  readonly realtimeMs: number;
  readonly monotonicMs: number;
}

export function sampleTime(): TimeSample {
  let ns: string | undefined;
  try {
    ns = fs.readlinkSync('/proc/self/ns/time');
  } catch {
    ns = undefined;
  }
  return { ns, realtimeMs: Date.now(), monotonicMs: performance.now() };
}

/** Compares each sample with the previous one; says why it looks like a restore, or undefined. */
export class TimeJumpDetector {
  readonly thresholdMs: number;
  #last: TimeSample | undefined;

  constructor(thresholdMs: number) {
    this.thresholdMs = thresholdMs;
  }

  sample(s: TimeSample): string | undefined {
    const prev = this.#last;
    this.#last = s;
    if (!prev) return undefined;
    if (prev.ns !== undefined && s.ns !== undefined && prev.ns !== s.ns) {
      return `time namespace changed (${prev.ns} -> ${s.ns})`;
    }
    const drift = s.realtimeMs - prev.realtimeMs - (s.monotonicMs - prev.monotonicMs);
    if (Math.abs(drift) >= this.thresholdMs) {
      return `realtime moved ${Math.round(drift)} ms against monotonic`;
    }
    return undefined;
  }
}

export const TIMEJUMP_INTERVAL_MS = 1000;
export const TIMEJUMP_THRESHOLD_MS = 2000;

export class TimeJumpBackend implements RestoreBackend {
  readonly name = 'timejump';
  readonly #detector = new TimeJumpDetector(TIMEJUMP_THRESHOLD_MS);
  #timer: NodeJS.Timeout | undefined;
  #status: BackendReport = { live: false, detail: 'not started' };

  status(): BackendReport {
    return this.#status;
  }

  start(ctx: BackendContext): void {
    const first = sampleTime();
    this.#detector.sample(first);
    this.#timer = setInterval(() => {
      const why = this.#detector.sample(sampleTime());
      if (why) ctx.restored(`timejump: ${why}`);
    }, TIMEJUMP_INTERVAL_MS);
    this.#timer.unref();
    this.#status = {
      live: true,
      detail:
        `heuristic: every ${TIMEJUMP_INTERVAL_MS} ms, a new time ` +
        `namespace${first.ns ? ` (now ${first.ns})` : ' (unsupported here)'} or realtime moving ` +
        `${TIMEJUMP_THRESHOLD_MS} ms against monotonic`,
    };
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
