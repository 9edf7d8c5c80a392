// The sysgenid client library: import { connect, forceUpdate, ... } from 'sysgenid'.
export { Watcher, connect, type WatcherOptions, type WatcherEvents } from './watcher.js';
export { status, forceUpdate, waitForWatchers, readNext, type ClientOptions } from './admin.js';
export { Probe, openProbe, type ProbeOptions } from './probe.js';
export { SysgenidError, ERROR_CODES, type ErrorCode } from '../protocol/errors.js';
export { resolveRuntimeDir, runtimePaths, type RuntimePaths } from '../protocol/runtime-dir.js';
export type { DaemonStatus, WatcherStatus, BackendStatus } from '../protocol/status.js';
export { U32_MAX } from '../core/generation.js';
export { SafeRandom, GenerationScoped, type SafeRandomOptions } from './snapshot-safe.js';
