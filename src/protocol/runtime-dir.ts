// Where the daemon's sockets, page and state live. The daemon and every client resolve it the same
// way, so a client started with the same environment as the daemon finds it with no configuration.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { daemonListening } from './liveness.js';

export const WATCH_SOCKET = 'watch.sock';
export const CONTROL_SOCKET = 'control.sock';
export const PAGE_FILE = 'generation';
export const STATE_FILE = 'state';
export const PID_FILE = 'sysgenidd.pid';
export const PAGE_SIZE = 4096;

export interface RuntimePaths {
  readonly dir: string;
  readonly watch: string;
  readonly control: string;
  readonly page: string;
  readonly state: string;
  readonly pid: string;
}

/**
 * SYSGENID_DIR if set; else /run/sysgenid for root; else $XDG_RUNTIME_DIR/sysgenid; else a private
 * per-user directory in the system temp directory.
 */
export function resolveRuntimeDir(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? 0): string {
  if (env.SYSGENID_DIR) return path.resolve(env.SYSGENID_DIR);
  if (uid === 0) return '/run/sysgenid';
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'sysgenid');
  return path.join(os.tmpdir(), `sysgenid-${uid}`);
}

export const SYSTEM_DIR = '/run/sysgenid';

/**
 * Where a client looks: SYSGENID_DIR if set; else the system daemon's /run/sysgenid, for every user,
 * whenever a daemon listens there; else where the user's own daemon would run (resolveRuntimeDir).
 * Whatever is chosen is verified before it is used (verifyDaemonDir).
 */
export function resolveClientDir(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? 0): string {
  if (env.SYSGENID_DIR) return path.resolve(env.SYSGENID_DIR);
  if (uid !== 0 && systemDaemonListening()) return SYSTEM_DIR;
  return resolveRuntimeDir(env, uid);
}

function systemDaemonListening(): boolean {
  try {
    return fs.lstatSync(path.join(SYSTEM_DIR, WATCH_SOCKET)).isSocket() && daemonListening(SYSTEM_DIR) === true;
  } catch {
    return false;
  }
}

/** The client's paths: `dir`, or where resolveClientDir finds the daemon. */
export function clientPaths(dir?: string): RuntimePaths {
  return runtimePaths(dir ?? resolveClientDir());
}

export function runtimePaths(dir: string = resolveRuntimeDir()): RuntimePaths {
  return {
    dir,
    watch: path.join(dir, WATCH_SOCKET),
    control: path.join(dir, CONTROL_SOCKET),
    page: path.join(dir, PAGE_FILE),
    state: path.join(dir, STATE_FILE),
    pid: path.join(dir, PID_FILE),
  };
}
