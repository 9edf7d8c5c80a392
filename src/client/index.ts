// The sysgenid client library: import { connect, forceUpdate, ... } from 'sysgenid'.
export { Watcher, connect, type WatcherOptions, type WatcherEvents, type HandleOptions } from './watcher.js';
export {
  status,
  currentGeneration,
  forceUpdate,
  waitForWatchers,
  readNext,
  quiesce,
  unquiesce,
  exclude,
  disconnect,
  type ClientOptions,
} from './admin.js';
export {
  Lifecycle,
  type Resource,
  type ResumeInfo,
  type LifecycleOptions,
  type LifecycleEvents,
  type HookFailure,
} from './lifecycle.js';
// The wire's cycle report under the names this library has always exported.
export type {
  CycleReportDocument as CycleReport,
  CycleStepDocument as Step,
  LifecycleState,
  StepOutcome,
} from '../protocol/cycle-report.js';
export { Probe, openProbe, type ProbeOptions } from './probe.js';
export { SysgenidError, ERROR_CODES, type ErrorCode } from '../protocol/errors.js';
export { resolveRuntimeDir, runtimePaths, type RuntimePaths } from '../protocol/runtime-dir.js';
export type { DaemonStatus, WatcherStatus, BackendStatus, LifecycleStatus } from '../protocol/status.js';
export { U32_MAX } from '../core/generation.js';
export { SafeRandom, GenerationScoped, type SafeRandomOptions } from './snapshot-safe.js';
