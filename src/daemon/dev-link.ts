// AWS-LC maps /dev/sysgenid (a build-time path) at its first random-number call. Linking it to the page
// gives it the counter, but a path that exists is never replaced unless it is provably stale: a
// symbolic link (owned by root or the daemon's user) to a page (a file named `generation`) that is gone
// or that no daemon serves any more. Anything else may be a real device, or something an administrator
// put there on purpose.
// The outcome is kept for the status document (devLinkStatus).

import fs from 'node:fs';
import path from 'node:path';
import { daemonListening } from '../protocol/liveness.js';
import { PAGE_FILE, PAGE_SIZE } from '../protocol/runtime-dir.js';
import { trustedUids, traversableByAll } from '../protocol/trust.js';
import type { DevLinkStatus, LinkOutcome } from '../protocol/status.js';
import type { Logger } from './log.js';
import { unlinkIfPresent } from './runtime-dir.js';

export type { DevLinkStatus, LinkOutcome } from '../protocol/status.js';

let current: DevLinkStatus | null = null;

/** The last linkDevice outcome, for the status document; null when --dev-link is off. */
export function devLinkStatus(): DevLinkStatus | null {
  return current;
}

/**
 * Why the link at `linkPath` (pointing at `target`) is stale, or undefined when it may be live or is not
 * a daemon's: only a link to a page (a file named `generation`, missing or of PAGE_SIZE bytes) whose
 * directory no daemon serves is stale. A link to anything else is someone's choice and is kept.
 */
function staleness(linkPath: string, target: string): string | undefined {
  const abs = path.resolve(path.dirname(linkPath), target);
  if (path.basename(abs) !== PAGE_FILE) return undefined;
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    return `its target ${abs} does not exist`;
  }
  if (!st.isFile() || st.size !== PAGE_SIZE) return undefined;
  const listening = daemonListening(path.dirname(abs));
  if (listening === false) return `no daemon serves ${path.dirname(abs)} any more`;
  return undefined;
}

export function linkDevice(linkPath: string, page: string, log: Logger): LinkOutcome {
  const readableByAll = pageReadableByAll(page);
  const done = (outcome: LinkOutcome, found: string | null, detail: string): LinkOutcome => {
    current = { path: linkPath, page, outcome, found, detail, readableByAll };
    return outcome;
  };
  if (!readableByAll) {
    log.warn(
      `--dev-link: unprivileged processes cannot open ${page} (a directory on its path is not searchable by ` +
        'others, or the page is not readable): AWS-LC in them silently reports the generation ID unsupported',
    );
  }
  try {
    fs.symlinkSync(page, linkPath);
    log.info(`linked ${linkPath} -> ${page}`);
    return done('created', null, 'created');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code !== 'EEXIST') {
      log.warn(`cannot link ${linkPath} to the page: ${e.message}`);
      return done('refused', null, e.message);
    }
  }
  let st: fs.Stats;
  let target: string | undefined;
  try {
    st = fs.lstatSync(linkPath);
    target = st.isSymbolicLink() ? fs.readlinkSync(linkPath) : undefined;
  } catch (err) {
    log.warn(`cannot inspect ${linkPath}: ${(err as Error).message}`);
    return done('refused', null, (err as Error).message);
  }
  if (target === page) {
    log.info(`${linkPath} already links to the page`);
    return done('kept', target, 'already linked to this page');
  }
  const stale = target !== undefined && trustedUids().has(st.uid) ? staleness(linkPath, target) : undefined;
  if (target !== undefined && stale) {
    // A new link under a temporary name renamed over the old one: the path never disappears.
    const tmp = path.join(path.dirname(linkPath), `.${path.basename(linkPath)}.sysgenidd-${process.pid}`);
    try {
      unlinkIfPresent(tmp);
      fs.symlinkSync(page, tmp);
      fs.renameSync(tmp, linkPath);
    } catch (err) {
      unlinkIfPresent(tmp);
      log.warn(`${linkPath} is a stale link to ${target} (${stale}) but cannot be replaced: ${(err as Error).message}`);
      return done('refused', target, `stale (${stale}); replacing failed: ${(err as Error).message}`);
    }
    log.warn(
      `replaced the stale link ${linkPath} -> ${target} (${stale}) with a link to ${page}; ` +
        'processes that mapped the old page before now keep reading it',
    );
    return done('replaced', target, `replaced a stale link: ${stale}`);
  }
  log.warn(`${linkPath} already exists${target ? ` (a link to ${target})` : ''}; not replacing it`);
  return done('refused', target ?? null, target ? 'a link to another page that may be live' : 'not a symbolic link');
}

function pageReadableByAll(page: string): boolean {
  try {
    return traversableByAll(path.dirname(page)) && (fs.statSync(page).mode & 0o004) !== 0;
  } catch {
    return false;
  }
}
