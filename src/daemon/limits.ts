// Node has no getrlimit(); /proc/self/limits is the same number, and reading it once at start is cheap.

import fs from 'node:fs';

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start), or undefined. */
export function openFileLimit(): number | undefined {
  try {
    const text = fs.readFileSync('/proc/self/limits', 'utf8');
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    if (!m || m[1] === undefined) return undefined;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Descriptors this process holds now (Node itself uses a couple of dozen before any client). */
export function openDescriptors(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 32;
  }
}

/**
 * Connections to accept at once: what the descriptor limit leaves after the descriptors already open
 * and a reserve for hooks, re-opened files and the refusal path itself.
 */
export function connectionLimit(fileLimit: number | undefined, inUse: number = openDescriptors()): number {
  if (fileLimit === undefined) return 65536;
  const reserve = Math.min(256, Math.max(16, Math.floor(fileLimit / 8)));
  return Math.max(1, fileLimit - inUse - reserve);
}
